"""The real recorder against small scripted exchanges (issue 12, parts 2-4): refused subscriptions,
full push and acks in any order, the book audit, pongs in every shape the decoder accepts."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from websockets.asyncio.server import ServerConnection

from analysis.load import load_feed_events
from analysis.quality import coverage, gap_intervals
from recorder.app import open_storage, prepare_database
from recorder.collector.app import Recorder
from recorder.config import load_config
from recorder.records import FeedEventKind
from tests.collector.helpers import stored
from tests.collector.scripted import Exchange, ack, standard, until

BTC_T, ETH_T = "ok_sub_spot_btc_usdt_ticker", "ok_sub_spot_eth_usdt_ticker"
DEPTH = "ok_sub_spot_btc_usdt_depth"


def ticker(n: int) -> dict[str, Any]:
    p = f"{100 + n}.5"
    return {
        "buy": p,
        "sell": f"{101 + n}.5",
        "last": p,
        "high": "200",
        "low": "1",
        "vol": str(n),
        "timestamp": int(time.time() * 1000),
    }


def book(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "bids": [list(b) for b in bids],
        "asks": [list(a) for a in asks],
        "timestamp": int(time.time() * 1000),
    }


def full() -> dict[str, Any]:
    """The whole book, stamped now (a module-level stamp aged past the plausibility window while a
    long suite ran, and the screen rightly quarantined the first book)."""
    return book([("100", "1"), ("99", "2"), ("98", "3")], [("101", "1"), ("102", "2"), ("103", "3")])


def increment(i: int) -> dict[str, Any]:
    return book([("99", str(10 + i))], [])  # one bid level: a whole book it is not


def replay(pushes: list[Any]) -> list[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """The reference books after each push (first = full, then increments), top 20, as Decimals."""
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    out = []
    for i, data in enumerate(pushes):
        if i == 0:
            bids, asks = {}, {}
        for side, levels in ((bids, data["bids"]), (asks, data["asks"])):
            for p, a in levels:
                if Decimal(a) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(a)
        out.append((tuple(sorted(bids.items(), reverse=True)[:20]), tuple(sorted(asks.items())[:20])))
    return out


async def record(
    tmp_path: Path,
    ex: Exchange,
    symbols: list[str],
    channels: list[str],
    during: Callable[[Recorder], Awaitable[None]],
    **collector: Any,
) -> Recorder:
    base: dict[str, Any] = {
        "symbols": symbols,
        "channels": channels,
        "ping_interval": 1.0,
        "pong_timeout": 2.0,
        "stall_timeout": 5.0,
        "reconnect_initial": 0.05,
        "reconnect_cap": 0.3,
        "status_interval": 0.2,
        "status_file": str(tmp_path / "status.json"),
        "book_audit_interval": 0,
    }
    base.update(collector)
    config = load_config(
        env={},
        overrides={
            "exchange": {"ws_url": ex.ws_url, "rest_url": ex.rest_url},
            "collector": base,
            "storage": {
                "sql_url": f"sqlite:///{tmp_path / 'rec.sqlite'}",
                "parquet_root": str(tmp_path / "pq"),
                "spill_dir": str(tmp_path / "spill"),
                "parquet_journal_dir": str(tmp_path / "pqj"),
                "flush_interval": 0.2,
            },
        },
    )
    await asyncio.to_thread(prepare_database, config)
    recorder = Recorder(config, await asyncio.to_thread(open_storage, config))
    task = asyncio.create_task(recorder.run())
    try:
        await during(recorder)
    finally:
        recorder.request_stop()
        assert (await asyncio.wait_for(task, 30)).exit_code == 0
    return recorder


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'rec.sqlite'}"


def events(tmp_path: Path, kind: FeedEventKind | None = None) -> list[Any]:
    return [
        e for e in stored(url(tmp_path), "feed_events", order_by="ts_start") if kind is None or e.kind is kind
    ]


# --- 2. refused subscriptions ---------------------------------------------------------------------


async def test_a_subscription_refused_once_is_asked_again_and_its_gap_is_on_the_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    refused: list[str] = []

    async def script(ex: Exchange, ws: ServerConnection, req: dict[str, Any]) -> None:
        if req.get("event") == "addChannel" and req["channel"] == ETH_T and not refused:
            refused.append(req["channel"])
            await ex.send(ws, [{"channel": ETH_T, "success": False, "errorcode": 10015}])
            return
        await standard(ex, ws, req)

    started = datetime.now(UTC)
    async with Exchange(script) as ex:

        async def during(rec: Recorder) -> None:
            n = 0
            while not [c for c, _ in ex.sent if c == ETH_T] or n < 10:
                n += 1
                await ex.push(BTC_T, ticker(n))
                await ex.push(ETH_T, ticker(n))
                await asyncio.sleep(0.05)
                assert n < 400, "eth_usdt was never asked for again"
            await until(
                lambda: all(
                    rec.pipeline.accounting().get(ch, {}).get("received")
                    == len([c for c, _ in ex.sent if c == ch])
                    for ch in (BTC_T, ETH_T)
                ),
                what="every push decoded",
            )

        with caplog.at_level(logging.INFO, "recorder.collector"):
            rec = await record(tmp_path, ex, ["btc_usdt", "eth_usdt"], ["ticker"], during)
    ended = datetime.now(UTC)
    refusal_logs = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and ETH_T in r.getMessage()
    ]
    assert refusal_logs == [
        f"ws-0: subscription to {ETH_T} refused: OKEx websocket error 10015: Channel subscription temporally "
        f"not available ({ETH_T}); asking again with backoff"
    ]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["subscriptions_refused"] == {} and status["open_gaps"] == [] and status["error_acks"] == 1
    assert status["channels"][ETH_T]["accepted"] == len([c for c, _ in ex.sent if c == ETH_T])
    assert rec.connections[0].counters.reconnects == 0
    eth_adds = [r for r in ex.requests if r.get("event") == "addChannel" and r["channel"] == ETH_T]
    assert len(eth_adds) == 2  # the refused one and one retry, accepted
    eth = stored(url(tmp_path), "tickers", symbol="eth_usdt")
    sent_eth = [d for c, d in ex.sent if c == ETH_T]
    assert [str(t.last) for t in eth] == [d["last"] for d in sent_eth] and eth
    [span] = events(tmp_path, FeedEventKind.SUBSCRIBE_REFUSED)
    assert span.channel == ETH_T and span.symbols == ("eth_usdt",)
    assert "10015" in span.detail and "Channel subscription temporally not available" in span.detail
    assert span.ts_end == eth[0].ts_recv  # open from the refusal to the first data
    [instant] = events(tmp_path, FeedEventKind.SUBSCRIBE_ERROR)
    assert instant.ts_start == span.ts_start
    for source in (url(tmp_path), tmp_path / "pq"):  # both stores tell the same
        frame = load_feed_events(source)
        cov = coverage(frame, ["btc_usdt", "eth_usdt"], started, ended)
        assert cov.loc["btc_usdt", "coverage"] == 1.0 and cov.loc["btc_usdt", "gaps"] == 0
        unwatched = pd.Timestamp(eth[0].ts_recv) - pd.Timestamp(span.ts_start)
        assert cov.loc["eth_usdt", "gaps"] == 1 and cov.loc["eth_usdt", "unwatched"] == unwatched
        assert cov.loc["eth_usdt", "coverage"] < 1.0
        gaps = gap_intervals(frame, ["eth_usdt"], started, ended)
        assert list(zip(gaps["start"], gaps["end"], strict=True)) == [
            (pd.Timestamp(span.ts_start), pd.Timestamp(eth[0].ts_recv))
        ]


async def test_a_subscription_always_refused_is_retried_with_backoff_and_stays_an_open_gap(
    tmp_path: Path,
) -> None:
    async def script(ex: Exchange, ws: ServerConnection, req: dict[str, Any]) -> None:
        if req.get("event") == "addChannel" and req["channel"] == ETH_T:  # second error shape
            await ex.send(
                ws,
                [
                    {
                        "channel": "addChannel",
                        "data": {"result": False, "error_code": "10015", "channel": ETH_T},
                    }
                ],
            )
            return
        await standard(ex, ws, req)

    async with Exchange(script) as ex:

        async def during(rec: Recorder) -> None:
            await until(
                lambda: len([r for r in ex.requests if r.get("channel") == ETH_T]) >= 4, what="three retries"
            )
            assert [s.kind for s in rec.pipeline.open_spans()] == [FeedEventKind.SUBSCRIBE_REFUSED]
            status = rec.status.snapshot()
            assert status["subscriptions_refused"][ETH_T] >= 3
            assert [(g["kind"], g["channel"]) for g in status["open_gaps"]] == [("subscribe_refused", ETH_T)]

        await record(tmp_path, ex, ["btc_usdt", "eth_usdt"], ["ticker"], during)
    [span] = events(tmp_path, FeedEventKind.SUBSCRIBE_REFUSED)
    assert span.ts_end is not None and "still open at shutdown" in span.detail  # closed only by the stop
    assert len(events(tmp_path, FeedEventKind.SUBSCRIBE_ERROR)) == 1  # one instant, not one per retry
    assert not events(tmp_path, FeedEventKind.DISCONNECTED)  # a refusal never costs the connection


# --- 3. the whole book, whatever the order of acks and data -----------------------------------------


def depth_script(order: str) -> Callable[[Exchange, ServerConnection, dict[str, Any]], Awaitable[None]]:
    async def script(ex: Exchange, ws: ServerConnection, req: dict[str, Any]) -> None:
        if req.get("event") != "addChannel" or req["channel"] != DEPTH:
            await standard(ex, ws, req)
            return
        ex.subscribed[ws].add(DEPTH)
        whole = {"channel": DEPTH, "data": full()}
        if order == "book-then-ack-one-frame":
            await ex.send(ws, [whole, ack(DEPTH)])
        elif order == "ack-after-data":
            await ex.send(ws, [whole])
            await ex.send(ws, [{"channel": DEPTH, "data": increment(100)}])
            await ex.send(ws, [ack(DEPTH)])
        elif order == "duplicate-acks":
            await ex.send(ws, [ack(DEPTH), ack(DEPTH)])
            await ex.send(ws, [whole, ack(DEPTH)])
        elif order == "foreign-ack":
            await ex.send(ws, [ack("ok_sub_spot_ltc_btc_depth"), whole, ack(DEPTH)])
        else:
            await ex.send(ws, [ack(DEPTH), whole])

    return script


async def run_depth(tmp_path: Path, script: Any, n: int = 30) -> tuple[Exchange, list[Any]]:
    async with Exchange(script) as ex:

        async def during(rec: Recorder) -> None:
            await until(lambda: any(c == DEPTH for c, _ in ex.sent), what="full push")
            for i in range(n):
                await ex.push(DEPTH, increment(i))
                await asyncio.sleep(0.02)
            await until(
                lambda: rec.pipeline.accounting().get(DEPTH, {}).get("received", 0) >= n + 1,
                what="every push decoded",
            )

        await record(tmp_path, ex, ["btc_usdt"], ["depth"], during)
    return ex, stored(url(tmp_path), "book_snapshots", symbol="btc_usdt")


async def test_full_push_and_its_ack_in_one_frame_book_first_give_the_whole_book(tmp_path: Path) -> None:
    ex, snaps = await run_depth(tmp_path, depth_script("book-then-ack-one-frame"))
    pushes = [d for c, d in ex.sent if c == DEPTH]
    expected = replay(pushes)
    assert [(s.bids, s.asks) for s in snaps] == [
        e for i, e in enumerate(expected) if i == 0 or e != expected[i - 1]
    ]
    assert all(len(s.asks) == 3 and len(s.bids) == 3 for s in snaps)


async def test_acks_after_data_duplicate_or_foreign_never_change_which_push_is_the_book(
    tmp_path: Path,
) -> None:
    for order in ("ack-after-data", "duplicate-acks", "foreign-ack", "ack-first"):
        sub = tmp_path / order
        sub.mkdir()
        ex, snaps = await run_depth(sub, depth_script(order), n=10)
        expected = replay([d for c, d in ex.sent if c == DEPTH])
        dedup = [e for i, e in enumerate(expected) if i == 0 or e != expected[i - 1]]
        assert [(s.bids, s.asks) for s in snaps] == dedup, order
        assert not events(sub, FeedEventKind.RESUBSCRIBED), order


async def test_a_lost_full_push_is_never_stored_and_the_channel_is_resubscribed(tmp_path: Path) -> None:
    attempts: list[int] = []

    async def script(ex: Exchange, ws: ServerConnection, req: dict[str, Any]) -> None:
        if req.get("event") == "addChannel" and req["channel"] == DEPTH:
            ex.subscribed[ws].add(DEPTH)
            attempts.append(1)
            if len(attempts) > 1:  # the first time the ack and the full push are lost: increments follow
                await ex.send(ws, [ack(DEPTH), {"channel": DEPTH, "data": full()}])
            return
        await standard(ex, ws, req)

    async with Exchange(script) as ex:

        async def during(rec: Recorder) -> None:
            i = 0
            while len(attempts) < 2 or not [c for c, _ in ex.sent if c == DEPTH][1:]:
                i += 1
                await ex.push(DEPTH, book([("99", str(i))], [("101", str(i))]))  # both sides: looks whole
                await asyncio.sleep(0.02)
                assert i < 1000
            for j in range(5):
                await ex.push(DEPTH, increment(j))
            await until(lambda: rec.pipeline.open_spans() == [], what="book whole")

        await record(tmp_path, ex, ["btc_usdt"], ["depth"], during)
    snaps = stored(url(tmp_path), "book_snapshots", symbol="btc_usdt")
    assert snaps and all(len(s.bids) == 3 and len(s.asks) == 3 for s in snaps)  # nothing from the lost book
    [gap] = events(tmp_path, FeedEventKind.RESUBSCRIBED)
    assert gap.ts_end is not None and gap.ts_end <= snaps[0].ts_recv
    assert [r["event"] for r in ex.requests if r.get("channel") == DEPTH][:3] == [
        "addChannel",
        "removeChannel",
        "addChannel",
    ]


async def test_a_full_push_sent_twice_is_caught_by_the_book_audit_and_resynced(tmp_path: Path) -> None:
    second = book([("100", "5")], [("101", "5")])  # a newer whole book, applied as an increment

    async def script(ex: Exchange, ws: ServerConnection, req: dict[str, Any]) -> None:
        if req.get("event") == "addChannel" and req["channel"] == DEPTH:
            ex.subscribed[ws].add(DEPTH)
            n = len([r for r in ex.requests if r.get("channel") == DEPTH and r["event"] == "addChannel"])
            await ex.send(ws, [ack(DEPTH), {"channel": DEPTH, "data": full()}])
            if n == 1:
                await ex.send(ws, [{"channel": DEPTH, "data": second}])  # the "full push" again
            return
        if req.get("event") == "removeChannel":  # the resync: from now on the book is FULL again
            ex.rest_depth = {"asks": [[103, 3], [102, 2], [101, 1]], "bids": [[100, 1], [99, 2], [98, 3]]}
        await standard(ex, ws, req)

    async with Exchange(script) as ex:
        ex.rest_depth = {"asks": [[101, 5]], "bids": [[100, 5]]}  # REST knows the book is that second one

        async def during(rec: Recorder) -> None:
            await until(
                lambda: rec.pipeline.counters.audits.get("pass", 0) >= 2, what="audits pass after the resync"
            )
            assert rec.pipeline.counters.audits["fail"] == 1

        await record(
            tmp_path, ex, ["btc_usdt"], ["depth"], during, book_audit_interval=0.3, book_audit_slack_ms=100
        )
    [failed] = events(tmp_path, FeedEventKind.BOOK_AUDIT_FAILED)
    assert failed.detail.endswith("latest state in the window: bids[1] book 99x2 vs REST none")
    [resub] = events(tmp_path, FeedEventKind.RESUBSCRIBED)
    assert resub.ts_start == failed.ts_end and resub.ts_end is not None
    assert [r["event"] for r in ex.requests if r.get("channel") == DEPTH][:3] == [
        "addChannel",
        "removeChannel",
        "addChannel",
    ]


async def test_an_unreachable_rest_is_logged_once_recorded_and_never_resyncs(tmp_path: Path) -> None:
    async with Exchange(depth_script("ack-first")) as ex:

        async def during(rec: Recorder) -> None:
            await until(lambda: ex.rest_calls >= 3, what="three audit attempts")
            for i in range(5):
                await ex.push(DEPTH, increment(i))
            await until(
                lambda: rec.pipeline.accounting().get(DEPTH, {}).get("accepted", 0) >= 6, what="pushes"
            )

        await record(
            tmp_path,
            ex,
            ["btc_usdt"],
            ["depth"],
            during,
            book_audit_interval=0.1,
            reconnect_initial=0.05,
            reconnect_cap=0.1,
        )
    [span] = events(tmp_path, FeedEventKind.AUDIT_UNAVAILABLE)
    assert "503" in span.detail and span.ts_end is not None
    assert not events(tmp_path, FeedEventKind.RESUBSCRIBED) and not events(
        tmp_path, FeedEventKind.BOOK_AUDIT_FAILED
    )
    assert [r["event"] for r in ex.requests if r.get("channel") == DEPTH] == ["addChannel"]


# --- 4. pongs: the decoder's definition ------------------------------------------------------------


async def test_pongs_with_a_newline_spaces_or_compressed_keep_the_connection(tmp_path: Path) -> None:
    import zlib

    shapes = ['{"event":"pong"}\n', '{\n  "event" : "pong"\n}', '[{"event": "pong"}]']
    count: list[int] = []

    async def script(ex: Exchange, ws: ServerConnection, req: dict[str, Any]) -> None:
        if req.get("event") == "ping":
            shape = shapes[len(count) % (len(shapes) + 1)] if len(count) % 4 != 3 else None
            count.append(1)
            if shape is None:  # a compressed pong: inflated once, by the decoder
                c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
                await ws.send(c.compress(b'{"event": "pong"}') + c.flush())
            else:
                await ws.send(shape)
            return
        await standard(ex, ws, req)

    async with Exchange(script) as ex:

        async def during(rec: Recorder) -> None:
            n = 0
            while len(count) < 16:
                n += 1
                await ex.push(BTC_T, ticker(n))
                await asyncio.sleep(0.1)
            await until(
                lambda: (
                    rec.pipeline.accounting().get(BTC_T, {}).get("received")
                    == len([c for c, _ in ex.sent if c == BTC_T])
                ),
                what="every push decoded",
            )

        rec = await record(
            tmp_path, ex, ["btc_usdt"], ["ticker"], during, ping_interval=0.2, pong_timeout=1.0
        )
    assert len(ex.connections) == 1 and not events(tmp_path, FeedEventKind.DISCONNECTED)
    assert rec.connections[0].counters.pongs >= 15
    assert len(stored(url(tmp_path), "tickers")) == len([c for c, _ in ex.sent if c == BTC_T])
    assert not stored(url(tmp_path), "quarantine")


async def test_a_connection_dropped_mid_subscribe_comes_back_whole(tmp_path: Path) -> None:
    async def script(ex: Exchange, ws: ServerConnection, req: dict[str, Any]) -> None:
        if req.get("event") == "addChannel" and len(ex.connections) == 1:
            await ex.send(ws, [ack(req["channel"])])
            await ws.close()  # drops after the first ack of the batch
            return
        await depth_script("ack-first")(ex, ws, req)

    ex_, snaps = await run_depth(tmp_path, script, n=5)
    expected = replay([d for c, d in ex_.sent if c == DEPTH])
    assert [(s.bids, s.asks) for s in snaps] == [
        e for i, e in enumerate(expected) if i == 0 or e != expected[i - 1]
    ]
    assert len(events(tmp_path, FeedEventKind.DISCONNECTED)) == 1


async def test_a_server_that_never_acks_removechannel_gets_a_new_connection_as_the_boundary(
    tmp_path: Path,
) -> None:
    async def script(ex: Exchange, ws: ServerConnection, req: dict[str, Any]) -> None:
        if req.get("event") == "removeChannel":
            return  # no ack, and the old subscription keeps pushing
        resubscribing = any(r.get("event") == "removeChannel" for r in ex.requests)
        if req.get("event") == "addChannel" and len(ex.connections) == 1 and resubscribing:
            return  # the resubscription's addChannel on the old socket: ignored too
        await depth_script("ack-first")(ex, ws, req)

    async with Exchange(script) as ex:

        async def during(rec: Recorder) -> None:
            await until(lambda: any(c == DEPTH for c, _ in ex.sent), what="full push")
            await ex.push(DEPTH, book([("102", "1")], []))  # crosses the book: resubscribe
            await until(lambda: any(r.get("event") == "removeChannel" for r in ex.requests), what="remove")
            i = 0
            while len(ex.connections) < 2:
                i += 1
                await ex.push(DEPTH, increment(i))
                await asyncio.sleep(0.01)
                assert i < 500, "the connection was never replaced"
            await until(lambda: rec.pipeline.open_spans() == [], what="whole again")

        await record(tmp_path, ex, ["btc_usdt"], ["depth"], during)
    snaps = stored(url(tmp_path), "book_snapshots", symbol="btc_usdt")
    whole = replay([full()])[0]
    assert [(s.bids, s.asks) for s in snaps] == [whole, whole]  # before the cross, after the new one
    [disc] = events(tmp_path, FeedEventKind.DISCONNECTED)
    assert disc.detail == f"no removeChannel ack for {DEPTH} after 20 pushes"
    [crossed] = events(tmp_path, FeedEventKind.CROSSED_BOOK)
    assert crossed.ts_start < disc.ts_start
