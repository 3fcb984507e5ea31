"""A peer side by side: cryptofeed's OKX feed with its PostgreSQL backend, against the local OKX v5 simulator.

``python -m bench.peer_cryptofeed [tiny|small|full]`` (not in ``python -m bench``'s default list
until the recorder's own v5 collector exists; needs the ``peer`` extra: ``pip install -e '.[peer]'``).

One v5 simulator (``okex-recorder simulate --venue okx_v5``, a subprocess, seeded) serves the
stream; in the same run each client subscribes books + trades + tickers for the same instruments
and records for the same time:

* **cryptofeed** (a subprocess, :func:`_cryptofeed_child`): ``cryptofeed.exchanges.OKX`` with its
  endpoints overridden to loopback (``websocket_endpoints`` / ``rest_endpoints`` are class
  attributes: a subclass replaces them; symbols come from the simulator's
  ``/api/v5/public/instruments``), callbacks ``BookPostgres`` (snapshots only, every update),
  ``TradePostgres``, ``TickerPostgres`` into a throwaway PostgreSQL database
  (``OKEX_BENCH_PG_URL``) with the tables of cryptofeed's own example schema. Messages are
  counted in its ``message_handler`` (one WebSocket message each).
* **the recorder**: :data:`RECORDER_COMMAND` builds its command line (a function of the simulator's
  URLs and a work directory). The v5 collector is being built on another branch; until it is
  merged it is None and only cryptofeed runs. After the merge, point it at
  ``okex-recorder run --config <v5 config>`` (``[venues.okx_v5]`` with the simulator's public URL,
  the same instruments and channels, PostgreSQL as ``storage.sql_url``) and say which tables to
  count in :data:`RECORDER_TABLES`.

Figures: messages/s each client received, rows each stored (per table), same run. The simulator's
own market model sets the pace (``RATE`` steps per instrument per second): a client that keeps up
receives what it sends; pick a rate beyond what one client can take to compare throughput.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from bench import procs
from bench.harness import BenchResult

SIZES = {"tiny": (3, 5.0, 10.0), "small": (20, 60.0, 50.0), "full": (100, 300.0, 50.0)}  # instr., s, rate
PG_URL = os.environ.get("OKEX_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
INSTRUMENTS = ["BTC-USDT", "ETH-USDT", "ETH-BTC", "LTC-USDT", "LTC-BTC", "OKB-USDT", "XRP-USDT", "BCH-USDT",
               "EOS-USDT", "ETC-USDT"]

# cryptofeed's example PostgreSQL schema (examples/postgres_tables.sql in its repository), the tables
# its TradePostgres / TickerPostgres / BookPostgres insert into (column order as its format() writes).
CRYPTOFEED_TABLES = {
    "trades": "CREATE TABLE trades (id serial PRIMARY KEY, timestamp TIMESTAMP, receipt_timestamp TIMESTAMP, "
              "exchange VARCHAR(32), symbol VARCHAR(32), side VARCHAR(8), amount NUMERIC(64, 32), "
              "price NUMERIC(64, 32), trade_id VARCHAR(64), order_type VARCHAR(32))",
    "ticker": "CREATE TABLE ticker (id serial PRIMARY KEY, timestamp TIMESTAMP, receipt_timestamp TIMESTAMP, "
              "exchange VARCHAR(32), symbol VARCHAR(32), bid NUMERIC(64, 32), ask NUMERIC(64, 32))",
    "book": "CREATE TABLE book (id serial PRIMARY KEY, timestamp TIMESTAMP, receipt_timestamp TIMESTAMP, "
            "exchange VARCHAR(32), symbol VARCHAR(32), data JSONB)",
}

RecorderCommand = Callable[[str, str, Path, list[str], float], list[str]]
"""(ws public URL, REST base URL, work directory, instruments, seconds) -> the recorder's command line."""

RECORDER_COMMAND: RecorderCommand | None = None  # set once the v5 collector is merged (see the module doc)
RECORDER_TABLES = ("book_snapshots", "tickers", "deals")


def _pg_urls(name: str) -> tuple[str, str]:
    """(libpq URL of the server's maintenance database, libpq URL of database ``name``)."""
    base = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    parts = urllib.parse.urlsplit(base)
    return base, urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def _psql(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql)
        return list(cur.fetchall()) if cur.description else []


