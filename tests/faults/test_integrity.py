"""Integrity against small scripted exchanges: one unstorable or implausible record costs only itself.

The real recorder (connections, pipeline, writer thread, SQLite + Parquet) records from a
scripted exchange that pushes btc_usdt tickers and deals every 50 ms and, in the middle, one
bad record: an eth_usdt ticker whose ``last`` has 31 decimal places (more than Parquet's
decimal128(38, 18) holds), or a ticker whose ``timestamp`` is in epoch seconds instead of
milliseconds (1970). Afterwards SQL and Parquet hold every other row exactly, the bad one is
one quarantine row with its reason and its exact original text, the status (status.json)
counts it per reason, Parquet is healthy, and produced = stored + quarantined per dataset.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from recorder.app import open_storage
from recorder.collector.app import Recorder
from recorder.records import Deal, Ticker
from recorder.simulator.wire import exchange_hhmmss
from recorder.storage import migrate
from tests.collector.conftest import sim_config
from tests.collector.helpers import stored, ticker_from_push, ticker_key, wait_until
from tests.faults.helpers import parquet_rows
from tests.faults.scripted import Send, scripted_exchange

pytestmark = pytest.mark.faults

ROUNDS = 60
LAST_31 = "2.1234567890123456789012345678901"


def _ticker(i: int, ts_ms: int, last: str | None = None) -> dict[str, Any]:
    return {
        "buy": f"6500.{i:02d}",
        "sell": "6501.5",
        "last": last or f"6500.{i:03d}",
        "high": "6600",
        "low": "6400.00000001",
        "vol": "12345.678",
        "change": "-1.5",
        "dayHigh": "6600",
        "dayLow": "6400",
        "timestamp": ts_ms,
    }


def _script(
    bad: Callable[[int], tuple[str, dict[str, Any]]], done: asyncio.Event, sent: dict[str, list[Any]]
) -> Callable[[Send], Any]:
    async def script(send: Send) -> None:
        for i in range(ROUNDS):
            now_ms = int(time.time() * 1000)
            ticker = _ticker(i, now_ms - 5)
            await send("ok_sub_spot_btc_usdt_ticker", ticker)
            sent["ticker"].append(ticker)
            deal = [
                str(1000 + i),
                f"6500.{i:02d}",
                "0.00000001",
                exchange_hhmmss(now_ms),
                "bid" if i % 2 else "ask",
            ]
            await send("ok_sub_spot_btc_usdt_deals", [deal])
            sent["deals"].append(deal)
            if i == ROUNDS // 2:
                channel, data = bad(now_ms)
                await send(channel, data)
                sent["bad"].append(data)
            await asyncio.sleep(0.05)
        done.set()
        await asyncio.sleep(3600)

    return script


async def _record(
    tmp_path: Path, bad: Callable[[int], tuple[str, dict[str, Any]]]
) -> tuple[dict[str, Any], dict[str, list[Any]], str]:
    done = asyncio.Event()
    sent: dict[str, list[Any]] = {"ticker": [], "deals": [], "bad": []}
    async with scripted_exchange(_script(bad, done, sent)) as url:
        config = sim_config(tmp_path, url, symbols=["btc_usdt", "eth_usdt"], channels=["ticker", "deals"])
        migrate.upgrade(config.storage.sql_url)
        recorder = Recorder(config, await asyncio.to_thread(open_storage, config))
        task = asyncio.create_task(recorder.run())
        counters = recorder.pipeline.counters
        try:
            await wait_until(done.is_set, timeout=60, what="the script")
            await wait_until(
                lambda: (
                    counters.accepted.get((Deal, "btc_usdt", None), 0) == ROUNDS
                    and counters.accepted.get((Ticker, "btc_usdt", None), 0) == ROUNDS
                ),
                timeout=30,
                what="every push",
            )
        finally:
            recorder.request_stop()
            result = await asyncio.wait_for(task, 60)
    assert result.exit_code == 0
    return result.status, sent, config.storage.sql_url


def _assert_neighbours_and_invariant(
    tmp_path: Path, status: dict[str, Any], sent: dict[str, list[Any]], url: str, reason: str
) -> Any:
    root = tmp_path / "parquet"
    expected = [ticker_from_push(d) for d in sent["ticker"]]
    in_sql = [ticker_key(t) for t in stored(url, "tickers")]
    in_parquet = sorted(ticker_key(t) for t in parquet_rows(root, "tickers"))
    assert in_sql == expected and in_parquet == sorted(expected)
    tids = [int(d[0]) for d in sent["deals"]]
    assert [d.tid for d in stored(url, "deals", order_by="tid")] == tids
    assert sorted(d.tid for d in parquet_rows(root, "deals")) == tids
    assert [(d.price, d.amount) for d in stored(url, "deals", order_by="tid")] == [
        (Decimal(d[1]), Decimal(d[2])) for d in sent["deals"]
    ]

    # the bad record: one quarantine row, the same in both stores, with the reason and exact values
    (q,) = [r for r in stored(url, "quarantine") if r.connection == "storage"]
    (pq,) = [r for r in parquet_rows(root, "quarantine") if r.connection == "storage"]
    assert (q.reason, q.channel, q.payload) == (pq.reason, pq.channel, pq.payload)
    assert q.channel == "tickers" and q.reason.startswith(reason + ": ")

    # status.json: counted per reason, Parquet healthy, the invariant per dataset
    assert status["quarantine"]["by_reason"] == {reason: 1}
    assert status["quarantine"]["by_dataset"] == {"tickers": 1}
    for store in ("sql", "parquet"):
        st = status["storage"]["stores"][store]
        assert st["healthy"] is True and st["last_error"] is None, store
        assert (st["pending"], st["spilled"], st["refused"], st["outages"]) == (0, 0, 0, 0), store
    rows = status["rows"]
    for dataset, produced in rows["produced"].items():
        for store in ("sql", "parquet"):
            written = rows["written_by_store"][store].get(dataset, 0)
            assert produced == written + rows["quarantined"].get(dataset, 0), (dataset, store)
    assert rows["quarantined"] == {"tickers": 1}
    assert rows["written"]["tickers"] == ROUNDS
    return json.loads(q.payload)


async def test_a_ticker_with_31_decimals_is_quarantined_and_costs_no_neighbour(tmp_path: Path) -> None:
    def bad(now_ms: int) -> tuple[str, dict[str, Any]]:
        return "ok_sub_spot_eth_usdt_ticker", _ticker(0, now_ms, last=LAST_31)

    status, sent, url = await _record(tmp_path, bad)
    payload = _assert_neighbours_and_invariant(
        tmp_path,
        status,
        sent,
        url,
        "tickers.last: more than 18 fractional digits (Parquet decimal128(38, 18))",
    )
    assert payload["values"]["last"] == LAST_31 and payload["values"]["symbol"] == "eth_usdt"
    assert stored(url, "tickers", symbol="eth_usdt") == []


async def test_a_ticker_time_in_epoch_seconds_is_quarantined_not_stored_as_1970(tmp_path: Path) -> None:
    def bad(now_ms: int) -> tuple[str, dict[str, Any]]:
        return "ok_sub_spot_eth_usdt_ticker", _ticker(0, now_ms // 1000)

    status, sent, url = await _record(tmp_path, bad)
    payload = _assert_neighbours_and_invariant(
        tmp_path, status, sent, url, "tickers.ts_event: more than 300 s before receipt"
    )
    assert (
        payload["values"]["ts_event"]
        == datetime.fromtimestamp(sent["bad"][0]["timestamp"] / 1000, UTC).isoformat()
    )
    assert not any(p.name.startswith("date=1970") for p in (tmp_path / "parquet").rglob("*"))
    assert stored(url, "tickers", symbol="eth_usdt") == []


async def test_deal_and_kline_times_outside_their_own_windows_are_quarantined(tmp_path: Path) -> None:
    """A deal whose HH:MM:SS is UTC instead of UTC+8 (8 h off) and a 1-minute kline opened 3 minutes
    before receipt are quarantined; deals and klines within their windows are stored exactly."""
    done = asyncio.Event()
    good_tids: list[int] = []
    good_klines: list[int] = []

    async def script(send: Send) -> None:
        for i in range(20):
            now_ms = int(time.time() * 1000)
            await send(
                "ok_sub_spot_btc_usdt_deals",
                [[str(1000 + i), "6500.5", "0.1", exchange_hhmmss(now_ms), "bid"]],
            )
            good_tids.append(1000 + i)
            open_ms = now_ms - now_ms % 60_000
            await send("ok_sub_spot_btc_usdt_kline_1min", [[str(open_ms), "1", "2", "0.5", f"1.{i}", "10"]])
            if open_ms not in good_klines:
                good_klines.append(open_ms)
            if i == 10:
                utc_wall = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%H:%M:%S")
                await send("ok_sub_spot_btc_usdt_deals", [[str(5000), "6500.5", "0.1", utc_wall, "ask"]])
                await send(
                    "ok_sub_spot_btc_usdt_kline_1min",
                    [[str(open_ms - 180_000), "1", "2", "0.5", "1.5", "10"]],
                )
            await asyncio.sleep(0.05)
        done.set()
        await asyncio.sleep(3600)

    async with scripted_exchange(script) as url:
        config = sim_config(tmp_path, url, symbols=["btc_usdt"], channels=["deals", "kline_1min"])
        migrate.upgrade(config.storage.sql_url)
        recorder = Recorder(config, await asyncio.to_thread(open_storage, config))
        task = asyncio.create_task(recorder.run())
        counters = recorder.pipeline.counters
        try:
            await wait_until(done.is_set, timeout=60, what="the script")
            await wait_until(
                lambda: counters.accepted.get((Deal, "btc_usdt", None), 0) == 21,
                timeout=30,
                what="every deal",
            )
        finally:
            recorder.request_stop()
            result = await asyncio.wait_for(task, 60)
    assert result.exit_code == 0
    sql_url, root = config.storage.sql_url, tmp_path / "parquet"
    assert [d.tid for d in stored(sql_url, "deals", order_by="tid")] == good_tids
    assert sorted(d.tid for d in parquet_rows(root, "deals")) == good_tids
    assert [
        int(k.ts_event.timestamp() * 1000) for k in stored(sql_url, "klines", order_by="ts_event")
    ] == good_klines
    assert result.status["quarantine"]["by_reason"] == {
        "deals.ts_event: more than 300 s before receipt": 1,
        "klines.ts_event: open more than one period + 60 s before receipt": 1,
    }
    reasons = sorted(
        q.reason.split(":")[0] for q in stored(sql_url, "quarantine") if q.connection == "storage"
    )
    assert reasons == ["deals.ts_event", "klines.ts_event"]
    assert sorted(q.reason for q in parquet_rows(root, "quarantine") if q.connection == "storage") == sorted(
        q.reason for q in stored(sql_url, "quarantine") if q.connection == "storage"
    )
