"""The collector's pipeline: received frames -> decode -> books -> snapshots -> the storage writer.

Two stages, one bounded queue (docs/collector.md "Pipeline")::

    connections + Intake (asyncio thread)                     --RecordQueue-->  WriterThread
      stamp ts_recv, decode, books, snapshots, feed events,     (rows, age)       batches, StorageWriter
      accounting; hand records over in batches                                    write + flush

:class:`FramePipeline` is the sans-I/O core: it takes frames and control events and
produces records; it owns every order book and every feed-event span. :class:`Intake`
runs it in the event loop's thread, frame by frame as they are received, so reading
is paced by decoding (unread frames wait in the socket buffers, not in a queue that
only adds lag) and no lock or wake-up is paid per frame; records are handed to the
writer thread in batches. :func:`run_in_process` pushes pre-generated frames through
the same core and writer without sockets (used by the ingest benchmark).

Backpressure policy: receiving never waits on disk. When the :class:`RecordQueue`
is full (``writer_queue_rows`` rows, or its oldest batch received more than
``max_age`` s ago: the writer is behind), the connection that has a frame to hand over
drops it, counts it (``dropped``), logs it, closes itself and reconnects once the queue
has drained to half, so every lost frame lies inside a recorded ``disconnected`` gap
(detail ``backpressure: …``) and the books are rebuilt from a fresh full push.
Memory is bounded by ``writer_queue_rows`` rows (+ the storage writer's own bound,
beyond which it spills to its journal) and the lag by ``max_age`` + a write.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from recorder.errors import BookError, CrossedBookError, DecodeError, RecorderError
from recorder.records import (
    Balance,
    BookSnapshot,
    ChannelKind,
    Deal,
    DepthUpdate,
    FeedEvent,
    FeedEventKind,
    Kline,
    Order,
    OrderStatusChange,
    QuarantinedFrame,
    Record,
    Ticker,
    utc_now,
)
from recorder.venues.okex_v1.book import OrderBook
from recorder.venues.okex_v1.channels import Channel
from recorder.venues.okex_v1.parse import ErrorAck, Message, Pong, Rejected, SubscribeAck, decode_frame

__all__ = [
    "FRAME_DATA",
    "FRAME_PONG",
    "FRAME_TAKEN",
    "AuditOutcome",
    "Control",
    "ControlKind",
    "FramePipeline",
    "Intake",
    "PipelineSettings",
    "RecordQueue",
    "RecordWriter",
    "Subscriptions",
    "WriterThread",
    "run_in_process",
]

log = logging.getLogger("recorder.collector")
_ONE_US = timedelta(microseconds=1)

QUARANTINE_MAX_BYTES = 64 * 1024
ACK_PATIENCE = 20  # depth pushes discarded waiting for a removeChannel ack before the connection is replaced
REFUSAL_LOG_INTERVAL = 60.0  # seconds between two log lines about one still-refused subscription
_MAX_REASONS = 50  # distinct reject reasons kept per channel; the rest count as "other"

Frame = bytes | str

FRAME_TAKEN = 1
"""Bit of :meth:`FramePipeline.process_frame` / :meth:`Intake.frame`: the frame was taken (0: dropped)."""
FRAME_PONG = 2
"""Bit: the frame held a pong (as the decoder defines it: :class:`recorder.venues.okex_v1.parse.Pong`)."""
FRAME_DATA = 4
"""Bit: the frame held anything other than a pong (data, acks, or it was malformed)."""


class ControlKind(enum.Enum):
    """What a :class:`Control` event (handed to :meth:`FramePipeline.control`) says."""

    CONNECTED = "connected"  # a connection opened and (re)subscribed
    RESUBSCRIBE_SENT = "resubscribe_sent"  # removeChannel + addChannel for ``channel`` went out
    DISCONNECTED = "disconnected"  # a connection was lost (or found dead)
    RECORDS = "records"  # records from another producer (the poller), passed through
    SHUTDOWN = "shutdown"  # stop: close every open span


@dataclass(frozen=True, slots=True)
class Control:
    """A control event, handled in order with the frames around it."""

    kind: ControlKind
    conn: str
    ts: datetime
    detail: str = ""
    stall_since: datetime | None = None  # DISCONNECTED because no data arrived since then
    dead_since: datetime | None = None  # DISCONNECTED (no pong): nothing was received since then
    records: tuple[Record, ...] = ()
    channel: str = ""  # RESUBSCRIBE_SENT: the channel's name


class Subscriptions(Protocol):
    """What the pipeline asks of the connections (:class:`recorder.collector.connection.Connection`).

    Every call returns at once; the connection paces repeated requests for one channel
    with :func:`recorder.backoff.backoff` and coalesces requests while one is pending.
    """

    def resubscribe(self, conn: str, channel: Channel) -> None:
        """Send ``removeChannel`` + ``addChannel`` for ``channel``, then announce RESUBSCRIBE_SENT."""

    def subscribe(self, conn: str, channel: Channel) -> None:
        """Send ``addChannel`` for ``channel`` again (it was refused)."""

    def healthy(self, conn: str, channel: Channel) -> None:
        """``channel`` delivers again: its next retry starts from the backoff's first delay."""

    def reconnect(self, conn: str, reason: str) -> None:
        """Replace the connection (a clean subscription boundary)."""


class _Callbacks:
    """:class:`Subscriptions` from a plain ``resubscribe(conn, channel)`` callback (tests, benchmarks)."""

    def __init__(self, resubscribe: Callable[[str, Channel], None] | None) -> None:
        self._resubscribe = resubscribe

    def resubscribe(self, conn: str, channel: Channel) -> None:
        if self._resubscribe is not None:
            self._resubscribe(conn, channel)

    def subscribe(self, conn: str, channel: Channel) -> None:
        pass

    def healthy(self, conn: str, channel: Channel) -> None:
        pass

    def reconnect(self, conn: str, reason: str) -> None:
        pass


