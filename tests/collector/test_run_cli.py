"""``okex-recorder run`` as a newcomer starts it: from the example config on a fresh checkout, and
against an exchange that cannot be reached."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from recorder.simulator import SimulatorThread
from tests.collector.helpers import stored, stored_parquet, ticker_from_push, ticker_key

REPO = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKEX_")}
    env.update(extra)
    return env


def okex_recorder(*args: str, cwd: Path, env: dict[str, str], timeout: float = 120
                  ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recorder.cli", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_run_from_the_example_config_creates_its_directories(
    tmp_path: Path, simulator_thread: SimulatorThread
) -> None:
    """config.example.toml as documented (cp config.example.toml recorder.toml), in a directory without
    ./data: run creates data/, data/parquet, the journal, spill and status directories, says where,
    and records what the simulator sent."""
    sim = simulator_thread
    shutil.copy(REPO / "config.example.toml", tmp_path / "recorder.toml")
    assert not (tmp_path / "data").exists()
    env = clean_env(OKEX_RECORDER__EXCHANGE__WS_URL=sim.ws_url,
                    OKEX_RECORDER__EXCHANGE__REST_URL=sim.rest_url,
                    OKEX_RECORDER__COLLECTOR__SYMBOLS="btc_usdt,ltc_btc",
                    OKEX_RECORDER__STORAGE__FLUSH_INTERVAL="0.2")
    proc = okex_recorder("run", "--config", "recorder.toml", "--duration", "3", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "unable to open database file" not in proc.stderr
    data = tmp_path / "data"
    for sub in ("recording.sqlite", "parquet", "parquet-journal", "spill", "status.json"):
        assert (data / sub).exists(), sub
    files_line = next(line for line in proc.stderr.splitlines() if " files: " in line)
    assert "sqlite data/recording.sqlite" in files_line and "parquet data/parquet" in files_line
    assert "created data" in files_line
    # What was stored is what the simulator sent (every stored ticker was pushed, in order).
    sent = {s: [ticker_from_push(p.data) for p in sim.truth.pushes(f"ok_sub_spot_{s}_ticker")]
            for s in ("btc_usdt", "ltc_btc")}
    for symbol, pushes in sent.items():
        url = f"sqlite:///{data / 'recording.sqlite'}"
        rows = [ticker_key(t) for t in stored(url, "tickers", symbol=symbol)]
        assert rows, symbol
        assert rows == pushes[:len(rows)]
        assert all(isinstance(r[1], Decimal) for r in rows)
    assert "run finished after" in proc.stderr and "rows written this run (by every store): " in proc.stderr


def test_end_of_run_line_and_status_count_what_the_stores_hold(
    tmp_path: Path, simulator_thread: SimulatorThread
) -> None:
    """The closing line and `status` count feed events as events (a span is written open and again
    closed: two Parquet rows, one SQL row), and rows as the stores confirmed them: every figure is
    checked against the SQL database and the Parquet dataset."""
    sim = simulator_thread  # btc_usdt, ltc_btc, eth_btc: eth_usdt's two channels are refused (10015)
    env = clean_env(OKEX_RECORDER__EXCHANGE__WS_URL=sim.ws_url,
                    OKEX_RECORDER__EXCHANGE__REST_URL=sim.rest_url,
                    OKEX_RECORDER__COLLECTOR__SYMBOLS="btc_usdt,eth_usdt",
                    OKEX_RECORDER__STORAGE__FLUSH_INTERVAL="0.2")
    proc = okex_recorder("run", "--duration", "3", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    url = f"sqlite:///{tmp_path / 'data' / 'recording.sqlite'}"
    events = stored(url, "feed_events", order_by="ts_start")
    kinds = sorted((e.kind.value, e.channel) for e in events)
    assert kinds == [("connected", ""), ("shutdown", ""),
                     ("subscribe_error", "ok_sub_spot_eth_usdt_depth"),
                     ("subscribe_error", "ok_sub_spot_eth_usdt_ticker"),
                     ("subscribe_refused", "ok_sub_spot_eth_usdt_depth"),
                     ("subscribe_refused", "ok_sub_spot_eth_usdt_ticker")]
    assert all(e.ts_end is not None and e.detail.endswith("(still open at shutdown)")
               for e in events if e.kind.value == "subscribe_refused")
    parquet_events = stored_parquet(tmp_path / "data" / "parquet", "feed_events", order_by="ts_start")
    assert len(parquet_events) == 8  # each refused span twice: open, then closed at the stop
    snapshots = len(stored(url, "book_snapshots"))
    tickers = len(stored(url, "tickers"))
    assert snapshots > 0 and tickers > 0
    assert len(stored_parquet(tmp_path / "data" / "parquet", "book_snapshots")) == snapshots
    assert len(stored_parquet(tmp_path / "data" / "parquet", "tickers")) == tickers
    status = json.loads((tmp_path / "data" / "status.json").read_text())
    events_text = ("6 (one SQL row each): 2 spans (2 subscribe_refused; 2 open when the stop began), "
                   "4 instants (2 subscribe_error, 1 connected, 1 shutdown)")
    summary = [line.split("recorder.collector: ", 1)[1] for line in proc.stderr.splitlines()
               if "run finished after" in line]
    frames, elapsed = status["frames"]["received"], status["elapsed_seconds"]
    assert summary == [f"run finished after {elapsed:.0f} s: {frames} frames received; rows written this "
                       f"run (by every store): book_snapshots {snapshots}, tickers {tickers}; "
                       f"feed events: {events_text}"], proc.stderr
    shown = okex_recorder("status", cwd=tmp_path, env=clean_env())
    assert shown.returncode == 0, shown.stderr
    assert f"feed events: {events_text}" in shown.stdout.splitlines()
    table = {line.split()[0]: line.split()[1:] for line in shown.stdout.splitlines() if line.startswith("  ")
             and line.split()[0] in ("feed_events", "tickers")}
    # produced, written SQL, written Parquet, quarantined, in SQL (rows, as the stores hold them)
    assert table["feed_events"][:5] == ["8", "8", "8", "0", "6"]
    assert table["tickers"][:5] == [str(tickers)] * 3 + ["0", str(tickers)]


def test_unwritable_directory_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where the data directory should be")
    proc = okex_recorder("run", "--duration", "1", cwd=tmp_path, env=clean_env())
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "okex-recorder run: error: cannot create the directory data")


@pytest.mark.parametrize("where", ["closed-port", "invalid-host"])
def test_unreachable_exchange_is_said_once_and_a_run_that_recorded_nothing_fails(
    tmp_path: Path, where: str
) -> None:
    url = (f"ws://127.0.0.1:{closed_port()}/ws/v1" if where == "closed-port"
           else "ws://okex-recorder-test.invalid/ws/v1")
    env = clean_env(OKEX_RECORDER__EXCHANGE__WS_URL=url,
                    OKEX_RECORDER__COLLECTOR__SYMBOLS="btc_usdt,eth_usdt,ltc_btc",
                    OKEX_RECORDER__COLLECTOR__SYMBOLS_PER_CONNECTION="2",
                    OKEX_RECORDER__COLLECTOR__RECONNECT_INITIAL="0.05",
                    OKEX_RECORDER__COLLECTOR__RECONNECT_CAP="0.2",
                    OKEX_RECORDER__COLLECTOR__CONNECT_TIMEOUT="1")
    proc = okex_recorder("run", "--duration", "4", cwd=tmp_path, env=env)
    err = proc.stderr
    assert proc.returncode == 1, err
    lines = err.splitlines()
    plain = [line for line in lines if "cannot reach the exchange at " + url in line]
    assert len(plain) == 1, err
    assert "okex-recorder simulate" in plain[0] and "exchange.ws_url" in plain[0] and "network" in plain[0]
    # Reconnecting went on (many attempts), but each connection warned once, not per attempt.
    attempts = [line for line in lines if "reconnecting in" in line]
    assert len(attempts) == 2, err  # ws-0 and ws-1, once each
    summary = [line for line in lines if "recorded NOTHING" in line]
    assert len(summary) == 1, err
    assert "no connection to " + url + " ever succeeded" in summary[0]
    failed = int(summary[0].split("(")[1].split(" failed attempts")[0])
    assert failed > 4  # it kept trying with the backoff
    assert "exchange.ws_url" in summary[0]


def test_a_run_that_never_connected_shows_no_lag_and_no_data(tmp_path: Path) -> None:
    """Its only rows are its own gap and shutdown (written locally): status says there was no market
    data, and prints no lag derived from those rows."""
    url = f"ws://127.0.0.1:{closed_port()}/ws/v1"
    env = clean_env(OKEX_RECORDER__EXCHANGE__WS_URL=url, OKEX_RECORDER__COLLECTOR__RECONNECT_INITIAL="0.05",
                    OKEX_RECORDER__COLLECTOR__RECONNECT_CAP="0.2",
                    OKEX_RECORDER__COLLECTOR__CONNECT_TIMEOUT="1",
                    OKEX_RECORDER__STORAGE__FLUSH_INTERVAL="0.2")
    proc = okex_recorder("run", "--duration", "2", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stderr
    db = f"sqlite:///{tmp_path / 'data' / 'recording.sqlite'}"
    assert sorted(e.kind.value for e in stored(db, "feed_events", order_by="ts_start")) == [
        "disconnected", "shutdown"]  # bookkeeping rows were written, and nothing else
    status = json.loads((tmp_path / "data" / "status.json").read_text())
    assert status["lag_seconds"] == {"last": None, "max": None, "p50": None, "p99": None}
    attempts = status["reconnects"]
    final = [line.split("recorder.collector: ", 1)[1] for line in proc.stderr.splitlines()
             if "status: finished" in line]
    assert len(final) == 1 and ", lag none: no market data recorded (last data never), never connected " \
        f"({attempts} failed attempts), 3 rows written, " in final[0], proc.stderr
    shown = okex_recorder("status", cwd=tmp_path, env=clean_env())
    lines = shown.stdout.splitlines()
    assert lines[4] == (f"lag:         none: no market data recorded (last data never); never connected "
                        f"({attempts} failed attempts)"), shown.stdout
    assert lines[5].startswith(f"  ws-0: stopped, 4 subscriptions, 0 frames, never connected ({attempts} "
                               "failed attempts), last data never, last error: cannot connect to ")


def test_no_duration_run_that_is_stopped_exits_0(tmp_path: Path) -> None:
    """Nothing recorded, stopped by a signal (a service being stopped): exit 0; the summary says it."""
    import signal
    import time

    env = clean_env(OKEX_RECORDER__EXCHANGE__WS_URL=f"ws://127.0.0.1:{closed_port()}/ws/v1",
                    OKEX_RECORDER__COLLECTOR__RECONNECT_INITIAL="0.05",
                    OKEX_RECORDER__COLLECTOR__RECONNECT_CAP="0.2")
    proc = subprocess.Popen([sys.executable, "-m", "recorder.cli", "run"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "data" / "status.json").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "recorded NOTHING" in err


def test_poll_on_a_fresh_checkout_creates_its_directories(
    tmp_path: Path, simulator_thread: SimulatorThread
) -> None:
    """`okex-recorder poll` with the default storage in a directory without ./data records the balances."""
    from recorder.simulator.settings import DEMO_API_KEY, DEMO_SECRET

    sim = simulator_thread
    env = clean_env(OKEX_RECORDER__EXCHANGE__REST_URL=sim.rest_url, OKEX_API_KEY=DEMO_API_KEY,
                    OKEX_SECRET_KEY=DEMO_SECRET, OKEX_RECORDER__POLLER__BALANCE_INTERVAL="0.5",
                    OKEX_RECORDER__COLLECTOR__SYMBOLS="ltc_btc")
    proc = okex_recorder("poll", "--duration", "2", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    balances = stored(f"sqlite:///{tmp_path / 'data' / 'recording.sqlite'}", "balances")
    assert {b.currency for b in balances if b.account == "spot"} == set(sim.demo_account.currencies())


def test_wrong_path_on_a_live_server_is_unreachable_too(
    tmp_path: Path, simulator_thread: SimulatorThread
) -> None:
    """HTTP 404 on the upgrade (a wrong ws_url path): said once, and the summary names the error."""
    url = simulator_thread.ws_url.replace("/ws/v1", "/ws/v2")
    env = clean_env(OKEX_RECORDER__EXCHANGE__WS_URL=url, OKEX_RECORDER__COLLECTOR__RECONNECT_INITIAL="0.05",
                    OKEX_RECORDER__COLLECTOR__RECONNECT_CAP="0.2")
    proc = okex_recorder("run", "--duration", "2", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stderr
    plain = [line for line in proc.stderr.splitlines() if "cannot reach the exchange at " + url in line]
    assert len(plain) == 1 and "404" in plain[0], proc.stderr


async def _refusing_exchange(ws: object) -> None:
    """Accepts the connection, answers pings, refuses every subscription with 10015 (no data ever)."""
    import json

    async for message in ws:  # type: ignore[attr-defined]
        text = message if isinstance(message, str) else message.decode()
        requests = json.loads(text.replace("'", '"'))
        for req in requests if isinstance(requests, list) else [requests]:
            if req.get("event") == "ping":
                await ws.send('{"event":"pong"}')  # type: ignore[attr-defined]
            elif req.get("event") == "addChannel":
                ack = [{"binary": 0, "channel": req["channel"], "success": False, "errorcode": 10015}]
                await ws.send(json.dumps(ack))  # type: ignore[attr-defined]


def test_connected_but_every_subscription_refused_is_a_failed_run(tmp_path: Path) -> None:
    import asyncio
    import threading

    from websockets.asyncio.server import serve

    ready = threading.Event()
    stop: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    port: list[int] = []

    async def main() -> None:
        stop.append((asyncio.get_running_loop(), asyncio.Event()))
        async with serve(_refusing_exchange, "127.0.0.1", 0) as server:
            port.append(server.sockets[0].getsockname()[1])
            ready.set()
            await stop[0][1].wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    try:
        assert ready.wait(30)
        url = f"ws://127.0.0.1:{port[0]}/ws/v1"
        env = clean_env(OKEX_RECORDER__EXCHANGE__WS_URL=url, OKEX_RECORDER__COLLECTOR__SYMBOLS="btc_usdt")
        proc = okex_recorder("run", "--duration", "2", cwd=tmp_path, env=env)
    finally:
        loop, event = stop[0]
        loop.call_soon_threadsafe(event.set)
        thread.join(30)
    assert proc.returncode == 1, proc.stderr
    assert "cannot reach the exchange" not in proc.stderr
    summary = [line for line in proc.stderr.splitlines() if "recorded NOTHING" in line]
    assert len(summary) == 1, proc.stderr
    import re

    # (A refused subscription may be asked for again, so the frame count is not fixed.)
    assert re.search(r"connected 1 time\(s\) and received \d+ frames, but no market data or account rows",
                     summary[0]), summary[0]
