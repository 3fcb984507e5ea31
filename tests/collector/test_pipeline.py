"""The sans-I/O pipeline: frames and control events in, records out (books, snapshots, feed events)."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

from recorder.collector.pipeline import (
    Control,
    ControlKind,
    FramePipeline,
    Intake,
    RecordQueue,
    run_in_process,
)
from recorder.records import (
    BookSnapshot,
    ChannelKind,
    FeedEvent,
    FeedEventKind,
    QuarantinedFrame,
    Ticker,
)
from recorder.venues.okex_v1.channels import Channel
from tests.collector.conftest import MemoryWriter
from tests.venues.okex_v1.helpers import requested, v1_pipeline

T0 = datetime(2018, 11, 6, 12, 0, tzinfo=UTC)
DEPTH = "ok_sub_spot_btc_usdt_depth"
SHARES = {"ws-0": [Channel("btc_usdt", ChannelKind.DEPTH), Channel("btc_usdt", ChannelKind.TICKER)]}


def ts(i: int) -> datetime:
    return T0 + timedelta(milliseconds=i)


def depth(bids: list[list[str]], asks: list[list[str]], ms: int) -> str:
    return json.dumps(
        [
            {
                "channel": DEPTH,
                "data": {"bids": bids, "asks": asks, "timestamp": int(ts(ms).timestamp() * 1000)},
            }
        ]
    )


RESUBSCRIBE = [("removeChannel", DEPTH), ("addChannel", DEPTH)]  # what the session sends to rebuild the book


def pipeline(**settings: Any) -> FramePipeline:
    return v1_pipeline(SHARES, **settings)


def test_full_push_then_increments_give_exact_top_snapshots() -> None:
    p = pipeline(snapshot_depth=2)
    p.process_frame(
        "ws-0", ts(1), depth([["100", "1"], ["99", "2"], ["98", "3"]], [["101", "1"], ["102", "2"]], 1)
    )
    p.process_frame("ws-0", ts(2), depth([["100", "0"], ["99.5", "4"]], [["1.01E+2", "5"]], 2))
    p.process_frame("ws-0", ts(3), depth([["90", "1"]], [], 3))  # below the top 2: no new snapshot
    snaps = p.take()
    assert snaps == [
        BookSnapshot(venue="okex_v1",
            symbol="btc_usdt",
            ts_event=ts(1),
            ts_recv=ts(1),
            bids=((D(100), D(1)), (D(99), D(2))),
            asks=((D(101), D(1)), (D(102), D(2))),
        ),
        BookSnapshot(venue="okex_v1",
            symbol="btc_usdt",
            ts_event=ts(2),
            ts_recv=ts(2),
            bids=((D("99.5"), D(4)), (D(99), D(2))),
            asks=((D(101), D(5)), (D(102), D(2))),
        ),
    ]
    assert p.accounting()[DEPTH] == {"received": 3, "accepted": 3, "rejected": {}}


def test_interval_cadence_takes_one_snapshot_per_bucket_of_exchange_time() -> None:
    p = pipeline(snapshot_depth=1, snapshot_on_change=False, snapshot_interval_ms=100)
    p.process_frame("ws-0", ts(0), depth([["100", "1"]], [["101", "1"]], 0))
    p.process_frame("ws-0", ts(50), depth([["100", "2"]], [], 50))
    p.process_frame("ws-0", ts(120), depth([["100", "3"]], [], 120))
    assert [(s.ts_event, s.bids) for s in p.take()] == [
        (ts(0), ((D(100), D(1)),)),
        (ts(120), ((D(100), D(3)),)),
    ]


def test_crossed_book_is_never_stored_and_is_resubscribed_until_the_ack() -> None:
    p = pipeline(snapshot_depth=1)
    p.process_frame("ws-0", ts(1), depth([["100", "1"]], [["101", "1"]], 1))
    p.take()
    p.process_frame("ws-0", ts(2), depth([["102", "1"]], [], 2))  # bid above the ask: crossed
    calls = requested(p)  # removeChannel + addChannel go out (paced by the backoff)
    p.process_frame("ws-0", ts(3), depth([["100", "9"]], [], 3))  # in flight before removeChannel: discarded
    removed = json.dumps([{"channel": "removeChannel", "data": {"result": True, "channel": DEPTH}}])
    ack = json.dumps({"channel": "addChannel", "data": {"result": True, "channel": DEPTH}})
    p.process_frame("ws-0", ts(4), removed)  # the boundary: the next push is the whole book
    # the fresh full book and its ack in one frame, the book first
    p.process_frame("ws-0", ts(5), depth([["99", "1"]], [["100", "1"]], 5)[:-1] + "," + ack + "]")
    out = p.take()
    assert calls == RESUBSCRIBE and requested(p) == []
    crossed, opened, closed, snap = out
    assert isinstance(crossed, FeedEvent) and crossed.kind is FeedEventKind.CROSSED_BOOK
    assert opened.kind is FeedEventKind.RESUBSCRIBED and opened.ts_end is None  # type: ignore[union-attr]
    assert closed == FeedEvent(
        kind=FeedEventKind.RESUBSCRIBED,
        ts_start=ts(2),
        ts_end=ts(5),
        connection="ws-0",
        symbols=("btc_usdt",),
        channel=DEPTH,
        detail=opened.detail,  # type: ignore[union-attr]
        event_id=opened.event_id,
        venue="okex_v1",
    )  # type: ignore[union-attr]
    assert snap == BookSnapshot(venue="okex_v1",
        symbol="btc_usdt", ts_event=ts(5), ts_recv=ts(5), bids=((D(99), D(1)),), asks=((D(100), D(1)),)
    )
    assert p.accounting()[DEPTH] == {
        "received": 4,
        "accepted": 2,
        "rejected": {
            "crossed book (never stored)": 1,
            "discarded: pushed before the removeChannel ack of a resubscription": 1,
        },
    }


def test_disconnect_opens_gap_and_book_reset_closed_by_first_data_after_reconnect() -> None:
    p = pipeline(snapshot_depth=1)
    p.process_frame("ws-0", ts(1), depth([["100", "1"]], [["101", "1"]], 1))
    p.take()
    p.control(Control(ControlKind.DISCONNECTED, "ws-0", ts(2), "connection closed"))
    p.control(Control(ControlKind.CONNECTED, "ws-0", ts(3), "sent 2 subscriptions"))
    p.process_frame(
        "ws-0", ts(3), json.dumps([{"channel": "addChannel", "data": {"result": True, "channel": DEPTH}}])
    )
    p.process_frame(
        "ws-0", ts(4), depth([["100", "1"]], [["101", "1"]], 4)
    )  # same top: stored again after reset
    out = p.take()
    kinds = [(type(r).__name__, getattr(r, "kind", None), getattr(r, "ts_end", None)) for r in out]
    assert kinds == [
        ("FeedEvent", FeedEventKind.DISCONNECTED, None),
        ("FeedEvent", FeedEventKind.BOOK_RESET, None),
        ("FeedEvent", FeedEventKind.CONNECTED, ts(3)),
        ("FeedEvent", FeedEventKind.DISCONNECTED, ts(4)),
        ("FeedEvent", FeedEventKind.BOOK_RESET, ts(4)),
        ("BookSnapshot", None, None),
    ]
    assert out[0].event_id == out[3].event_id and out[1].event_id == out[4].event_id  # type: ignore[union-attr]
    assert out[0].ts_start == ts(2) and out[0].symbols == ("btc_usdt",)  # type: ignore[union-attr]


def test_malformed_frames_are_quarantined_and_the_rest_still_decodes() -> None:
    p = pipeline()
    bad_deflate = b"\x00garbage"
    p.process_frame("ws-0", ts(1), '[{"channel": "ok_sub_spot_btc_usdt_ticker", "data": ')  # truncated
    p.process_frame("ws-0", ts(2), bad_deflate)
    ticker = {
        "buy": "1",
        "sell": "2",
        "last": "1.5",
        "high": "3",
        "low": "1",
        "vol": "10",
        "timestamp": 1541505600000,
    }
    frame = json.dumps(
        [
            {"channel": "ok_sub_spot_btc_usdt_ticker", "data": {"buy": "x"}},
            {"channel": "ok_sub_spot_btc_usdt_ticker", "data": ticker},
        ]
    ).encode()
    comp = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    p.process_frame("ws-0", ts(3), comp.compress(frame) + comp.flush())
    out = p.take()
    quarantined = [r for r in out if isinstance(r, QuarantinedFrame)]
    assert [q.payload for q in quarantined[:2]] == [
        b'[{"channel": "ok_sub_spot_btc_usdt_ticker", "data": ',
        bad_deflate,
    ]
    assert quarantined[2].channel == "ok_sub_spot_btc_usdt_ticker"
    assert [r.kind for r in out if isinstance(r, FeedEvent)] == [FeedEventKind.MALFORMED_FRAME] * 2
    tickers = [r for r in out if isinstance(r, Ticker)]
    assert len(tickers) == 1 and tickers[0].last == D("1.5") and tickers[0].ts_recv == ts(3)
    acc = p.accounting()["ok_sub_spot_btc_usdt_ticker"]
    assert acc["received"] == 2 and acc["accepted"] == 1 and sum(acc["rejected"].values()) == 1
    assert p.counters.frames == 3 and p.counters.frames_malformed == 2


def test_increments_without_an_ack_are_discarded_then_the_channel_is_asked_again() -> None:
    p = pipeline(snapshot_depth=1)
    p.control(Control(ControlKind.CONNECTED, "ws-0", ts(0), "subscribed"))
    assert requested(p) == [("addChannel", DEPTH), ("addChannel", "ok_sub_spot_btc_usdt_ticker")]
    for i in range(22):  # the ack and the full book were lost: these are increments (both sides)
        p.process_frame("ws-0", ts(i + 1), depth([["100", str(i + 1)]], [["101", "1"]], i + 1))
    assert requested(p) == RESUBSCRIBE
    out = p.take()
    assert [r.kind for r in out] == [FeedEventKind.CONNECTED, FeedEventKind.RESUBSCRIBED]  # type: ignore[union-attr]
    assert p.accounting()[DEPTH] == {"received": 22, "accepted": 0, "rejected": {
        "discarded: no addChannel ack for the first push": 21,
        "discarded: pushed before the removeChannel ack of a resubscription": 1}}


def test_shutdown_closes_open_spans() -> None:
    p = pipeline()
    p.control(Control(ControlKind.DISCONNECTED, "ws-0", ts(1), "lost"))
    p.control(Control(ControlKind.SHUTDOWN, "collector", ts(9), "clean stop"))
    out = p.take()
    assert [(r.kind, r.ts_end) for r in out] == [  # type: ignore[union-attr]
        (FeedEventKind.DISCONNECTED, None),
        (FeedEventKind.DISCONNECTED, ts(9)),
        (FeedEventKind.SHUTDOWN, ts(9)),
    ]
    assert p.open_spans() == []


def test_the_feed_event_tally_counts_events_not_rows() -> None:
    """A span written open and again closed is one span; a span written closed at once is one span; a
    span open when the stop begins is counted as such (the stop writes it closed)."""
    p = pipeline(snapshot_depth=1)
    p.control(Control(ControlKind.CONNECTED, "ws-0", ts(0)))
    p.control(Control(ControlKind.DISCONNECTED, "ws-0", ts(1), "lost"))  # disconnected + book_reset
    p.control(Control(ControlKind.CONNECTED, "ws-0", ts(2)))
    p.process_frame("ws-0", ts(3), json.dumps([{"channel": "addChannel", "data": {"result": True,
                                                                                   "channel": DEPTH}}]))
    p.process_frame("ws-0", ts(4), depth([["100", "1"]], [["101", "1"]], 4))  # closes both
    p.control(Control(ControlKind.DISCONNECTED, "ws-0", ts(5), "lost again"))  # disconnected + book_reset
    audit = FeedEvent(kind=FeedEventKind.BOOK_AUDIT_FAILED, ts_start=ts(3), ts_end=ts(5), connection="ws-0")
    p.control(Control(ControlKind.RECORDS, "rest", ts(5), records=(audit,)))  # a span written closed
    rows = p.take()
    # rows: 2 spans open and closed, 2 open, 1 written closed, 2 instants
    assert len([r for r in rows if isinstance(r, FeedEvent)]) == 9
    tally = p.feed_events
    assert (tally.spans, tally.instants, tally.open, tally.open_at_stop) == (
        {"disconnected": 2, "book_reset": 2, "book_audit_failed": 1}, {"connected": 2}, 2, None)
    tally.mark_stop(elsewhere=1)  # e.g. a store outage open now
    p.control(Control(ControlKind.SHUTDOWN, "collector", ts(9), "clean stop"))
    assert len(p.take()) == 3  # the two spans closed, the shutdown instant
    assert (tally.spans, tally.instants, tally.open, tally.open_at_stop) == (
        {"disconnected": 2, "book_reset": 2, "book_audit_failed": 1}, {"connected": 2, "shutdown": 1}, 0, 3)


def test_record_queue_is_full_by_rows_or_by_age_and_hands_out_whole_batches() -> None:
    import time

    q = RecordQueue(3, max_age=60.0)
    now = time.time()
    q.put([1, 2], now)  # type: ignore[list-item]
    assert not q.full()
    q.put([3, 4], now)  # type: ignore[list-item]
    assert q.full() and q.rows == 4
    batches, closed = q.get_rows(1, 0.1)  # at least one batch, whole
    assert [b for b, _ in batches] == [[1, 2]] and not closed and q.rows == 2
    assert not q.full()
    q.put([5], now - 61)  # type: ignore[list-item]  # received too long ago: the writer is behind
    assert q.full()
    q.close()
    batches, closed = q.get_rows(100, 0.1)
    assert [b for b, _ in batches] == [[3, 4], [5]] and closed and q.rows == 0


def test_intake_refuses_frames_while_the_writer_is_behind_and_hands_over_in_batches() -> None:
    q = RecordQueue(2)
    intake = Intake(pipeline(), q, handover_frames=2)
    intake.control(Control(ControlKind.CONNECTED, "ws-0", ts(0), "subscribed"))  # one feed event, handed over
    assert q.rows == 1
    assert intake.frame("ws-0", ts(1), depth([["100", "1"]], [["101", "1"]], 1))
    assert intake.pending_frames == 1 and q.rows == 1  # taken (discarded: no ack yet), nothing handed over
    intake.control(Control(ControlKind.CONNECTED, "ws-0", ts(1), "subscribed"))
    assert q.full() and intake.pending_frames == 0
    assert not intake.frame("ws-0", ts(2), depth([["100", "2"]], [["101", "1"]], 2))  # refused, not taken
    assert intake.pipeline.counters.frames == 1


def test_run_in_process_writes_everything_and_flushes() -> None:
    w = MemoryWriter()
    frames = [("ws-0", ts(i), depth([["100", str(i + 1)]], [["101", "1"]], i)) for i in range(5)]
    p = run_in_process(frames, w, pipeline(snapshot_depth=1), batch_frames=2)
    assert [s.bids[0][1] for s in w.of(BookSnapshot)] == [D(1), D(2), D(3), D(4), D(5)]
    assert w.closed.is_set() and p.counters.frames == 5


def _rest(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> BookSnapshot:
    return BookSnapshot(venue="okex_v1", symbol="btc_usdt", ts_event=T0, ts_recv=T0,
                        bids=tuple((D(p), D(a)) for p, a in bids), asks=tuple((D(p), D(a)) for p, a in asks))


def test_book_audit_passes_when_rest_equals_any_state_held_in_the_window_else_fails_and_resyncs() -> None:
    p = pipeline(snapshot_depth=2, audit_history=8)
    p.process_frame("ws-0", ts(0), depth([["100", "1"], ["99", "1"]], [["101", "1"]], 0))
    p.process_frame("ws-0", ts(100), depth([["100", "2"]], [], 100))
    p.process_frame("ws-0", ts(200), depth([["100", "3"]], [], 200))
    [(symbol, epoch)] = p.audit_candidates(periodic=False)  # rebuilt: due once
    assert p.audit_candidates(periodic=False) == [] and len(p.audit_candidates(periodic=True)) == 1
    slack = timedelta(milliseconds=20)
    older = _rest([("100", "2"), ("99", "1")], [("101", "1")])  # the state held from 100 to 200 ms
    assert p.audit_book(symbol, epoch, ts(150), ts(160), slack, older, ts(300)).result == "pass"
    # The REST call at 50..60 ms (+-20) saw a state the book held only from 100 ms: no match.
    p.take()
    outcome = p.audit_book(symbol, epoch, ts(50), ts(60), slack, older, ts(300))
    assert outcome.result == "fail" and outcome.detail.endswith("bids[0] book 100x1 vs REST 100x2")
    failed, resub = p.take()
    assert isinstance(failed, FeedEvent) and failed.kind is FeedEventKind.BOOK_AUDIT_FAILED
    assert (failed.ts_start, failed.ts_end) == (ts(160), ts(300))  # since the last passed audit
    assert isinstance(resub, FeedEvent) and resub.kind is FeedEventKind.RESUBSCRIBED and resub.ts_end is None
    assert requested(p) == RESUBSCRIBE
    void = p.audit_book(symbol, epoch, ts(150), ts(160), slack, older, ts(400))
    assert void.result == "void"  # the book was reset since
    assert p.counters.audits == {"pass": 1, "fail": 1, "void": 1}


def test_a_refusal_opens_one_span_retries_each_time_and_first_data_closes_it() -> None:
    p = pipeline()
    tick = "ok_sub_spot_btc_usdt_ticker"
    p.process_frame("ws-0", ts(1), json.dumps([{"channel": tick, "success": False, "errorcode": 10015}]))
    calls = requested(p)  # asked again (paced by the backoff) ...
    p.process_frame("ws-0", ts(2), json.dumps(  # the other shape, and one about a channel never asked for
        [{"channel": "addChannel", "data": {"result": False, "error_code": "10015", "channel": tick}},
         {"channel": "ok_sub_spot_xrp_usdt_ticker", "success": False, "errorcode": 10015}]))
    assert p.refused_subscriptions() == {tick: 2}
    calls += requested(p)  # ... and again after the second refusal
    session: Any = p.session("ws-0")
    assert tick in session._delays  # the retries of the channel follow its backoff
    p.process_frame("ws-0", ts(3), json.dumps([{"channel": tick, "data": {
        "buy": "1", "sell": "2", "last": "1", "high": "2", "low": "1", "vol": "3", "timestamp": 1}}]))
    out = p.take()
    kinds = [(r.kind, r.channel, r.ts_start, r.ts_end) for r in out if isinstance(r, FeedEvent)]
    assert kinds == [
        (FeedEventKind.SUBSCRIBE_ERROR, tick, ts(1), ts(1)),
        (FeedEventKind.SUBSCRIBE_REFUSED, tick, ts(1), None),
        (FeedEventKind.SUBSCRIBE_ERROR, "ok_sub_spot_xrp_usdt_ticker", ts(2), ts(2)),
        (FeedEventKind.SUBSCRIBE_REFUSED, tick, ts(1), ts(3)),
    ]
    assert isinstance(out[-2], Ticker) and "after 2 refusal(s)" in out[-1].detail  # type: ignore[union-attr]
    assert calls == [("addChannel", tick), ("addChannel", tick)]
    assert tick not in session._delays  # it delivers: its next retry starts from the first delay
    assert p.refused_subscriptions() == {} and p.open_spans() == []


def test_a_pong_only_frame_is_not_data_and_is_taken_even_when_the_writer_is_behind() -> None:
    from recorder.collector.pipeline import FRAME_DATA, FRAME_PONG, FRAME_TAKEN

    p = pipeline()
    for text in ('{"event":"pong"}\n', '{ "event" : "pong" }', '[{"event":"pong"}]'):
        assert p.process_frame("ws-0", ts(1), text) == FRAME_TAKEN | FRAME_PONG
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    deflated = c.compress(b'{"event": "pong"}') + c.flush()
    assert p.process_frame("ws-0", ts(2), deflated) == FRAME_TAKEN | FRAME_PONG
    assert p.process_frame("ws-0", ts(3), '{"event":"pongx"}') == FRAME_TAKEN | FRAME_DATA  # quarantined
    assert p.counters.pong_frames == 4 and p.counters.frames == 1
    q = RecordQueue(max_rows=1)
    q.put([p.take()[0]], 0.0)
    intake = Intake(pipeline(), q)
    assert q.full()
    assert intake.frame("ws-0", ts(4), '{"event": "pong"}\n') == FRAME_TAKEN | FRAME_PONG
    assert intake.frame("ws-0", ts(5), depth([["1", "1"]], [["2", "1"]], 5)) == 0  # data: dropped


def test_a_refusal_of_a_symbol_missing_from_the_pair_table_says_it_may_be_a_typo() -> None:
    from recorder.venues.okex_v1.session import _unlisted_hint

    assert _unlisted_hint("btc_usdt") == ""  # listed: the exchange's own text says enough
    hint = _unlisted_hint("foo_bar")
    assert "foo_bar is not in the v1 pair table" in hint and "check collector.symbols" in hint


def test_record_queue_full_survives_the_writer_taking_the_last_batch_between_look_and_index() -> None:
    """The event loop asks full() while the writer thread drains (no lock): a batch seen a moment
    ago may be gone when it is indexed. That raced as "deque index out of range", failing the
    connection (a gap and a reconnect) under the writer process's fast draining."""
    import collections

    from recorder.collector.pipeline import RecordQueue

    class Drained(collections.deque):  # type: ignore[type-arg]
        def __bool__(self) -> bool:  # "there is a batch" ... which the writer then takes
            return True

    q = RecordQueue(max_rows=10, max_age=0.5)
    q._batches = Drained()  # type: ignore[assignment]
    assert q.full() is False
    q._batches = collections.deque([([], 0.0)])  # a batch received at the epoch: older than max_age
    assert q.full() is True