class RecordWriter(Protocol):
    """What the writer thread drives: :class:`recorder.storage.writer.StorageWriter`."""

    def write(self, records: Sequence[Record]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


# --- queues ---------------------------------------------------------------------------------------


class RecordQueue:
    """Receive/decode -> writer: batches of records, bounded in rows *and* in age.

    :meth:`put` never blocks (the event loop calls it); the producer asks :meth:`full`
    before it takes another frame. Full means ``max_rows`` rows are queued, or the
    oldest queued batch was received more than ``max_age`` s ago: the writer is
    behind, and taking more would only make the receive -> durable lag grow. One
    consumer (:meth:`get_rows`), which takes whole batches.
    """

    def __init__(self, max_rows: int, max_age: float = float("inf")) -> None:
        self.max_rows = max_rows
        self.max_age = max_age
        self.rows = 0
        self._batches: deque[tuple[list[Record], float]] = deque()
        self._closed = False
        self._cond = threading.Condition()
        self._waiting = False

    def full(self) -> bool:
        """True when the writer is behind (``max_rows`` rows, or a batch older than ``max_age`` s)."""
        if self.rows >= self.max_rows:
            return True
        batches = self._batches
        return bool(batches) and time.time() - batches[0][1] > self.max_age

    def age(self) -> float:
        """Seconds since the oldest queued batch's oldest frame was received (0 when empty)."""
        batches = self._batches
        try:
            return max(0.0, time.time() - batches[0][1])
        except IndexError:
            return 0.0

    def put(self, records: list[Record], oldest_recv: float) -> None:
        """Queue a batch (``oldest_recv``: epoch seconds of its oldest frame's receipt); never blocks."""
        self._batches.append((records, oldest_recv))
        self.rows += len(records)
        if self._waiting:
            with self._cond:
                self._cond.notify()

    def close(self) -> None:
        """The end: the writer finishes after the batches queued before."""
        self._closed = True
        with self._cond:
            self._cond.notify()

    def get_rows(self, limit: int, timeout: float) -> tuple[list[tuple[list[Record], float]], bool]:
        """Queued batches, oldest first, until ``limit`` rows (at least one batch), and whether closed.

        Waits up to ``timeout`` s when nothing is queued.
        """
        batches = self._batches
        if not batches and not self._closed:
            with self._cond:
                self._waiting = True
                try:
                    if not batches and not self._closed:
                        self._cond.wait(timeout)
                finally:
                    self._waiting = False
        out: list[tuple[list[Record], float]] = []
        taken = 0
        while batches and (not out or taken < limit):
            item = batches.popleft()
            n = len(item[0])
            taken += n
            self.rows -= n
            out.append(item)
        return out, self._closed and not batches


# --- the sans-I/O core ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """Snapshot cadence and depth (``[collector]`` snapshot_* keys)."""

    snapshot_depth: int = 20
    snapshot_on_change: bool = True
    snapshot_interval_ms: int = 0
    quarantine_log_interval: float = 10.0  # seconds between two log lines about bad frames
    audit_history: int = 0  # book states kept per incremental book for the book audit (0: no audit)


@dataclass(slots=True)
class _BookState:
    book: OrderBook
    conn: str
    channel: str
    await_remove: bool = False  # resubscribing on a live connection: discard pushes until removeChannel ack
    remove_sent: bool = False  # ... and the removeChannel has gone out (RESUBSCRIBE_SENT)
    discarded: int = 0  # pushes discarded since the removeChannel went out
    gap: FeedEvent | None = None  # open BOOK_RESET / RESUBSCRIBED span
    last_top: tuple[Any, Any] | None = None
    last_bucket: int = -1
    epoch: int = 0  # +1 on every reset and rebuild: an audit spanning a change is void
    good_since: datetime | None = None  # the book was rebuilt (or last passed an audit) at this receive time
    acked: bool = True  # the addChannel ack of the current subscription was seen (no CONNECTED seen: trusted)
    candidate_at: datetime | None = None  # receive time of the push taken as the whole book
    pending: list[BookSnapshot] = field(default_factory=list)  # snapshots held until the ack confirms
    pending_pushes: int = 0
    audit_due: bool = False  # rebuilt and not audited since
    history: deque[tuple[datetime, tuple[Any, ...], tuple[Any, ...]]] | None = None  # (from, bids, asks)


@dataclass(slots=True)
class _Refusal:
    """A subscription the exchange refused: its open SUBSCRIBE_REFUSED span and its retries."""

    span: FeedEvent
    conn: str
    channel: Channel
    refusals: int = 1
    logged: float = 0.0  # time.monotonic() of the last log line


@dataclass(frozen=True, slots=True)
class AuditOutcome:
    """What :meth:`FramePipeline.audit_book` concluded: ``result`` is "pass", "fail" or "void"."""

    result: str
    detail: str = ""


@dataclass(slots=True)
class PipelineCounters:
    """Accounting of the decode stage (read by the status reporter)."""

    frames: int = 0
    frames_malformed: int = 0
    accepted: dict[tuple[type, str, object], int] = field(default_factory=dict)
    rejected: dict[str, dict[str, int]] = field(default_factory=dict)
    rows_out: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)  # quarantine rows by reason (head)
    crossed_books: int = 0
    error_acks: int = 0
    pong_frames: int = 0  # frames that held only pongs (not in ``frames``)
    not_whole_books: int = 0  # first pushes refused as the whole book
    audits: dict[str, int] = field(default_factory=dict)  # pass / fail / void
    last_ts_recv: datetime | None = None

    def quarantine(self, reason: str) -> None:
        """Count one quarantined row (a bad frame or message) by the head of its reason."""
        head = reason.split(":", 1)[0][:60] or "(none)"
        if head not in self.quarantined and len(self.quarantined) >= _MAX_REASONS:
            head = "other"
        self.quarantined[head] = self.quarantined.get(head, 0) + 1

    def reject(self, channel: str, reason: str, n: int = 1) -> None:
        reasons = self.rejected.setdefault(channel or "(no channel)", {})
        if reason not in reasons and len(reasons) >= _MAX_REASONS:
            reason = "other"
        reasons[reason] = reasons.get(reason, 0) + n


def _channel_of(key: tuple[type, str, object]) -> str:
    cls, symbol, extra = key
    if cls is DepthUpdate:
        assert isinstance(extra, ChannelKind)
        return Channel(symbol, extra).name
    if cls is Kline:
        return f"ok_sub_spot_{symbol}_kline_{getattr(extra, 'value', extra)}"
    kind = {Ticker: ChannelKind.TICKER, Deal: ChannelKind.DEALS, Order: ChannelKind.ORDER,
            Balance: ChannelKind.BALANCE}.get(cls)
    if kind is ChannelKind.BALANCE or kind is None:
        return f"{cls.__name__.lower()}:{symbol}"
    return Channel(symbol, kind).name


