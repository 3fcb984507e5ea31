"""One WebSocket connection to the exchange, owning a share of the subscriptions.

A thin I/O shell (PROTOCOL.md "WebSocket"): connect, subscribe in batches (a JSON
list of ``addChannel`` objects, ``"binary": "1"`` when compression is asked for),
send ``{"event": "ping"}`` every ``ping_interval`` s, and hand every frame, stamped
with its UTC receive time, to the :class:`~recorder.collector.pipeline.Intake`, which
decodes it in this (the event loop's) thread. The shell never looks at a frame's
text: whether a frame was a pong (or data) is what the decoder found
(``FRAME_PONG`` / ``FRAME_DATA``), so the liveness watch and the decoder share one
definition of a pong, and a binary frame is inflated once, by the decoder.

Subscriptions the pipeline asks for again (a refused ``addChannel``, a book to rebuild
with ``removeChannel`` + ``addChannel``) are paced per channel with the one backoff
(:func:`recorder.backoff.backoff`, the reconnect policy) and coalesced while one is
pending; a channel that delivers again starts from the backoff's first delay.

The connection is dead when no pong arrives within ``pong_timeout`` after a ping,
when no data arrives for ``stall_timeout``, when the server closes it, or when the
writer is behind (the backpressure policy, docs/collector.md). It is then
replaced, forever, with :func:`recorder.backoff.backoff` between attempts, and
everything is subscribed again. Every loss is announced to the pipeline
(``Control(DISCONNECTED)``), which records the gap and throws the books away.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import websockets
from websockets.asyncio.client import ClientConnection, connect

from recorder.backoff import BackoffPolicy, backoff
from recorder.collector.pipeline import FRAME_DATA, FRAME_PONG, Control, ControlKind, Intake
from recorder.errors import TransportError
from recorder.records import utc_now
from recorder.venues.okex_v1.channels import Channel

__all__ = [
    "Connection", "ConnectionSettings", "ConnectionState", "ConnectionSubscriptions", "subscribe_messages",
]

log = logging.getLogger("recorder.collector")

MAX_FRAME_BYTES = 16 * 1024 * 1024
_ONE_US = timedelta(microseconds=1)


class ConnectionState(enum.Enum):
    CONNECTING = "connecting"
    SUBSCRIBING = "subscribing"
    RECEIVING = "receiving"
    WAITING = "waiting"  # backing off before the next attempt
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """The ``[collector]`` keys a connection uses."""

    url: str
    subscribe_batch: int = 50
    compress: bool = False
    ping_interval: float = 30.0
    pong_timeout: float = 10.0
    stall_timeout: float = 60.0
    connect_timeout: float = 10.0
    backoff: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(initial=0.5, cap=30.0))


@dataclass(slots=True)
class ConnectionCounters:
    frames: int = 0
    bytes: int = 0
    pongs: int = 0
    dropped: int = 0  # frames dropped because the writer was behind (record queue full)
    connects: int = 0
    reconnects: int = 0  # connection losses
    last_error: str = ""


def subscribe_messages(channels: Sequence[Channel], batch: int, *, compress: bool, event: str = "addChannel"
                       ) -> Iterator[str]:
    """The text frames that subscribe ``channels``: JSON lists of at most ``batch`` objects."""
    for i in range(0, len(channels), batch):
        objs: list[dict[str, str]] = []
        for ch in channels[i:i + batch]:
            obj = {"event": event, "channel": ch.name}
            if compress:
                obj["binary"] = "1"
            objs.append(obj)
        yield json.dumps(objs, separators=(",", ":"))


class _Dead(Exception):
    """Internal: the watchdog found the connection dead (reason in args[0])."""

    def __init__(self, reason: str, stall_since: float | None = None,
                 dead_since: datetime | None = None) -> None:
        super().__init__(reason)
        self.stall_since = stall_since
        self.dead_since = dead_since  # ts_recv of the last frame received (the gap starts there)


class Connection:
    """One WebSocket connection: its channels, its liveness watch, its reconnect loop.

    ``name`` labels feed events and logs (``ws-0``…). Call :meth:`run` as a task;
    it returns when ``stop`` is set. :meth:`resubscribe` may be called from any
    thread (it hops onto the connection's event loop).
    """

    def __init__(self, name: str, channels: Sequence[Channel], settings: ConnectionSettings,
                 intake: Intake) -> None:
        self.name = name
        self.channels = tuple(channels)
        self.settings = settings
        self.intake = intake
        self.counters = ConnectionCounters()
        self.state = ConnectionState.CONNECTING
        self._ws: ClientConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._overflow = False
        self._session_data = False
        self._last_pong = time.monotonic()
        self._last_data_mono = time.monotonic()
        self._last_ts = datetime.fromtimestamp(0, UTC)
        self._session_ts = self._last_ts  # when the current session started reading
        self._last_data_ts: datetime | None = None  # receive time of the last data frame
        self.failed_connects = 0  # consecutive attempts that could not connect (repeats are logged at DEBUG)
        self._delays: dict[str, Iterator[float]] = {}  # channel -> its backoff (requests again)
        self._pending: dict[str, tuple[ClientConnection, bool]] = {}  # channel -> (ws, remove first)
        self._tasks: set[asyncio.Future[None]] = set()
        self._replace_reason: str | None = None

    @property
    def last_data(self) -> float | None:
        """``time.time()`` of the last data frame (None before the first)."""
        ts = self._last_data_ts
        return None if ts is None else ts.timestamp()

    # -- called from the pipeline (the loop's thread) ----------------------------------------------

    def resubscribe(self, channel: Channel) -> None:
        """Send ``removeChannel`` then ``addChannel`` for ``channel``, paced by the backoff (thread-safe).

        Once sent, ``Control(RESUBSCRIBE_SENT, channel=…)`` tells the pipeline, in order
        with the frames, that the server's removeChannel ack is now the boundary.
        """
        self._threadsafe(lambda: self._request(channel, remove_first=True))

    def subscribe(self, channel: Channel) -> None:
        """Send ``addChannel`` for ``channel`` again (it was refused), paced by the backoff (thread-safe)."""
        self._threadsafe(lambda: self._request(channel, remove_first=False))

    def healthy(self, channel: Channel) -> None:
        """``channel`` delivers: its next request starts from the backoff's first delay (thread-safe)."""
        self._threadsafe(lambda: self._delays.pop(channel.name, None))

    def replace(self, reason: str) -> None:
        """Close this connection and open a new one (a clean subscription boundary; thread-safe)."""
        def mark() -> None:
            if self._ws is not None and self._replace_reason is None:
                self._replace_reason = reason
        self._threadsafe(mark)

    def _threadsafe(self, fn: Callable[[], object]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    def _request(self, channel: Channel, *, remove_first: bool) -> None:
        name = channel.name
        pending = self._pending.get(name)
        if pending is not None:  # one request per channel at a time; the stronger one wins, on this socket
            self._pending[name] = (self._ws or pending[0], pending[1] or remove_first)
            return
        ws = self._ws
        if ws is None:
            return  # the next connection subscribes everything anyway
        delays = self._delays.get(name)
        if delays is None:
            delays = self._delays[name] = backoff(self.settings.backoff)
        delay = next(delays)
        self._pending[name] = (ws, remove_first)
        task = asyncio.ensure_future(self._send_request(channel, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_request(self, channel: Channel, delay: float) -> None:
        name = channel.name
        try:
            await asyncio.sleep(delay)
        finally:
            ws, remove_first = self._pending.pop(name, (None, False))
        if ws is None or ws is not self._ws:
            return  # that connection is gone: its successor subscribed everything
        s = self.settings
        events = ("removeChannel", "addChannel") if remove_first else ("addChannel",)
        if remove_first:  # before the send: the server's removeChannel ack can only come after it
            self.intake.control(Control(ControlKind.RESUBSCRIBE_SENT, self.name, utc_now(),
                                        f"removeChannel + addChannel {name}", channel=name))
        try:
            for event in events:
                for text in subscribe_messages([channel], 1, compress=s.compress, event=event):
                    await ws.send(text)
        except websockets.ConnectionClosed:
            return
        if remove_first:
            log.info("%s: resubscribed %s", self.name, name)
        else:  # a refused channel: the pipeline logs the refusals, rate-limited
            log.debug("%s: asked again for %s", self.name, name)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, subscribe, receive; on any failure wait (backoff) and start again, until ``stop``."""
        self._loop = asyncio.get_running_loop()
        delays = backoff(self.settings.backoff)
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
                    delays = backoff(self.settings.backoff)  # it worked for a while: start small again
                delay = next(delays)
                self.state = ConnectionState.WAITING
                log.log(logging.WARNING if self.failed_connects <= 1 else logging.DEBUG,
                        "%s: %s; reconnecting in %.1f s", self.name, reason, delay)
                await self._wait(stop, delay)
        finally:
            self.state = ConnectionState.STOPPED
            for task in list(self._tasks):
                task.cancel()

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
        s = self.settings
        self.state = ConnectionState.CONNECTING
        try:
            ws = await connect(s.url, open_timeout=s.connect_timeout, ping_interval=None, proxy=None,
                               max_size=MAX_FRAME_BYTES, max_queue=256, close_timeout=2)
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            self.failed_connects += 1
            raise TransportError(f"cannot connect to {s.url}: {exc or type(exc).__name__}") from exc
        if self.failed_connects > 1:
            log.warning("%s: connected to %s after %d failed attempts", self.name, s.url,
                        self.failed_connects)
        self.failed_connects = 0
        self._overflow = False
        self._replace_reason = None
        self._ws = ws
        self.counters.connects += 1
        got_data = False
        try:
            self.state = ConnectionState.SUBSCRIBING
            for text in subscribe_messages(self.channels, s.subscribe_batch, compress=s.compress):
                await ws.send(text)
            self.intake.control(Control(ControlKind.CONNECTED, self.name, utc_now(),
                                            f"subscribed {len(self.channels)} channels"))
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
        name = self.name
        counters = self.counters
        self._session_data = False
        self._last_pong = time.monotonic()
        self._last_data_mono = time.monotonic()
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
        s = self.settings
        tick = max(0.05, min(1.0, s.ping_interval / 4, s.pong_timeout / 4, s.stall_timeout / 4))
        last_ping = time.monotonic()
        ping_pending_since: float | None = None
        while True:
            await asyncio.sleep(tick)
            if self._replace_reason is not None:
                raise _Dead(self._replace_reason)
            now = time.monotonic()
            if ping_pending_since is not None and self._last_pong >= ping_pending_since:
                ping_pending_since = None
            if ping_pending_since is not None and now - ping_pending_since > s.pong_timeout:
                # nothing came back since the last frame received: the gap starts there, not now
                heard = max(self._last_ts, self._session_ts)  # last frame received, or the session's start
                raise _Dead(f"no pong within {s.pong_timeout:g} s", dead_since=heard)
            if now - self._last_data_mono > s.stall_timeout:
                since = time.time() - (now - self._last_data_mono)
                raise _Dead(f"stalled: no data for {s.stall_timeout:g} s", stall_since=since)
            if now - last_ping >= s.ping_interval:
                last_ping = now
                if ping_pending_since is None:
                    ping_pending_since = now
                try:
                    await ws.send('{"event":"ping"}')
                except websockets.ConnectionClosed as exc:
                    raise TransportError(f"connection closed: {exc}") from exc


def _to_dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class ConnectionSubscriptions:
    """The pipeline's :class:`~recorder.collector.pipeline.Subscriptions`, routed to connections by name."""

    def __init__(self, connections: Mapping[str, Connection]) -> None:
        self._connections = connections

    def resubscribe(self, conn: str, channel: Channel) -> None:
        self._connections[conn].resubscribe(channel)

    def subscribe(self, conn: str, channel: Channel) -> None:
        self._connections[conn].subscribe(channel)

    def healthy(self, conn: str, channel: Channel) -> None:
        self._connections[conn].healthy(channel)

    def reconnect(self, conn: str, reason: str) -> None:
        self._connections[conn].replace(reason)