def test_rows_count_as_written_only_once_the_writer_says_they_are_durable() -> None:
    """A writer whose flush leaves its newest batch in flight (the writer process): its rows are
    not "written" in the status until a later flush, an idle moment (wait_durable) or the close."""
    import threading

    from recorder.collector.pipeline import RecordQueue, WriterThread
    from recorder.records import Deal, Side

    class InFlight:
        in_flight_window = 1

        def __init__(self) -> None:
            self.flushed: list[int] = []  # rows per flushed batch
            self.durable = 0  # batches durable
            self.buffer: list[Any] = []
            self.idle = threading.Event()

        def write(self, records: Any) -> None:
            self.buffer.extend(records)

        def flush(self) -> None:
            self.flushed.append(len(self.buffer))
            self.buffer = []
            self.durable = len(self.flushed) - 1  # all but the newest

        def wait_durable(self) -> None:
            self.durable = len(self.flushed)
            self.idle.set()

        def close(self) -> None:
            self.durable = len(self.flushed)

    ts = datetime(2026, 11, 30, tzinfo=UTC)

    def deals(first: int, n: int) -> list[Any]:
        return [Deal(venue="okex_v1", symbol="btc_usdt", tid=first + i, price=D("1"), amount=D("1"),
                     side=Side.BUY, ts_event=ts, ts_recv=ts) for i in range(n)]

    writer = InFlight()
    queue = RecordQueue(max_rows=1000)
    thread = WriterThread(writer, queue, batch_size=3, flush_interval=0.2)  # type: ignore[arg-type]
    queue.put(deals(0, 3), 0.0)
    queue.put(deals(3, 3), 0.0)
    thread.start()
    assert writer.idle.wait(10)  # both batches flushed; nothing more came: it waited for them
    assert writer.flushed == [3, 3]
    assert thread.counters.rows_written == {"deals": 6}
    queue.close()
    thread.finished.wait(10)
    assert thread.counters.rows_written == {"deals": 6} and len(thread.counters.latencies) == 2


