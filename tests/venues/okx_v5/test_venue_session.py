"""The okx_v5 venue session without sockets: frames in, neutral records and messages out."""

from __future__ import annotations

import json
import logging
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from recorder.records import BookSnapshot, FeedEvent, FeedEventKind, Record
from recorder.venue import FRAME_DATA, FRAME_PONG, FRAME_TAKEN, FeedCounters, get_venue
from recorder.venues.okx_v5.venue import V5VenueSession

from .scripted import book_msg

T0 = datetime(2026, 1, 1, tzinfo=UTC)
INST = "BTC-USDT"
ARG = {"channel": "books", "instId": INST}


def session(**table: Any) -> tuple[V5VenueSession, list[Record]]:
    venue = get_venue("okx_v5")
    table = {"instruments": [INST], "channels": ["books"], "candle_bars": [], **table}
    settings = venue.parse_settings(table)
    out: list[Record] = []
    s = venue.open_session(venue.plan_connections(settings)[0], settings, out, FeedCounters())
    assert isinstance(s, V5VenueSession)
    return s, out


def instruments_push() -> str:
    item = {"instType": "SPOT", "instId": INST, "baseCcy": "BTC", "quoteCcy": "USDT", "tickSz": "0.1",
            "lotSz": "0.00000001", "minSz": "0.00001", "state": "live", "listTime": "",
            "expTime": ""}  # fmt: skip
    return json.dumps({"arg": {"channel": "instruments", "instType": "SPOT"}, "data": [item]})


def ms(t: datetime) -> str:
    return str(int(t.timestamp() * 1000))


def test_books_wait_for_their_scale_then_subscribe() -> None:
    s, _ = session()
    s.start(T0)
    sent = [json.loads(m) for m in s.data_to_send()]
    assert [a["channel"] for m in sent for a in m["args"]] == ["instruments"]
    assert s.receive(instruments_push(), T0) == FRAME_TAKEN | FRAME_DATA
    sent = [json.loads(m) for m in s.data_to_send()]
    assert [(m["op"], m["args"]) for m in sent] == [("subscribe", [ARG])]
    assert s.receive("pong", T0) == FRAME_TAKEN | FRAME_PONG and s.pong_only("pong") and s.ping() == "ping"
    assert s.timing.ping_interval == 20.0


def test_interval_cadence_and_change_cadence() -> None:
    s, out = session(snapshot_on_change=False, snapshot_interval_ms=1000)
    s.start(T0)
    s.receive(instruments_push(), T0)
    s.data_to_send()
    bids, asks = [["100.0", "1", "0", "1"]], [["100.1", "1", "0", "1"]]
    s.receive(book_msg(ARG, "snapshot", bids, asks, seq=1, prev=-1, ts=ms(T0)), T0)
    seq = 1
    for i in range(1, 30):  # an update every 100 ms of exchange time, each changing the book
        t = T0 + timedelta(milliseconds=100 * i)
        s.receive(book_msg(ARG, "update", [["100.0", str(i + 1), "0", "1"]], [], seq=seq + 1, prev=seq,
                           ts=ms(t)), t)  # fmt: skip
        seq += 1
    snaps = [r for r in out if isinstance(r, BookSnapshot)]
    # the snapshot at 0 ms, then the first update of each new second (1000 ms, 2000 ms)
    assert [int(x.ts_event.timestamp() * 1000) - int(T0.timestamp() * 1000) for x in snaps] == [0, 1000, 2000]
    assert snaps[1].bids == ((Decimal("100.0"), Decimal("11")),)


def test_closed_then_stop_closes_every_span() -> None:
    s, out = session()
    s.start(T0)
    s.receive(instruments_push(), T0)
    s.data_to_send()
    bids, asks = [["100.0", "1", "0", "1"]], [["100.1", "1", "0", "1"]]
    s.receive(book_msg(ARG, "snapshot", bids, asks, seq=1, prev=-1), T0)
    s.closed(T0 + timedelta(seconds=1), "connection lost")
    assert {e.kind for e in s.open_spans()} == {FeedEventKind.DISCONNECTED, FeedEventKind.BOOK_RESET}
    s.stop(T0 + timedelta(seconds=2))
    closed = [r for r in out if isinstance(r, FeedEvent) and r.ts_end == T0 + timedelta(seconds=2)]
    assert len(closed) == 2 and all("still open at shutdown" in e.detail for e in closed)
    assert s.open_spans() == []


