"""The collector's pipeline: received frames -> decode -> books -> snapshots -> the storage writer.

Three stages, two bounded queues, one thread each (docs/collector.md "Pipeline")::

    connections (asyncio)  --FrameQueue-->  DecodeThread (FramePipeline)  --RecordQueue-->  WriterThread
      stamp ts_recv, never block              decode, books, snapshots,        batches, StorageWriter
                                              feed events, accounting          write + flush

:class:`FramePipeline` is the sans-I/O core: it takes frames and control events and
produces records; it owns every order book and every feed-event span. The queues
and threads around it are thin. :func:`run_in_process` pushes pre-generated frames
through the same core and writer without sockets (used by the ingest benchmark).

Backpressure policy: the receive side never waits. When the :class:`FrameQueue` is
full, a connection drops the frame, counts it (``dropped``), closes itself and
reconnects once the queue has drained to half, so every lost frame lies inside a
recorded ``disconnected`` gap (detail ``backpressure: …``) and the books are rebuilt
from a fresh full push. The decode stage blocks when the :class:`RecordQueue`
(bounded in rows) is full, which is what makes the frame queue fill up. Memory is
bounded by ``max_queued_frames`` frames + ``writer_queue_rows`` rows (+ the storage
writer's own bound, beyond which it spills to its journal).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from recorder.errors import BookError, CrossedBookError, DecodeError, RecorderError
from recorder.okex.book import OrderBook
from recorder.okex.channels import Channel
from recorder.okex.frames import ErrorAck, Rejected, SubscribeAck, decode_frame
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

__all__ = [
    "Control",
    "ControlKind",
    "DecodeThread",
    "FramePipeline",
    "FrameQueue",
    "PipelineSettings",
    "RecordQueue",
    "RecordWriter",
    "WriterThread",
    "run_in_process",
]

log = logging.getLogger("recorder.collector")

QUARANTINE_MAX_BYTES = 64 * 1024
ACK_PATIENCE = 20  # depth updates discarded without an addChannel ack before asking again
_MAX_REASONS = 50  # distinct reject reasons kept per channel; the rest count as "other"

Frame = bytes | str


class ControlKind(enum.Enum):
    """What a :class:`Control` item in the frame queue says."""

    CONNECTED = "connected"  # a connection opened and (re)subscribed
    DISCONNECTED = "disconnected"  # a connection was lost (or found dead)
    RECORDS = "records"  # records from another producer (the poller), passed through
    SHUTDOWN = "shutdown"  # stop: close every open span


@dataclass(frozen=True, slots=True)
class Control:
    """A control event travelling in the frame queue, in order with the frames around it."""

    kind: ControlKind
    conn: str
    ts: datetime
    detail: str = ""
    stall_since: datetime | None = None  # DISCONNECTED because no data arrived since then
    records: tuple[Record, ...] = ()


class RecordWriter(Protocol):
    """What the writer thread drives: :class:`recorder.storage.writer.StorageWriter`."""

    def write(self, records: Sequence[Record]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


# --- queues ---------------------------------------------------------------------------------------


class FrameQueue:
    """Receive -> decode: bounded in items; :meth:`put` never blocks (it says False when full).

    Control items (:meth:`put_control`) bypass the bound: there are few of them and
    they must not be lost. One consumer (:meth:`get_batch` takes everything queued).
    """

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: deque[tuple[str, datetime, Frame | Control]] = deque()
        self._cond = threading.Condition()
        self._waiting = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, conn: str, ts_recv: datetime, frame: Frame) -> bool:
        """Queue one frame; False (nothing queued) when the queue is full."""
        if len(self._items) >= self.max_items:
            return False
        self._items.append((conn, ts_recv, frame))
        if self._waiting:
            with self._cond:
                self._cond.notify()
        return True

    def put_control(self, control: Control) -> None:
        """Queue a control event (never refused)."""
        self._items.append((control.conn, control.ts, control))
        with self._cond:
            self._cond.notify()

    def get_batch(self, timeout: float) -> list[tuple[str, datetime, Frame | Control]]:
        """Everything queued (waiting up to ``timeout`` s for the first item); [] on timeout."""
        items = self._items
        if not items:
            with self._cond:
                self._waiting = True
                try:
                    if not items:
                        self._cond.wait(timeout)
                finally:
                    self._waiting = False
        n = len(items)
        pop = items.popleft
        return [pop() for _ in range(n)]


class RecordQueue:
    """Decode -> writer: bounded in rows; :meth:`put` blocks while full (the decode stage waits)."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.rows = 0
        self._batches: deque[tuple[list[Record], float] | None] = deque()
        self._cond = threading.Condition()

    def put(self, records: list[Record], oldest_recv: float) -> None:
        """Queue a batch; waits while the queue holds ``max_rows`` rows or more."""
        with self._cond:
            while self.rows >= self.max_rows:
                self._cond.wait(1.0)
            self._batches.append((records, oldest_recv))
            self.rows += len(records)
            self._cond.notify_all()

    def close(self) -> None:
        """Queue the end marker: the writer finishes after the batches before it."""
        with self._cond:
            self._batches.append(None)
            self._cond.notify_all()

    def get(self, timeout: float) -> tuple[list[Record], float] | bool | None:
        """The next batch, None at the end marker, or False on timeout."""
        with self._cond:
            if not self._batches:
                self._cond.wait(timeout)
                if not self._batches:
                    return False
            item = self._batches.popleft()
            if item is not None:
                self.rows -= len(item[0])
            self._cond.notify_all()
            return item


