"""``okex-recorder status``: what each row figure counts, and ``status --check`` for monitors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recorder import cli
from recorder.collector.status import (
    CHECK_DEGRADED,
    CHECK_DOWN,
    CHECK_OK,
    CHECK_UNKNOWN,
    check,
    describe,
)
from recorder.simulator import SimulatorThread


def _status(**changes: Any) -> dict[str, Any]:
    """A status of a healthy running recorder (this process), as StatusReporter writes it."""
    now = datetime.now(UTC)
    status: dict[str, Any] = {
        "state": "running", "pid": os.getpid(),
        "started_at": (now - timedelta(seconds=120)).isoformat(), "updated_at": now.isoformat(),
        "elapsed_seconds": 120.0,
        "config": {"ws_url": "ws://127.0.0.1:1/ws/v1", "symbols": ["btc_usdt", "eth_usdt"],
                   "sql_url": "sqlite:///data/recording.sqlite", "parquet_root": "data/parquet",
                   "connections": 1, "status_interval": 10.0},
        "frames": {"received": 5000, "pongs": 4, "dropped_backpressure": 0, "decoded": 4996, "malformed": 0,
                   "queued": 0},
        "rates": {"frames_per_second": 41.5, "frames_per_second_avg": 41.6},
        "queues": {"frames": 0, "writer_rows": 3, "writer_age_seconds": 0.2},
        "lag_seconds": {"last": 0.6, "max": 1.4, "p50": 0.5, "p99": 1.1},
        "reconnects": 0, "connections": [], "channels": {},
        "rows": {"produced": {"klines": 2336, "orders": 51, "tickers": 900},
                 "written": {"klines": 2336, "orders": 51, "tickers": 900}},
        "storage": {"flushes": 100, "errors": 0, "last_error": "", "writer": {
            name: {"name": name, "healthy": True, "last_error": None,
                   "datasets": {t: {"written": n, "pending": 0, "spilled": 0}
                                for t, n in (("klines", 2336), ("orders", 51), ("tickers", 900))}}
            for name in ("sql", "parquet")}},
        "open_gaps": [],
        "poller": {"outcome": "running", "balance_polls": 10, "order_rounds": 20},
    }
    status.update(changes)
    return status


def test_rows_say_what_each_figure_counts_and_where_sql_differs_by_design() -> None:
    text = describe(_status(), {"klines": 10, "orders": 41, "tickers": 1900})
    lines = text.splitlines()
    assert "produced = records this run made from what it received" in text
    assert "written  = rows each store confirmed written, this run" in text
    assert "in SQL   = rows in the database now: every run into it, one row per key" in text
    header = next(line for line in lines if line.lstrip().startswith("table"))
    assert header.split() == ["table", "produced", "written", "SQL", "written", "Parquet", "quarantined",
                              "in", "SQL"]
    assert "produced = written + quarantined" in text
    klines = next(line for line in lines if line.startswith("  klines "))
    assert klines.split()[:6] == ["klines", "2336", "2336", "2336", "0", "10"]
    assert "SQL keeps the latest state of each candle (symbol, period, open time); Parquet keeps every " \
           "update" in klines
    orders = next(line for line in lines if line.startswith("  orders "))
    assert orders.split()[:6] == ["orders", "51", "51", "51", "0", "41"]
    assert "SQL keeps the latest state of each order" in orders
    tickers = next(line for line in lines if line.startswith("  tickers "))
    assert tickers.endswith("<- the database also holds earlier runs")


def test_source_names_every_venue_recorded() -> None:
    """`status` used to show only OKEx v1's ws_url and symbols: a run recording OKX v5 beside it (the demo)
    said `5 symbols`, and one with okex_v1 disabled showed the live v1 URL it never connected to."""
    venues = {"okex_v1": {"urls": ["ws://127.0.0.1:1/ws/v1"], "symbols": ["btc_usdt", "eth_usdt"]},
              "okx_v5": {"urls": ["ws://127.0.0.1:2/ws/v5/business", "ws://127.0.0.1:2/ws/v5/public"],
                         "symbols": ["BTC-USDT", "ETH-USDT", "ETH-BTC"]}}
    status = _status()
    status["config"].update(venues=venues, connections=3)
    source = next(x for x in describe(status, None).splitlines() if x.startswith("source:"))
    assert source == ("source:      okex_v1 ws://127.0.0.1:1/ws/v1 (2 symbols); okx_v5 "
                      "ws://127.0.0.1:2/ws/v5/business, ws://127.0.0.1:2/ws/v5/public (3 symbols); "
                      "3 connections")
    assert check(status)[1].startswith("OK: running, 5 symbols, ")
    status["config"]["venues"] = {"okx_v5": {"urls": ["ws://127.0.0.1:2/ws/v5/public"],
                                             "symbols": ["BTC-USDT"]}}
    status["config"]["connections"] = 1
    source = next(x for x in describe(status, None).splitlines() if x.startswith("source:"))
    assert source == "source:      okx_v5 ws://127.0.0.1:2/ws/v5/public (1 symbol); 1 connection"
    assert "okex" not in source  # v1's (unused) settings are not shown
    assert check(status)[1].startswith("OK: running, 1 symbol, ")
    del status["config"]["venues"]  # a status file written before `venues`
    source = next(x for x in describe(status, None).splitlines() if x.startswith("source:"))
    assert source == "source:      ws://127.0.0.1:1/ws/v1 (2 symbols, 1 connection)"


def test_rows_flag_what_is_not_written_yet() -> None:
    status = _status()
    status["storage"]["writer"]["sql"]["datasets"]["tickers"]["written"] = 700
    line = next(x for x in describe(status, None).splitlines() if x.startswith("  tickers "))
    assert line.split()[:4] == ["tickers", "900", "700", "900"]
    assert "not all written yet" in line


@pytest.mark.parametrize(
    ("changes", "code", "line"),
    [
        ({}, CHECK_OK, "OK: running, 2 symbols, 41.5 frames/s, lag 0.60 s, no open gap, stores healthy"),
        ({"lag_seconds": {"last": None, "max": None, "p50": None, "p99": None}},  # acks, no data rows yet
         CHECK_OK, "OK: running, 2 symbols, 41.5 frames/s, no market data recorded yet, no open gap, stores "
                   "healthy"),
        ({"open_gaps": [{"kind": "disconnected", "since": "2026-11-30T10:00:00+00:00", "connection": "ws-0",
                         "symbols": ["btc_usdt", "eth_usdt"], "channel": None}]},
         CHECK_DEGRADED, "DEGRADED: 1 open gap(s), first: disconnected since 2026-11-30T10:00:00+00:00 "
                         "on ws-0 (btc_usdt,eth_usdt)"),
        ({"lag_seconds": {"last": 12.5, "max": 12.5, "p50": 1.0, "p99": 12.0}},
         CHECK_DEGRADED, "DEGRADED: lag 12.5 s > 10 s"),
        ({"queues": {"frames": 0, "writer_rows": 90000, "writer_age_seconds": 31.0}},
         CHECK_DEGRADED, "DEGRADED: lag 31.0 s > 10 s"),
        ({"poller": {"outcome": "auth_failed"}}, CHECK_DEGRADED, "DEGRADED: poller stopped (auth_failed)"),
        ({"frames": {"received": 0}}, CHECK_DEGRADED, "DEGRADED: nothing received from the exchange yet"),
        ({"state": "finished"}, CHECK_DOWN, "CRITICAL: not running: the recording finished at "),
        ({"pid": 2 ** 22 + 12345}, CHECK_DOWN, f"CRITICAL: not running: process {2 ** 22 + 12345} is gone"),
        ({"updated_at": -95},  # seconds before now (the parameters are built at collection time)
         CHECK_DOWN, "CRITICAL: stale: the status file was last updated 95 s ago (limit 30 s, the status "
                     "interval is 10 s)"),
    ],
)
def test_check_verdicts(changes: dict[str, Any], code: int, line: str) -> None:
    now = time.time()
    if isinstance(changes.get("updated_at"), int):
        updated = datetime.fromtimestamp(now + changes["updated_at"], UTC)
        changes = {**changes, "updated_at": updated.isoformat()}
    got_code, got_line = check(_status(**changes), now=now)
    assert (got_code, got_line[:len(line)]) == (code, line)
    assert "\n" not in got_line


def test_check_store_down_and_thresholds() -> None:
    status = _status()
    status["storage"]["writer"]["sql"].update(healthy=False, last_error="connection refused")
    assert check(status) == (CHECK_DEGRADED, "DEGRADED: sql store down: connection refused")
    lagging = _status(lag_seconds={"last": 12.5, "max": 12.5, "p50": 1.0, "p99": 12.0})
    assert check(lagging, max_lag=15)[0] == CHECK_OK
    old = _status(updated_at=(datetime.now(UTC) - timedelta(seconds=40)).isoformat())
    assert check(old)[0] == CHECK_DOWN
    assert check(old, stale_after=60)[0] == CHECK_OK


def _check_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["status", "--check", *args])
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out
    return code, out.strip()


def test_check_cli_missing_unreadable_and_bad_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "status.json"
    code, line = _check_cli("--status-file", str(missing), capsys=capsys)
    assert code == CHECK_DOWN and line.startswith(f"CRITICAL: not running: no status file at {missing}")
    missing.write_text("{not json")
    code, line = _check_cli("--status-file", str(missing), capsys=capsys)
    assert code == CHECK_UNKNOWN and line.startswith("UNKNOWN: cannot read the status file")
    missing.write_text(json.dumps(_status()))
    assert _check_cli("--status-file", str(missing), capsys=capsys)[0] == CHECK_OK
    code, line = _check_cli("--status-file", str(missing), "--max-lag", "0", capsys=capsys)
    assert code == CHECK_UNKNOWN
    code, line = _check_cli("--config", str(tmp_path / "nope.toml"), capsys=capsys)
    assert code == CHECK_UNKNOWN and "nope.toml" in line


def test_check_follows_a_real_recorder(tmp_path: Path, simulator_thread: SimulatorThread) -> None:
    """OK while recording; DEGRADED once the exchange is gone (an open gap); CRITICAL after it stopped."""
    sim = simulator_thread
    status_file = tmp_path / "data" / "status.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKEX_")}
    env.update(OKEX_RECORDER__EXCHANGE__WS_URL=sim.ws_url, OKEX_RECORDER__COLLECTOR__SYMBOLS="btc_usdt",
               OKEX_RECORDER__COLLECTOR__STATUS_INTERVAL="0.3", OKEX_RECORDER__COLLECTOR__RECONNECT_CAP="0.5",
               OKEX_RECORDER__STORAGE__FLUSH_INTERVAL="0.2")
    proc = subprocess.Popen([sys.executable, "-m", "recorder.cli", "run"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def check_now() -> tuple[int, str]:
        r = subprocess.run([sys.executable, "-m", "recorder.cli", "status", "--check", "--stale-after", "60"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert r.stdout.count("\n") == 1, r
        return r.returncode, r.stdout.strip()

    def wait_for(code: int) -> str:
        deadline = time.monotonic() + 60
        while True:
            got, line = check_now()
            if got == code:
                return line
            assert time.monotonic() < deadline, f"expected {code}, still {got}: {line}"
            time.sleep(0.2)

    try:
        deadline = time.monotonic() + 60
        while not status_file.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        assert wait_for(CHECK_OK).startswith("OK: running, 1 symbol, ")
        venues = json.loads(status_file.read_text())["config"]["venues"]
        assert venues == {"okex_v1": {"urls": [sim.ws_url], "symbols": ["btc_usdt"]}}
        sim.stop()  # the exchange goes away: the connection is lost and cannot come back
        assert "open gap(s), first: disconnected since" in wait_for(CHECK_DEGRADED)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        assert wait_for(CHECK_DOWN).startswith("CRITICAL: not running: the recording finished at")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_recorder_that_never_connected_does_not_claim_reconnects() -> None:
    """`status` said "7 reconnects" for a run whose connection never opened: there was nothing to
    reconnect. Every connection at 0 connects is "never connected (N failed attempts)"."""
    def conn(name: str, connects: int, reconnects: int) -> dict[str, Any]:
        return {"name": name, "state": "connecting", "channels": 4, "frames": 0, "bytes": 0, "pongs": 0,
                "dropped": 0, "connects": connects, "reconnects": reconnects, "last_data": None,
                "last_error": "connection refused"}

    never = _status(reconnects=7, connections=[conn("okex_v1-0", 0, 7)])
    lines = describe(never, None).splitlines()
    assert next(x for x in lines if x.startswith("lag:")).endswith("; never connected (7 failed attempts)")
    assert lines[lines.index(next(x for x in lines if x.startswith("lag:"))) + 1] == (
        "  okex_v1-0: connecting, 4 channels, 0 frames, never connected (7 failed attempts), last data "
        "never, last error: connection refused")
    # one connection that did connect: the counts are reconnects again, per connection as they are
    mixed = _status(reconnects=9, connections=[conn("okex_v1-0", 0, 7), conn("okx_v5-public", 1, 2)])
    lines = describe(mixed, None).splitlines()
    assert next(x for x in lines if x.startswith("lag:")).endswith("; 9 reconnects")
    assert any(x.startswith("  okex_v1-0: ") and "never connected (7 failed attempts)" in x for x in lines)
    assert any(x.startswith("  okx_v5-public: ") and ", 2 reconnects," in x for x in lines)


def test_connections_count_subscriptions_in_one_unit_for_every_venue(tmp_path: Path) -> None:
    """`status` said `ws-0: 20 channels` (5 symbols x 4 channels) beside `okx_v5-public-0: 3 channels`
    (3 instruments x 3 channels = 9 subscriptions, counted by name): both count subscriptions now."""
    from recorder.collector.app import Recorder
    from recorder.config import load_config
    from tests.collector.conftest import MemoryWriter

    symbols = ["btc_usdt", "ltc_btc", "eth_btc", "etc_btc", "bch_btc"]
    instruments = ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
    config = load_config(env={}, overrides={
        "exchange": {"ws_url": "ws://127.0.0.1:9/ws/v1"},
        "collector": {"symbols": symbols, "channels": ["ticker", "depth", "deals", "kline_1min"],
                      "status_file": str(tmp_path / "status.json")},
        "venues": {"okx_v5": {"instruments": instruments, "channels": ["tickers", "books", "trades"],
                              "candle_bars": [], "public_url": "ws://127.0.0.1:9/ws/v5/public",
                              "business_url": "ws://127.0.0.1:9/ws/v5/business"}}})
    recorder = Recorder(config, MemoryWriter())
    status = recorder.status.snapshot("running")
    got = {c["name"]: (c["subscriptions"], c["channels"]) for c in status["connections"]}
    assert got == {"ws-0": (20, 20), "okx_v5-public-0": (9, 3)}
    lines = describe(status, None).splitlines()
    assert [x.split(", ")[1] for x in lines if x.startswith(("  ws-0:", "  okx_v5-public-0:"))] == [
        "20 subscriptions", "9 subscriptions"]


async def test_status_counts_every_quarantine_row_of_the_run(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A v1 run with bad numbers said "0 malformed ... 1 quarantined" while the quarantine table held
    more rows: the status counted only what the storage screen set aside, not the v1 objects (or v5
    items) the session quarantined alone. Now status = the run's rows in the quarantine table, per
    reason kind: a malformed frame, two impossible deals of one push, and a ticker no store can hold."""
    import functools
    import logging as logging_

    from recorder.collector.app import Recorder
    from recorder.records import Deal
    from recorder.simulator.wire import exchange_hhmmss
    from tests.collector.helpers import stored
    from tests.collector.scripted import Exchange, standard, until
    from tests.collector.test_scripted import BTC_T, record, ticker, url

    deals_channel = "ok_sub_spot_btc_usdt_deals"

    def took(rec: Recorder, rtype: type, n: int) -> bool:
        return sum(v for (t, _, _), v in rec.pipeline.counters.accepted.items() if t is rtype) == n

    async def during(rec: Recorder) -> None:
        await until(lambda: sum(len(s) for s in ex.subscribed.values()) == 2, what="the subscriptions")
        ws = next(iter(ex.subscribed))
        await ex.send(ws, "not json")
        hms = exchange_hhmmss(int(time.time() * 1000))
        await ex.push(deals_channel, [["101", "6500.5", "0.1", hms, "bid"], ["102", "-1", "0.1", hms, "ask"],
                                      ["103", "6500.4", "0", hms, "ask"], ["104", "6500.2", "2", hms, "bid"]])
        await ex.push(BTC_T, ticker(0))
        await ex.push(BTC_T, {**ticker(1), "last": "100." + "1" * 31})  # more than 18 fractional digits
        await until(functools.partial(took, rec, Deal, 2), what="the good deals")
        await until(lambda: rec.writer_thread.counters.rows_written.get("tickers", 0) == 2
                    and rec.writer_thread.counters.rows_written.get("quarantine", 0) == 3,
                    what="the tickers and the session's quarantine rows handed to the writer")

    async with Exchange(standard) as ex:
        rec = await record(tmp_path, ex, ["btc_usdt"], ["ticker", "deals"], during)
    status = json.loads((tmp_path / "status.json").read_text())
    rows = stored(url(tmp_path), "quarantine")
    assert len(rows) == 4
    q = status["quarantine"]
    assert q["total"] == 4 == status["rows"]["produced"]["quarantine"]
    assert q["by_source"] == {"feed": 3, "storage": 1}
    kind = "tickers.last: more than 18 fractional digits (Parquet decimal128(38, 18))"
    assert sorted(r.reason for r in rows) == [
        "not valid JSON: JSON is malformed: invalid character (byte 4)",
        "ok_sub_spot_btc_usdt_deals: deals: impossible deal price -1, amount 0.1",
        "ok_sub_spot_btc_usdt_deals: deals: impossible deal price 6500.4, amount 0",
        f"{kind}: 100.{'1' * 31}"]
    # per reason kind: the head of a session's reason (v1: its channel), the storage screen's problem kind
    assert q["by_reason"] == {"ok_sub_spot_btc_usdt_deals": 2, "not valid JSON": 1, kind: 1}
    expected = q["by_reason"]
    assert q["by_dataset"] == status["rows"]["quarantined"] == {"tickers": 1}
    shown = describe(status, None).splitlines()
    at = shown.index("quarantined: 4 rows in the quarantine table this run: 3 from the feed (frames, "
                     "messages or items the venue could not take), 1 record no store could hold")
    assert shown[at + 1:at + 1 + len(expected)] == [f"  {n} x {k}" for k, n in q["by_reason"].items()]
    caplog.clear()
    with caplog.at_level(logging_.INFO, "recorder.collector"):
        rec.status.log_line(status)
    (line,) = [r.getMessage() for r in caplog.records]
    top = ", ".join(f"{n} x {k}" for k, n in list(q["by_reason"].items())[:3])
    assert ", 1 malformed, " in line and f", 4 quarantined ({top}), stores: " in line, line


