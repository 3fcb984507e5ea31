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

from recorder.app import open_storage
from recorder.collector.app import Recorder
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



def _ticker(ts_ms: int, last: Any) -> dict[str, Any]:
    return {"buy": "6500", "sell": "6501", "last": last, "high": "6600", "low": "6400", "vol": "12",
            "timestamp": ts_ms}


async def test_two_tickers_in_one_frame_and_odd_numbers_are_all_stored_exactly(tmp_path: Path) -> None:
    """One frame holds two different btc_usdt tickers (the same receive time), a bad object, a
    bare number and a deal; another holds the same ticker twice; numbers come as JSON numbers
    and in exponent notation. Every ticker sent is stored, in both stores, with its exact value."""
    done = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def script(send: SendRaw) -> None:
        now_ms = int(time.time() * 1000)
        a, b = _ticker(now_ms - 20, "6500.1"), _ticker(now_ms - 10, "6500.2")
        deal = ["7", "6500", "0.5", exchange_hhmmss(now_ms), "bid"]
        await send(json.dumps([{"channel": "ok_sub_spot_btc_usdt_ticker", "data": a},
                               {"channel": "ok_sub_spot_btc_usdt_ticker", "data": {"buy": "x"}}, 42,
                               {"channel": "ok_sub_spot_btc_usdt_ticker", "data": b},
                               {"channel": "ok_sub_spot_btc_usdt_deals", "data": [deal]}]))
        c = _ticker(now_ms, "6500.3")
        await send(_frame(("ok_sub_spot_btc_usdt_ticker", c), ("ok_sub_spot_btc_usdt_ticker", c)))
        # JSON numbers and exponents: 1E+3 and 6.5e3 are exact values, as sent
        await send(f'[{{"channel":"ok_sub_spot_btc_usdt_ticker","data":{{"buy":6500,"sell":"1E+3",'
                   f'"last":6.5e3,"high":"6600","low":1e-8,"vol":"12","timestamp":{now_ms + 1}}}}}]')
        sent.extend([a, b, c, c, {"buy": "6500", "sell": "1E+3", "last": "6.5e3", "high": "6600",
                                  "low": "1e-8", "vol": "12", "timestamp": now_ms + 1}])
        last_deal = ["8", "6500", "0.5", exchange_hhmmss(now_ms), "bid"]
        await send(_frame(("ok_sub_spot_btc_usdt_deals", [last_deal])))
        done.set()
        await asyncio.sleep(3600)

    status, url = await _record(tmp_path, script, done, 2, ["ticker", "deals"])
    root = tmp_path / "parquet"

    def key(t: Any) -> tuple[Any, ...]:
        return (int(t.ts_event.timestamp() * 1000), t.buy, t.sell, t.last, t.low)

    expected = sorted((d["timestamp"], Decimal(d["buy"]), Decimal(d["sell"]), Decimal(d["last"]),
                       Decimal(d["low"])) for d in sent)
    assert sorted(key(t) for t in parquet_rows(root, "tickers")) == expected
    assert sorted(key(t) for t in stored(url, "tickers")) == expected
    assert len(stored(url, "quarantine")) == 2
    _assert_invariant(status)


def test_two_depth_pushes_of_one_book_in_one_frame_give_two_snapshots_with_their_own_keys() -> None:
    """Sans-I/O: a frame holding the full book and an increment of btc_usdt gives two snapshots
    whose SQL keys (symbol, ts_recv, source) differ, and the next frame's records come later still."""
    from datetime import UTC, datetime

    from recorder.records import BookSnapshot, ChannelKind, Ticker
    from recorder.venues.okex_v1.channels import Channel
    from tests.venues.okex_v1.helpers import v1_pipeline

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ms = int(t0.timestamp() * 1000)
    p = v1_pipeline({"ws-0": [Channel("btc_usdt", ChannelKind.DEPTH_5),
                              Channel("btc_usdt", ChannelKind.TICKER)]})
    ch = "ok_sub_spot_btc_usdt_depth_5"

    def book(bid_amount: str) -> tuple[str, Any]:
        return ch, {"bids": [["100", bid_amount]], "asks": [["101", "1"]], "timestamp": ms}

    p.process_frame("ws-0", t0, _frame(book("1"), book("2"), book("3")))
    p.process_frame("ws-0", t0, _frame(("ok_sub_spot_btc_usdt_ticker", _ticker(ms, "1"))))
    out = p.take()
    snaps = [r for r in out if isinstance(r, BookSnapshot)]
    assert [(s.bids[0][1], s.ts_recv.microsecond) for s in snaps] == [(Decimal(1), 0), (Decimal(2), 1),
                                                                     (Decimal(3), 2)]
    (ticker,) = [r for r in out if isinstance(r, Ticker)]
    assert ticker.ts_recv > snaps[-1].ts_recv


def test_impossible_values_are_rejected_alone_and_possible_ones_kept_exactly() -> None:
    """Decoder: negative ticker prices or volumes and candles with a price <= 0 are rejected with
    the reason; a ticker of 0 (no bid yet), a negative change, and their neighbours are kept."""
    from datetime import UTC, datetime

    from recorder.records import Kline, Ticker
    from recorder.venues.okex_v1.parse import Rejected, decode_frame

    now = datetime.now(UTC)
    ms = int(now.timestamp() * 1000)
    t = "ok_sub_spot_btc_usdt_ticker"
    k = "ok_sub_spot_btc_usdt_kline_1min"
    zero = {**_ticker(ms, "0"), "buy": "0", "change": "-3.5"}
    candles = [[str(ms), "0", "1", "1", "1", "1"], [str(ms), "1", "2", "0.5", "1.5", "0"]]
    frame = _frame((t, _ticker(ms, "-1")), (t, {**_ticker(ms, "1"), "vol": "-2"}), (t, zero), (k, candles))
    out = decode_frame(frame, now)
    assert [type(m) for m in out] == [Rejected, Rejected, Ticker, Rejected, Kline]
    reasons = [m.reason for m in out if isinstance(m, Rejected)]
    assert "negative last -1" in reasons[0] and "negative vol -2" in reasons[1]
    assert "impossible candle" in reasons[2]
    ticker = out[2]
    assert isinstance(ticker, Ticker) and (ticker.buy, ticker.last, ticker.change) == (0, 0, Decimal("-3.5"))
    candle = out[4]
    assert isinstance(candle, Kline) and candle.volume == 0
