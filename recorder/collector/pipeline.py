"""The collector's pipeline: received frames -> decode -> books -> snapshots -> the storage writer.

Two stages, one bounded queue (docs/collector.md "Pipeline")::

    connections + Intake (asyncio thread)                     --RecordQueue-->  WriterThread
      stamp ts_recv, decode, books, snapshots, feed events,     (rows, age)       batches, StorageWriter
      accounting; hand records over in batches                                    write + flush

:class:`FramePipeline` routes frames and control events to the venues' sans-I/O sessions
(:class:`recorder.venue.Session`, one per connection), which own the order books, the
feed-event spans and the messages to send; it adds the control events and the accounting. :class:`Intake`
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from recorder.errors import RecorderError
from recorder.records import (
    Balance,
    BookSnapshot,
    Deal,
    FeedEvent,
    FeedEventKind,
    Fill,
    Instrument,
    Kline,
    Order,
    OrderStatusChange,
    QuarantinedFrame,
    Record,
    Ticker,
    utc_now,
)
from recorder.venue import (
    FRAME_DATA,
    FRAME_PONG,
    FRAME_TAKEN,
    AuditOutcome,
    ConnectionPlan,
    FeedCounters,
    Frame,
    Session,
    Venue,
)

__all__ = [
    "BOOKKEEPING_TABLES",
    "FRAME_DATA",
    "FRAME_PONG",
    "FRAME_TAKEN",
    "AuditOutcome",
    "Control",
    "ControlKind",
    "FeedCounters",
    "FeedEventTally",
    "FramePipeline",
    "Intake",
    "RecordQueue",
    "RecordWriter",
    "WriterThread",
    "run_in_process",
    "table_of",
]

log = logging.getLogger("recorder.collector")


class ControlKind(enum.Enum):
    """What a :class:`Control` event (handed to :meth:`FramePipeline.control`) says."""

    CONNECTED = "connected"  # a connection opened: its session subscribes (a clean boundary)
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
        try:  # the writer thread may take the last batch between a look and the index: no lock
            return time.time() - self._batches[0][1] > self.max_age
        except IndexError:
            return False

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


# --- the core: sessions by connection ------------------------------------------------------------


_TABLE_OF: dict[type, str] = {
    Ticker: "tickers", BookSnapshot: "book_snapshots", Deal: "deals", Kline: "klines",
    FeedEvent: "feed_events", QuarantinedFrame: "quarantine", Balance: "balances", Order: "orders",
    OrderStatusChange: "order_status_changes", Instrument: "instruments", Fill: "fills",
}


BOOKKEEPING_TABLES = frozenset({"feed_events", "quarantine"})
"""Tables of rows about the recording (gaps, instants, bad input), not recorded data."""


def table_of(record: Record) -> str:
    """The storage table a record goes to (for accounting)."""
    return _TABLE_OF.get(type(record), type(record).__name__.lower())


def _instrument_state(i: Instrument) -> tuple[Any, ...]:
    """An instrument's state: every field but the receive time."""
    return (i.base, i.quote, i.tick_size, i.lot_size, i.min_size, i.state, i.inst_type, i.ts_listed,
            i.ts_expiry)


INSTANT_KINDS = frozenset({
    FeedEventKind.CONNECTED, FeedEventKind.CROSSED_BOOK, FeedEventKind.SUBSCRIBE_ERROR,
    FeedEventKind.MALFORMED_FRAME, FeedEventKind.AUTH_FAILURE, FeedEventKind.RATE_LIMITED,
    FeedEventKind.SHUTDOWN,
})  # fmt: skip
"""Feed-event kinds that are instants (``ts_end == ts_start``, one row); the others are spans."""


