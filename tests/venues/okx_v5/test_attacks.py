"""The okx_v5 venue against scripted v5 servers doing what the real exchange does (PROTOCOL.md v5).

Updates before the snapshot, a seqId reset after maintenance (§3.2 rule 5: accepted), equal
seqIds (heartbeat), checksum 0 vs a wrong checksum, a subscribe error with code and msg, a
notice then close, a silent server, odd numbers (``""`` fields, exponents, non-numeric ids).
Each test checks what was recorded against what the script sent.
"""

from __future__ import annotations

import asyncio
import json
import random
from decimal import Decimal
from typing import Any

from websockets.asyncio.server import ServerConnection

from recorder.records import BookSnapshot, Deal, FeedEvent, FeedEventKind, QuarantinedFrame, Ticker
from recorder.venues.okx_v5.settings import V5VenueSettings, parse_settings

from .scripted import V5Exchange, book_msg, checksum
from .shell import MiniShell, until

INST = "BTC-USDT"
BOOKS = {"channel": "books", "instId": INST}


def settings(ex: V5Exchange, **table: Any) -> V5VenueSettings:
    base: dict[str, Any] = {"public_url": ex.url, "business_url": ex.business_url, "instruments": [INST],
                            "channels": ["books"], "candle_bars": [], "reconnect_initial": 0.05,
                            "reconnect_cap": 0.2}  # fmt: skip
    base.update(table)
    return parse_settings(base)


def snaps(out: list[Any]) -> list[BookSnapshot]:
    return [r for r in out if isinstance(r, BookSnapshot)]


def spans(out: list[Any], kind: FeedEventKind) -> list[FeedEvent]:
    return [r for r in out if isinstance(r, FeedEvent) and r.kind is kind]


def D(levels: list[tuple[str, str]]) -> tuple[tuple[Decimal, Decimal], ...]:
    return tuple((Decimal(p), Decimal(q)) for p, q in levels)


class _TopDraw(random.Random):
    """Every draw at the top of its range: backoff delays are their documented maximum."""

    def random(self) -> float:
        return 1.0


B0 = [["100.0", "1", "0", "1"], ["99.9", "2", "0", "1"]]
A0 = [["100.1", "3", "0", "1"], ["100.2", "4", "0", "1"]]


async def test_updates_before_the_snapshot_are_a_reset_then_a_correct_book() -> None:
    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        if op != "subscribe":
            return
        n = ex.state["subs"] = ex.state.get("subs", 0) + 1
        if n == 1:  # an update overtakes the snapshot
            await ws.send(book_msg(arg, "update", [["100.0", "5", "0", "1"]], [], seq=11, prev=10))
        await ws.send(book_msg(arg, "snapshot", B0, A0, seq=20 * n, prev=-1))
        await ws.send(book_msg(arg, "update", [["99.9", "0", "0", "0"]], [], seq=20 * n + 1, prev=20 * n))

    # The first resubscription delay is drawn from [0, reconnect_initial]: a draw near 0 would let
    # the timer win against the snapshot already in flight (CI saw it). Draw the top of the range,
    # 2 s, so only the frame order decides; then no resubscription may be left pending.
    slow_first = {"reconnect_initial": 2.0, "reconnect_cap": 4.0}
    async with V5Exchange(script) as ex, MiniShell(settings(ex, **slow_first)) as shell:
        for s in shell.sessions:
            s._rng = _TopDraw()
        await until(lambda: len(snaps(shell.out)) >= 2, what="the snapshot and its update")
        assert shell.sessions[0].next_deadline() is None  # the snapshot cancelled the resubscription
    resets = spans(shell.out, FeedEventKind.BOOK_RESET)
    assert len(resets) == 2 and resets[0].ts_end is None and resets[1].ts_end is not None
    assert "no snapshot" in resets[0].detail
    books = snaps(shell.out)
    assert [s.seq_id for s in books] == [20, 21]  # the snapshot in flight repaired it: no resubscription
    assert ex.state["subs"] == 1
    assert books[0].bids == D([("100.0", "1"), ("99.9", "2")]) and books[1].bids == D([("100.0", "1")])
    assert books[1].asks == D([("100.1", "3"), ("100.2", "4")])