class _V5Sim:
    """``okex-recorder simulate --venue okx_v5`` on a free loopback port (REST and WebSocket)."""

    def __init__(self, work: Path, instruments: list[str], rate: float) -> None:
        self.port = procs.free_port()
        self.log = open(work / "simulator.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(procs.BIN / "okex-recorder"), "simulate", "--venue", "okx_v5", "--port", str(self.port),
             "--symbols", ",".join(instruments), "--rate", str(rate)],
            stdout=self.log, stderr=subprocess.STDOUT)
        try:
            procs.wait_port(self.port, proc=self.proc)
        except BaseException:
            self.stop()
            raise

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def public_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v5/public"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _cryptofeed_child(port: int, pg_url: str, seconds: float, instruments: list[str], out: str) -> None:
    """Run cryptofeed's OKX feed against the simulator for ``seconds``; write its message count to ``out``."""
    from cryptofeed import FeedHandler
    from cryptofeed.backends.postgres import BookPostgres, TickerPostgres, TradePostgres
    from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint, WSAsyncConn
    from cryptofeed.defines import L2_BOOK, TICKER, TRADES
    from cryptofeed.exchanges import OKX

    ws = f"ws://127.0.0.1:{port}/ws/v5/public"
    rest = f"http://127.0.0.1:{port}"
    counted = {"messages": 0}

    # cryptofeed refuses any WebSocket address but wss:// (WSAsyncConn.__init__); the simulator speaks
    # plain ws:// on loopback: pass the check, then connect to the plain address.
    wss_only = WSAsyncConn.__init__

    def plain_ws_allowed(self: Any, address: str, conn_id: str, **kwargs: Any) -> None:
        wss_only(self, address.replace("ws://", "wss://", 1), conn_id, **kwargs)
        self.address = address

    WSAsyncConn.__init__ = plain_ws_allowed

    class LocalOKX(OKX):
        """OKX with every endpoint on the loopback simulator (the class attributes cryptofeed reads)."""

        channels = (OKX.websocket_channels[L2_BOOK], OKX.websocket_channels[TRADES],
                    OKX.websocket_channels[TICKER])
        websocket_endpoints: ClassVar[list[Any]] = [
            WebsocketEndpoint(ws, channel_filter=channels, options={"compression": None})]
        # Two routes: with one, cryptofeed hands its parser the answer instead of a list of answers.
        rest_endpoints: ClassVar[list[Any]] = [RestEndpoint(rest, routes=Routes(
            ["/api/v5/public/instruments?instType=SPOT", "/api/v5/public/instruments?instType=SWAP"],
            liquidations="/api/v5/public/liquidation-orders?instType={}&limit=100&state={}&uly={}"))]

        async def message_handler(self, msg: str, conn: Any, timestamp: float) -> None:
            counted["messages"] += 1
            await super().message_handler(msg, conn, timestamp)

    parts = urllib.parse.urlsplit(pg_url)
    pg = {"host": parts.hostname or "127.0.0.1", "port": parts.port or 5432, "user": parts.username,
          "pw": parts.password, "db": parts.path.lstrip("/")}
    fh = FeedHandler()
    fh.add_feed(LocalOKX(symbols=instruments, channels=[L2_BOOK, TRADES, TICKER], callbacks={
        L2_BOOK: BookPostgres(snapshots_only=True, snapshot_interval=1, **pg),
        TRADES: TradePostgres(**pg), TICKER: TickerPostgres(**pg)}))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    fh.run(start_loop=False, install_signal_handlers=False)
    started = time.monotonic()
    loop.run_until_complete(asyncio.sleep(seconds))
    elapsed = time.monotonic() - started
    fh.stop(loop=loop)
    Path(out).write_text(json.dumps({"messages": counted["messages"], "seconds": elapsed}))


def run(size: str, recorder_command: RecorderCommand | None = None) -> BenchResult:
    n_inst, seconds, rate = SIZES[size]
    instruments = INSTRUMENTS[:n_inst] if n_inst <= len(INSTRUMENTS) else _more_instruments(n_inst)
    recorder_command = recorder_command or RECORDER_COMMAND
    result = BenchResult("peer_cryptofeed", size)
    db = f"bench_peer_{uuid.uuid4().hex[:8]}"
    admin, db_url = _pg_urls(db)
    _psql(admin, f"CREATE DATABASE {db}")
    try:
        for ddl in CRYPTOFEED_TABLES.values():
            _psql(db_url, ddl)
        with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
            work = Path(tmp)
            sim = _V5Sim(work, instruments, rate)
            try:
                out = work / "cryptofeed.json"
                child = ["--child", str(sim.port), db_url, str(seconds), ",".join(instruments), str(out)]
                with open(work / "cryptofeed.log", "wb") as cf_log:  # cwd: its feedhandler.log lands there
                    cf = subprocess.Popen([sys.executable, "-m", "bench.peer_cryptofeed", *child],
                                          cwd=work, stdout=subprocess.DEVNULL, stderr=cf_log,
                                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
                rec = None
                if recorder_command is not None:
                    rec_dir = work / "recorder"
                    rec_dir.mkdir()
                    command = recorder_command(sim.public_url, sim.rest_url, rec_dir, instruments, seconds)
                    with open(rec_dir / "recorder.log", "wb") as rec_log:
                        rec = subprocess.Popen(command, cwd=rec_dir, stdout=rec_log, stderr=subprocess.STDOUT)
                cf.wait(seconds + 120)
                if rec is not None:
                    rec.wait(seconds + 120)
            finally:
                sim.stop()
            figures = json.loads(out.read_text()) if out.exists() else {"messages": 0, "seconds": seconds}
            if not out.exists():
                log = (work / "cryptofeed.log").read_text()[:3000]
                result.notes.append(f"cryptofeed did not finish: {log}")
        rows = {t: _psql(db_url, f"SELECT count(*) FROM {t}")[0][0] for t in CRYPTOFEED_TABLES}  # noqa: S608
    finally:
        _psql(admin, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    rate_cf = figures["messages"] / max(figures["seconds"], 1e-9)
    result.add("cryptofeed msg/s received (OKX feed, PostgreSQL backend)", rate_cf, "msg/s")
    result.add("cryptofeed rows stored", sum(rows.values()), "rows")
    result.notes.append(f"{len(instruments)} instruments, books + trades + tickers, simulator rate {rate:g} "
                        f"steps/s/instrument, {seconds:g} s; cryptofeed rows per table {rows}")
    if recorder_command is None:
        result.notes.append("recorder side not run: the OKX v5 collector is not merged yet "
                            "(RECORDER_COMMAND)")
    return result


def _more_instruments(n: int) -> list[str]:
    from recorder.okex.pairs import pairs

    names = sorted(s.upper().replace("_", "-") for s in pairs())
    return names[:n]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        port, pg_url, secs, inst, out = sys.argv[2:7]
        _cryptofeed_child(int(port), pg_url, float(secs), inst.split(","), out)
        sys.exit(0)
    from bench.harness import render

    r = run(sys.argv[1] if len(sys.argv) > 1 else "small")
    print(render([r]))
    print("\n".join(r.notes))