class FeedEventTally:
    """The feed events a run produced, each counted once (docs/collector.md "Gaps").

    A span is written when it opens (``ts_end`` None) and again, same ``event_id``, when it
    closes: two rows in Parquet, one in SQL, one event here. ``spans`` and ``instants`` map a
    kind's value to its events; ``open`` is the spans written open and not yet closed;
    ``open_at_stop`` the spans open when the stop began (:meth:`mark_stop`; None before), which
    the stop then wrote closed (detail ``(still open at shutdown)``).
    """

    __slots__ = ("_open", "instants", "open_at_stop", "spans")

    def __init__(self) -> None:
        self.spans: dict[str, int] = {}
        self.instants: dict[str, int] = {}
        self._open: set[str] = set()
        self.open_at_stop: int | None = None

    @property
    def open(self) -> int:
        return len(self._open)

    def add(self, event: FeedEvent) -> None:
        """Count one feed-event row: a new event, or the closing row of an open span."""
        eid = event.event_id
        if event.ts_end is None:
            if eid not in self._open:
                self._open.add(eid)
                self.spans[event.kind.value] = self.spans.get(event.kind.value, 0) + 1
            return
        if eid in self._open:
            self._open.discard(eid)
            return
        counts = self.instants if event.kind in INSTANT_KINDS else self.spans  # a span written closed
        counts[event.kind.value] = counts.get(event.kind.value, 0) + 1

    def mark_stop(self, elsewhere: int = 0) -> None:
        """The stop begins: remember how many spans are open now (``elsewhere``: open spans not
        counted here, e.g. store outages, which the storage writer writes itself)."""
        self.open_at_stop = len(self._open) + elsewhere


