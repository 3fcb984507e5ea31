"""A peer side by side: this recorder and cryptofeed record the same OKX v5 simulator, same run.

``python -m bench --only peer`` (in the default list when cryptofeed is importable; it needs the
``peer`` extra, ``pip install -e '.[peer]'``, and PostgreSQL), or ``python -m bench.peer [size]``.

One v5 simulator (``okex-recorder simulate --venue okx_v5``, a subprocess, seed 1) serves both
connections; each client subscribes books + trades + tickers for the same instruments, at the
same time, and stores into its own throwaway PostgreSQL database (``OKEX_BENCH_PG_URL``):

* **the recorder**: ``okex-recorder run`` with a ``[venues.okx_v5]`` table pointed at the
  simulator (no candles), PostgreSQL as ``storage.sql_url`` and Parquet under a temp dir.
  Messages: ``frames.received`` of its ``status.json`` (rewritten every 0.5 s). Rows: counted back
  from PostgreSQL and Parquet (``book_snapshots``, ``tickers``, ``deals``), compared with the
  rows its status says it produced. Books are stored as top-20 snapshots, one per change of
  the top 20 levels (``snapshot_on_change``; heartbeats and changes deeper in the book store
  nothing).
* **cryptofeed** (a subprocess, :func:`_cryptofeed_child`): ``cryptofeed.exchanges.OKX`` with its
  endpoints on loopback, ``max_depth=20`` (the same 20 levels), callbacks ``BookPostgres``
  (``snapshots_only``: the top-20 book as JSON, one row per books message, heartbeats included),
  ``TradePostgres``, ``TickerPostgres`` into cryptofeed's own example tables. Messages: counted
  in its ``message_handler``; rows produced: counted in each backend's ``write``; rows stored:
  counted back from PostgreSQL. It writes its counts every 0.5 s to a progress file.

Each client as shipped: the recorder's WebSocket client (``websockets``) negotiates
permessage-deflate, cryptofeed's OKX endpoints turn compression off; so the simulator compresses
the recorder's frames and the recorder inflates them (``phase(..., cf_deflate=True)`` has
cryptofeed negotiate it too).

The window: once both receive (plus a warm-up), for ``seconds``; both keep recording ``GRACE`` s
after it, then stop cleanly (SIGINT). Per client: msg/s received in the window, CPU seconds in the
window (``/proc/<pid>/stat`` of the client and of the PostgreSQL backends serving its database)
per 1,000 messages, receive lag (p99 and max of receipt time - exchange time over its stored
trades and tickers), rows produced and stored, and rows whose exchange time falls in the window
per dataset (the same trades and tickers in both when both kept up). The simulator's market
model sets the pace (``rate`` steps per instrument per second): at a rate both take, msg/s are
equal and CPU per message is the comparison. The "saturating" phase asks for more than the
simulator (one Python process) can produce; on a small machine it is the simulator that
saturates first (its CPU share is reported), and a client that fell behind would show fewer
messages and a growing lag.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, ClassVar

from bench import procs
from bench.harness import BenchResult

# (label, instruments, simulator rate in steps per instrument per second, seconds in the window)
SIZES: dict[str, list[tuple[str, int, float, float]]] = {
    "tiny": [("paced", 3, 10.0, 5.0)],
    "small": [("paced", 10, 10.0, 30.0), ("saturating", 10, 400.0, 30.0)],
    "full": [("paced", 10, 10.0, 120.0), ("saturating", 10, 400.0, 120.0)],
}
WARMUP = 3.0  # s after both clients receive: subscriptions and first book snapshots settle
GRACE = 5.0  # s both keep recording after the window, so rows with exchange times in it all arrive
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
RECORDER_TABLES = ("book_snapshots", "tickers", "deals")
# the same data in both: (recorder dataset, cryptofeed table)
PAIRS = (("book_snapshots", "book"), ("deals", "trades"), ("tickers", "ticker"))
TICK = os.sysconf("SC_CLK_TCK")


def available() -> str | None:
    """None when the benchmark can run, else why not (the peer extra is missing)."""
    try:
        import asyncpg  # noqa: F401
        import cryptofeed  # noqa: F401
    except ImportError as exc:
        return f"needs the peer extra (pip install -e '.[peer]'): {exc}"
    return None


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


def _sqlalchemy(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _pg_backends(admin: str, db: str) -> list[int]:
    return [r[0] for r in _psql(admin, f"SELECT pid FROM pg_stat_activity WHERE datname = '{db}'")]  # noqa: S608


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


class _V5Sim:
    """``okex-recorder simulate --venue okx_v5`` on a free loopback port (REST and WebSocket)."""

    def __init__(self, work: Path, instruments: list[str], rate: float) -> None:
        self.port = procs.free_port()
        self.log = open(work / "simulator.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(procs.BIN / "okex-recorder"), "simulate", "--venue", "okx_v5", "--port", str(self.port),
             "--symbols", ",".join(instruments), "--rate", str(rate), "--seed", "1"],
            stdout=self.log, stderr=subprocess.STDOUT)
        try:
            procs.wait_port(self.port, proc=self.proc)
        except BaseException:
            self.stop()
            raise

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, kind: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v5/{kind}"

    def stop(self) -> None:
        procs.terminate(self.proc)
        self.log.close()


def recorder_config(work: Path, sim: _V5Sim, instruments: list[str], sql_url: str) -> Path:
    """The recorder's TOML: ``[venues.okx_v5]`` on the simulator, PostgreSQL + Parquet under ``work``."""
    doc = {
        "venues.okex_v1": {"enabled": False},
        "venues.okx_v5": {"public_url": sim.url("public"), "business_url": sim.url("business"),
                          "private_url": sim.url("private"), "rest_url": sim.rest_url,
                          "instruments": instruments, "channels": ["books", "trades", "tickers"],
                          "candle_bars": [], "snapshot_depth": 20},
        "collector": {"status_interval": 0.5, "status_file": work / "status.json"},
        "storage": {"sql_url": sql_url, "parquet_root": work / "parquet", "spill_dir": work / "spill",
                    "parquet_journal_dir": work / "parquet-journal"},
        "log": {"level": "WARNING"},
    }
    return procs.write_toml(work / "recorder.toml", doc)