_TABLE_OF: dict[type, str] = {
    Ticker: "tickers", BookSnapshot: "book_snapshots", Deal: "deals", Kline: "klines",
    FeedEvent: "feed_events", QuarantinedFrame: "quarantine", Balance: "balances", Order: "orders",
    OrderStatusChange: "order_status_changes",
}


def _first_difference(held: tuple[Any, Any] | None, rest: tuple[Any, Any]) -> str:
    if held is None:
        return "no book state in the window"
    for side, mine, theirs in (("bids", held[0], rest[0]), ("asks", held[1], rest[1])):
        for i in range(max(len(mine), len(theirs))):
            a = mine[i] if i < len(mine) else None
            b = theirs[i] if i < len(theirs) else None
            if a != b:
                return f"latest state in the window: {side}[{i}] book {_level(a)} vs REST {_level(b)}"
    return "equal"  # pragma: no cover - only called after a mismatch


def _level(level: Any) -> str:
    return "none" if level is None else f"{level[0]}x{level[1]}"


def table_of(record: Record) -> str:
    """The storage table a record goes to (for accounting)."""
    return _TABLE_OF.get(type(record), type(record).__name__.lower())


def _unlisted_hint(symbol: str) -> str:
    """A hint for a refusal of a symbol the exchange's published pair list does not hold (a typo?)."""
    from recorder.venues.okex_v1.pairs import pairs

    if symbol in pairs():
        return ""
    return (f" ({symbol} is not in the v1 pair table (recorder/venues/okex_v1/data/pairs_increment.csv): "
            "is it a listed pair? check collector.symbols)")