class FramePipeline:
    """Frames and control events in, records out: the venues' sessions, by connection name.

    Every connection has one :class:`~recorder.venue.Session` (its venue's protocol core:
    decode, books, snapshots, feed events, the messages to send); all of them append to one
    record list (:meth:`take`) and count into one :class:`~recorder.venue.FeedCounters`
    (:attr:`counters`). This class adds what is the same for every venue: routing by
    connection, control events, the SHUTDOWN event, records from other producers (the poller,
    the book auditor), per-table accounting and the run's feed events counted once each
    (:attr:`feed_events`, a :class:`FeedEventTally`). Not thread-safe: one thread calls
    :meth:`process_frame`, :meth:`control`, :meth:`take` and the audit methods.

    :meth:`add` opens the sessions of a venue's plans; with ``default=True`` a frame on a
    connection without a session opens one of that venue with no channels (benchmarks and
    tests feed frames without planning connections).
    """

    def __init__(self) -> None:
        self.counters = FeedCounters()
        self.feed_events = FeedEventTally()
        # (venue, symbol) -> the last state stored or written (seed_instruments, then every one taken)
        self.instrument_states: dict[tuple[str, str], Instrument] = {}
        self.instruments_unchanged = 0  # Instrument records not written: equal to that last state
        self.sessions: dict[str, Session] = {}
        self._out: list[Record] = []
        self._default: tuple[Venue, Any] | None = None

    @classmethod
    def for_venue(cls, venue: Venue, settings: Any, plans: Sequence[ConnectionPlan] | None = None
                  ) -> FramePipeline:
        """A pipeline with the sessions of ``venue`` (``plans``, default: the venue's own plan)."""
        pipeline = cls()
        pipeline.add(venue, settings, plans, default=True)
        return pipeline

    def add(self, venue: Venue, settings: Any, plans: Sequence[ConnectionPlan] | None = None, *,
            default: bool = False) -> list[Session]:
        """Open a session for each of ``plans`` (default: ``venue.plan_connections(settings)``)."""
        if plans is None:
            plans = venue.plan_connections(settings)
        opened = []
        for plan in plans:
            if plan.name in self.sessions:
                raise RecorderError(f"two connections named {plan.name!r}")
            session = venue.open_session(plan, settings, self._out, self.counters)
            self.sessions[plan.name] = session
            opened.append(session)
        if default:
            self._default = (venue, settings)
        return opened

    def session(self, conn: str) -> Session:
        """The session of connection ``conn`` (opened with the default venue when there is none)."""
        session = self.sessions.get(conn)
        if session is None:
            if self._default is None:
                raise RecorderError(f"no session for connection {conn!r}")
            venue, settings = self._default
            plan = ConnectionPlan(venue=venue.name, name=conn, url="", channels=())
            session = self.sessions[conn] = venue.open_session(plan, settings, self._out, self.counters)
        return session

    # -- output ------------------------------------------------------------------------------------

    def take(self) -> list[Record]:
        """The records produced since the last call (the caller owns the list), less any
        :class:`~recorder.records.Instrument` equal to the last state stored or written of its
        instrument (counted in :attr:`instruments_unchanged`; see :meth:`seed_instruments`)."""
        out = self._out
        if not out:
            return []
        taken = out[:]
        out.clear()
        rows = self.counters.rows_out
        tally = self.feed_events
        unchanged: set[int] | None = None
        for r in taken:
            kind = type(r)
            if kind is Instrument and not self._instrument_changed(r):  # type: ignore[arg-type]
                unchanged = unchanged or set()
                unchanged.add(id(r))
                continue
            t = _TABLE_OF.get(kind) or table_of(r)
            rows[t] = rows.get(t, 0) + 1
            if kind is FeedEvent:
                tally.add(r)  # type: ignore[arg-type]
        if unchanged:
            self.instruments_unchanged += len(unchanged)
            taken = [r for r in taken if id(r) not in unchanged]
        return taken

    def seed_instruments(self, stored: Iterable[Instrument]) -> None:
        """The last stored state of each instrument (as
        :func:`recorder.poller.state.load_instrument_states` reads it): a state equal to it is not
        written again (after a restart, a reconnect, on a second connection, or seen by the poller)."""
        for inst in stored:
            self.instrument_states[(inst.venue, inst.symbol)] = inst

    def _instrument_changed(self, inst: Instrument) -> bool:
        """Whether ``inst`` differs from the last state stored or written of its instrument (every
        field but ``ts_recv``); remembers it when it does."""
        key = (inst.venue, inst.symbol)
        last = self.instrument_states.get(key)
        if last is not None and _instrument_state(last) == _instrument_state(inst):
            return False
        self.instrument_states[key] = inst
        return True

    def emit(self, record: Record) -> None:
        """Add a record produced beside the frames (the book auditor's feed events)."""
        self._out.append(record)

    def open_spans(self) -> list[FeedEvent]:
        """Feed-event spans open right now (connection gaps, book resets, refused subscriptions)."""
        return [span for session in self.sessions.values() for span in session.open_spans()]

    def refused_subscriptions(self) -> dict[str, int]:
        """Channels refused and not delivering yet -> refusals so far (for the status)."""
        out: dict[str, int] = {}
        for session in self.sessions.values():
            out.update(session.refused_subscriptions())
        return dict(sorted(out.items()))

    # -- frames and control ------------------------------------------------------------------------

    def process_frame(self, conn: str, ts_recv: datetime, frame: Frame) -> int:
        """Hand one frame received on ``conn`` at ``ts_recv`` to its session.

        Returns :data:`~recorder.venue.FRAME_TAKEN` or'ed with ``FRAME_PONG`` / ``FRAME_DATA``
        (the connection's liveness watch uses them: a pong is what the venue's decoder says it is).
        """
        session = self.sessions.get(conn) or self.session(conn)
        return session.receive(frame, ts_recv)

    def pong_only(self, conn: str, frame: Frame) -> bool:
        """Whether ``frame`` holds only pongs (counted in ``pong_frames`` when it does)."""
        if self.session(conn).pong_only(frame):
            self.counters.pong_frames += 1
            return True
        return False

    def control(self, c: Control) -> None:
        """Handle a control event (see :class:`ControlKind`)."""
        if c.kind is ControlKind.DISCONNECTED:
            self.session(c.conn).closed(c.ts, c.detail, stall_since=c.stall_since, dead_since=c.dead_since)
        elif c.kind is ControlKind.CONNECTED:
            self.session(c.conn).start(c.ts, c.detail)
        elif c.kind is ControlKind.RECORDS:
            self._out.extend(c.records)
        elif c.kind is ControlKind.SHUTDOWN:
            for session in self.sessions.values():
                session.stop(c.ts)
            self._out.append(FeedEvent(kind=FeedEventKind.SHUTDOWN, ts_start=c.ts, ts_end=c.ts,
                                       connection=c.conn, detail=c.detail))

    # -- the book audit (driven by recorder.collector.audit.BookAuditor) ------------------------------

    def audit_candidates(self, *, periodic: bool, venue: str | None = None) -> list[tuple[str, int]]:
        """``(symbol, epoch)`` of the books to audit now, over the sessions (of ``venue``) that audit."""
        out: list[tuple[str, int]] = []
        for session in self.sessions.values():
            if venue is not None and session.plan.venue != venue:
                continue
            candidates = getattr(session, "audit_candidates", None)
            if candidates is not None:
                out.extend(candidates(periodic=periodic))
        return out

    def audit_book(self, symbol: str, epoch: int, sent: datetime, answered: datetime, slack: timedelta,
                   rest: BookSnapshot, now: datetime, venue: str | None = None) -> AuditOutcome:
        """Compare the REST book ``rest`` with the book of ``symbol`` (the session holding it decides)."""
        for session in self.sessions.values():
            if venue is not None and session.plan.venue != venue:
                continue
            audit = getattr(session, "audit_book", None)
            if audit is None:
                continue
            outcome: AuditOutcome | None = audit(symbol, epoch, sent, answered, slack, rest, now)
            if outcome is not None:
                return outcome
        audits = self.counters.audits
        audits["void"] = audits.get("void", 0) + 1
        return AuditOutcome("void", "book reset or rebuilt meanwhile")

    # -- accounting --------------------------------------------------------------------------------

    def accounting(self) -> dict[str, dict[str, Any]]:
        """Per channel: ``received`` = ``accepted`` + sum(``rejected`` by reason)."""
        out: dict[str, dict[str, Any]] = {}
        sessions = list(self.sessions.values())
        for key, n in list(self.counters.accepted.items()):
            name = None
            for session in sessions:
                name = session.channel_name(key)
                if name is not None:
                    break
            if name is None:
                name = f"{key[0].__name__.lower()}:{key[1]}"
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
            if self.pipeline.pong_only(conn, frame):
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
    # seconds from receipt of a batch's oldest frame to its flush, over batches holding recorded
    # data (a batch of feed events or quarantine rows alone is not data arriving)
    lag_batches: int = 0  # batches whose lag was taken (0: no data written yet; lag_last means nothing)
    lag_last: float = 0.0
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

    Rows count as written, and a batch's receive -> durable lag is taken (for a batch holding
    recorded data, not feed events or quarantine rows alone), only once the batch is durable:
    for a writer whose flush leaves its newest batches in flight (``in_flight_window``, the
    writer process) that is a later flush, an idle moment (the thread then waits for them
    with ``wait_durable``) or the close.
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
        self._window: int = getattr(writer, "in_flight_window", 0)
        self._in_flight: deque[tuple[dict[str, int], float]] = deque()  # flushed, not yet durable

    def run(self) -> None:
        pending: list[Record] = []
        due = float("inf")  # epoch seconds by which the pending rows must be written
        oldest = 0.0
        try:
            while True:
                timeout = max(0.0, due - time.time()) if pending else self.flush_interval
                batches, closed = self.records.get_rows(self.batch_size - len(pending), timeout)
                if not batches and not pending and self._in_flight:
                    self._settle()  # idle: wait until the batches in flight are durable
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
                self._confirm(0)  # closed: durable, or kept by the writer for the next start
            self.finished.set()

    def _settle(self) -> None:
        wait = getattr(self.writer, "wait_durable", None)
        if wait is None:  # pragma: no cover - a writer with a window has wait_durable
            return
        try:
            wait()
        except RecorderError as exc:
            self.counters.errors += 1
            self.counters.last_error = str(exc)
            log.error("storage write failed (kept by the writer, retried on the next flush): %s", exc)
            return
        self._confirm(0)

    def _confirm(self, keep: int) -> None:
        """Count the flushed batches as written, all but the newest ``keep`` (still in flight)."""
        c = self.counters
        rows = c.rows_written
        now = time.time()
        while len(self._in_flight) > keep:
            counts, oldest = self._in_flight.popleft()
            data = False
            for t, n in counts.items():
                rows[t] = rows.get(t, 0) + n
                data = data or t not in BOOKKEEPING_TABLES
            if not data:
                continue  # only rows about the recording: their lag is no lag of data
            c.lag_batches += 1
            lag = now - oldest
            c.lag_last = lag
            c.lag_max = max(c.lag_max, lag)
            c.latencies.append(lag)

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
        counts: dict[str, int] = {}
        for r in records:
            t = _TABLE_OF.get(type(r)) or table_of(r)
            counts[t] = counts.get(t, 0) + 1
        self._in_flight.append((counts, oldest))
        self._confirm(self._window)



# --- in process (benchmarks, tests) -------------------------------------------------------------------


def run_in_process(
    frames: Iterable[tuple[str, datetime, Frame]],
    writer: RecordWriter,
    pipeline: FramePipeline,
    *,
    batch_frames: int = 2000,
    close: bool = True,
) -> FramePipeline:
    """Push ``(conn, ts_recv, frame)`` items through ``pipeline`` (its sessions) -> ``writer``.

    No sockets and no threads: every ``batch_frames`` frames the records produced
    are written and flushed. Returns the pipeline (its counters and accounting).
    """
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