def test_a_batch_in_flight_is_not_counted_until_the_next_flush() -> None:
    from recorder.collector.pipeline import WriterThread

    class Window:
        in_flight_window = 1

        def write(self, records: Any) -> None: ...
        def flush(self) -> None: ...
        def wait_durable(self) -> None: ...
        def close(self) -> None: ...

    thread = WriterThread(Window(), None, batch_size=10, flush_interval=1.0)  # type: ignore[arg-type]
    ts = datetime(2026, 11, 30, tzinfo=UTC)
    from recorder.records import Deal, Side

    one = [Deal(venue="okex_v1", symbol="btc_usdt", tid=1, price=D("1"), amount=D("1"), side=Side.BUY,
                ts_event=ts, ts_recv=ts)]
    thread._write(one, 0.0)
    assert thread.counters.rows_written == {}  # in flight: not durable yet
    thread._write(one + one, 0.0)
    assert thread.counters.rows_written == {"deals": 1}  # the first is durable now, the second in flight
    thread._confirm(0)
    assert thread.counters.rows_written == {"deals": 3}


def test_the_lag_is_taken_over_batches_of_recorded_data_only() -> None:
    """A batch of feed events alone (a connection that never opened writes its gap) is no data
    arriving: no lag until a batch holds recorded data."""
    from recorder.collector.pipeline import WriterThread
    from recorder.records import Deal, Side

    class Plain:
        def write(self, records: Any) -> None: ...
        def flush(self) -> None: ...
        def close(self) -> None: ...

    thread = WriterThread(Plain(), None, batch_size=10, flush_interval=1.0)  # type: ignore[arg-type]
    gap = FeedEvent(kind=FeedEventKind.DISCONNECTED, ts_start=ts(1), ts_end=None, connection="ws-0")
    thread._write([gap], 1.0)
    c = thread.counters
    assert (c.rows_written, c.lag_batches, c.lag_last, c.lag_max, len(c.latencies)) == (
        {"feed_events": 1}, 0, 0.0, 0.0, 0)
    deal = Deal(venue="okex_v1", symbol="btc_usdt", tid=1, price=D("1"), amount=D("1"), side=Side.BUY,
                ts_event=ts(2), ts_recv=ts(2))
    thread._write([deal, gap], 1.0)
    assert (c.rows_written, c.lag_batches, len(c.latencies)) == ({"feed_events": 2, "deals": 1}, 1, 1)
    assert c.lag_last == c.lag_max == c.latencies[0] > 0
