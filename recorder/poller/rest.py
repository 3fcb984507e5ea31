"""The generic signed REST account poller: the venue supplies endpoints, signing and parsers.

A venue provides an :class:`AccountSource` (sans-I/O; e.g.
:class:`recorder.venues.okx_v5.poll.V5AccountSource`). :class:`RestPoller` owns the rest:

* the HTTP client (httpx) and the one request path :meth:`RestPoller.fetch`: the
  per-endpoint rate limiter (``source.limits``, shared per venue in the process,
  :func:`venue_limiter`), the venue's signed request at local time + the measured server
  clock offset (``source.time_path``: measured at start, every ``time_sync_interval`` s,
  and again once when a ``source.clock_skew_codes`` error arrives, so local clock skew never
  ends polling), HTTP 403 -> ban, timeouts/network errors -> retry;
* scheduling, the one backoff, ban spans and the one auth-failure message
  (:class:`~recorder.poller.loop.PollLoop`);
* state-change detection: an ``Order`` goes to the sink only when its state changed since
  the last one seen (or stored: ``known_orders``, see :func:`recorder.poller.state.load_order_states`),
  with an ``OrderStatusChange`` when first seen in a status; each ``Fill`` once (``bill_id``, also
  against the stored ones: ``known_fills``);
  everything else the jobs return (Balance, Instrument) as it is.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

import httpx

from recorder.backoff import BackoffPolicy
from recorder.config import RateLimit
from recorder.errors import ExchangeError, IpBannedError, TransportError
from recorder.poller.loop import AuthFailed, Job, PollerOutcome, PollLoop
from recorder.poller.ratelimit import RateLimiter
from recorder.poller.state import OrderState
from recorder.records import Fill, Order, OrderStatusChange, RecordSink, utc_now

__all__ = ["AccountSource", "RestPoller", "venue_limiter"]

log = logging.getLogger("recorder.poller")
T = TypeVar("T")
Parse = Callable[[int, bytes, datetime], T]


class Prepared(Protocol):
    @property
    def path(self) -> str: ...  # path + "?" + query, exactly as signed
    @property
    def headers(self) -> Mapping[str, str]: ...


class AccountSource(Protocol):
    """What a venue supplies to poll its account read-only over REST (see the module docstring)."""

    @property
    def venue(self) -> str: ...
    @property
    def time_path(self) -> str | None: ...  # the server-time endpoint, None: no clock offset
    @property
    def clock_skew_codes(self) -> frozenset[int]: ...  # "your timestamp is off": resync, retry once
    @property
    def limits(self) -> Mapping[str, tuple[int, float]]: ...  # path -> (requests, seconds)
    @property
    def rest_url(self) -> str: ...
    def is_private(self, path: str) -> bool: ...
    def prepare(self, path: str, params: Mapping[str, str | int] | None, epoch_ms: int) -> Prepared: ...
    def parse_server_ms(self, status: int, body: bytes) -> int: ...
    def auth_message(self, exc: ExchangeError) -> str: ...
    def jobs(self) -> Sequence[tuple[str, float, Callable[[Any], Awaitable[list[Any]]]]]: ...


_limiters: dict[str, RateLimiter] = {}


def venue_limiter(source: AccountSource) -> RateLimiter:
    """The process-wide limiter of ``source.venue`` (created on first use with ``source.limits``)."""
    limiter = _limiters.get(source.venue)
    if limiter is None:
        limits = {p: RateLimit(n, s) for p, (n, s) in source.limits.items()}
        limiter = _limiters[source.venue] = RateLimiter(limits, RateLimit(100_000, 2.0))
    return limiter


class RestPoller:
    """Polls one venue's account through ``source`` until stopped or its credentials are rejected.

    ``transport`` is the httpx seam; ``local_ms`` the local clock in ms (tests skew it);
    ``clock`` stamps ``ts_recv`` (aware UTC).
    """

    def __init__(self, source: AccountSource, sink: RecordSink, *,
                 policy: BackoffPolicy = BackoffPolicy(), ban_seconds: float = 60.0,
                 request_timeout: float = 10.0, time_sync_interval: float = 300.0,
                 limiter: RateLimiter | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 known_orders: Mapping[int, OrderState] | None = None, known_fills: Iterable[str] = (),
                 local_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 clock: Callable[[], datetime] = utc_now, rng: random.Random | None = None) -> None:
        self.source = source
        self.loop = PollLoop(venue=source.venue, sink=sink, limiter=limiter or venue_limiter(source),
                             policy=policy, ban_seconds=ban_seconds, auth_message=source.auth_message,
                             clock=clock, rng=rng, label=source.venue)
        self._http = httpx.AsyncClient(base_url=source.rest_url.rstrip("/"), timeout=request_timeout,
                                       transport=transport, follow_redirects=False,
                                       headers={"User-Agent": "okex-recorder"})
        self._local_ms = local_ms
        self._clock = clock
        self._time_sync_interval = time_sync_interval
        self._synced_at = float("-inf")
        self.offset_ms = 0
        self.known: dict[int, OrderState] = dict(known_orders or {})
        self.fills_seen: set[str] = set(known_fills)

    def __repr__(self) -> str:
        return f"RestPoller({self.source!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- the one request path -----------------------------------------------------------------

    async def _send(self, path: str, params: Mapping[str, str | int] | None) -> tuple[int, bytes, datetime]:
        req = self.source.prepare(path, params, self._local_ms() + self.offset_ms)
        await self.loop.limiter.acquire(path)
        try:
            response = await self._http.get(req.path, headers=dict(req.headers))
        except httpx.TimeoutException as exc:
            raise TransportError(f"{path}: timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise TransportError(f"{path}: network error ({type(exc).__name__})") from None
        if response.status_code == 403:
            raise IpBannedError(f"{path}: HTTP 403: access refused (IP banned or blocked)")
        if response.status_code >= 500 and not response.content.lstrip().startswith(b"{"):
            raise TransportError(f"{path}: HTTP {response.status_code}")
        return response.status_code, response.content, self._clock()

    async def sync_time(self) -> int:
        """Measure server minus local time (ms) from ``source.time_path``; sets and returns it."""
        path = self.source.time_path
        if path is None:
            return 0
        before = self._local_ms()
        status, body, _ = await self._send(path, None)
        after = self._local_ms()
        self.offset_ms = self.source.parse_server_ms(status, body) - (before + after) // 2
        self._synced_at = time.monotonic()
        log.info("%s: server clock offset %+d ms", self.source.venue, self.offset_ms)
        return self.offset_ms

    async def fetch(self, path: str, params: Mapping[str, str | int] | None, parse: Parse[T]) -> T | None:
        """GET ``path`` (signed when private) and parse it, with every retry of :meth:`PollLoop.call`.

        None when the step was skipped (logged); raises :class:`AuthFailed` after an auth failure.
        """
        resynced = False

        async def once() -> T:
            nonlocal resynced
            private = self.source.is_private(path)
            if private and time.monotonic() - self._synced_at > self._time_sync_interval:
                await self.sync_time()
            status, body, ts = await self._send(path, params)
            try:
                return parse(status, body, ts)
            except ExchangeError as exc:
                if exc.code in self.source.clock_skew_codes and not resynced:
                    resynced = True  # the clocks drifted apart: measure again and retry at once
                    log.warning("%s %s: error %d: measuring the server clock again",
                                self.source.venue, path, exc.code)
                    await self.sync_time()
                    status, body, ts = await self._send(path, params)
                    return parse(status, body, ts)
                raise

        return await self.loop.call(f"{self.source.venue} {path}", path, once)

    # --- jobs and state changes ---------------------------------------------------------------

    def _job(self, run: Callable[[Any], Awaitable[list[Any]]]) -> Callable[[], Awaitable[None]]:
        async def go() -> None:
            self.absorb(await run(self.fetch))
        return go

    def jobs(self) -> list[Job]:
        return [Job(name, interval, self._job(run)) for name, interval, run in self.source.jobs()]

    def absorb(self, records: Sequence[Any]) -> None:
        """Hand ``records`` to the sink: Orders only when changed (+ OrderStatusChange), Fills once."""
        out: list[Any] = []
        for r in records:
            if isinstance(r, Order):
                known = self.known.get(r.order_id)
                if known is not None and not known.is_superseded_by(r):
                    continue
                out.append(r)
                if known is None or known.status is not r.status:
                    out.append(OrderStatusChange(
                        venue=r.venue, order_id=r.order_id, symbol=r.symbol, status=r.status,
                        previous_status=None if known is None else known.status,
                        deal_amount=r.deal_amount, ts_recv=r.ts_recv))
                self.known[r.order_id] = OrderState.of(r)
            elif isinstance(r, Fill):
                if r.bill_id in self.fills_seen:
                    continue
                self.fills_seen.add(r.bill_id)
                out.append(r)
            else:
                out.append(r)
        self.loop.emit(out)

    async def run(self, stop: asyncio.Event | None = None) -> PollerOutcome:
        """Poll until ``stop`` is set (STOPPED) or the credentials are rejected (AUTH_FAILED)."""
        try:
            return await self.loop.run(self.jobs(), stop)
        finally:
            await self.aclose()

    async def run_once(self) -> PollerOutcome:
        """One round of every job (tests); AUTH_FAILED if the credentials were rejected."""
        try:
            for job in self.jobs():
                await job.run()
        except AuthFailed:
            pass
        return self.loop.outcome
