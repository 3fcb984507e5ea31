"""Attacks from a small scripted exchange that does what real exchanges do with their data.

The real recorder (connections, pipeline, writer thread, SQLite + Parquet) records from a
scripted OKEx v1 exchange on loopback that sends raw text frames of its choosing: numbers as
JSON numbers and in exponent notation, one bad deal or candle among good ones in the same
push, frames that are lists of good and bad objects, the same ticker twice in one frame, deals
around midnight exchange time. Afterwards what is stored equals what was sent, every bad
row is one quarantine row with its reason and only its own values, and the status says
produced = stored + quarantined per dataset per store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import websockets

from recorder.collector.app import Recorder, open_storage
from recorder.records import Deal
from recorder.simulator.wire import exchange_hhmmss
from recorder.storage import migrate
from tests.collector.conftest import sim_config
from tests.collector.helpers import stored, wait_until
from tests.faults.helpers import parquet_rows

pytestmark = pytest.mark.faults

SendRaw = Callable[[str], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_exchange(script: Callable[[SendRaw], Awaitable[None]]) -> AsyncIterator[str]:
    """Ack every addChannel, answer pings, then run ``script(send_raw)`` (text frames as given)."""

    async def handler(ws: Any) -> None:
        subscribed = asyncio.Event()

        async def run() -> None:
            await subscribed.wait()
            with contextlib.suppress(websockets.ConnectionClosed):
                await script(ws.send)

        task = asyncio.create_task(run())
        try:
            async for message in ws:
                objs = json.loads(message)
                for obj in objs if isinstance(objs, list) else [objs]:
                    if obj.get("event") == "ping":
                        await ws.send('{"event":"pong"}')
                    elif obj.get("event") == "addChannel":
                        await ws.send(json.dumps([{"binary": 0, "channel": "addChannel",
                                                   "data": {"result": True, "channel": obj["channel"]}}]))
                        subscribed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        yield f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}"


def _frame(*objs: tuple[str, Any]) -> str:
    return json.dumps([{"channel": c, "data": d} for c, d in objs])


async def _record(tmp_path: Path, script: Callable[[SendRaw], Awaitable[None]], done: asyncio.Event,
                  deals: int, channels: list[str]) -> tuple[dict[str, Any], str]:
    async with raw_exchange(script) as url:
        config = sim_config(tmp_path, url, symbols=["btc_usdt"], channels=channels)
        migrate.upgrade(config.storage.sql_url)
        recorder = Recorder(config, await asyncio.to_thread(open_storage, config))
        task = asyncio.create_task(recorder.run())
        counters = recorder.pipeline.counters
        try:
            await wait_until(done.is_set, timeout=60, what="the script")
            await wait_until(lambda: counters.accepted.get((Deal, "btc_usdt", None), 0) == deals,
                             timeout=30, what="every good deal")
        finally:
            recorder.request_stop()
            result = await asyncio.wait_for(task, 60)
    assert result.exit_code == 0
    return result.status, config.storage.sql_url


def _assert_invariant(status: dict[str, Any]) -> None:
    rows = status["rows"]
    for dataset, produced in rows["produced"].items():
        for store in ("sql", "parquet"):
            written = rows["written_by_store"][store].get(dataset, 0)
            assert produced == written + rows["quarantined"].get(dataset, 0), (dataset, store, rows)


async def test_one_bad_deal_or_candle_in_a_push_costs_only_itself(tmp_path: Path) -> None:
    """A deals push of five rows, two of them impossible (price -1, amount 0), and a kline push
    of a good candle and one with five fields: the three good deals and the good candle are
    stored exactly; each bad row is one quarantine row holding only that row."""
    done = asyncio.Event()
    good: list[list[str]] = []
    bad_rows: list[list[str]] = []

    async def script(send: SendRaw) -> None:
        now_ms = int(time.time() * 1000)
        hms = exchange_hhmmss(now_ms)
        rows = [["101", "6500.5", "0.1", hms, "bid"], ["102", "-1", "0.1", hms, "ask"],
                ["103", "6500.4", "1E-8", hms, "ask"], ["104", "6500.3", "0", hms, "bid"],
                ["105", "6500.2", "2", hms, "bid"]]
        good.extend(rows[i] for i in (0, 2, 4))
        bad_rows.extend(rows[i] for i in (1, 3))
        open_ms = now_ms - now_ms % 60_000
        candles = [[str(open_ms), "1", "2", "0.5", "1.5", "10"], [str(open_ms), "1", "2", "0.5", "1.5"]]
        bad_rows.append(candles[1])
        await send(_frame(("ok_sub_spot_btc_usdt_deals", rows), ("ok_sub_spot_btc_usdt_kline_1min", candles)))
        done.set()
        await asyncio.sleep(3600)

    status, url = await _record(tmp_path, script, done, 3, ["deals", "kline_1min"])
    root = tmp_path / "parquet"
    expected = [(int(r[0]), Decimal(r[1]), Decimal(r[2])) for r in good]
    assert [(d.tid, d.price, d.amount) for d in stored(url, "deals", order_by="tid")] == expected
    assert sorted((d.tid, d.price, d.amount) for d in parquet_rows(root, "deals")) == expected
    (k,) = stored(url, "klines")
    assert (k.open, k.high, k.low, k.close, k.volume) == tuple(map(Decimal, ("1", "2", "0.5", "1.5", "10")))
    assert len(parquet_rows(root, "klines")) == 1
    quarantined = sorted((json.loads(q.payload)["data"], q.reason) for q in stored(url, "quarantine"))
    assert [data for data, _ in quarantined] == sorted([r] for r in bad_rows)
    assert sorted(q.payload for q in parquet_rows(root, "quarantine")) == sorted(
        q.payload for q in stored(url, "quarantine"))
    _assert_invariant(status)