def _cryptofeed_child(port: int, pg_url: str, instruments: list[str], progress: str,
                      deflate: bool = False) -> None:
    """cryptofeed's OKX feed on the simulator until SIGINT/SIGTERM; its counts go to ``progress``
    every 0.5 s and once more after its backends stopped (``"final": true``)."""
    from cryptofeed import FeedHandler
    from cryptofeed.backends.postgres import BookPostgres, TickerPostgres, TradePostgres
    from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint, WSAsyncConn
    from cryptofeed.defines import L2_BOOK, TICKER, TRADES
    from cryptofeed.exchanges import OKX

    ws = f"ws://127.0.0.1:{port}/ws/v5/public"
    rest = f"http://127.0.0.1:{port}"
    counted = {"messages": 0}
    produced = {"book": 0, "trades": 0, "ticker": 0}

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
            WebsocketEndpoint(ws, channel_filter=channels,
                              options={"compression": "deflate" if deflate else None})]
        # Two routes: with one, cryptofeed hands its parser the answer instead of a list of answers.
        rest_endpoints: ClassVar[list[Any]] = [RestEndpoint(rest, routes=Routes(
            ["/api/v5/public/instruments?instType=SPOT", "/api/v5/public/instruments?instType=SWAP"],
            liquidations="/api/v5/public/liquidation-orders?instType={}&limit=100&state={}&uly={}"))]

        async def message_handler(self, msg: str, conn: Any, timestamp: float) -> None:
            counted["messages"] += 1
            await super().message_handler(msg, conn, timestamp)

    def counting(cls: Any, table: str) -> Any:
        class Counting(cls):  # type: ignore[misc, valid-type]
            async def write(self, data: Any) -> None:
                produced[table] += 1
                await super().write(data)
        return Counting

    parts = urllib.parse.urlsplit(pg_url)
    pg = {"host": parts.hostname or "127.0.0.1", "port": parts.port or 5432, "user": parts.username,
          "pw": parts.password, "db": parts.path.lstrip("/")}
    backends = [counting(BookPostgres, "book")(snapshots_only=True, **pg),
                counting(TradePostgres, "trades")(**pg), counting(TickerPostgres, "ticker")(**pg)]
    fh = FeedHandler()
    fh.add_feed(LocalOKX(symbols=instruments, channels=[L2_BOOK, TRADES, TICKER], max_depth=20,
                         callbacks={L2_BOOK: backends[0], TRADES: backends[1], TICKER: backends[2]}))

    def report(final: bool = False) -> None:
        tmp = Path(progress + ".tmp")
        tmp.write_text(json.dumps({"t": time.time(), "messages": counted["messages"], "produced": produced,
                                   "final": final}))
        tmp.replace(progress)

    async def reporting(stop: asyncio.Event) -> None:
        while not stop.is_set():
            report()
            await asyncio.sleep(0.5)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    fh.run(start_loop=False, install_signal_handlers=False)
    loop.run_until_complete(asyncio.gather(stop.wait(), reporting(stop)))
    fh.stop(loop=loop)
    workers = [b.worker for b in backends if getattr(b, "worker", None) is not None]
    if workers:  # their queues drain into PostgreSQL (cryptofeed's own stop does not wait for that)
        loop.run_until_complete(asyncio.wait(workers, timeout=60))
    report(final=True)


