"""The venue-neutral poll loop: scheduling, rate limiting, the one backoff, ban and auth spans.

A venue's poller supplies *jobs* (a name, an interval, a coroutine doing one round) and
runs every REST call through :meth:`PollLoop.call`, which

* waits for the (process-wide, per-endpoint) :class:`~recorder.poller.ratelimit.RateLimiter`;
* retries rate limits (``RATE_LIMITED`` feed event each time), server trouble, timeouts and
  network errors with the shared backoff (:mod:`recorder.backoff`);
* sits out an IP ban (HTTP 403 or a ``BANNED`` error) as one open-then-closed ``BAN`` span;
* on an authentication failure logs ONE error line naming the likely cause (the venue's
  ``auth_message``), writes one ``AUTH_FAILURE`` event and stops this venue's polling:
  :meth:`run` returns :attr:`PollerOutcome.AUTH_FAILED` normally, so what runs beside it
  (collectors, other venues' pollers) keeps running;
* skips a step that cannot succeed by retrying (bad request, unreadable answer) until the next round.

The v1 :class:`~recorder.poller.service.Poller` keeps its own copy of this logic (its tests pin
its exact behaviour); new venues use this loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from recorder.backoff import BackoffPolicy, backoff
from recorder.errors import (
    ExchangeError,
    IpBannedError,
    ProtocolError,
    TransportError,
    is_auth_failure,
    is_ban,
    is_rate_limit,
    is_retryable,
)
from recorder.poller.ratelimit import RateLimiter
from recorder.records import FeedEvent, FeedEventKind, Record, RecordSink, utc_now

__all__ = ["AuthFailed", "Job", "PollLoop", "PollerOutcome"]

log = logging.getLogger("recorder.poller")

T = TypeVar("T")
CONNECTION = "rest"


class PollerOutcome(enum.Enum):
    """Why :meth:`PollLoop.run` returned."""

    RUNNING = "running"
    STOPPED = "stopped"
    AUTH_FAILED = "auth_failed"


class AuthFailed(Exception):
    """Raised by :meth:`PollLoop.call` after an auth failure was reported; ends :meth:`PollLoop.run`."""


@dataclass(frozen=True, slots=True)
class Job:
    """One periodic job: ``run`` does one round; it runs at start and then every ``interval`` seconds."""

    name: str
    interval: float
    run: Callable[[], Awaitable[None]]


class PollLoop:
    """See the module docstring. ``venue`` stamps every feed event; ``auth_message(exc)`` is the
    one operator-facing sentence for an auth failure (it must name no secret)."""

    def __init__(
        self,
        *,
        venue: str,
        sink: RecordSink,
        limiter: RateLimiter,
        policy: BackoffPolicy = BackoffPolicy(),
        ban_seconds: float = 60.0,
        auth_message: Callable[[ExchangeError], str],
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        label: str | None = None,
    ) -> None:
        self.venue = venue
        self.label = label or venue  # how log lines name the exchange ("OKEx error 10001: ...")
        self._sink = sink
        self.limiter = limiter
        self._policy = policy
        self._ban_seconds = ban_seconds
        self._auth_message = auth_message
        self._clock = clock
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._ban_event: FeedEvent | None = None
        self.outcome = PollerOutcome.RUNNING
        self.auth_error: ExchangeError | None = None
        self.rate_limited = 0
        self.retries = 0

    def emit(self, records: Sequence[Record]) -> None:
        """Hand ``records`` to the sink (nothing when empty)."""
        if records:
            self._sink(records)

    async def call(self, what: str, endpoint: str | None, fn: Callable[[], Awaitable[T]]) -> T | None:
        """Run ``fn`` (one REST call to ``endpoint``) until it succeeds; None when skipped.

        ``endpoint`` None: ``fn`` waits for the limiter itself (the v1 client); the feed events
        then name the first word of ``what``.

        Raises :class:`AuthFailed` after reporting an authentication failure.
        """
        if self.outcome is PollerOutcome.AUTH_FAILED:
            raise AuthFailed
        delays = backoff(self._policy, self._rng)
        channel = endpoint if endpoint is not None else what.split()[0]
        while True:
            if endpoint is not None:
                await self.limiter.acquire(endpoint)
            try:
                result = await fn()
            except IpBannedError as exc:
                await self._sit_out_ban(exc)
                delays = backoff(self._policy, self._rng)
                continue
            except ExchangeError as exc:
                if is_auth_failure(exc):
                    self._report_auth_failure(exc)
                    raise AuthFailed from exc
                if is_ban(exc):
                    await self._sit_out_ban(exc)
                    continue
                if is_rate_limit(exc):
                    self.rate_limited += 1
                    now = self._clock()
                    self.emit([FeedEvent(kind=FeedEventKind.RATE_LIMITED, ts_start=now, ts_end=now,
                                         connection=CONNECTION, channel=channel, venue=self.venue,
                                         detail=f"error {exc.code}: {exc.message_en}")])
                if not is_retryable(exc):
                    log.error("%s: %s error %d: %s: skipped until the next round",
                              what, self.label, exc.code, exc.message_en)
                    return None
                delay = next(delays)
                self.retries += 1
                log.warning("%s: %s error %d: %s; retrying in %.2f s",
                            what, self.label, exc.code, exc.message_en, delay)
                await self._sleep(delay)
                continue
            except TransportError as exc:
                delay = next(delays)
                self.retries += 1
                log.warning("%s: %s; retrying in %.2f s", what, _without(channel, exc), delay)
                await self._sleep(delay)
                continue
            except ProtocolError as exc:
                log.error("%s: unreadable answer, skipped until the next round: %s", what,
                          _without(channel, exc))
                return None
            if self._ban_event is not None:
                self._close_ban("calls resumed")
            return result

    async def run(self, jobs: Sequence[Job], stop: asyncio.Event | None = None) -> PollerOutcome:
        """Run ``jobs`` on their intervals until ``stop`` is set or an auth failure (never raised)."""
        stop = stop or asyncio.Event()
        loop_task = asyncio.create_task(self._loop(jobs), name=f"poll-{self.venue}")
        stop_task = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({loop_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (loop_task, stop_task):
                task.cancel()
            await asyncio.gather(loop_task, stop_task, return_exceptions=True)
            if self._ban_event is not None:
                self._close_ban("poller stopped during the ban")
        if loop_task.done() and not loop_task.cancelled() and (exc := loop_task.exception()) is not None:
            if isinstance(exc, AuthFailed):
                return self.outcome
            raise exc
        self.outcome = PollerOutcome.STOPPED
        return self.outcome

    async def _loop(self, jobs: Sequence[Job]) -> None:
        due = [time.monotonic()] * len(jobs)
        while True:
            for i, job in enumerate(jobs):
                if time.monotonic() >= due[i]:
                    due[i] = time.monotonic() + job.interval
                    await job.run()
            await self._sleep(max(min(due) - time.monotonic(), 0.0))

    async def _sit_out_ban(self, exc: Exception) -> None:
        self.limiter.ban(self._ban_seconds)
        if self._ban_event is None:
            self._ban_event = FeedEvent(
                kind=FeedEventKind.BAN, ts_start=self._clock(), ts_end=None, connection=CONNECTION,
                venue=self.venue,
                detail=f"{exc}: all {self.venue} REST calls stopped for {self._ban_seconds:g} s",
            )
            self.emit([self._ban_event])
            log.error("%s: %s; REST calls stop for %g s, then resume by themselves",
                      self.venue, exc, self._ban_seconds)
        await self._sleep(self.limiter.banned_for)

    def _close_ban(self, why: str) -> None:
        assert self._ban_event is not None
        event = dataclasses.replace(self._ban_event, ts_end=self._clock(),
                                    detail=f"{self._ban_event.detail}; {why}")
        self._ban_event = None
        self.emit([event])
        log.info("%s: REST ban over (%s)", self.venue, why)

    def _report_auth_failure(self, exc: ExchangeError) -> None:
        if self.outcome is PollerOutcome.AUTH_FAILED:
            return  # two calls in flight can both be refused: one message is enough
        message = self._auth_message(exc)
        log.error(message)
        now = self._clock()
        self.emit([FeedEvent(kind=FeedEventKind.AUTH_FAILURE, ts_start=now, ts_end=now,
                             connection=CONNECTION, venue=self.venue, detail=message)])
        self.outcome = PollerOutcome.AUTH_FAILED
        self.auth_error = exc


def _without(channel: str, exc: Exception) -> str:
    """``exc``'s text less its leading ``<channel>: `` (the endpoint), which the log line's ``what``
    already names: ``okx_v5 /api/v5/public/instruments: network error (ConnectError)``, said once."""
    text = str(exc)
    prefix = f"{channel}: "
    return text[len(prefix):] if text.startswith(prefix) else text