def test_change_cadence_stores_exactly_each_change_of_the_top() -> None:
    """Random updates over a 60-level book (inside, at the edge of and outside the top 5): a snapshot
    is stored exactly when the top 5 (prices, sizes) changed, and equals an independent book."""
    rng = random.Random(5)
    s, out = session(snapshot_depth=5)
    s.start(T0)
    s.receive(instruments_push(), T0)
    s.data_to_send()
    book: dict[str, dict[Decimal, Decimal]] = {"bids": {}, "asks": {}}
    bids = [[f"{1000 - i}.0", "1", "0", "1"] for i in range(30)]
    asks = [[f"{1001 + i}.0", "1", "0", "1"] for i in range(30)]
    for side, levels in (("bids", bids), ("asks", asks)):
        book[side] = {Decimal(p): Decimal(q) for p, q, _, _ in levels}
    s.receive(book_msg(ARG, "snapshot", bids, asks, seq=1, prev=-1), T0)

    def top() -> tuple[Any, ...]:
        b = sorted(book["bids"].items(), reverse=True)[:5]
        a = sorted(book["asks"].items())[:5]
        return (tuple(b), tuple(a))

    expected = [(1, top())]
    for seq in range(2, 2000):
        side = rng.choice(("bids", "asks"))
        price = Decimal(1000 - rng.randrange(40)) if side == "bids" else Decimal(1001 + rng.randrange(40))
        size = Decimal(0) if rng.random() < 0.3 else Decimal(rng.randrange(1, 4))
        before = top()
        if size:
            book[side][price] = size
        else:
            book[side].pop(price, None)
        lv = [[f"{price}.0", str(size), "0", "1"]]
        s.receive(book_msg(ARG, "update", lv if side == "bids" else [], lv if side == "asks" else [],
                           seq=seq, prev=seq - 1), T0)  # fmt: skip
        if top() != before:
            expected.append((seq, top()))
    snaps = [r for r in out if isinstance(r, BookSnapshot)]
    assert [(x.seq_id, (x.bids, x.asks)) for x in snaps] == expected
    assert len(expected) > 100


def test_the_log_says_sent_then_the_outcome_of_the_subscriptions_once_known(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """'sent N subscriptions' when they go out (books wait for the instruments data); then, once each
    is acked, refused or known not to be sendable (an instrument not listed), the outcome."""
    caplog.set_level(logging.INFO, logger="recorder.venues.okx_v5.venue")
    s, out = session(instruments=[INST, "SOL-USDT"], channels=["books", "tickers"])

    def lines() -> list[tuple[str, str]]:
        return [(r.levelname, r.getMessage()) for r in caplog.records
                if r.name == "recorder.venues.okx_v5.venue"]

    s.start(T0)
    (connected,) = out
    assert isinstance(connected, FeedEvent) and connected.kind is FeedEventKind.CONNECTED
    assert connected.detail == "sent 3 subscriptions; 2 wait for the instruments data (tick and lot sizes)"
    ids = {(a["channel"], a.get("instId", "")): m["id"] for m in map(json.loads, s.data_to_send())
           for a in m["args"]}
    assert lines() == [("INFO", f"okx_v5-public-0: {connected.detail}")]

    def ack(channel: str, inst: str = "") -> str:
        arg = {"channel": channel, "instId": inst} if inst else {"channel": channel, "instType": "SPOT"}
        return json.dumps({"event": "subscribe", "arg": arg, "id": ids[(channel, inst)], "connId": "c1"})

    s.receive(ack("instruments"), T0)
    s.receive(ack("tickers", INST), T0)
    s.receive(json.dumps({"event": "error", "code": "60018", "msg": "doesn't exist",
                          "id": ids[("tickers", "SOL-USDT")], "connId": "c1"}), T0)
    s.receive(instruments_push(), T0)  # BTC-USDT only: its book is subscribed, SOL-USDT's cannot be
    assert [(m["op"], m["args"]) for m in map(json.loads, s.data_to_send())] == [("subscribe", [ARG])]
    assert lines()[1:] == [
        ("WARNING", "okx_v5-public-0: subscription refused, retried with the backoff: 60018 wrong URL, or "
                    "channel/instId does not exist (server: doesn't exist)"),
        ("WARNING", "okx_v5-public-0: books SOL-USDT: the instrument is not in the exchange's instruments "
                    "data (instType SPOT); its book is subscribed once it is listed")]
    bids, asks = [["100.0", "1", "0", "1"]], [["100.1", "1", "0", "1"]]
    s.receive(book_msg(ARG, "snapshot", bids, asks, seq=1, prev=-1), T0)  # the book's data answers it
    assert lines()[3:] == [
        ("WARNING", "okx_v5-public-0: 3 of 5 subscriptions confirmed, 1 refused (tickers:SOL-USDT: asked "
                    "again with the backoff), 1 not sent: the instrument is not in the exchange's "
                    "instruments data (books:SOL-USDT)")]
    s.on_timer(T0 + timedelta(seconds=60))  # said once
    assert len(lines()) == 4


def test_all_subscriptions_confirmed_is_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="recorder.venues.okx_v5.venue")
    s, _ = session()
    s.start(T0)
    s.data_to_send()
    s.receive(json.dumps({"event": "subscribe", "arg": {"channel": "instruments", "instType": "SPOT"},
                          "id": "1", "connId": "c1"}), T0)
    s.receive(instruments_push(), T0)
    s.data_to_send()
    s.receive(json.dumps({"event": "subscribe", "arg": ARG, "id": "2", "connId": "c1"}), T0)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "okx_v5-public-0: sent 1 subscription; 1 waits for the instruments data (tick and lot "
                 "sizes)"),
        ("INFO", "okx_v5-public-0: all 2 subscriptions confirmed by the exchange")]


def test_subscriptions_unanswered_and_waiting_after_the_patience_are_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="recorder.venues.okx_v5.venue")
    s, _ = session()
    s.start(T0)
    s.data_to_send()
    s.on_timer(T0 + timedelta(seconds=9.9))
    s.on_timer(T0 + timedelta(seconds=10))
    s.on_timer(T0 + timedelta(seconds=20))  # said once
    assert [(r.levelname, r.getMessage()) for r in caplog.records][1:] == [
        ("WARNING", "okx_v5-public-0: 0 of 2 subscriptions confirmed, 1 unanswered after 10 s (instruments), "
                    "1 still waiting: the instruments data (tick and lot sizes) (books:BTC-USDT)")]
