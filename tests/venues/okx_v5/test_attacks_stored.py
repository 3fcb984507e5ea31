"""Scripted OKX v5 exchanges against the real recorder (connections, pipeline, writer thread,
SQLite + Parquet): what is stored is compared with what the script sent.

Each script ends with a frame the test waits for (a known count of accepted records): frames on
one connection arrive in order, so everything before it was taken by then; the recorder is then
stopped, which flushes everything received.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from websockets.asyncio.server import ServerConnection

from analysis import load, quality
from recorder.app import open_storage
from recorder.collector.app import Recorder
from recorder.config import load_config
from recorder.records import BookSnapshot, Deal, FeedEventKind, Kline, Ticker
from recorder.storage import migrate
from tests.collector.helpers import stored, wait_until
from tests.faults.helpers import parquet_rows

from .scripted import V5Exchange, book_msg

INST = "BTC-USDT"
B0 = [["100.0", "1", "0", "1"], ["99.9", "2", "0", "1"]]
A0 = [["100.1", "3", "0", "1"], ["100.2", "4", "0", "1"]]


def now_ms() -> str:
    """The exchange time of a push: now (a fixed past time would be quarantined as implausible)."""
    return str(int(time.time() * 1000))


async def record(tmp_path: Path, ex: V5Exchange, done: Callable[[Recorder], bool], what: str,
                 **table: Any) -> tuple[dict[str, Any], str]:  # fmt: skip
    """Record ``ex`` into SQLite + Parquet under ``tmp_path`` until ``done(recorder)``; return the
    final status and the SQL URL."""
    v5: dict[str, Any] = {"public_url": ex.url, "business_url": ex.business_url, "instruments": [INST],
                          "channels": ["books"], "candle_bars": [], "reconnect_initial": 0.05,
                          "reconnect_cap": 0.3}  # fmt: skip
    v5.update(table)
    config = load_config(env={}, overrides={
        "venues": {"okex_v1": {"enabled": False}, "okx_v5": v5},
        "collector": {"status_interval": 0.5, "status_file": str(tmp_path / "status.json")},
        "storage": {"sql_url": f"sqlite:///{tmp_path / 'rec.sqlite'}",
                    "parquet_root": str(tmp_path / "parquet"), "spill_dir": str(tmp_path / "spill"),
                    "parquet_journal_dir": str(tmp_path / "pq-journal"), "flush_interval": 0.2},
    })  # fmt: skip
    migrate.upgrade(config.storage.sql_url)
    recorder = Recorder(config, await asyncio.to_thread(open_storage, config))
    task = asyncio.create_task(recorder.run())
    try:
        await wait_until(lambda: done(recorder), timeout=30, what=what)
    finally:
        recorder.request_stop()
        result = await asyncio.wait_for(task, 60)
    assert result.exit_code == 0
    return result.status, config.storage.sql_url


def accepted(recorder: Recorder, rtype: type) -> int:
    return sum(n for (t, _, _), n in list(recorder.pipeline.counters.accepted.items()) if t is rtype)


def assert_accounting(status: dict[str, Any]) -> None:
    """produced = written + quarantined, per dataset, in each store."""
    rows = status["rows"]
    for dataset, produced in rows["produced"].items():
        for store in ("sql", "parquet"):
            written = rows["written_by_store"][store].get(dataset, 0)
            assert produced == written + rows["quarantined"].get(dataset, 0), (dataset, store, rows)


async def test_a_sequence_break_is_a_gap_that_coverage_counts(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """A v5 book whose update does not link is dropped until a fresh snapshot: a `sequence_break`
    span. `analysis.quality` counted only v1's kinds, so the recording of a broken v5 book read as
    fully watched (coverage 1.0, no gap interval); and nothing was logged."""

    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        if op != "subscribe":
            return
        n = ex.state["subs"] = ex.state.get("subs", 0) + 1
        await ws.send(book_msg(arg, "snapshot", B0, A0, seq=10 * n, prev=-1, ts=now_ms()))
        if n == 1:  # seqId 11 lost
            update = [["100.0", "5", "0", "1"]]
            await ws.send(book_msg(arg, "update", update, [], seq=12, prev=11, ts=now_ms()))

    async with V5Exchange(script) as ex:
        status, url = await record(tmp_path, ex, lambda r: accepted(r, BookSnapshot) == 2, "the fresh book")
    assert [s.seq_id for s in stored(url, "book_snapshots")] == [10, 20]
    events_stored = stored(url, "feed_events", order_by="ts_start")
    (gap,) = [e for e in events_stored if e.kind is FeedEventKind.SEQUENCE_BREAK]
    assert gap.ts_end is not None and gap.symbols == (INST,) and gap.channel == "books"
    fresh = stored(url, "book_snapshots")[1]
    assert gap.ts_end == fresh.ts_recv
    events = load.load_feed_events(url)
    second = pd.Timedelta(seconds=1)
    start, end = pd.Timestamp(gap.ts_start) - second, pd.Timestamp(gap.ts_end) + second
    intervals = quality.gap_intervals(events, [INST], start, end)
    assert [(r.start, r.end) for r in intervals.itertuples()] == [
        (pd.Timestamp(gap.ts_start), pd.Timestamp(gap.ts_end))]
    assert quality.coverage(events, [INST], start, end).loc[INST, "gaps"] == 1
    dropped = [r.getMessage() for r in caplog.records if "book dropped" in r.getMessage()]
    assert dropped == [f"okx_v5-public-0: books {INST}: book dropped (sequence: {gap.detail}); "
                       "subscribing again"]
    assert len(parquet_rows(tmp_path / "parquet", "book_snapshots")) == 2
    assert_accounting(status)


async def test_a_crossed_book_or_an_impossible_level_is_never_stored(tmp_path: Path) -> None:
    """An update that crosses the book (bid 100.5 over ask 100.1), then a snapshot with a negative
    size and one with a negative price: v5 stored all three as books. Now: the crossed book is a
    `crossed_book` instant and a `resubscribed` span until the fresh snapshot; each impossible
    snapshot is quarantined with its reason; every good book around them is stored exactly."""

    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        if op != "subscribe":
            return
        n = ex.state["subs"] = ex.state.get("subs", 0) + 1
        await ws.send(book_msg(arg, "snapshot", B0, A0, seq=10 * n, prev=-1, ts=now_ms()))
        if n == 1:
            crossing = [["100.5", "5", "0", "1"]]
            await ws.send(book_msg(arg, "update", crossing, [], seq=11, prev=10, ts=now_ms()))
        elif n == 2:
            negative_size = [["100.0", "-1", "0", "1"]]
            await ws.send(book_msg(arg, "snapshot", negative_size, A0, seq=30, prev=-1, ts=now_ms()))
            negative_price = [["-5", "1", "0", "1"]]
            await ws.send(book_msg(arg, "snapshot", negative_price, A0, seq=40, prev=-1, ts=now_ms()))
            zero_size = [["100.0", "0", "0", "1"], ["99.9", "2", "0", "1"]]  # 0: no level there (kept out)
            await ws.send(book_msg(arg, "snapshot", zero_size, A0, seq=50, prev=-1, ts=now_ms()))

    async with V5Exchange(script) as ex:
        status, url = await record(tmp_path, ex, lambda r: accepted(r, BookSnapshot) == 3, "the last book")
    books = stored(url, "book_snapshots")
    assert [b.seq_id for b in books] == [10, 20, 50]
    assert books[1].bids == books[0].bids == ((Decimal("100.0"), Decimal(1)), (Decimal("99.9"), Decimal(2)))
    assert books[2].bids == ((Decimal("99.9"), Decimal(2)),)
    assert all(b.asks == ((Decimal("100.1"), Decimal(3)), (Decimal("100.2"), Decimal(4))) for b in books)
    assert all(b.best_bid < b.best_ask for b in books)
    events = stored(url, "feed_events", order_by="ts_start")
    (crossed,) = [e for e in events if e.kind is FeedEventKind.CROSSED_BOOK]
    assert crossed.detail == f"crossed book for {INST}: best bid 100.5 >= best ask 100.1"
    (span,) = [e for e in events if e.kind is FeedEventKind.RESUBSCRIBED]
    assert span.ts_start == crossed.ts_start and span.ts_end == books[1].ts_recv and span.symbols == (INST,)
    quarantine = stored(url, "quarantine")
    quarantined = sorted((json.loads(q.payload)["data"][0]["seqId"], q.reason) for q in quarantine)
    assert quarantined == [
        (30, "bids level ['100.0', '-1']: impossible level (price <= 0 or size < 0)"),
        (40, "bids level ['-5', '1']: impossible level (price <= 0 or size < 0)"),
    ]
    assert len(parquet_rows(tmp_path / "parquet", "book_snapshots")) == 3
    assert len(parquet_rows(tmp_path / "parquet", "quarantine")) == 2
    assert status["crossed_books"] == 1
    assert_accounting(status)


async def test_one_bad_item_of_a_push_costs_only_itself(tmp_path: Path) -> None:
    """Pushes of several trades or candles with one bad item (NaN, a JSON number, a price <= 0, a
    negative size or volume) were quarantined whole, the good items with them, and impossible
    values (price -1, size 0, an all-zero candle) were stored. Now each bad item is one quarantine
    row holding only that item, with its reason, and its neighbours are stored exactly; a push of
    one bad item is quarantined as before."""
    sent_trades: list[dict[str, Any]] = []
    bad_trades: list[dict[str, Any]] = []
    bad_candles: list[list[str]] = []

    def trade(tid: str, px: Any = "6500.1", sz: Any = "0.5") -> dict[str, Any]:
        return {"instId": INST, "tradeId": tid, "px": px, "sz": sz, "side": "sell", "ts": now_ms(),
                "count": "1"}

    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        if op != "subscribe":
            return
        if arg["channel"] == "trades":
            pushes = [[trade("1"), trade("2", px="NaN"), trade("3")],
                      [trade("4"), trade("5", px=6500), trade("6", sz="1e-8")],
                      [trade("7", px="-1"), trade("8", sz="0"), trade("9", sz="-0.5"), trade("10")],
                      [trade("11", px="0E-10")],  # one item: the frame is the quarantine row
                      [trade("12")]]  # fmt: skip
            for items in pushes:
                await ws.send(json.dumps({"arg": arg, "data": items}))
                good = [t for t in items if t["tradeId"] in ("1", "3", "4", "6", "10", "12")]
                sent_trades.extend(good)
                bad_trades.extend(t for t in items if t not in good)
        else:
            now = int(now_ms())
            minute = now - now % 60_000
            rows = [[str(minute - 60_000), "1", "2", "0.5", "1.5", "10", "20", "20", "1"],
                    [str(minute), "1", "2", "NaN", "1.5", "10", "20", "20", "0"],
                    [str(minute), "0", "0", "0", "0", "-5", "", "", "0"]]  # fmt: skip
            bad_candles.extend(rows[1:])
            await ws.send(json.dumps({"arg": arg, "data": rows}))
            good_now = [str(minute), "1", "2.5", "0.5", "2", "11", "22", "22", "0"]
            await ws.send(json.dumps({"arg": arg, "data": [good_now]}))

    def done(r: Recorder) -> bool:
        return accepted(r, Deal) == 6 and accepted(r, Kline) == 2

    async with V5Exchange(script) as ex:
        status, url = await record(tmp_path, ex, done, "every good trade and candle", channels=["trades"],
                                   candle_bars=["1m"])  # fmt: skip
    expected = [(int(t["tradeId"]), Decimal(t["px"]), Decimal(t["sz"])) for t in sent_trades]
    assert [(d.tid, d.price, d.amount) for d in stored(url, "deals", order_by="tid")] == expected
    assert sorted((d.tid, d.price, d.amount) for d in parquet_rows(tmp_path / "parquet", "deals")) == expected
    klines = stored(url, "klines", order_by="ts_event")
    assert [(k.open, k.high, k.low, k.close, k.volume, k.confirmed) for k in klines] == [
        (Decimal(1), Decimal(2), Decimal("0.5"), Decimal("1.5"), Decimal(10), True),
        (Decimal(1), Decimal("2.5"), Decimal("0.5"), Decimal(2), Decimal(11), False),
    ]
    quarantined = [(json.loads(q.payload)["data"], q.reason) for q in stored(url, "quarantine")]
    trade_rows = {data[0]["tradeId"]: (data, reason)
                  for data, reason in quarantined if isinstance(data[0], dict)}  # fmt: skip
    assert {tid: reason for tid, (_, reason) in trade_rows.items()} == {
        "2": "field 'trade.px': 'NaN' is not a decimal number",
        "5": "okx_v5 trades data: Expected `str`, got `int` - at `$.px`",
        "7": "trade: impossible price -1, size 0.5",
        "8": "trade: impossible price 6500.1, size 0",
        "9": "trade: impossible price 6500.1, size -0.5",
        "11": "trade: impossible price 0E-10, size 0.5",
    }
    assert all(trade_rows[t["tradeId"]][0] == [t] for t in bad_trades)  # each row holds only its item
    candle_rows = sorted((data, reason) for data, reason in quarantined if isinstance(data[0], list))
    assert candle_rows == sorted([
        ([bad_candles[0]], "field 'candle.l': 'NaN' is not a decimal number"),
        ([bad_candles[1]], "candle: impossible candle open 0 high 0 low 0 close 0 volume -5"),
    ])
    assert len(parquet_rows(tmp_path / "parquet", "quarantine")) == 8
    assert_accounting(status)


async def test_a_book_subscription_never_answered_is_a_gap_and_is_asked_again(tmp_path: Path) -> None:
    """The server acks `books` and sends no snapshot (a lost subscription) while tickers keep the
    connection busy: v5 recorded no book, no span, no log line, '0 open gaps', for as long as it
    ran. Now the book is a `resubscribed` span from the subscription until the snapshot the next
    subscription brings (`stall_timeout` after asking)."""
    tickers_sent: list[str] = []

    def ticker(arg: dict[str, str], last: str) -> str:
        item = {"instType": "SPOT", "instId": INST, "last": last, "lastSz": "0.1", "askPx": "6501",
                "askSz": "1", "bidPx": "6499", "bidSz": "2", "open24h": "6400", "high24h": "6600",
                "low24h": "6300", "volCcy24h": "100", "vol24h": "10", "sodUtc0": "6400", "sodUtc8": "6400",
                "ts": now_ms()}  # fmt: skip
        return json.dumps({"arg": arg, "data": [item]})

    async def feed(ex: V5Exchange, ws: ServerConnection, arg: dict[str, str]) -> None:
        while not ex.state.get("book_sent"):  # busy until the book came: no connection stall
            last = f"6500.{len(tickers_sent)}"
            tickers_sent.append(last)
            await ws.send(ticker(arg, last))
            await asyncio.sleep(0.1)
        ex.state["feed_done"] = True

    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        if op != "subscribe":
            return
        if arg["channel"] == "tickers":
            ex.state["feed"] = asyncio.get_running_loop().create_task(feed(ex, ws, arg))
            return
        n = ex.state["subs"] = ex.state.get("subs", 0) + 1
        ex.state.setdefault("asked", []).append(time.time())
        if n == 2:  # the first subscription is acked and then nothing: lost
            await ws.send(book_msg(arg, "snapshot", B0, A0, seq=20, prev=-1, ts=now_ms()))
            ex.state["book_sent"] = True

    def done(r: Recorder) -> bool:
        return (bool(ex.state.get("feed_done")) and accepted(r, BookSnapshot) == 1
                and accepted(r, Ticker) == len(tickers_sent))  # fmt: skip

    async with V5Exchange(script) as ex:
        status, url = await record(tmp_path, ex, done, "the book and every ticker",
                                   channels=["tickers", "books"], stall_timeout=1.0)  # fmt: skip
    (book,) = stored(url, "book_snapshots")
    assert book.seq_id == 20 and book.bids == ((Decimal("100.0"), Decimal(1)), (Decimal("99.9"), Decimal(2)))
    events = stored(url, "feed_events", order_by="ts_start")
    (span,) = [e for e in events if e.kind is FeedEventKind.RESUBSCRIBED]
    assert span.detail == (f"books {INST}: no snapshot within 1 s of the subscription (no answer, or an ack "
                           "without data); subscribing again")
    first_ask = ex.state["asked"][0]
    assert first_ask - 5 <= span.ts_start.timestamp() <= first_ask  # from the subscription, not the timeout
    assert span.ts_end == book.ts_recv and span.symbols == (INST,) and span.channel == "books"
    assert [t.last for t in stored(url, "tickers")] == [Decimal(v) for v in tickers_sent]
    assert_accounting(status)


async def test_two_tickers_of_one_instrument_in_one_push_are_two_rows(tmp_path: Path) -> None:
    """A tickers push of two items of one instrument (same exchange time): both had the frame's
    receive time, the key of a ticker row is (venue, symbol, ts_recv), and SQL kept the first only
    (Parquet both; no quarantine, no count said so). Now the second is 1 µs later, as on v1."""
    sent: list[str] = []

    def item(last: str, ts: str) -> dict[str, str]:
        return {"instType": "SPOT", "instId": INST, "last": last, "lastSz": "0.1", "askPx": "6501",
                "askSz": "1", "bidPx": "6499", "bidSz": "2", "open24h": "6400", "high24h": "6600",
                "low24h": "6300", "volCcy24h": "100", "vol24h": "10", "sodUtc0": "6400", "sodUtc8": "6400",
                "ts": ts}  # fmt: skip

    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        if op == "subscribe":
            ts = now_ms()
            for batch in (["6500.1", "6500.2"], ["6500.3"], ["6500.4", "6500.5", "6500.6"]):
                sent.extend(batch)
                await ws.send(json.dumps({"arg": arg, "data": [item(last, ts) for last in batch]}))

    async with V5Exchange(script) as ex:
        status, url = await record(tmp_path, ex, lambda r: accepted(r, Ticker) == 6, "every ticker",
                                   channels=["tickers"])  # fmt: skip
    rows = stored(url, "tickers")
    assert [t.last for t in rows] == [Decimal(v) for v in sent]
    assert all(a.ts_recv < b.ts_recv for a, b in itertools.pairwise(rows))
    assert sorted(t.last for t in parquet_rows(tmp_path / "parquet", "tickers")) == [Decimal(v) for v in sent]
    assert_accounting(status)


async def test_a_subscription_never_answered_is_a_gap_and_is_asked_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """`trades` is neither acked nor refused (the request lost) while tickers keep the connection
    busy: v5 waited for ever, no span, no log. Now it is a `subscribe_refused` span from the request
    to the first trade of the retry, asked again `stall_timeout` after the request."""
    tickers: list[str] = []

    async def feed(ex: V5Exchange, ws: ServerConnection, arg: dict[str, str]) -> None:
        while not ex.state.get("traded"):
            tickers.append(f"6500.{len(tickers)}")
            item = {"instType": "SPOT", "instId": INST, "last": tickers[-1], "lastSz": "0.1", "askPx": "6501",
                    "askSz": "1", "bidPx": "6499", "bidSz": "2", "open24h": "6400", "high24h": "6600",
                    "low24h": "6300", "volCcy24h": "100", "vol24h": "10", "sodUtc0": "6400",
                    "sodUtc8": "6400", "ts": now_ms()}  # fmt: skip
            await ws.send(json.dumps({"arg": arg, "data": [item]}))
            await asyncio.sleep(0.1)
        ex.state["feed_done"] = True

    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        if arg["channel"] == "tickers":
            await ws.send(ex.ack(op, rid, arg))
            ex.state["feed"] = asyncio.get_running_loop().create_task(feed(ex, ws, arg))
            return
        ex.state.setdefault("asked", []).append(time.time())
        if len(ex.state["asked"]) == 2:  # the first request is never answered
            await ws.send(ex.ack(op, rid, arg))
            trade = {"instId": INST, "tradeId": "7", "px": "6500.5", "sz": "0.25", "side": "buy",
                     "ts": now_ms(), "count": "1"}  # fmt: skip
            await ws.send(json.dumps({"arg": arg, "data": [trade]}))
            ex.state["traded"] = True

    def done(r: Recorder) -> bool:
        return (bool(ex.state.get("feed_done")) and accepted(r, Deal) == 1
                and accepted(r, Ticker) == len(tickers))  # fmt: skip

    async with V5Exchange(script) as ex:
        status, url = await record(tmp_path, ex, done, "the trade and every ticker",
                                   channels=["tickers", "trades"], stall_timeout=1.0)  # fmt: skip
    (deal,) = stored(url, "deals")
    assert (deal.tid, deal.price, deal.amount) == (7, Decimal("6500.5"), Decimal("0.25"))
    (span,) = [e for e in stored(url, "feed_events", order_by="ts_start")
               if e.kind is FeedEventKind.SUBSCRIBE_REFUSED]  # fmt: skip
    detail = f"trades {INST}: no answer to the subscription within 1 s (no ack, no error); asking again"
    assert span.detail == detail and span.channel == "trades" and span.symbols == (INST,)
    assert ex.state["asked"][0] - 5 <= span.ts_start.timestamp() <= ex.state["asked"][0]
    assert span.ts_end == deal.ts_recv
    assert [r.getMessage() for r in caplog.records if "no answer" in r.getMessage()] == [
        f"okx_v5-public-0: {detail}"]
    assert [t.last for t in stored(url, "tickers")] == [Decimal(v) for v in tickers]
    assert_accounting(status)


def ticker_item(inst: str, last: str) -> dict[str, str]:
    return {"instType": "SPOT", "instId": inst, "last": last, "lastSz": "0.1", "askPx": "6501",
            "askSz": "1", "bidPx": "6499", "bidSz": "2", "open24h": "6400", "high24h": "6600",
            "low24h": "6300", "volCcy24h": "100", "vol24h": "10", "sodUtc0": "6400", "sodUtc8": "6400",
            "ts": now_ms()}  # fmt: skip


async def test_a_deal_storage_cannot_hold_is_quarantined_under_its_venue(tmp_path: Path) -> None:
    """A deal whose price has 51 digits passes the v5 parser and is set aside by the storage screen:
    its quarantine row had venue "" (the value kept for events of no one venue), so a venue filter
    lost it. Now it names okx_v5; the deals around it are stored exactly."""
    huge = "1" * 51
    sent: list[dict[str, str]] = []

    def trade(tid: str, px: str) -> dict[str, str]:
        return {"instId": INST, "tradeId": tid, "px": px, "sz": "0.5", "side": "buy", "ts": now_ms(),
                "count": "1"}  # fmt: skip

    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        if op == "subscribe":
            for t in (trade("1", "6500.1"), trade("2", huge), trade("3", "6500.3")):
                sent.append(t)
                await ws.send(json.dumps({"arg": arg, "data": [t]}))

    async with V5Exchange(script) as ex:
        status, url = await record(tmp_path, ex, lambda r: accepted(r, Deal) == 3, "every trade",
                                   channels=["trades"])  # fmt: skip
    assert [(d.tid, d.price, d.venue) for d in stored(url, "deals", order_by="tid")] == [
        (1, Decimal("6500.1"), "okx_v5"), (3, Decimal("6500.3"), "okx_v5")]
    (q,) = stored(url, "quarantine")
    values = json.loads(q.payload)["values"]
    assert (q.venue, q.channel, q.connection) == ("okx_v5", "deals", "storage")
    assert (values["tid"], values["price"], values["venue"]) == (2, huge, "okx_v5")
    assert "deals.price" in q.reason
    (pq,) = parquet_rows(tmp_path / "parquet", "quarantine")
    assert pq.venue == "okx_v5"
    assert_accounting(status)


async def test_server_pings_codeless_errors_and_foreign_pushes(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """On a connection that subscribed tickers BTC-USDT the server sends: the text `ping`, an error
    event with neither code nor id, a push of DOGE-USDT (never subscribed), a push for BTC-USDT
    whose second item is DOGE-USDT, and one whose only item is DOGE-USDT. Before: the ping was
    quarantined as malformed; the error was a `subscribe_error` "0 undocumented code"; every DOGE
    ticker was stored as if subscribed. Now the ping is answered `pong` (no row, no log line), the
    error says what came, the foreign push is quarantined "not subscribed on this connection" and
    each disagreeing item as malformed; every BTC ticker is stored exactly."""
    good: list[str] = []
    frames: dict[str, str] = {}

    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        if op != "subscribe":
            return
        await ws.send("ping")
        await ws.send(json.dumps({"event": "error", "msg": "something odd"}))
        doge = {**arg, "instId": "DOGE-USDT"}
        frames["foreign"] = json.dumps({"arg": doge, "data": [ticker_item("DOGE-USDT", "0.2")]})
        await ws.send(frames["foreign"])
        good.append("6500.1")
        await ws.send(json.dumps({"arg": arg, "data": [ticker_item(INST, "6500.1"),
                                                        ticker_item("DOGE-USDT", "0.3")]}))
        frames["alone"] = json.dumps({"arg": arg, "data": [ticker_item("DOGE-USDT", "0.4")]})
        await ws.send(frames["alone"])
        await ws.send("ping")
        good.append("6500.2")
        await ws.send(json.dumps({"arg": arg, "data": [ticker_item(INST, "6500.2")]}))

    async with V5Exchange(script) as ex:
        status, url = await record(tmp_path, ex, lambda r: accepted(r, Ticker) == 2, "the BTC tickers",
                                   channels=["tickers"])  # fmt: skip
    assert [(t.symbol, t.last) for t in stored(url, "tickers")] == [(INST, Decimal(v)) for v in good]
    assert ex.received.count("pong") == 2
    mismatch = "tickers item instId 'DOGE-USDT' differs from its arg's instId 'BTC-USDT'"
    rows = sorted((q.reason, q.venue, q.payload) for q in stored(url, "quarantine"))
    assert [(reason, venue) for reason, venue, _ in rows] == [
        ("not subscribed on this connection: tickers DOGE-USDT", "okx_v5"),
        (mismatch, "okx_v5"),
        (mismatch, "okx_v5"),
    ]
    assert rows[0][2] == frames["foreign"].encode()
    assert {json.loads(p)["data"][0]["last"] for _, _, p in rows[1:]} == {"0.3", "0.4"}
    assert all(json.loads(p)["data"][0]["instId"] == "DOGE-USDT" and len(json.loads(p)["data"]) == 1
               for _, _, p in rows[1:])  # fmt: skip  # each row: the push cut down to that item
    events = stored(url, "feed_events", order_by="ts_start")
    (err,) = [e for e in events if e.kind is FeedEventKind.SUBSCRIBE_ERROR]
    assert err.detail == "error event without a code: something odd" and err.venue == "okx_v5"
    assert not [e for e in events if e.kind is FeedEventKind.MALFORMED_FRAME]
    assert not [r for r in caplog.records if "ping" in r.getMessage()]
    assert_accounting(status)