def _wait_or_kill(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for ``proc``; SIGKILL after ``timeout``."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _sample(admin: str, procs_: dict[str, int], dbs: dict[str, str]) -> dict[str, Any]:
    """CPU seconds of each process, and of each PostgreSQL backend (by pid) serving each database."""
    cpu: dict[str, Any] = {name: _cpu_seconds(pid) for name, pid in procs_.items()}
    for name, db in dbs.items():
        cpu[f"{name}_pg"] = {pid: _cpu_seconds(pid) for pid in _pg_backends(admin, db)}
    return cpu


def _cpu_delta(cpu0: dict[str, Any], cpu1: dict[str, Any]) -> dict[str, float]:
    """CPU seconds in the window; a backend first seen at the end counts from 0 (it started inside)."""
    out: dict[str, float] = {}
    for key, end in cpu1.items():
        if isinstance(end, dict):
            out[key] = sum(v - cpu0[key].get(pid, 0.0) for pid, v in end.items())
        else:
            out[key] = end - cpu0[key]
    return out


def phase(instruments: list[str], rate: float, seconds: float, work: Path,
          cf_deflate: bool = False) -> dict[str, Any]:
    """One same-run measurement of both clients (see the module doc); everything it measured."""
    tag = uuid.uuid4().hex[:8]
    dbs = {"recorder": f"bench_peer_rec_{tag}", "cryptofeed": f"bench_peer_cf_{tag}"}
    admin, _ = _pg_urls("postgres")
    urls = {name: _pg_urls(db)[1] for name, db in dbs.items()}
    for db in dbs.values():
        _psql(admin, f"CREATE DATABASE {db}")
    try:
        for ddl in CRYPTOFEED_TABLES.values():
            _psql(urls["cryptofeed"], ddl)
        # PostgreSQL is never upgraded at start: the schema first, as its operator would
        subprocess.run([str(procs.BIN / "okex-recorder"), "db", "upgrade", "--sql-url",
                        _sqlalchemy(urls["recorder"])], check=True, capture_output=True)
        m = _run_both(instruments, rate, seconds, work, admin, dbs, urls, cf_deflate)
        m["cryptofeed_rows"] = {t: _psql(urls["cryptofeed"], f"SELECT count(*) FROM {t}")[0][0]  # noqa: S608
                                for t in CRYPTOFEED_TABLES}
        m["recorder_rows"] = {t: _psql(urls["recorder"], f"SELECT count(*) FROM {t}")[0][0]  # noqa: S608
                              for t in RECORDER_TABLES}
        w0, w1 = m["window"]
        m["cryptofeed_window"] = {t: _psql(urls["cryptofeed"], f"SELECT count(*) FROM {t} WHERE timestamp "  # noqa: S608
                                           f"BETWEEN (to_timestamp({w0}) AT TIME ZONE 'UTC') "
                                           f"AND (to_timestamp({w1}) AT TIME ZONE 'UTC')")[0][0]
                                  for t in CRYPTOFEED_TABLES}
        m["recorder_window"] = {t: _psql(urls["recorder"], f"SELECT count(*) FROM {t} WHERE ts_event "  # noqa: S608
                                         f"BETWEEN to_timestamp({w0}) AND to_timestamp({w1})")[0][0]
                                for t in RECORDER_TABLES}
        m["cryptofeed_lag"] = _psql(urls["cryptofeed"], _lag_sql(
            [("trades", "timestamp", "receipt_timestamp"), ("ticker", "timestamp", "receipt_timestamp")]))[0]
        m["recorder_lag"] = _psql(urls["recorder"], _lag_sql(
            [("deals", "ts_event", "ts_recv"), ("tickers", "ts_event", "ts_recv")]))[0]
    finally:
        for db in dbs.values():
            _psql(admin, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    import pyarrow.dataset as pads

    m["recorder_parquet"] = {}
    for t in RECORDER_TABLES:
        path = work / "recorder" / "parquet" / t
        m["recorder_parquet"][t] = pads.dataset(path, format="parquet", partitioning="hive").count_rows() \
            if path.exists() else 0
    return m


def _lag_sql(tables: list[tuple[str, str, str]]) -> str:
    """p99 and max of receipt - exchange time (s) over the union of ``tables``."""
    union = " UNION ALL ".join(f"SELECT extract(epoch FROM {recv} - {event}) AS lag FROM {t}"  # noqa: S608
                               for t, event, recv in tables)
    return f"SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag) FROM ({union}) AS u"  # noqa: S608


def _run_both(instruments: list[str], rate: float, seconds: float, work: Path, admin: str,
              dbs: dict[str, str], urls: dict[str, str], cf_deflate: bool) -> dict[str, Any]:
    rec_dir = work / "recorder"
    rec_dir.mkdir(parents=True)
    progress = work / "cryptofeed.json"
    status = rec_dir / "status.json"
    sim = _V5Sim(work, instruments, rate)
    cf: subprocess.Popen[bytes] | None = None
    rec: subprocess.Popen[bytes] | None = None
    try:
        config = recorder_config(rec_dir, sim, instruments, _sqlalchemy(urls["recorder"]))
        with open(work / "cryptofeed.log", "wb") as cf_log:  # cwd: its feedhandler.log lands there
            cf = subprocess.Popen(
                [sys.executable, "-m", "bench.peer", "--child", str(sim.port), urls["cryptofeed"],
                 ",".join(instruments), str(progress), "deflate" if cf_deflate else "none"],
                cwd=work, stdout=subprocess.DEVNULL, stderr=cf_log,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
        with open(rec_dir / "recorder.log", "wb") as rec_log:
            rec = subprocess.Popen([str(procs.BIN / "okex-recorder"), "run", "--config", str(config)],
                                   cwd=rec_dir, stdout=rec_log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while True:
            c, r = _read_json(progress), _read_json(status)
            if c and c["messages"] > 0 and r and r["frames"]["received"] > 0:
                break
            for name, p, log in (("cryptofeed", cf, work / "cryptofeed.log"),
                                 ("recorder", rec, rec_dir / "recorder.log")):
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited ({p.returncode}) before receiving: "
                                       f"{log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no messages after 180 s: cryptofeed {c}, recorder {r and r['frames']}")
            time.sleep(0.2)
        time.sleep(WARMUP)
        pids = {"recorder": rec.pid, "cryptofeed": cf.pid, "simulator": sim.proc.pid}
        c0, r0, cpu0, t0 = _read_json(progress), _read_json(status), _sample(admin, pids, dbs), time.time()
        time.sleep(seconds)
        c1, r1, cpu1, t1 = _read_json(progress), _read_json(status), _sample(admin, pids, dbs), time.time()
        time.sleep(GRACE)  # what was sent in the window arrives at a lagging client too
        for p in (cf, rec):
            p.send_signal(signal.SIGINT)  # clean stops: both flush what they hold
        _wait_or_kill(cf, 120)
        _wait_or_kill(rec, 120)
    finally:
        for p in (cf, rec):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        sim.stop()
    assert c0 and c1 and r0 and r1

    def stamp(doc: dict[str, Any]) -> float:
        from datetime import datetime

        return datetime.fromisoformat(doc["updated_at"]).timestamp()

    return {
        "instruments": len(instruments), "rate": rate, "seconds": t1 - t0, "window": (t0, t1),
        "cryptofeed_msgs": c1["messages"] - c0["messages"], "cryptofeed_span": c1["t"] - c0["t"],
        "recorder_msgs": r1["frames"]["received"] - r0["frames"]["received"],
        "recorder_span": stamp(r1) - stamp(r0),
        "cpu": _cpu_delta(cpu0, cpu1),
        "cryptofeed_final": _read_json(progress) or {},
        "recorder_final": _read_json(status) or {},
        "logs": {n: (work / n).read_text(errors="replace")[-2000:]
                 for n in ("cryptofeed.log", "recorder/recorder.log") if (work / n).exists()},
    }


def run(size: str) -> BenchResult:
    result = BenchResult("peer", size)
    why_not = available()
    if why_not:
        result.notes.append(f"skipped: {why_not}")
        return result
    for label, n_inst, rate, seconds in SIZES[size]:
        instruments = INSTRUMENTS[:n_inst] if n_inst <= len(INSTRUMENTS) else _more_instruments(n_inst)
        with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
            m = phase(instruments, rate, seconds, Path(tmp))
        _report(result, label, m)
    return result


def _report(result: BenchResult, label: str, m: dict[str, Any]) -> None:
    rec_final, cf_final = m["recorder_final"], m["cryptofeed_final"]
    rec_rate = m["recorder_msgs"] / max(m["recorder_span"], 1e-9)
    cf_rate = m["cryptofeed_msgs"] / max(m["cryptofeed_span"], 1e-9)
    cpu = m["cpu"]
    per_k = {name: 1000 * (cpu[name] + cpu[f"{name}_pg"]) / max(m[f"{name}_msgs"], 1)
             for name in ("recorder", "cryptofeed")}
    p = f"{label}: "
    result.add(p + "recorder msg/s received", rec_rate, "msg/s")
    result.add(p + "cryptofeed msg/s received", cf_rate, "msg/s")
    result.add(p + "ratio recorder / cryptofeed msg/s (same run)", rec_rate / max(cf_rate, 1e-9), "x")
    with_pg = "CPU per 1,000 msg (process + its PostgreSQL backends)"
    result.add(f"{p}recorder {with_pg}", per_k["recorder"], "s")
    result.add(f"{p}cryptofeed {with_pg}", per_k["cryptofeed"], "s")
    result.add(f"{p}ratio cryptofeed / recorder CPU per msg",
               per_k["cryptofeed"] / max(per_k["recorder"], 1e-9), "x")
    result.add(f"{p}simulator CPU (share of one core; near 1: it sets the ceiling)",
               cpu["simulator"] / max(m["seconds"], 1e-9), "cores")
    own = {name: 1000 * cpu[name] / max(m[f"{name}_msgs"], 1) for name in ("recorder", "cryptofeed")}
    result.add(p + "recorder CPU per 1,000 msg (process only)", own["recorder"], "s")
    result.add(p + "cryptofeed CPU per 1,000 msg (process only)", own["cryptofeed"], "s")
    result.add(p + "recorder lag p99 (trades + tickers)", float(m["recorder_lag"][0] or 0), "s")
    result.add(p + "cryptofeed lag p99 (trades + tickers)", float(m["cryptofeed_lag"][0] or 0), "s")
    produced = {t: rec_final.get("rows", {}).get("produced", {}).get(t, 0) for t in RECORDER_TABLES}
    rec_sql, rec_pq = m["recorder_rows"], m["recorder_parquet"]
    ok = all(rec_sql[t] == produced[t] == rec_pq[t] for t in RECORDER_TABLES)
    result.add(p + "recorder rows stored (PostgreSQL)", sum(rec_sql.values()), "rows",
               f"== {sum(produced.values())} produced (and Parquet)", ok)
    cf_produced, cf_rows = cf_final.get("produced", {}), m["cryptofeed_rows"]
    cf_ok = all(cf_rows[t] == cf_produced.get(t, -1) for t in CRYPTOFEED_TABLES)
    result.add(p + "cryptofeed rows stored (PostgreSQL)", sum(cf_rows.values()), "rows",
               f"== {sum(cf_produced.values())} produced", cf_ok)
    # Its Feed.shutdown stops the backend writers before it closes the connection: rows still queued
    # (or written to the queue after its writer saw the stop) never reach PostgreSQL.
    result.add(p + "cryptofeed rows produced but not stored (lost at its clean stop)",
               sum(cf_produced.values()) - sum(cf_rows.values()), "rows")
    result.add(p + "recorder rows produced", sum(produced.values()), "rows")
    result.add(p + "cryptofeed rows produced", sum(cf_produced.values()), "rows")
    rec_w, cf_w = m["recorder_window"], m["cryptofeed_window"]
    for rec_t, cf_t in PAIRS:
        result.add(f"{p}rows with exchange time in the window: {rec_t} (recorder) / {cf_t} (cryptofeed)",
                   rec_w[rec_t], "rows", f"cryptofeed {cf_w[cf_t]}")
    frames = rec_final.get("frames", {})
    result.notes.append(
        f"{label}: {m['instruments']} instruments, books + trades + tickers, simulator rate {m['rate']:g} "
        f"steps/s/instrument, window {m['seconds']:.1f} s; messages in the window: recorder "
        f"{m['recorder_msgs']}, cryptofeed {m['cryptofeed_msgs']}; CPU s in the window {_round(cpu)}; "
        f"recorder rows produced {produced}, PostgreSQL {rec_sql}, Parquet {rec_pq}, quarantined "
        f"{rec_final.get('rows', {}).get('quarantined', {})}, frames dropped (backpressure) "
        f"{frames.get('dropped_backpressure')}, gaps {len(rec_final.get('open_gaps', []))} open; "
        f"cryptofeed rows produced {cf_produced}, PostgreSQL {cf_rows} (final report: "
        f"{cf_final.get('final')}); lag p99/max s: "
        f"recorder {_round(m['recorder_lag'])}, cryptofeed {_round(m['cryptofeed_lag'])}")
    if not ok:
        result.notes.append(f"{label}: logs {m['logs']}")


def _round(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_round(x) for x in v]
    return round(float(v), 3) if v is not None else None


def _more_instruments(n: int) -> list[str]:
    names = [s.upper().replace("_", "-") for s in procs.known_symbols(n)]
    return names


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        port, pg_url, inst, progress_file, deflate = sys.argv[2:7]
        _cryptofeed_child(int(port), pg_url, inst.split(","), progress_file, deflate == "deflate")
        sys.exit(0)
    from bench.harness import render

    r = run(sys.argv[1] if len(sys.argv) > 1 else "small")
    print(render([r]))
    print("\n".join(r.notes))