async def test_status_counts_the_v5_items_quarantined_alone(tmp_path: Path) -> None:
    """One bad item of a v5 trades push is quarantined alone (its neighbours stored): the status counts
    its row (it counted only the storage screen's)."""
    from recorder.records import Deal
    from tests.collector.helpers import stored
    from tests.venues.okx_v5.scripted import V5Exchange
    from tests.venues.okx_v5.test_attacks_stored import INST, accepted, now_ms, record

    def trade(tid: str, px: str) -> dict[str, Any]:
        return {"instId": INST, "tradeId": tid, "px": px, "sz": "0.5", "side": "sell", "ts": now_ms(),
                "count": "1"}

    async def script(ex: V5Exchange, ws: Any, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        if op == "subscribe" and arg["channel"] == "trades":
            await ws.send(json.dumps({"arg": arg, "data": [trade("1", "6500.1"), trade("2", "NaN"),
                                                           trade("3", "6500.2")]}))

    async with V5Exchange(script) as ex:
        status, url = await record(tmp_path, ex, lambda r: accepted(r, Deal) == 2, "the good trades",
                                   channels=["trades"])
    assert [d.tid for d in stored(url, "deals", order_by="tid")] == [1, 3]
    reasons = [q.reason for q in stored(url, "quarantine")]
    assert reasons == ["field 'trade.px': 'NaN' is not a decimal number"]
    assert status["quarantine"] == {"total": 1, "by_reason": {"field 'trade.px'": 1},
                                    "by_source": {"feed": 1, "storage": 0}, "by_dataset": {}}
    assert status["rows"]["produced"]["quarantine"] == 1