async def test_sequence_reset_after_maintenance_and_heartbeats_are_accepted() -> None:
    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        await ws.send(book_msg(arg, "snapshot", B0, A0, seq=100, prev=-1))
        await ws.send(book_msg(arg, "update", [], [], seq=100, prev=100))  # heartbeat
        await ws.send(book_msg(arg, "update", [["100.0", "7", "0", "2"]], [], seq=101, prev=100))
        await ws.send(book_msg(arg, "update", [["99.8", "1", "0", "1"]], [], seq=3, prev=101))  # reset
        await ws.send(book_msg(arg, "update", [], [["100.1", "0", "0", "0"]], seq=4, prev=3))
        ex.state["done"] = True

    async with V5Exchange(script) as ex, MiniShell(settings(ex)) as shell:
        await until(lambda: len(snaps(shell.out)) >= 4, what="four books")
    books = snaps(shell.out)
    assert [s.seq_id for s in books] == [100, 101, 3, 4]  # the heartbeat changed nothing: not stored
    assert books[-1].bids == D([("100.0", "7"), ("99.9", "2"), ("99.8", "1")])
    assert books[-1].asks == D([("100.2", "4")])
    assert not [r for r in shell.out if isinstance(r, FeedEvent) and r.kind is not FeedEventKind.CONNECTED]
    assert not [m for m in ex.received if '"unsubscribe"' in m]


async def test_checksum_zero_is_skipped_and_a_wrong_one_is_a_span() -> None:
    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        if op != "subscribe":
            return
        n = ex.state["subs"] = ex.state.get("subs", 0) + 1
        bids, asks = [lv[:] for lv in B0], [lv[:] for lv in A0]
        await ws.send(book_msg(arg, "snapshot", bids, asks, seq=10, prev=-1, cs=checksum(bids, asks)))
        await ws.send(book_msg(arg, "update", [["100.0", "9", "0", "1"]], [], seq=11, prev=10, cs=0))
        bids[0] = ["100.0", "9", "0", "1"]
        bids.insert(0, ["100.05", "1", "0", "1"])
        await ws.send(book_msg(arg, "update", [["100.05", "1", "0", "1"]], [], seq=12, prev=11,
                               cs=checksum(bids, asks)))  # fmt: skip
        if n == 1:
            await ws.send(book_msg(arg, "update", [], [["100.1", "5", "0", "1"]], seq=13, prev=12, cs=12345))

    async with V5Exchange(script, tick="0.01") as ex, MiniShell(settings(ex)) as shell:
        await until(lambda: ex.state.get("subs") == 2 and len(snaps(shell.out)) >= 6, what="the fresh book")
    bad = spans(shell.out, FeedEventKind.CHECKSUM_MISMATCH)
    assert len(bad) == 2 and bad[1].ts_end is not None and "exchange 12345" in bad[0].detail
    books = snaps(shell.out)
    assert [s.seq_id for s in books] == [10, 11, 12, 10, 11, 12]  # 13 was never stored
    assert books[2].bids == D([("100.05", "1"), ("100.0", "9"), ("99.9", "2")])
    assert books[5].bids == books[2].bids and books[5].asks == books[2].asks


async def test_subscribe_error_code_and_msg_then_retry() -> None:
    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        n = ex.state["subs"] = ex.state.get("subs", 0) + 1
        if n <= 2:
            await ws.send(json.dumps({"id": rid, "event": "error", "code": "60018",
                                      "msg": f"channel:{arg['channel']},instId:{INST} doesn't exist",
                                      "connId": "x"}))  # fmt: skip
            return
        await ws.send(ex.ack(op, rid, arg))
        item = {"instType": "SPOT", "instId": INST, "last": "9999.99", "lastSz": "0.1", "askPx": "",
                "askSz": "",
                "bidPx": "8888.88", "bidSz": "5", "open24h": "9000", "high24h": "10000", "low24h": "8888.88",
                "volCcy24h": "2222", "vol24h": "2222", "sodUtc0": "", "sodUtc8": "", "ts": TS}  # fmt: skip
        await ws.send(json.dumps({"arg": arg, "data": [item]}))

    from .scripted import TS

    async with V5Exchange(script) as ex, MiniShell(settings(ex, channels=["tickers"])) as shell:
        await until(lambda: any(isinstance(r, Ticker) for r in shell.out), what="the ticker")
    refused = spans(shell.out, FeedEventKind.SUBSCRIBE_REFUSED)
    assert len(refused) == 2 and refused[1].ts_end is not None and refused[0].event_id == refused[1].event_id
    assert refused[0].detail.startswith("60018 wrong URL, or channel/instId does not exist (server: channel:")
    t = next(r for r in shell.out if isinstance(r, Ticker))
    assert t.sell is None and t.ask_size is None and t.buy == Decimal("8888.88")  # "" is None, never 0


