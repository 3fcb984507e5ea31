"""The OKX v5 signed, read-only REST poller (issue 15; docs/venues/okx_v5.md).

Over the generic :class:`~recorder.poller.loop.PollLoop`, per round:

* ``/api/v5/account/balance`` every ``balance_interval`` s -> neutral ``Balance`` (account ``trading``);
* every ``order_interval`` s: ``/trade/orders-pending`` and ``/trade/orders-history`` (7 days,
  ``instType=SPOT``), every page (``after`` = oldest ``ordId`` of a full page, §5.4); the
  3-month ``/trade/orders-history-archive`` at the first round only. Orders go out when their
  state changed (``Order``), and an ``OrderStatusChange`` when first seen in a status
  (resumable from stored states: ``known_orders``);
* ``/trade/fills-history`` (3 months) at the first round, ``/trade/fills`` (3 days) after:
  every fill once (``bill_id``), neutral ``Fill``;
* ``/api/v5/public/instruments?instType=SPOT`` at start and every ``instruments_interval`` s:
  neutral ``Instrument`` only on a change (:class:`~recorder.venues.okx_v5.tracking.InstrumentTracker`:
  listing, state, tick/lot size change; disappearance is written with ``state = "gone"``).

Signing (§6): HMAC-SHA256 with the passphrase header and the ISO-8601 ms timestamp of local
time plus the offset measured from ``/api/v5/public/time`` (at start, every
``time_sync_interval`` s, and again once after a 50102), so a skewed local clock never
produces 50102. Credentials: :func:`load_v5_credentials` (environment
``OKX_API_KEY``/``OKX_API_SECRET``/``OKX_API_PASSPHRASE``, or an owner-only TOML file).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import stat
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from recorder.backoff import BackoffPolicy
from recorder.config import RateLimit
from recorder.errors import ConfigError, ExchangeError, IpBannedError, Transport, TransportError
from recorder.poller.loop import AuthFailed, Job, PollerOutcome, PollLoop
from recorder.poller.ratelimit import RateLimiter
from recorder.poller.state import OrderState
from recorder.records import Order, OrderStatusChange, Record, RecordSink, utc_now
from recorder.venues.okx_v5 import poll as M
from recorder.venues.okx_v5 import rest
from recorder.venues.okx_v5.errors import exchange_error, likely_cause
from recorder.venues.okx_v5.records import VENUE
from recorder.venues.okx_v5.signing import V5Credentials, clock_offset_ms
from recorder.venues.okx_v5.tracking import InstrumentTracker

__all__ = [
    "ENV_API_KEY",
    "ENV_CREDENTIALS_FILE",
    "ENV_PASSPHRASE",
    "ENV_SECRET",
    "V5Client",
    "V5Poller",
    "V5PollerSettings",
    "load_v5_credentials",
    "v5_limiter",
]

log = logging.getLogger("recorder.poller")
T = TypeVar("T")

ENV_API_KEY = "OKX_API_KEY"
ENV_SECRET = "OKX_API_SECRET"
ENV_PASSPHRASE = "OKX_API_PASSPHRASE"
ENV_CREDENTIALS_FILE = "OKX_CREDENTIALS_FILE"
_FILE_KEYS = frozenset({"api_key", "secret_key", "passphrase"})

PENDING, HISTORY, ARCHIVE = (
    "/api/v5/trade/orders-pending", "/api/v5/trade/orders-history", "/api/v5/trade/orders-history-archive",
)
FILLS, FILLS_HISTORY = "/api/v5/trade/fills", "/api/v5/trade/fills-history"
BALANCE, INSTRUMENTS, TIME = "/api/v5/account/balance", "/api/v5/public/instruments", "/api/v5/public/time"


@dataclass(frozen=True, slots=True)
class V5PollerSettings:
    """The ``[venues.okx_v5.poller]`` table. Intervals in seconds."""

    enabled: bool = False
    rest_url: str = rest.DEFAULT_BASE_URL
    balance_interval: float = 10.0
    order_interval: float = 5.0
    instruments_interval: float = 600.0
    time_sync_interval: float = 300.0
    archive_at_start: bool = True  # walk orders-history-archive and fills-history at the first round
    simulated_trading: bool = False  # demo-trading keys (x-simulated-trading: 1)
    request_timeout: float = 10.0
    ban_seconds: float = 60.0
    credentials_file: Path | None = None
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)

    def __post_init__(self) -> None:
        for name in ("balance_interval", "order_interval", "instruments_interval", "time_sync_interval",
                     "request_timeout", "ban_seconds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                raise ConfigError(f"config: venues.okx_v5.poller.{name} must be > 0, got {v!r}")
        for name in ("enabled", "archive_at_start", "simulated_trading"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"config: venues.okx_v5.poller.{name} must be true or false")

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> V5PollerSettings:
        """Parse the ``[venues.okx_v5.poller]`` table; unknown keys raise :class:`ConfigError`."""
        names = {f for f in cls.__dataclass_fields__ if f != "backoff"}
        unknown = sorted(set(table) - names)
        if unknown:
            raise ConfigError(f"config: venues.okx_v5.poller: unknown key(s) {', '.join(unknown)}")
        values = dict(table)
        if values.get("credentials_file") is not None:
            values["credentials_file"] = Path(str(values["credentials_file"])).expanduser()
        return cls(**values)


def _read_credentials_file(path: str | os.PathLike[str]) -> V5Credentials:
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise ConfigError(f"OKX credentials file {p} does not exist or cannot be read") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"OKX credentials file {p} is not a regular file")
    if os.name == "posix":
        if st.st_mode & 0o077:
            raise ConfigError(f"OKX credentials file {p} is accessible by group or others; run `chmod 600 {p}`")
        if st.st_uid != os.getuid():
            raise ConfigError(f"OKX credentials file {p} is not owned by the current user")
    try:
        data = tomllib.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        raise ConfigError(f"OKX credentials file {p} is not valid UTF-8 TOML") from None
    if set(data) != _FILE_KEYS or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"OKX credentials file {p}: expected exactly the strings api_key, secret_key, passphrase")
    return V5Credentials(data["api_key"], data["secret_key"], data["passphrase"])


def load_v5_credentials(
    config_file: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> V5Credentials | None:
    """OKX v5 credentials from ``OKX_API_KEY``/``OKX_API_SECRET``/``OKX_API_PASSPHRASE`` (all three or
    none), else the owner-only TOML file in ``OKX_CREDENTIALS_FILE`` or ``config_file`` (keys
    ``api_key``, ``secret_key``, ``passphrase``). None when nothing is configured; raises
    :class:`ConfigError` (naming no value) when half-configured or the file is bad."""
    env = os.environ if environ is None else environ
    names = (ENV_API_KEY, ENV_SECRET, ENV_PASSPHRASE)
    values = [env.get(n, "") for n in names]
    if any(values):
        if not all(values):
            missing = ", ".join(n for n, v in zip(names, values, strict=True) if not v)
            raise ConfigError(f"OKX v5 credentials: {missing} not set (set all of {', '.join(names)}, or none)")
        return V5Credentials(*values)
    file = env.get(ENV_CREDENTIALS_FILE, "") or (str(config_file) if config_file else "")
    return _read_credentials_file(file) if file else None


_limiters: dict[str, RateLimiter] = {}


def v5_limiter() -> RateLimiter:
    """The process-wide v5 limiter: the per-endpoint limits of §7.1 (``rest.ENDPOINTS``)."""
    limiter = _limiters.get(VENUE)
    if limiter is None:
        limits = {p: RateLimit(e.limit, float(e.window_s)) for p, e in rest.ENDPOINTS.items()}
        limiter = _limiters[VENUE] = RateLimiter(limits, RateLimit(10_000, 2.0))
    return limiter


class V5Client:
    """Signed GETs of the allowlisted endpoints (:data:`rest.ENDPOINTS`) with the measured clock offset.

    ``transport`` is the httpx seam; ``local_ms`` the local clock (tests skew it). Raises what the
    ``rest.parse_*`` raise, plus :class:`TransportError` for timeouts, network errors and HTTP 403.
    """

    def __init__(self, credentials: V5Credentials, *, rest_url: str = rest.DEFAULT_BASE_URL,
                 timeout: float = 10.0, simulated_trading: bool = False,
                 transport: httpx.AsyncBaseTransport | None = None,
                 local_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 clock: Callable[[], datetime] = utc_now) -> None:
        self._credentials = credentials
        self._simulated = simulated_trading
        self._local_ms = local_ms
        self._clock = clock
        self.offset_ms = 0
        self._http = httpx.AsyncClient(base_url=rest_url.rstrip("/"), timeout=timeout, transport=transport,
                                       follow_redirects=False, headers={"User-Agent": "okex-recorder"})

    def __repr__(self) -> str:
        return f"V5Client({self._http.base_url!s}, {self._credentials!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, path: str, params: Mapping[str, str | int] | None = None) -> tuple[int, bytes, datetime]:
        """One GET: (HTTP status, body, receive time). Raises ConfigError for a non-allowlisted path."""
        req = rest.build_request(path, params, credentials=self._credentials,
                                 epoch_ms=self._local_ms() + self.offset_ms, simulated_trading=self._simulated)
        try:
            response = await self._http.get(req.path, headers=dict(req.headers))
        except httpx.TimeoutException as exc:
            raise TransportError(f"{path}: timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise TransportError(f"{path}: network error ({type(exc).__name__})") from None
        if response.status_code == 403:
            raise IpBannedError(f"{path}: HTTP 403: access refused (IP banned or blocked)")
        if response.status_code >= 500 and not response.content.startswith(b"{"):
            raise TransportError(f"{path}: HTTP {response.status_code}")
        return response.status_code, response.content, self._clock()

    async def sync_time(self) -> int:
        """Measure server minus local time from ``/public/time`` (§4.6); sets and returns :attr:`offset_ms`."""
        before = self._local_ms()
        status, body, _ = await self.get(TIME)
        after = self._local_ms()
        self.offset_ms = clock_offset_ms(before, rest.parse_server_time_ms(status, body), after)
        return self.offset_ms


def _auth_message(credentials: V5Credentials) -> Callable[[ExchangeError], str]:
    def message(exc: ExchangeError) -> str:
        cause = likely_cause(exc.code) or "the API credentials were rejected"
        return (f"OKX v5 rejected the API credentials ({credentials!r}): error {exc.code} "
                f"\u201c{exc.message_en}\u201d: likely cause: {cause}. OKX v5 polling stopped; fix the "
                "credentials and restart (everything else keeps recording).")
    return message


class V5Poller:
    """Polls an OKX v5 account read-only; see the module docstring. ``sink`` receives neutral records."""

    def __init__(self, settings: V5PollerSettings, credentials: V5Credentials, sink: RecordSink, *,
                 client: V5Client | None = None, limiter: RateLimiter | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 known_orders: Mapping[int, OrderState] | None = None,
                 clock: Callable[[], datetime] = utc_now, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._sink = sink
        self._clock = clock
        self.client = client or V5Client(credentials, rest_url=settings.rest_url, timeout=settings.request_timeout,
                                         simulated_trading=settings.simulated_trading, transport=transport,
                                         clock=clock)
        self.loop = PollLoop(venue=VENUE, sink=sink, limiter=limiter or v5_limiter(), policy=settings.backoff,
                             ban_seconds=settings.ban_seconds, auth_message=_auth_message(credentials),
                             clock=clock, rng=rng)
        self.known: dict[int, OrderState] = dict(known_orders or {})
        self.fills_seen: set[str] = set()
        self.tracker = InstrumentTracker()
        self.order_rounds = 0
        self._synced_at = float("-inf")

    # --- plumbing -----------------------------------------------------------------------------

    async def _get(self, what: str, path: str, params: Mapping[str, str | int] | None,
                   parse: Callable[[int, bytes, datetime], T]) -> T | None:
        retried_skew = False

        async def once() -> T:
            nonlocal retried_skew
            if rest.ENDPOINTS[path].private and time.monotonic() - self._synced_at > self.settings.time_sync_interval:
                await self._sync_time()
            status, body, ts = await self.client.get(path, params)
            try:
                return parse(status, body, ts)
            except ExchangeError as exc:
                if exc.code == 50102 and not retried_skew:  # clock moved: measure again, retry once
                    retried_skew = True
                    await self._sync_time()
                    raise exchange_error(50001, Transport.REST, context=f"{path}: retry after a clock resync") from None
                raise

        return await self.loop.call(what, path, once)

    async def _sync_time(self) -> None:
        await self.loop.limiter.acquire(TIME)
        offset = await self.client.sync_time()
        self._synced_at = time.monotonic()
        log.info("okx_v5: server clock offset %+d ms", offset)

    async def _pages(self, path: str, params: dict[str, str | int], parse: Callable[[int, bytes, datetime], list[T]],
                     ) -> list[T] | None:
        """Every page of ``path`` walking back (``after``); None when a page was skipped."""
        out: list[T] = []
        query: dict[str, str | int] | None = {**params, "limit": str(rest.MAX_PAGE_LIMIT)}
        while query is not None:
            page = await self._get(path, path, query, parse)
            if page is None:
                return None
            out.extend(page)
            query = rest.next_older_params(path, query, page)  # type: ignore[arg-type]
        return out

    # --- jobs ---------------------------------------------------------------------------------

    async def poll_balances(self) -> None:
        """One ``/account/balance`` read -> one neutral Balance per currency."""
        balances = await self._get(BALANCE, BALANCE, None, rest.parse_balance)
        if balances is not None:
            self.loop.emit([M.neutral_balance(b) for b in balances])

    async def sync_orders(self) -> None:
        """Open orders, 7-day history (and the archive at the first round), then fills."""
        first = self.order_rounds == 0 and self.settings.archive_at_start
        pending = await self._pages(PENDING, {"instType": "SPOT"}, rest.parse_orders)
        if pending is not None:
            self._absorb([M.neutral_order(o) for o in pending])
        history = await self._pages(HISTORY, {"instType": "SPOT"}, rest.parse_orders)
        if history is not None:
            self._absorb([M.neutral_order(o) for o in history])
        if first:
            archive = await self._pages(ARCHIVE, {"instType": "SPOT"}, rest.parse_orders)
            if archive is not None:
                self._absorb([M.neutral_order(o) for o in archive])
        fills = await self._pages(FILLS_HISTORY if first else FILLS, {"instType": "SPOT"}, rest.parse_fills)
        if fills is not None:
            new = [M.neutral_fill(f) for f in reversed(fills) if f.bill_id not in self.fills_seen]
            self.fills_seen.update(f.bill_id for f in new)
            self.loop.emit(new)
        self.order_rounds += 1

    async def refresh_instruments(self) -> None:
        """``/public/instruments?instType=SPOT`` -> Instrument records for what changed (a full list)."""
        items = await self._get(INSTRUMENTS, INSTRUMENTS, {"instType": "SPOT"}, rest.parse_instruments)
        if items is None:
            return
        out: list[Record] = []
        for change in self.tracker.update(items, complete=True):
            if change.new is not None:
                out.append(M.neutral_instrument(change.new))
            elif change.old is not None:  # vanished from the full list: recorded as state "gone"
                out.append(dataclasses.replace(M.neutral_instrument(change.old), state="gone",
                                               ts_recv=self._clock()))
        self.loop.emit(out)

    def _absorb(self, orders: list[Order]) -> None:
        out: list[Record] = []
        for order in sorted(orders, key=lambda o: (o.ts_event, o.order_id)):
            known = self.known.get(order.order_id)
            if known is not None and not known.is_superseded_by(order):
                continue
            out.append(order)
            if known is None or known.status is not order.status:
                out.append(OrderStatusChange(
                    venue=VENUE, order_id=order.order_id, symbol=order.symbol, status=order.status,
                    previous_status=None if known is None else known.status,
                    deal_amount=order.deal_amount, ts_recv=order.ts_recv))
            self.known[order.order_id] = OrderState.of(order)
        self.loop.emit(out)

    def jobs(self) -> list[Job]:
        s = self.settings
        return [Job("instruments", s.instruments_interval, self.refresh_instruments),
                Job("balances", s.balance_interval, self.poll_balances),
                Job("orders", s.order_interval, self.sync_orders)]

    async def run(self, stop: asyncio.Event | None = None) -> PollerOutcome:
        """Poll until ``stop`` is set (STOPPED) or the credentials are rejected (AUTH_FAILED)."""
        try:
            return await self.loop.run(self.jobs(), stop)
        finally:
            await self.client.aclose()

    async def run_once(self) -> PollerOutcome:
        """One round of every job (tests, ``--once``); AUTH_FAILED if the credentials were rejected."""
        try:
            for job in self.jobs():
                await job.run()
        except AuthFailed:
            pass
        return self.loop.outcome

