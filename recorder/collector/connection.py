"""One WebSocket connection to a venue: the I/O shell around the venue's sans-I/O session.

The shell (docs/collector.md "Connections") knows no venue: it connects to the
:class:`~recorder.venue.ConnectionPlan`'s URL, tells the session (through the
:class:`~recorder.collector.pipeline.Intake`, in order with the frames) that a connection is
open or lost, sends what the session hands out (:meth:`~recorder.venue.Session.data_to_send`:
subscriptions, resubscriptions, retries of refused subscriptions), sends the session's ping
every ``timing.ping_interval`` s, and hands every frame, stamped with a strictly increasing UTC
receive time, to the intake, which decodes it in this (the event loop's) thread. The shell
never looks at a frame's text: whether a frame was a pong (or data) is what the session's
decoder found (``FRAME_PONG`` / ``FRAME_DATA``), and a binary frame is inflated once, there.

The connection is dead when no pong arrives within ``pong_timeout`` after a ping, when no data
arrives for ``stall_timeout``, when the server closes it, when the session asks for a clean
boundary (:meth:`~recorder.venue.Session.replace_reason`), or when the writer is behind (the
backpressure policy, docs/collector.md). It is then replaced, forever, with
:func:`recorder.backoff.backoff` between attempts, and the session subscribes everything again.
Every loss is announced to the session (``Control(DISCONNECTED)``), which records the gap and
throws its books away.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import websockets
from websockets.asyncio.client import ClientConnection, connect

from recorder.backoff import BackoffPolicy, backoff
from recorder.collector.pipeline import FRAME_DATA, FRAME_PONG, Control, ControlKind, Intake
from recorder.errors import TransportError
from recorder.records import utc_now
from recorder.venue import Session

__all__ = ["Connection", "ConnectionState"]

log = logging.getLogger("recorder.collector")

_ONE_US = timedelta(microseconds=1)


class ConnectionState(enum.Enum):
    CONNECTING = "connecting"
    SUBSCRIBING = "subscribing"
    RECEIVING = "receiving"
    WAITING = "waiting"  # backing off before the next attempt
    STOPPED = "stopped"


@dataclass(slots=True)
class ConnectionCounters:
    frames: int = 0
    bytes: int = 0
    pongs: int = 0
    dropped: int = 0  # frames dropped because the writer was behind (record queue full)
    connects: int = 0
    reconnects: int = 0  # connection losses
    last_error: str = ""


def first_overdue(now: float, *, pong_due: float | None, stall_due: float) -> str | None:
    """Which keep-alive deadline names the gap at ``now`` (monotonic seconds): ``"pong"`` (a ping
    unanswered by ``pong_due``), ``"stall"`` (no data by ``stall_due``) or None (neither passed).

    Both can have passed by the time the watch wakes (a ping sent just after the last data and
    never answered, as when a server stalls): the deadline that passed first names it, so a
    stall is not recorded as a dead connection because the timer woke late, nor the reverse."""
    stall = now > stall_due
    if pong_due is not None and now > pong_due:
        return "stall" if stall and stall_due <= pong_due else "pong"
    return "stall" if stall else None


class _Dead(Exception):
    """Internal: the watchdog found the connection dead (reason in args[0])."""

    def __init__(self, reason: str, stall_since: float | None = None,
                 dead_since: datetime | None = None) -> None:
        super().__init__(reason)
        self.stall_since = stall_since
        self.dead_since = dead_since  # ts_recv of the last frame received (the gap starts there)


class Connection:
    """One WebSocket connection: its session, its liveness watch, its reconnect loop.

    ``session`` (the venue's :class:`~recorder.venue.Session` for this connection) names it
    (``plan.name`` labels feed events and logs) and gives its URL and timing; ``url`` overrides
    the plan's. Call :meth:`run` as a task; it returns when ``stop`` is set.
    """

    def __init__(self, session: Session, intake: Intake, *, url: str | None = None) -> None:
        self.session = session
        self.name = session.plan.name
        self.url = url or session.plan.url
        self.timing = session.timing
        self.intake = intake
        self.policy = BackoffPolicy(initial=self.timing.reconnect_initial,
                                    cap=max(self.timing.reconnect_cap, self.timing.reconnect_initial))
        self.counters = ConnectionCounters()
        self.state = ConnectionState.CONNECTING
        self._ws: ClientConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._armed: datetime | None = None  # the deadline the watch sleeps towards
        self._overflow = False
        self._session_data = False
        self._last_pong = time.monotonic()
        self._last_data_mono = time.monotonic()
        self._last_frame_mono = time.monotonic()  # last frame of any kind (ping_when_idle)
        self._last_ts = datetime.fromtimestamp(0, UTC)
        self._session_ts = self._last_ts  # when the current session started reading
        self._last_data_ts: datetime | None = None  # receive time of the last data frame
        self.failed_connects = 0  # consecutive attempts that could not connect (repeats are logged at DEBUG)

    @property
    def channels(self) -> tuple[str, ...]:
        """The venue's channel names this connection carries."""
        return self.session.plan.channels

    @property
    def last_data(self) -> float | None:
        """``time.time()`` of the last data frame (None before the first)."""
        ts = self._last_data_ts
        return None if ts is None else ts.timestamp()

    def wake(self) -> None:
        """The session may have something to send or a new deadline (call in the loop's thread)."""
        if self._wake is not None:
            self._wake.set()

    async def _flush(self, ws: ClientConnection) -> None:
        """Send what the session hands out, in order."""
        for message in self.session.data_to_send():
            await ws.send(message)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, subscribe, receive; on any failure wait (backoff) and start again, until ``stop``."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        delays = backoff(self.policy)
        try:
            while not stop.is_set():
                got_data = False
                try:
                    got_data = await self._session(stop)
                    if stop.is_set():
                        break
                    reason, stall_since, dead_since = "server closed the connection", None, None
                except _Dead as dead:
                    reason, stall_since, dead_since = str(dead), dead.stall_since, dead.dead_since
                except TransportError as exc:
                    reason, stall_since, dead_since = str(exc), None, None
                finally:
                    self._ws = None
                if stop.is_set():
                    break
                self.counters.reconnects += 1
                self.counters.last_error = reason
                self.intake.control(Control(
                    ControlKind.DISCONNECTED, self.name, utc_now(), reason,
                    stall_since=None if stall_since is None else _to_dt(stall_since),
                    dead_since=dead_since))
                if got_data:
                    delays = backoff(self.policy)  # it worked for a while: start small again
                delay = next(delays)
                self.state = ConnectionState.WAITING
                log.log(logging.WARNING if self.failed_connects <= 1 else logging.DEBUG,
                        "%s: %s; reconnecting in %.1f s", self.name, reason, delay)
                await self._wait(stop, delay)
        finally:
            self.state = ConnectionState.STOPPED

    async def _wait(self, stop: asyncio.Event, delay: float) -> None:
        deadline = time.monotonic() + delay
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            q = self.intake.records
            if self._overflow and (q.rows > q.max_rows // 2 or q.age() > q.max_age / 2):
                remaining = max(remaining, 0.05)  # backpressure: wait for the queue to drain to half
            elif remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(remaining, 0.5))
        self._overflow = False

    async def _session(self, stop: asyncio.Event) -> bool:
        """One connection's life; returns whether any data arrived. Raises _Dead / TransportError."""
        t = self.timing
        url = self.url
        self.state = ConnectionState.CONNECTING
        try:
            ws = await connect(url, open_timeout=t.connect_timeout, ping_interval=None, proxy=None,
                               max_size=t.max_frame_bytes, max_queue=256, close_timeout=2)
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            self.failed_connects += 1
            raise TransportError(f"cannot connect to {url}: {exc or type(exc).__name__}") from exc
        if self.failed_connects > 1:
            log.warning("%s: connected to %s after %d failed attempts", self.name, url,
                        self.failed_connects)
        self.failed_connects = 0
        self._overflow = False
        self._ws = ws
        self.counters.connects += 1
        got_data = False
        try:
            self.state = ConnectionState.SUBSCRIBING
            # the session queues its subscriptions (a clean boundary for every book on it)
            self.intake.control(Control(ControlKind.CONNECTED, self.name, utc_now()))
            await self._flush(ws)
            self.state = ConnectionState.RECEIVING
            watchdog = asyncio.ensure_future(self._watch(ws))
            stopper = asyncio.ensure_future(stop.wait())
            reader = asyncio.ensure_future(self._read(ws))
            try:
                done, _ = await asyncio.wait({watchdog, stopper, reader}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (watchdog, stopper, reader):
                    task.cancel()
                await asyncio.gather(watchdog, stopper, reader, return_exceptions=True)
            got_data = self.last_data is not None and self._session_data
            if stopper in done:
                return got_data
            for task in (watchdog, reader):
                if task in done and not task.cancelled() and task.exception() is not None:
                    failure = task.exception()
                    if isinstance(failure, _Dead | TransportError):
                        raise failure
                    raise TransportError(f"connection failed: {failure}") from failure
            return got_data
        except websockets.ConnectionClosed as exc:
            raise TransportError(f"connection closed: {exc}") from exc
        finally:
            await ws.close()

    async def _read(self, ws: ClientConnection) -> None:
        intake = self.intake
        take = intake.frame
        session = self.session
        outgoing = session.data_to_send
        deadline = session.next_deadline
        wake = self._wake
        name = self.name
        counters = self.counters
        self._session_data = False
        self._last_pong = time.monotonic()
        self._last_data_mono = time.monotonic()
        self._last_frame_mono = time.monotonic()
        self._session_ts = utc_now()
        last_ts = self._last_ts
        now = utc_now
        mono = time.monotonic
        try:
            async for frame in ws:
                ts = now()
                if ts <= last_ts:  # strictly increasing per connection: ts_recv is part of row keys
                    ts = last_ts + _ONE_US
                self._last_ts = last_ts = ts
                self._last_frame_mono = mono()
                counters.frames += 1
                counters.bytes += len(frame)
                flags = take(name, ts, frame)
                if not flags:
                    counters.dropped += 1
                    self._overflow = True
                    records = self.intake.records
                    raise _Dead(f"backpressure: the writer is behind ({records.rows} rows queued, "
                                f"oldest received {records.age():.1f} s ago), frame dropped")
                if flags & FRAME_PONG:
                    self._last_pong = mono()
                messages = outgoing()
                if messages:  # e.g. a resubscription the frame called for
                    for message in messages:
                        await ws.send(message)
                if wake is not None:
                    due = deadline()
                    if due is not None and (self._armed is None or due < self._armed):
                        wake.set()  # a new paced request: the watch sends it when due
                if not flags & FRAME_DATA:
                    counters.pongs += 1  # frames holding only pongs (a pong inside a data frame is data)
                    continue
                self._last_data_mono = mono()
                self._last_data_ts = ts
                self._session_data = True
                if intake.behind:
                    await intake.yield_to_writer()
        except websockets.ConnectionClosed as exc:
            raise TransportError(f"connection closed: {exc}") from exc

    async def _watch(self, ws: ClientConnection) -> None:
        t = self.timing
        session = self.session
        wake = self._wake
        assert wake is not None
        tick = max(0.05, min(1.0, t.ping_interval / 4, t.pong_timeout / 4, t.stall_timeout / 4))
        last_ping = time.monotonic()
        ping_pending_since: float | None = None
        while True:
            sleep = tick
            due = self._armed = session.next_deadline()
            if due is not None:
                sleep = min(tick, max(0.0, (due - utc_now()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=sleep)
            wake.clear()
            reason = session.replace_reason()
            if reason is not None:
                raise _Dead(reason)
            session.on_timer(utc_now())
            try:
                await self._flush(ws)
            except websockets.ConnectionClosed as exc:
                raise TransportError(f"connection closed: {exc}") from exc
            now = time.monotonic()
            if ping_pending_since is not None and self._last_pong >= ping_pending_since:
                ping_pending_since = None
            pong_due = None if ping_pending_since is None else ping_pending_since + t.pong_timeout
            overdue = first_overdue(now, pong_due=pong_due, stall_due=self._last_data_mono + t.stall_timeout)
            if overdue == "pong":
                # nothing came back since the last frame received: the gap starts there, not now
                heard = max(self._last_ts, self._session_ts)  # last frame received, or the session's start
                raise _Dead(f"no pong within {t.pong_timeout:g} s", dead_since=heard)
            if overdue == "stall":
                since = time.time() - (now - self._last_data_mono)
                raise _Dead(f"stalled: no data for {t.stall_timeout:g} s", stall_since=since)
            if t.ping_when_idle:
                last_ping = max(last_ping, self._last_frame_mono)  # heard from the server: not idle
            if now - last_ping >= t.ping_interval:
                last_ping = now
                if ping_pending_since is None:
                    ping_pending_since = now
                try:
                    await ws.send(session.ping())
                except websockets.ConnectionClosed as exc:
                    raise TransportError(f"connection closed: {exc}") from exc


def _to_dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