async def test_notice_then_close_is_a_planned_gap_and_an_orderly_reconnect() -> None:
    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        n = ex.state["subs"] = ex.state.get("subs", 0) + 1
        await ws.send(book_msg(arg, "snapshot", B0, A0, seq=10 * n, prev=-1))
        if n == 1:
            msg = "The connection will soon be closed for a service upgrade. Please reconnect."
            await ws.send(json.dumps({"event": "notice", "code": "64008", "msg": msg, "connId": "x"}))
            await asyncio.sleep(1.0)
            await ws.close(4006, "service upgrade")

    async with V5Exchange(script) as ex, MiniShell(settings(ex)) as shell:
        await until(lambda: ex.state.get("subs") == 2 and len(snaps(shell.out)) >= 2, what="the replacement")
    planned = spans(shell.out, FeedEventKind.PLANNED_DISCONNECT)
    assert len(planned) == 2 and planned[1].ts_end is not None and "64008" in planned[0].detail
    assert not spans(shell.out, FeedEventKind.DISCONNECTED)
    assert len(ex.connections) == 2 and shell.connects["okx_v5-public-0"] == 2


async def test_silent_server_is_pinged_then_dropped_and_reconnected() -> None:
    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        await ws.send(book_msg(arg, "snapshot", B0, A0, seq=10, prev=-1))

    async with V5Exchange(script, answer_pings=False) as ex, \
            MiniShell(settings(ex, ping_after=0.3, pong_timeout=0.3)) as shell:  # fmt: skip
        await until(lambda: len(ex.connections) >= 2, what="a reconnect after the silent connection")
        await until(lambda: len(snaps(shell.out)) >= 2, what="the book again")
    assert "ping" in ex.received
    gaps = spans(shell.out, FeedEventKind.DISCONNECTED)
    assert gaps and gaps[0].detail == "no pong"
    assert any(s.ts_end is not None for s in spans(shell.out, FeedEventKind.BOOK_RESET))


async def test_odd_numbers_exponents_empty_fields_and_bad_ids() -> None:
    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        if arg["channel"] == "books" and op == "subscribe" and ex.state.get("books"):
            await ws.send(book_msg(arg, "snapshot", [["99", "1", "0", "1"]], [["101", "1", "0", "1"]], seq=9,
                                   prev=-1))  # fmt: skip
        elif arg["channel"] == "books" and op == "subscribe":
            ex.state["books"] = True
            bids = [["1.00E+2", "1e-7", "0", "1"], ["99.9", "2", "0", ""]]
            asks = [["100.1", "3.00000000", "0", "1"]]
            await ws.send(book_msg(arg, "snapshot", bids, asks, seq=1, prev=-1))
            same_level = [["100", "0.5", "0", "1"]]
            await ws.send(book_msg(arg, "update", same_level, [], seq=2, prev=1))
            finer_than_tick = [["99.95", "1", "0", "1"]]
            await ws.send(book_msg(arg, "update", finer_than_tick, [], seq=3, prev=2))
        elif arg["channel"] == "trades":
            def trade(tid: str, px: str) -> str:
                item = {"instId": INST, "tradeId": tid, "px": px, "sz": "1e-3", "side": "buy", "ts": TS,
                        "count": "2"}
                return json.dumps({"arg": arg, "data": [item]})
            await ws.send(trade("242720720", "6.5E+3"))
            await ws.send(trade("abc-1", "6500"))
            await ws.send("not json at all")
            await ws.send(trade("242720721", "6500.10"))

    from .scripted import TS

    async with V5Exchange(script) as ex, MiniShell(settings(ex, channels=["books", "trades"])) as shell:
        await until(lambda: len([r for r in shell.out if isinstance(r, Deal)]) == 2
                    and any(s.seq_id == 9 for s in snaps(shell.out)), what="trades, last book")  # fmt: skip
    deals = [r for r in shell.out if isinstance(r, Deal)]
    assert [(d.tid, d.price, d.amount, d.count) for d in deals] == [
        (242720720, Decimal("6500"), Decimal("0.001"), 2),
        (242720721, Decimal("6500.10"), Decimal("0.001"), 2),
    ]
    q = [r for r in shell.out if isinstance(r, QuarantinedFrame)]
    reasons = " | ".join(r.reason for r in q)
    assert len(q) == 3 and "tradeId" in reasons and "finer than the scale" in reasons, reasons
    assert all(r.venue == "okx_v5" and r.payload for r in q)
    books = snaps(shell.out)
    assert books[0].bids == D([("100", "0.0000001"), ("99.9", "2")]) and books[0].asks == D([("100.1", "3")])
    assert books[1].bids == D([("100", "0.5"), ("99.9", "2")])
    assert [s.seq_id for s in books][-1] == 9
    resets = spans(shell.out, FeedEventKind.BOOK_RESET)  # the undecodable increment dropped the book
    assert len(resets) == 2 and resets[1].ts_end is not None


