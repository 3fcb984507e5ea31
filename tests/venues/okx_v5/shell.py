"""A minimal connection shell for the okx_v5 venue's tests (the generic collector shell of the
venue seam does the same, with storage; this one keeps the records in a list).

It follows the contract of :mod:`recorder.venue`: connect, ``start``, send ``data_to_send``,
feed every frame with a strictly increasing UTC ``ts_recv``, ping every
``timing.ping_interval``, call ``on_timer``, replace the connection on ``replace_reason``,
``closed`` on every loss, ``stop`` at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import websockets
from websockets.asyncio.client import connect

from recorder.records import Record
from recorder.venue import FRAME_DATA, FRAME_PONG, FeedCounters, get_venue
from recorder.venues.okx_v5.settings import V5VenueSettings
from recorder.venues.okx_v5.venue import V5VenueSession

TIMEOUT = 15.0


class MiniShell:
    """Runs every planned connection of ``settings`` until :meth:`stop`."""

    def __init__(self, settings: V5VenueSettings) -> None:
        venue = get_venue("okx_v5")
        self.out: list[Record] = []
        self.counters = FeedCounters()
        self.sessions: list[V5VenueSession] = [
            venue.open_session(p, settings, self.out, self.counters)  # type: ignore[misc]
            for p in venue.plan_connections(settings)
        ]
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last = datetime.now(UTC)
        self.connects: dict[str, int] = {}
        self.sent: list[tuple[str, str]] = []

    def now(self) -> datetime:
        t = datetime.now(UTC)
        if t <= self._last:
            t = self._last + timedelta(microseconds=1)
        self._last = t
        return t

    def session(self, name_prefix: str) -> V5VenueSession:
        return next(s for s in self.sessions if s.plan.name.startswith(name_prefix))

    async def __aenter__(self) -> MiniShell:
        self._tasks = [asyncio.create_task(self._run(s)) for s in self.sessions]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        now = self.now()
        for s in self.sessions:
            s.stop(now)

    async def _send(self, ws: Any, s: V5VenueSession) -> None:
        for msg in s.data_to_send():
            self.sent.append((s.plan.name, msg if isinstance(msg, str) else msg.decode()))
            await ws.send(msg)

    async def _run(self, s: V5VenueSession) -> None:
        while not self._stop.is_set():
            reason = "closed"
            try:
                async with connect(s.plan.url, ping_interval=None, max_size=2**24) as ws:
                    self.connects[s.plan.name] = self.connects.get(s.plan.name, 0) + 1
                    s.start(self.now())
                    await self._send(ws, s)
                    last_ping = last_data = time.monotonic()
                    ping_out: float | None = None
                    while True:
                        wait = 0.1
                        try:
                            frame = await asyncio.wait_for(ws.recv(), wait)
                        except TimeoutError:
                            frame = None
                        if frame is not None:
                            flags = s.receive(frame, self.now())
                            if flags & FRAME_PONG:
                                ping_out = None
                            if flags & FRAME_DATA:
                                last_data = time.monotonic()
                        mono = time.monotonic()
                        if ping_out is not None and mono - ping_out >= s.timing.pong_timeout:
                            reason = "no pong"
                            break
                        if mono - last_data >= s.timing.stall_timeout:
                            reason = "stall: no data"
                            break
                        s.on_timer(self.now())
                        await self._send(ws, s)
                        if time.monotonic() - last_ping >= s.timing.ping_interval:
                            last_ping = time.monotonic()
                            ping_out = ping_out or last_ping
                            self.sent.append((s.plan.name, "ping"))
                            await ws.send(s.ping())
                        why = s.replace_reason()
                        if why is not None:
                            reason = why
                            break
            except (websockets.ConnectionClosed, OSError) as exc:
                reason = f"connection lost: {exc}"
            if self._stop.is_set():
                return
            s.closed(self.now(), reason)
            await asyncio.sleep(0.05)


async def until(pred: Callable[[], bool], timeout: float = TIMEOUT, what: str = "condition") -> None:
    """Wait (polling) until ``pred()`` holds; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