class FramePipeline:
    """Frames and control events in, records out: decode, books, snapshots, feed events, accounting.

    ``shares`` maps each connection name to the channels it subscribes. ``subscriptions``
    (a :class:`Subscriptions`) is asked, from the thread that processes frames, to
    resubscribe a channel whose book must be rebuilt, to subscribe again a refused
    channel, or to replace a connection; ``resubscribe(conn, channel)`` alone is
    accepted instead (tests, benchmarks). Not thread-safe: one thread calls
    :meth:`process_frame`, :meth:`control`, :meth:`take` and the audit methods.

    The book evidence rule (docs/collector.md "Order books"): the push taken as an
    incremental channel's whole book is the first push of that channel after a clean
    subscription boundary (on a new connection: its first push, wherever the addChannel
    ack lies; after a resubscription on a live connection: the first push after the
    server's removeChannel ack), the channel's addChannel ack of that subscription arrives
    (before or after it; its snapshots are held back until then), and it looks whole
    (both sides hold a level, not crossed). Anything else is never stored, keeps the gap
    open and is resubscribed.
    """

    def __init__(
        self,
        settings: PipelineSettings,
        shares: Mapping[str, Sequence[Channel]],
        resubscribe: Callable[[str, Channel], None] | None = None,
        *,
        subscriptions: Subscriptions | None = None,
    ) -> None:
        self.settings = settings
        self.counters = PipelineCounters()
        self._subs: Subscriptions = subscriptions if subscriptions is not None else _Callbacks(resubscribe)
        self._out: list[Record] = []
        self._books: dict[tuple[str, ChannelKind], _BookState] = {}
        self._conn_symbols: dict[str, tuple[str, ...]] = {}
        self._gaps: dict[str, FeedEvent] = {}  # conn -> open DISCONNECTED / STALL span
        self._channels: dict[str, tuple[str, Channel]] = {}
        self._refused: dict[str, _Refusal] = {}  # channel name -> open SUBSCRIBE_REFUSED span
        for conn, channels in shares.items():
            self._conn_symbols[conn] = tuple(dict.fromkeys(c.symbol for c in channels))
            for ch in channels:
                self._channels[ch.name] = (conn, ch)
        self._quarantine_logged = 0.0
        self._quarantine_unlogged = 0
        self._foreign_logged = 0.0
        self._spread_to: dict[str, datetime] = {}  # conn -> latest ts_recv given by _spread

    # -- output ------------------------------------------------------------------------------------

    def take(self) -> list[Record]:
        """The records produced since the last call (the caller owns the list)."""
        out = self._out
        if out:
            rows = self.counters.rows_out
            for r in out:
                t = _TABLE_OF.get(type(r)) or table_of(r)
                rows[t] = rows.get(t, 0) + 1
            self._out = []
        return out

    def emit(self, record: Record) -> None:
        """Add a record produced beside the frames (the book auditor's feed events)."""
        self._out.append(record)

    def open_spans(self) -> list[FeedEvent]:
        """Feed-event spans open right now (connection gaps, book resets, refused subscriptions)."""
        spans = list(self._gaps.values())
        spans.extend(st.gap for st in self._books.values() if st.gap is not None)
        spans.extend(r.span for r in self._refused.values())
        return spans

    def refused_subscriptions(self) -> dict[str, int]:
        """Channels refused and not delivering yet -> refusals so far (for the status)."""
        return {name: r.refusals for name, r in sorted(self._refused.items())}

    # -- frames ------------------------------------------------------------------------------------

    def process_frame(self, conn: str, ts_recv: datetime, frame: Frame) -> int:
        """Decode one frame received on ``conn`` at ``ts_recv`` and handle every message in it.

        Returns :data:`FRAME_TAKEN` or'ed with :data:`FRAME_PONG` when the frame held a
        pong and :data:`FRAME_DATA` when it held anything else (or was malformed): the
        connection's liveness watch uses this, so a pong is what the decoder says it is.
        A frame holding only pongs is counted in ``pong_frames``, not in ``frames``.
        """
        counters = self.counters
        if self._spread_to:
            latest = self._spread_to.get(conn)
            if latest is not None and ts_recv <= latest:
                ts_recv = latest + _ONE_US
        try:
            messages = decode_frame(frame, ts_recv)
            if len(messages) > 1:
                messages = self._spread(conn, ts_recv, messages)
        except DecodeError as exc:
            counters.frames += 1
            counters.last_ts_recv = ts_recv
            self._malformed(conn, ts_recv, frame, str(exc))
            return FRAME_TAKEN | FRAME_DATA
        if len(messages) == 1 and type(messages[0]) is Pong:
            counters.pong_frames += 1
            return FRAME_TAKEN | FRAME_PONG
        counters.frames += 1
        counters.last_ts_recv = ts_recv
        flags = FRAME_TAKEN | FRAME_DATA
        out = self._out
        accepted = counters.accepted
        gaps = self._gaps
        for m in messages:
            t = type(m)
            if t is DepthUpdate:
                self._depth(conn, m)  # type: ignore[arg-type]
                continue
            if t is Ticker or t is Deal:
                key: tuple[type, str, object] = (t, m.symbol, None)  # type: ignore[union-attr]
            elif t is Kline:
                key = (t, m.symbol, m.period)  # type: ignore[union-attr]
            elif t is Rejected:
                self._rejected(conn, ts_recv, m)  # type: ignore[arg-type]
                continue
            elif t is SubscribeAck:
                self._ack(m)  # type: ignore[arg-type]
                continue
            elif t is ErrorAck:
                self._error_ack(conn, ts_recv, m)  # type: ignore[arg-type]
                continue
            elif t is Order or t is Balance:
                key = (t, getattr(m, "symbol", getattr(m, "currency", "")), None)
            elif t is Pong:
                flags |= FRAME_PONG
                continue
            else:  # LoginResult: nothing to store
                continue
            accepted[key] = accepted.get(key, 0) + 1
            out.append(m)  # type: ignore[arg-type]
            if gaps and conn in gaps:
                self._close_gap(conn, ts_recv)
            if self._refused:
                self._delivered(_channel_of(key), ts_recv)
        return flags

    def _spread(self, conn: str, ts_recv: datetime, messages: list[Message]) -> list[Message]:
        """Give each further ticker, depth push or balance of one key in a frame its own ts_recv.

        ``ts_recv`` is part of the row key of tickers ``(symbol, ts_recv)``, book snapshots
        ``(symbol, ts_recv, source)`` and balances ``(account, currency, ts_recv)``: two of them
        in one frame (an exchange batching updates, or sending one twice) would be one SQL row
        and two Parquet rows. The n-th one of a key gets ``ts_recv + n µs``; the connection's
        next frame then gets a later ts_recv still.
        """
        seen: dict[tuple[type, str], int] | None = None
        out = messages
        for i, m in enumerate(messages):
            key: tuple[type, str]
            if isinstance(m, Ticker | DepthUpdate):
                key = (type(m), m.symbol)
            elif isinstance(m, Balance):
                key = (Balance, f"{m.account} {m.currency}")
            else:
                continue
            if seen is None:
                seen = {}
            n = seen.get(key, 0)
            seen[key] = n + 1
            if n:
                if out is messages:
                    out = list(messages)
                stamp = ts_recv + n * _ONE_US
                out[i] = replace(m, ts_recv=stamp)
                latest = self._spread_to.get(conn)
                if latest is None or stamp > latest:
                    self._spread_to[conn] = stamp
        return out

    def _depth(self, conn: str, u: DepthUpdate) -> None:
        key = (u.symbol, u.kind)
        st = self._books.get(key)
        if st is None:
            st = self._books[key] = _BookState(OrderBook(u.symbol), conn, Channel(u.symbol, u.kind).name)
        counters = self.counters
        if self._refused and st.channel in self._refused:
            self._delivered(st.channel, u.ts_recv)
        if st.await_remove:
            counters.reject(st.channel, "discarded: pushed before the removeChannel ack of a resubscription")
            if st.remove_sent:
                st.discarded += 1
                if st.discarded >= ACK_PATIENCE:  # no removeChannel ack: a new connection is a clean boundary
                    st.discarded = 0
                    self._subs.reconnect(st.conn, f"no removeChannel ack for {st.channel} after "
                                                  f"{ACK_PATIENCE} pushes")
            return
        book = st.book
        incremental = u.kind is ChannelKind.DEPTH
        rebuilt = not book.is_ready
        try:
            book.apply(u)
        except CrossedBookError as exc:
            counters.reject(st.channel, "crossed book (never stored)")
            self._drop_pending(st)
            self._crossed(st, u, exc)
            return
        except BookError as exc:
            if incremental and rebuilt:
                counters.reject(st.channel, "discarded: not a whole book (never stored)")
                self._not_whole(st, u, str(exc))
            else:
                counters.reject(st.channel, "book error")
            return
        gaps = self._gaps
        if gaps and conn in gaps:
            self._close_gap(conn, u.ts_recv)
        if rebuilt:
            st.epoch += 1
            st.candidate_at = u.ts_recv
            if st.history is not None:
                st.history.clear()
        snapshot = self._maybe_snapshot(st, u, incremental)
        if not incremental or st.acked:
            akey = (DepthUpdate, u.symbol, u.kind)
            counters.accepted[akey] = counters.accepted.get(akey, 0) + 1
            if rebuilt:
                self._confirmed(st, u.ts_recv)
            if snapshot is not None:
                self._out.append(snapshot)
            return
        # A candidate whole book without its addChannel ack yet: held back until the ack comes.
        st.pending_pushes += 1
        if snapshot is not None:
            st.pending.append(snapshot)
        if st.pending_pushes > ACK_PATIENCE:
            self._drop_pending(st)
            self._not_whole(st, u, f"no addChannel ack within {ACK_PATIENCE} pushes of the first one")

    def _maybe_snapshot(self, st: _BookState, u: DepthUpdate, incremental: bool) -> BookSnapshot | None:
        settings = self.settings
        book = st.book
        take = False
        if settings.snapshot_interval_ms:
            bucket = int(u.ts_event.timestamp() * 1000) // settings.snapshot_interval_ms
            if bucket != st.last_bucket:
                st.last_bucket = bucket
                take = True
        bids, asks = book.top(settings.snapshot_depth)
        if settings.snapshot_on_change:
            top = (bids, asks)
            if top != st.last_top:
                st.last_top = top
                take = True
        if incremental and settings.audit_history:
            history = st.history
            if history is None:
                history = st.history = deque(maxlen=settings.audit_history)
            if not history or history[-1][1] != bids or history[-1][2] != asks:
                history.append((u.ts_recv, bids, asks))
        if not take:
            return None
        return BookSnapshot(venue="okex_v1",
                            symbol=u.symbol, ts_event=u.ts_event, ts_recv=u.ts_recv, bids=bids, asks=asks,
                            source=u.kind.value)

    def _confirmed(self, st: _BookState, ts: datetime) -> None:
        """The book is whole on the evidence (first push after the boundary + its ack + shape)."""
        since = st.candidate_at or ts
        st.good_since = since
        if st.book.source is ChannelKind.DEPTH:
            st.audit_due = True
            self._subs.healthy(st.conn, Channel(st.book.symbol, ChannelKind.DEPTH))
        if st.gap is not None:
            self._out.append(replace(st.gap, ts_end=since))
            st.gap = None
        if st.pending_pushes:
            akey = (DepthUpdate, st.book.symbol, ChannelKind.DEPTH)
            accepted = self.counters.accepted
            accepted[akey] = accepted.get(akey, 0) + st.pending_pushes
            self._out.extend(st.pending)
        st.pending = []
        st.pending_pushes = 0

    def _drop_pending(self, st: _BookState) -> None:
        if st.pending_pushes:
            self.counters.reject(st.channel, "discarded: no addChannel ack for the first push",
                                 st.pending_pushes)
        st.pending = []
        st.pending_pushes = 0

    def _not_whole(self, st: _BookState, u: DepthUpdate, why: str) -> None:
        self.counters.not_whole_books += 1
        log.warning("%s: %s: the push taken as the whole book is not whole (%s); resubscribing",
                    st.conn, st.channel, why)
        self._request_resubscribe(st, u.ts_recv, f"first push is not a whole book ({why[:200]})")

    def _crossed(self, st: _BookState, u: DepthUpdate, exc: CrossedBookError) -> None:
        self.counters.crossed_books += 1
        st.book.reset()
        st.epoch += 1
        st.last_top = None
        now = u.ts_recv
        symbols = (u.symbol,)
        self._out.append(FeedEvent(kind=FeedEventKind.CROSSED_BOOK, ts_start=now, ts_end=now,
                                   connection=st.conn, symbols=symbols, channel=st.channel, detail=str(exc)))
        if u.kind is ChannelKind.DEPTH:
            self._request_resubscribe(st, now, "crossed book")
            log.warning("%s: %s; book reset, resubscribing", st.conn, exc)
            return
        if st.gap is None:  # a full-depth channel: the next push replaces the book by itself
            st.gap = FeedEvent(kind=FeedEventKind.BOOK_RESET, ts_start=now, ts_end=None, connection=st.conn,
                               symbols=symbols, channel=st.channel,
                               detail="crossed book: waiting for the next push")
            self._out.append(st.gap)
        log.warning("%s: %s; book reset, waiting for a fresh full push", st.conn, exc)

    def _request_resubscribe(self, st: _BookState, now: datetime, why: str) -> None:
        self._drop_pending(st)
        st.await_remove = True
        st.remove_sent = False
        st.acked = False
        st.discarded = 0
        st.book.reset()
        st.epoch += 1
        st.audit_due = False
        st.last_top = None
        if st.gap is None:
            st.gap = FeedEvent(kind=FeedEventKind.RESUBSCRIBED, ts_start=now, ts_end=None, connection=st.conn,
                               symbols=(st.book.symbol,), channel=st.channel,
                               detail=f"{why}: removeChannel + addChannel, waiting for a whole book")
            self._out.append(st.gap)
        self._subs.resubscribe(st.conn, Channel(st.book.symbol, ChannelKind.DEPTH))

    def _asked(self, name: str) -> tuple[str, Channel] | None:
        """The channel of this recorder an ack or error ack is about, or None.

        Channel names are lower-case on the wire; an ack that echoes one in another case
        (``OK_SUB_SPOT_BTC_USDT_DEPTH``) is about that channel all the same.
        """
        entry = self._channels.get(name)
        if entry is None and not name.islower():
            entry = self._channels.get(name.lower())
        return entry

    def _ack(self, ack: SubscribeAck) -> None:
        # The addChannel ack may come before or after the full push, in its frame or not: it
        # confirms the first push after the boundary (held back until then). A removeChannel
        # ack of a pending resubscription is the boundary after which the first push is the book.
        entry = self._asked(ack.channel)
        if entry is None:
            return  # a channel never asked for
        ch = entry[1]
        st = self._books.get((ch.symbol, ch.kind))
        if st is None or ch.kind is not ChannelKind.DEPTH:
            return
        if not ack.subscribed:
            if st.await_remove and st.remove_sent:
                st.await_remove = st.remove_sent = False
                st.acked = False
                st.discarded = 0
                st.book.reset()
                st.epoch += 1
            return
        if st.await_remove or st.acked:
            return  # an ack of the old subscription, or a duplicate
        st.acked = True
        if st.book.is_ready:
            self._confirmed(st, st.candidate_at or st.book.ts_recv or utc_now())

    def _error_ack(self, conn: str, ts_recv: datetime, ack: ErrorAck) -> None:
        self.counters.error_acks += 1
        err = ack.error
        entry = self._asked(ack.channel)
        detail = f"{err.code}: {err.message_en}"
        if entry is None:  # not a channel of this recorder (login, a bad request, ...): an instant
            self._out.append(FeedEvent(
                kind=FeedEventKind.SUBSCRIBE_ERROR, ts_start=ts_recv, ts_end=ts_recv, connection=conn,
                symbols=(), channel=ack.channel, detail=detail))
            now = time.monotonic()
            if now - self._foreign_logged >= REFUSAL_LOG_INTERVAL:
                self._foreign_logged = now
                log.error("%s: error ack about %r, not a channel of this recorder: %s", conn, ack.channel,
                          err)
            return
        owner, ch = entry
        refusal = self._refused.get(ch.name)
        if refusal is None:
            span = FeedEvent(kind=FeedEventKind.SUBSCRIBE_REFUSED, ts_start=ts_recv, ts_end=None,
                             connection=owner, symbols=(ch.symbol,), channel=ch.name,
                             detail=f"{detail}; retried with backoff")
            self._refused[ch.name] = _Refusal(span, owner, ch, logged=time.monotonic())
            self._out.append(FeedEvent(
                kind=FeedEventKind.SUBSCRIBE_ERROR, ts_start=ts_recv, ts_end=ts_recv, connection=conn,
                symbols=(ch.symbol,), channel=ch.name, detail=detail))
            self._out.append(span)
            log.error("%s: subscription to %s refused: %s; asking again with backoff%s", conn, ch.name, err,
                      _unlisted_hint(ch.symbol))
        else:
            refusal.refusals += 1
            now = time.monotonic()
            if now - refusal.logged >= REFUSAL_LOG_INTERVAL:
                log.error("%s: subscription to %s still refused (%d refusals since %s): %s", conn, ch.name,
                          refusal.refusals, refusal.span.ts_start.isoformat(), err)
                refusal.logged = now
        self._subs.subscribe(owner, ch)

    def _delivered(self, channel: str, ts_recv: datetime) -> None:
        """First data of a refused channel: its SUBSCRIBE_REFUSED span closes."""
        refusal = self._refused.pop(channel, None)
        if refusal is None:
            return
        detail = f"{refusal.span.detail}; first data after {refusal.refusals} refusal(s)"[:500]
        self._out.append(replace(refusal.span, ts_end=ts_recv, detail=detail))
        log.info("%s: %s delivers after %d refusal(s)", refusal.conn, channel, refusal.refusals)
        self._subs.healthy(refusal.conn, refusal.channel)

    def _rejected(self, conn: str, ts_recv: datetime, r: Rejected) -> None:
        self.counters.reject(r.channel, r.reason[:80])
        self.counters.quarantine(r.reason)
        self._out.append(QuarantinedFrame(ts_recv=ts_recv, connection=conn, reason=r.reason[:500],
                                          payload=r.sample[:QUARANTINE_MAX_BYTES], channel=r.channel))
        self._log_bad(conn, r.reason, r.sample)

    def _malformed(self, conn: str, ts_recv: datetime, frame: Frame, reason: str) -> None:
        self.counters.frames_malformed += 1
        self.counters.quarantine(reason)
        payload = frame.encode("utf-8", "replace") if isinstance(frame, str) else bytes(frame)
        self._out.append(QuarantinedFrame(ts_recv=ts_recv, connection=conn, reason=reason[:500],
                                          payload=payload[:QUARANTINE_MAX_BYTES]))
        self._out.append(FeedEvent(
            kind=FeedEventKind.MALFORMED_FRAME, ts_start=ts_recv, ts_end=ts_recv, connection=conn,
            symbols=self._conn_symbols.get(conn, ()), detail=f"{reason[:200]} ({len(payload)} bytes)"))
        self._log_bad(conn, reason, payload)

    def _log_bad(self, conn: str, reason: str, sample: bytes) -> None:
        now = time.monotonic()
        if now - self._quarantine_logged < self.settings.quarantine_log_interval:
            self._quarantine_unlogged += 1
            return
        unlogged = self._quarantine_unlogged
        more = f" (+{unlogged} more since the last report)" if unlogged else ""
        self._quarantine_logged = now
        self._quarantine_unlogged = 0
        log.warning("%s: bad frame quarantined: %s; sample %r%s", conn, reason[:200], sample[:120], more)

    # -- the book audit (driven by recorder.collector.audit.BookAuditor) ------------------------------

    def audit_candidates(self, *, periodic: bool) -> list[tuple[str, int]]:
        """``(symbol, epoch)`` of the incremental books to audit now.

        The books rebuilt and not audited since; with ``periodic`` every whole one.
        Taking a rebuilt book clears its "due" mark.
        """
        out = []
        for (symbol, kind), st in self._books.items():
            if kind is not ChannelKind.DEPTH or not st.book.is_ready or not st.acked or st.await_remove:
                continue
            if st.audit_due or periodic:
                st.audit_due = False
                out.append((symbol, st.epoch))
        return out

    def audit_book(self, symbol: str, epoch: int, sent: datetime, answered: datetime, slack: timedelta,
                   rest: BookSnapshot, now: datetime) -> AuditOutcome:
        """Compare the REST ``depth.do`` answer ``rest`` with the book states held around it.

        The rule (docs/collector.md "Book audit"): the top ``snapshot_depth`` levels of the
        answer (asked at ``sent``, received at ``answered``, UTC) must equal, price and
        amount, those of one of the book states the recorder held at some moment of
        ``[sent - slack, answered + slack]``. "void" when the book was reset or rebuilt
        since (``epoch`` changed) or its history does not reach back to the window;
        "fail" emits a BOOK_AUDIT_FAILED span (from the book's last good moment to
        ``now``) and resubscribes the channel.
        """
        st = self._books.get((symbol, ChannelKind.DEPTH))
        counters = self.counters.audits
        if st is None or st.epoch != epoch or not st.book.is_ready or not st.acked or not st.history:
            counters["void"] = counters.get("void", 0) + 1
            return AuditOutcome("void", "book reset or rebuilt meanwhile")
        depth = self.settings.snapshot_depth
        want_bids, want_asks = tuple(rest.bids[:depth]), tuple(rest.asks[:depth])
        lo, hi = sent - slack, answered + slack
        history = list(st.history)
        if history[0][0] > lo and len(history) == st.history.maxlen:
            counters["void"] = counters.get("void", 0) + 1
            return AuditOutcome("void", "book history does not reach back to the REST call")
        nearest = None
        for i, (since, bids, asks) in enumerate(history):
            until = history[i + 1][0] if i + 1 < len(history) else hi
            if until < lo or since > hi:
                continue
            if bids == want_bids and asks == want_asks:
                counters["pass"] = counters.get("pass", 0) + 1
                st.good_since = answered
                return AuditOutcome("pass")
            nearest = (bids, asks)
        counters["fail"] = counters.get("fail", 0) + 1
        detail = (f"REST depth.do top {depth} matches no book state held from {lo.isoformat()} to "
                  f"{hi.isoformat()}: {_first_difference(nearest, (want_bids, want_asks))}")
        start = st.good_since or now
        self._out.append(FeedEvent(kind=FeedEventKind.BOOK_AUDIT_FAILED, ts_start=min(start, now), ts_end=now,
                                   connection=st.conn, symbols=(symbol,), channel=st.channel,
                                   detail=detail[:500]))
        log.warning("%s: %s: book audit failed (%s); resubscribing", st.conn, st.channel, detail[:300])
        self._request_resubscribe(st, now, "book audit failed")
        return AuditOutcome("fail", detail)

    # -- control -----------------------------------------------------------------------------------

    def control(self, c: Control) -> None:
        """Handle a control event (see :class:`ControlKind`)."""
        if c.kind is ControlKind.DISCONNECTED:
            self._disconnected(c)
        elif c.kind is ControlKind.CONNECTED:
            self._connected(c)
            self._out.append(FeedEvent(kind=FeedEventKind.CONNECTED, ts_start=c.ts, ts_end=c.ts,
                                       connection=c.conn, symbols=self._conn_symbols.get(c.conn, ()),
                                       detail=c.detail))
        elif c.kind is ControlKind.RESUBSCRIBE_SENT:
            entry = self._channels.get(c.channel)
            st = self._books.get((entry[1].symbol, entry[1].kind)) if entry is not None else None
            if st is not None and st.await_remove:
                st.remove_sent = True
                st.discarded = 0
        elif c.kind is ControlKind.RECORDS:
            self._out.extend(c.records)
        elif c.kind is ControlKind.SHUTDOWN:
            self._shutdown(c)

    def _connected(self, c: Control) -> None:
        # A new connection is a clean subscription boundary: the first push of each
        # incremental depth channel on it is the whole book, wherever its ack lies.
        for name, (conn, ch) in self._channels.items():
            if conn != c.conn or ch.kind is not ChannelKind.DEPTH:
                continue
            st = self._books.get((ch.symbol, ch.kind))
            if st is None:
                st = self._books[(ch.symbol, ch.kind)] = _BookState(OrderBook(ch.symbol), conn, name)
            st.book.reset()
            st.epoch += 1
            st.await_remove = st.remove_sent = False
            st.acked = False
            self._drop_pending(st)
            st.discarded = 0
            st.last_top = None

    def _disconnected(self, c: Control) -> None:
        symbols = self._conn_symbols.get(c.conn, ())
        since = c.stall_since or c.dead_since or c.ts
        if c.conn not in self._gaps:
            kind = FeedEventKind.STALL if c.stall_since is not None else FeedEventKind.DISCONNECTED
            gap = FeedEvent(kind=kind, ts_start=since, ts_end=None, connection=c.conn,
                            symbols=symbols, detail=c.detail[:500])
            self._gaps[c.conn] = gap
            self._out.append(gap)
        for st in self._books.values():
            if st.conn != c.conn:
                continue
            st.book.reset()
            st.epoch += 1
            st.await_remove = st.remove_sent = False
            st.acked = False
            self._drop_pending(st)
            st.audit_due = False
            st.last_top = None
            if st.gap is None:
                st.gap = FeedEvent(kind=FeedEventKind.BOOK_RESET, ts_start=since, ts_end=None,
                                   connection=c.conn, symbols=(st.book.symbol,), channel=st.channel,
                                   detail="connection lost: waiting for a fresh full push")
                self._out.append(st.gap)

    def _close_gap(self, conn: str, ts: datetime) -> None:
        gap = self._gaps.pop(conn)
        self._out.append(replace(gap, ts_end=ts))

    def _shutdown(self, c: Control) -> None:
        for span in self.open_spans():
            detail = f"{span.detail} (still open at shutdown)"[:500]
            self._out.append(replace(span, ts_end=c.ts, detail=detail))
        self._gaps.clear()
        self._refused.clear()
        for st in self._books.values():
            st.gap = None
            self._drop_pending(st)
        self._out.append(FeedEvent(kind=FeedEventKind.SHUTDOWN, ts_start=c.ts, ts_end=c.ts, connection=c.conn,
                                   detail=c.detail))

    # -- accounting --------------------------------------------------------------------------------

    def accounting(self) -> dict[str, dict[str, Any]]:
        """Per channel: ``received`` = ``accepted`` + sum(``rejected`` by reason)."""
        out: dict[str, dict[str, Any]] = {}
        for key, n in list(self.counters.accepted.items()):
            name = _channel_of(key)
            entry = out.setdefault(name, {"received": 0, "accepted": 0, "rejected": {}})
            entry["accepted"] += n
            entry["received"] += n
        for name, reasons in list(self.counters.rejected.items()):
            entry = out.setdefault(name, {"received": 0, "accepted": 0, "rejected": {}})
            entry["rejected"] = dict(reasons)
            entry["received"] += sum(reasons.values())
        return dict(sorted(out.items()))