async def test_a_feed_that_breaks_every_fresh_book_is_resubscribed_with_the_backoff() -> None:
    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        if op == "subscribe":
            ex.state["subs"] = ex.state.get("subs", 0) + 1
            await ws.send(book_msg(arg, "snapshot", B0, A0, seq=10, prev=-1))
            breaks = [["100.0", "2", "0", "1"]]
            await ws.send(book_msg(arg, "update", breaks, [], seq=12, prev=11))  # prevSeqId 11 != 10

    table = {"reconnect_initial": 0.1, "reconnect_cap": 0.8}
    async with V5Exchange(script) as ex, MiniShell(settings(ex, **table)) as shell:
        await asyncio.sleep(2.0)
    # unpaced, this loops as fast as the loopback allows (hundreds a second); paced: a handful
    assert 2 <= ex.state["subs"] <= 12, ex.state["subs"]
    breaks = spans(shell.out, FeedEventKind.SEQUENCE_BREAK)
    assert breaks and all(e.venue == "okx_v5" for e in breaks)
    assert all(s.seq_id == 10 for s in snaps(shell.out))  # only the fresh snapshots were stored


async def test_books_of_an_instrument_the_exchange_does_not_list_are_a_refused_span() -> None:
    """`books:DOGE-USDT` for an instrument not in the instruments data waited for its tick/lot size
    forever, silently: no span, no log, no status line. The gap is data now."""
    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        if op == "subscribe":
            await ws.send(book_msg(arg, "snapshot", B0, A0, seq=20, prev=-1))

    async with V5Exchange(script) as ex, \
            MiniShell(settings(ex, instruments=[INST, "DOGE-USDT"])) as shell:
        await until(lambda: len(snaps(shell.out)) >= 1, what="the listed book")
        session = shell.sessions[0]
        assert session.refused_subscriptions() == {"books:DOGE-USDT": 0}
        (span,) = spans(shell.out, FeedEventKind.SUBSCRIBE_REFUSED)
        assert span.ts_end is None and span.symbols == ("DOGE-USDT",) and span.channel == "books"
        assert span.detail == ("books DOGE-USDT: the instrument is not in the exchange's instruments data "
                               "(instType SPOT); its book is subscribed once it is listed")
        assert [s.symbol for s in snaps(shell.out)] == [INST]
    subscribed = [a for _, m in shell.sent if m != "ping" for a in json.loads(m)["args"]]
    assert {"channel": "books", "instId": "DOGE-USDT"} not in subscribed  # never sent without a scale
    closed = [s for s in spans(shell.out, FeedEventKind.SUBSCRIBE_REFUSED) if s.ts_end is not None]
    assert [s.event_id for s in closed] == [span.event_id]
    assert closed[0].detail.endswith("(still open at shutdown)")