# --- the sans-I/O core ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """Snapshot cadence and depth (``[collector]`` snapshot_* keys)."""

    snapshot_depth: int = 20
    snapshot_on_change: bool = True
    snapshot_interval_ms: int = 0
    quarantine_log_interval: float = 10.0  # seconds between two log lines about bad frames


@dataclass(slots=True)
class _BookState:
    book: OrderBook
    conn: str
    channel: str
    awaiting_ack: bool = False  # (re)subscribed: discard updates until the addChannel ack
    discarded: int = 0  # updates discarded while awaiting the ack
    gap: FeedEvent | None = None  # open BOOK_RESET / RESUBSCRIBED span
    last_top: tuple[Any, Any] | None = None
    last_bucket: int = -1


@dataclass(slots=True)
class PipelineCounters:
    """Accounting of the decode stage (read by the status reporter)."""

    frames: int = 0
    frames_malformed: int = 0
    accepted: dict[tuple[type, str, object], int] = field(default_factory=dict)
    rejected: dict[str, dict[str, int]] = field(default_factory=dict)
    rows_out: dict[str, int] = field(default_factory=dict)
    crossed_books: int = 0
    error_acks: int = 0
    last_ts_recv: datetime | None = None

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


def table_of(record: Record) -> str:
    """The storage table a record goes to (for accounting)."""
    return _TABLE_OF.get(type(record), type(record).__name__.lower())