# --- threads --------------------------------------------------------------------------------------


class Intake:
    """The receive side of the pipeline, run in the event loop's thread: frames are decoded as received.

    Each connection hands every frame to :meth:`frame` (and its control events to
    :meth:`control`); the records produced go to the :class:`RecordQueue` in batches
    (every ``handover_frames`` frames, and on :meth:`handover`, which the recorder also
    calls every few tens of milliseconds). Decoding in the receiving thread paces the
    reading by the decoding: frames wait in the socket, not in an unbounded queue, and
    the lock-free handover costs nothing per frame. :meth:`frame` says False, without
    taking the frame, when the record queue is full (the backpressure policy).

    Pacing: decoding and writing share one interpreter lock, so a busy event loop can
    outrun the writer thread. When more than ``soft_rows`` rows wait for the writer,
    :attr:`behind` is set and the connections :meth:`yield_to_writer` (sleep, releasing
    the lock) before reading on, until the writer is back under the mark; the frames
    meanwhile wait in the socket. Only a writer that does not catch up (the queue full)
    makes frames drop.
    """

    def __init__(self, pipeline: FramePipeline, records: RecordQueue, *, handover_frames: int = 512,
                 soft_rows: int | None = None) -> None:
        self.pipeline = pipeline
        self.records = records
        self.handover_frames = handover_frames
        self.soft_rows = records.max_rows // 4 if soft_rows is None else min(soft_rows, records.max_rows // 2)
        self.behind = False  # more than soft_rows rows queued at the last handover
        self.pending_frames = 0  # frames taken since the last handover
        self.error: BaseException | None = None
        self._oldest: datetime | None = None
        self._process = pipeline.process_frame

    def frame(self, conn: str, ts_recv: datetime, frame: Frame) -> int:
        """Decode one frame; returns the :data:`FRAME_TAKEN` / ``_PONG`` / ``_DATA`` bits.

        0 (frame not taken) when the writer is behind, unless the frame holds only
        pongs (decided by the decoder, as always): a pong has nothing to store.
        """
        if self.records.full():
            try:
                messages = decode_frame(frame, ts_recv)
            except DecodeError:
                return 0
            if messages and all(type(m) is Pong for m in messages):
                self.pipeline.counters.pong_frames += 1
                return FRAME_TAKEN | FRAME_PONG
            return 0
        if self._oldest is None:
            self._oldest = ts_recv
        try:
            flags = self._process(conn, ts_recv, frame)
        except BaseException as exc:  # pragma: no cover - a bug: report it, let the app stop
            self.error = exc
            log.exception("decode stage failed")
            raise
        self.pending_frames += 1
        if self.pending_frames >= self.handover_frames:
            self.handover()
        return flags

    def control(self, c: Control) -> None:
        """A control event, in order with the frames around it; its records are handed over at once."""
        if self._oldest is None:
            self._oldest = c.ts
        self.pipeline.control(c)
        self.handover()

    def handover(self) -> None:
        """Move the records produced so far to the record queue."""
        self.pending_frames = 0
        oldest, self._oldest = self._oldest, None
        out = self.pipeline.take()
        records = self.records
        if out:
            records.put(out, oldest.timestamp() if oldest is not None else time.time())
        self.behind = records.rows > self.soft_rows

    async def yield_to_writer(self, pause: float = 0.002) -> None:
        """Sleep (the writer thread runs) while it is behind but not past the queue's bound."""
        records = self.records
        while records.rows > self.soft_rows and not records.full():
            await asyncio.sleep(pause)
        self.behind = False


