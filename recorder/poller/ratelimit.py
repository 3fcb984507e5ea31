"""Client-side REST rate limiting: sliding windows per endpoint and per IP, plus the ban.

The decision (:meth:`RateLimiter.reserve`) is pure logic over an injected clock;
:meth:`RateLimiter.acquire` is the thin async shell that sleeps until a slot is
free. One limiter is shared by everything in the process that calls the REST API
(:func:`process_limiter`), so the documented limits (PROTOCOL.md "REST":
6 / 2 s for ``userinfo.do`` and ``wallet_info.do``, 20 / 2 s for the others,
3000 / 5 min per IP) hold for the process as a whole, and an HTTP 403 ban
(:meth:`RateLimiter.ban`) stops every caller at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

from recorder.config import DEFAULT_ENDPOINT_LIMITS, PollerSettings, RateLimit

__all__ = ["RateLimiter", "process_limiter"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]


class _Window:
    """Timestamps of the grants inside the last ``per_seconds`` (+ slack)."""

    __slots__ = ("grants", "limit", "span")

    def __init__(self, limit: RateLimit, slack: float) -> None:
        self.limit = limit
        self.span = limit.per_seconds + slack
        self.grants: deque[float] = deque()

    def wait(self, now: float) -> float:
        """Seconds until one more grant fits (0 if it fits now)."""
        while self.grants and self.grants[0] <= now - self.span:
            self.grants.popleft()
        if len(self.grants) < self.limit.requests:
            return 0.0
        return self.grants[len(self.grants) - self.limit.requests] + self.span - now


class RateLimiter:
    """Sliding-window limiter, per endpoint and per IP, with a process-wide ban.

    ``slack`` widens every window a little, so that network jitter (a request that
    leaves early and one that arrives late) cannot make the server see more than
    the limit inside its own window. ``clock`` is monotonic seconds; ``sleep`` the
    matching sleep (tests inject both).
    """

    def __init__(
        self,
        endpoint_limits: Mapping[str, RateLimit] = DEFAULT_ENDPOINT_LIMITS,
        ip_limit: RateLimit = RateLimit(3000, 300.0),
        *,
        slack: float = 0.05,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._slack = slack
        self._limits = dict(endpoint_limits)
        self._default = RateLimit(20, 2.0)
        self._endpoints: dict[str, _Window] = {}
        self._ip = _Window(ip_limit, slack)
        self._banned_until = float("-inf")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()  # callers may live on more than one thread/loop

    @classmethod
    def from_settings(cls, settings: PollerSettings, **kwargs: object) -> RateLimiter:
        """A limiter with the limits of ``settings``."""
        return cls(settings.all_limits(), settings.ip_limit, **kwargs)  # type: ignore[arg-type]

    def _window(self, endpoint: str) -> _Window:
        window = self._endpoints.get(endpoint)
        if window is None:
            limit = self._limits.get(endpoint, self._default)
            window = self._endpoints[endpoint] = _Window(limit, self._slack)
        return window

    def reserve(self, endpoint: str, now: float | None = None) -> float:
        """Take a slot for ``endpoint`` now and return 0, or return the seconds to wait.

        Nothing is taken when the answer is not 0: call again after waiting.
        """
        with self._lock:
            t = self._clock() if now is None else now
            wait = max(self._banned_until - t, self._window(endpoint).wait(t), self._ip.wait(t), 0.0)
            if wait > 0:
                return wait
            self._window(endpoint).grants.append(t)
            self._ip.grants.append(t)
            return 0.0

    async def acquire(self, endpoint: str) -> None:
        """Wait until a call to ``endpoint`` is allowed by every window and no ban is active."""
        while (wait := self.reserve(endpoint)) > 0:
            await self._sleep(wait)

    def ban(self, seconds: float) -> float:
        """Stop every caller for ``seconds`` from now (HTTP 403). Returns the monotonic end."""
        with self._lock:
            self._banned_until = max(self._banned_until, self._clock() + seconds)
            return self._banned_until

    @property
    def banned_for(self) -> float:
        """Seconds left of the current ban (0 when none)."""
        with self._lock:
            return max(self._banned_until - self._clock(), 0.0)

    def lift_ban(self) -> None:
        """End a ban early (tests; an operator who knows better)."""
        with self._lock:
            self._banned_until = float("-inf")


_process_limiter: RateLimiter | None = None
_process_lock = threading.Lock()


def process_limiter(settings: PollerSettings | None = None) -> RateLimiter:
    """The process-wide limiter, created on first use (with ``settings``' limits if given)."""
    global _process_limiter
    with _process_lock:
        if _process_limiter is None:
            _process_limiter = RateLimiter.from_settings(settings) if settings else RateLimiter()
        return _process_limiter