class FramePipeline:
    """Frames and control events in, records out: decode, books, snapshots, feed events, accounting.

    ``shares`` maps each connection name to the channels it subscribes.
    ``resubscribe(conn, channel)`` is called (from the decode thread) when a crossed
    incremental book must be rebuilt from a fresh subscription. Not thread-safe:
    one thread calls :meth:`process_frame`, :meth:`control` and :meth:`take`.
    """

    def __init__(
        self,
        settings: PipelineSettings,
        shares: Mapping[str, Sequence[Channel]],
        resubscribe: Callable[[str, Channel], None] | None = None,
    ) -> None:
        self.settings = settings
        self.counters = PipelineCounters()
        self._resubscribe = resubscribe
        self._out: list[Record] = []
        self._books: dict[tuple[str, ChannelKind], _BookState] = {}
        self._conn_symbols: dict[str, tuple[str, ...]] = {}
        self._gaps: dict[str, FeedEvent] = {}  # conn -> open DISCONNECTED / STALL span
        self._channels: dict[str, tuple[str, Channel]] = {}
        for conn, channels in shares.items():
            self._conn_symbols[conn] = tuple(dict.fromkeys(c.symbol for c in channels))
            for ch in channels:
                self._channels[ch.name] = (conn, ch)
        self._quarantine_logged = 0.0
        self._quarantine_unlogged = 0

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

    def open_spans(self) -> list[FeedEvent]:
        """Feed-event spans open right now (connection gaps and book resets)."""
        spans = list(self._gaps.values())
        spans.extend(st.gap for st in self._books.values() if st.gap is not None)
        return spans

    # -- frames ------------------------------------------------------------------------------------

    def process_frame(self, conn: str, ts_recv: datetime, frame: Frame) -> None:
        """Decode one frame received on ``conn`` at ``ts_recv`` and handle every message in it."""
        counters = self.counters
        counters.frames += 1
        counters.last_ts_recv = ts_recv
        try:
            messages = decode_frame(frame, ts_recv)
        except DecodeError as exc:
            self._malformed(conn, ts_recv, frame, str(exc))
            return
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
            else:  # Pong, LoginResult: nothing to store
                continue
            accepted[key] = accepted.get(key, 0) + 1
            out.append(m)  # type: ignore[arg-type]
            if gaps and conn in gaps:
                self._close_gap(conn, ts_recv)

    def _depth(self, conn: str, u: DepthUpdate) -> None:
        key = (u.symbol, u.kind)
        st = self._books.get(key)
        if st is None:
            st = self._books[key] = _BookState(OrderBook(u.symbol), conn, Channel(u.symbol, u.kind).name)
        counters = self.counters
        if st.awaiting_ack:
            counters.reject(st.channel, "discarded: waiting for the addChannel ack before the full book")
            st.discarded += 1
            if st.discarded >= ACK_PATIENCE:  # the ack (and the full book with it) was lost: ask again
                st.discarded = 0
                self._request_resubscribe(st, u.ts_recv, "no addChannel ack before increments")
            return
        book = st.book
        try:
            book.apply(u)
        except CrossedBookError as exc:
            counters.reject(st.channel, "crossed book (never stored)")
            self._crossed(st, u, exc)
            return
        except BookError:
            counters.reject(st.channel, "book error")
            return
        akey = (DepthUpdate, u.symbol, u.kind)
        counters.accepted[akey] = counters.accepted.get(akey, 0) + 1
        if st.gap is not None:
            self._out.append(replace(st.gap, ts_end=u.ts_recv))
            st.gap = None
            st.last_top = None
        gaps = self._gaps
        if gaps and conn in gaps:
            self._close_gap(conn, u.ts_recv)
        settings = self.settings
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
        if take:
            self._out.append(BookSnapshot(symbol=u.symbol, ts_event=u.ts_event, ts_recv=u.ts_recv,
                                          bids=bids, asks=asks, source=u.kind))

    def _crossed(self, st: _BookState, u: DepthUpdate, exc: CrossedBookError) -> None:
        self.counters.crossed_books += 1
        st.book.reset()
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
        st.awaiting_ack = True
        st.discarded = 0
        st.book.reset()
        st.last_top = None
        if st.gap is None:
            st.gap = FeedEvent(kind=FeedEventKind.RESUBSCRIBED, ts_start=now, ts_end=None, connection=st.conn,
                               symbols=(st.book.symbol,), channel=st.channel,
                               detail=f"{why}: removeChannel + addChannel, waiting for a full push")
            self._out.append(st.gap)
        if self._resubscribe is not None:
            self._resubscribe(st.conn, Channel(st.book.symbol, ChannelKind.DEPTH))

    def _ack(self, ack: SubscribeAck) -> None:
        if not ack.subscribed:
            return
        entry = self._channels.get(ack.channel)
        if entry is None:
            return
        ch = entry[1]
        st = self._books.get((ch.symbol, ch.kind))
        if st is not None and st.awaiting_ack:
            st.awaiting_ack = False
            st.book.reset()  # the next push on this channel is the full book

    def _error_ack(self, conn: str, ts_recv: datetime, ack: ErrorAck) -> None:
        self.counters.error_acks += 1
        err = ack.error
        entry = self._channels.get(ack.channel)
        symbols = (entry[1].symbol,) if entry else ()
        self._out.append(FeedEvent(
            kind=FeedEventKind.SUBSCRIBE_ERROR, ts_start=ts_recv, ts_end=ts_recv, connection=conn,
            symbols=symbols, channel=ack.channel, detail=f"{err.code}: {err.message_en}"))
        log.error("%s: subscription refused: %s", conn, err)

    def _rejected(self, conn: str, ts_recv: datetime, r: Rejected) -> None:
        self.counters.reject(r.channel, r.reason[:80])
        self._out.append(QuarantinedFrame(ts_recv=ts_recv, connection=conn, reason=r.reason[:500],
                                          payload=r.sample[:QUARANTINE_MAX_BYTES], channel=r.channel))
        self._log_bad(conn, r.reason, r.sample)

    def _malformed(self, conn: str, ts_recv: datetime, frame: Frame, reason: str) -> None:
        self.counters.frames_malformed += 1
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
        elif c.kind is ControlKind.RECORDS:
            self._out.extend(c.records)
        elif c.kind is ControlKind.SHUTDOWN:
            self._shutdown(c)

    def _connected(self, c: Control) -> None:
        # Every incremental book of the connection waits for its addChannel ack: the push
        # after it is the full book (a lost ack is asked again after ACK_PATIENCE updates).
        for name, (conn, ch) in self._channels.items():
            if conn != c.conn or ch.kind is not ChannelKind.DEPTH:
                continue
            st = self._books.get((ch.symbol, ch.kind))
            if st is None:
                st = self._books[(ch.symbol, ch.kind)] = _BookState(OrderBook(ch.symbol), conn, name)
            st.book.reset()
            st.awaiting_ack = True
            st.discarded = 0
            st.last_top = None

    def _disconnected(self, c: Control) -> None:
        symbols = self._conn_symbols.get(c.conn, ())
        if c.conn not in self._gaps:
            kind = FeedEventKind.STALL if c.stall_since is not None else FeedEventKind.DISCONNECTED
            gap = FeedEvent(kind=kind, ts_start=c.stall_since or c.ts, ts_end=None, connection=c.conn,
                            symbols=symbols, detail=c.detail[:500])
            self._gaps[c.conn] = gap
            self._out.append(gap)
        for st in self._books.values():
            if st.conn != c.conn:
                continue
            st.book.reset()
            st.awaiting_ack = False
            st.last_top = None
            if st.gap is None:
                st.gap = FeedEvent(kind=FeedEventKind.BOOK_RESET, ts_start=c.stall_since or c.ts, ts_end=None,
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
        for st in self._books.values():
            st.gap = None
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


class DecodeThread(threading.Thread):
    """Drains the :class:`FrameQueue` into the :class:`FramePipeline`, hands records to the writer queue.

    Ends after a SHUTDOWN control item has been processed (everything queued before
    it is handled first), then closes the record queue.
    """

    def __init__(self, pipeline: FramePipeline, frames: FrameQueue, records: RecordQueue) -> None:
        super().__init__(name="okex-decode", daemon=True)
        self.pipeline = pipeline
        self.frames = frames
        self.records = records
        self.error: BaseException | None = None

    def run(self) -> None:
        pipeline = self.pipeline
        process = pipeline.process_frame
        done = False
        try:
            while not done:
                batch = self.frames.get_batch(0.5)
                if not batch:
                    continue
                oldest = batch[0][1].timestamp()
                for conn, ts, item in batch:
                    if type(item) is Control:
                        pipeline.control(item)
                        if item.kind is ControlKind.SHUTDOWN:
                            done = True
                    else:
                        process(conn, ts, item)  # type: ignore[arg-type]
                out = pipeline.take()
                if out:
                    self.records.put(out, oldest)
        except BaseException as exc:  # pragma: no cover - a bug: report it, let the app stop
            self.error = exc
            log.exception("decode stage failed")
        finally:
            self.records.close()


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
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


class WriterThread(threading.Thread):
    """The one thread that calls the (synchronous) storage writer: batches, write, flush, close.

    Writes when ``batch_size`` rows are gathered or ``flush_interval`` s have passed,
    flushing after every write. Ends at the record queue's end marker: writes and
    flushes everything left, then closes the writer.
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
        oldest = 0.0
        deadline = time.monotonic() + self.flush_interval
        try:
            while True:
                item = self.records.get(max(0.0, deadline - time.monotonic()))
                if item is None:
                    break
                if item is not False:
                    batch, recv = item  # type: ignore[misc]
                    if not pending:
                        oldest = recv
                    pending.extend(batch)
                if pending and (len(pending) >= self.batch_size or time.monotonic() >= deadline):
                    self._write(pending, oldest)
                    pending = []
                if time.monotonic() >= deadline:
                    deadline = time.monotonic() + self.flush_interval
            if pending:
                self._write(pending, oldest)
        finally:
            if self.close_writer:
                try:
                    self.writer.close()
                except RecorderError as exc:
                    self.counters.errors += 1
                    self.counters.last_error = str(exc)
                    log.error("closing the storage writer failed: %s", exc)
            self.finished.set()

    def _write(self, records: list[Record], oldest: float) -> None:
        c = self.counters
        try:
            self.writer.write(records)
            self.writer.flush()
        except RecorderError as exc:
            # The storage writer keeps what it could not store (memory, then its journal)
            # and retries on the next flush; here it is counted and reported.
            c.errors += 1
            c.last_error = str(exc)
            log.error("storage write failed (kept by the writer, retried on the next flush): %s", exc)
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