@dataclass(slots=True)
class WriterCounters:
    """Accounting of the writer stage."""

    rows_written: dict[str, int] = field(default_factory=dict)  # handed to the storage writer and flushed
    rows_pending: int = 0  # written but not yet flushed
    flushes: int = 0
    errors: int = 0
    last_error: str = ""
    lag_last: float = 0.0  # seconds from receipt of a batch's oldest frame to its flush
    lag_max: float = 0.0
    write_seconds: float = 0.0  # how long the last write + flush took
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


class WriterThread(threading.Thread):
    """The one thread that calls the (synchronous) storage writer: batches, write, flush, close.

    Writes (and flushes) when ``batch_size`` rows are gathered, or when the oldest
    gathered row would otherwise miss its deadline: received + ``flush_interval``,
    less the time a write has been taking. A backlog is taken ``batch_size`` rows at
    a time. Ends when the record queue is closed and empty: writes and flushes
    everything left, then closes the writer.
    """

    def __init__(self, writer: RecordWriter, records: RecordQueue, *, batch_size: int,
                 flush_interval: float, close_writer: bool = True) -> None:
        super().__init__(name="okex-writer", daemon=True)
        self.writer = writer
        self.records = records
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.close_writer = close_writer
        self.counters = WriterCounters()
        self.finished = threading.Event()

    def run(self) -> None:
        pending: list[Record] = []
        due = float("inf")  # epoch seconds by which the pending rows must be written
        oldest = 0.0
        try:
            while True:
                timeout = max(0.0, due - time.time()) if pending else self.flush_interval
                batches, closed = self.records.get_rows(self.batch_size - len(pending), timeout)
                for batch, recv in batches:
                    if not pending:
                        oldest = recv
                        due = recv + self._budget()
                    pending.extend(batch)
                if pending and (closed or len(pending) >= self.batch_size or time.time() >= due):
                    self._write(pending, oldest)
                    pending = []
                if closed:
                    break
        finally:
            if self.close_writer:
                try:
                    self.writer.close()
                except RecorderError as exc:
                    self.counters.errors += 1
                    self.counters.last_error = str(exc)
                    log.error("closing the storage writer failed: %s", exc)
            self.finished.set()

    def _budget(self) -> float:
        """Seconds a row may wait for its write: flush_interval less what writes take (and a margin)."""
        interval = self.flush_interval
        return max(interval - 1.5 * self.counters.write_seconds - 0.05, 0.1 * interval)

    def _write(self, records: list[Record], oldest: float) -> None:
        c = self.counters
        started = time.monotonic()
        try:
            self.writer.write(records)
            self.writer.flush()
        except RecorderError as exc:
            # The storage writer keeps what it could not store (memory, then its journal)
            # and retries on the next flush; here it is counted and reported.
            c.errors += 1
            c.last_error = str(exc)
            log.error("storage write failed (kept by the writer, retried on the next flush): %s", exc)
        c.write_seconds = time.monotonic() - started
        c.flushes += 1
        rows = c.rows_written
        for r in records:
            t = _TABLE_OF.get(type(r)) or table_of(r)
            rows[t] = rows.get(t, 0) + 1
        lag = time.time() - oldest
        c.lag_last = lag
        c.lag_max = max(c.lag_max, lag)
        c.latencies.append(lag)


# --- in process (benchmarks, tests) -------------------------------------------------------------------


def run_in_process(
    frames: Iterable[tuple[str, datetime, Frame]],
    writer: RecordWriter,
    settings: PipelineSettings = PipelineSettings(),
    shares: Mapping[str, Sequence[Channel]] | None = None,
    *,
    batch_frames: int = 2000,
    close: bool = True,
) -> FramePipeline:
    """Push ``(conn, ts_recv, frame)`` items through decode -> book -> snapshot -> ``writer``.

    No sockets and no threads: every ``batch_frames`` frames the records produced
    are written and flushed. Returns the pipeline (its counters and accounting).
    """
    pipeline = FramePipeline(settings, shares or {})
    process = pipeline.process_frame
    n = 0
    for conn, ts, frame in frames:
        process(conn, ts, frame)
        n += 1
        if n >= batch_frames:
            n = 0
            out = pipeline.take()
            if out:
                writer.write(out)
                writer.flush()
    pipeline.control(Control(ControlKind.SHUTDOWN, "in-process", utc_now(), "end of input"))
    out = pipeline.take()
    if out:
        writer.write(out)
    writer.flush()
    if close:
        writer.close()
    return pipeline
