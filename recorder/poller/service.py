"""Balance and order sync over the read-only REST client (docs/poller.md).

:class:`Poller` polls ``userinfo.do`` (and optionally ``wallet_info.do``) every
``balance_interval`` and, every ``order_interval``, each configured symbol's open
orders (``order_info.do`` with ``order_id=-1``) and history (``order_history.do``,
status 0 and 1, every page). It hands typed records to a :data:`RecordSink`:
``Balance`` per currency per poll, ``Order`` whenever an order's state changed
(storage upserts by ``order_id``), ``OrderStatusChange`` when an order is first
seen in a status, and ``FeedEvent`` for bans, rate limits and auth failures.

Errors (classified once, :mod:`recorder.errors`):

* 10001 (rate limited), 10002/10004 (server trouble), timeouts, network errors,
  HTTP 5xx: retry with the shared backoff (:mod:`recorder.backoff`);
* HTTP 403: every REST call in the process stops for ``ban_seconds`` (the shared
  limiter holds the ban), a ``BAN`` span is written open, then closed on resume;
* authentication failures (10005, 10006, 10007, 10017, ...): one clear error line
  naming the likely cause, an ``AUTH_FAILURE`` event, and polling stops; :meth:`run`
  returns normally so whatever runs beside it (the collector) keeps running;
* any other exchange error or an unreadable answer: logged, that step is skipped
  until the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

import httpx

from recorder.config import PollerSettings
from recorder.credentials import Credentials
from recorder.errors import (
    ExchangeError,
)
from recorder.poller.client import DEFAULT_REST_URL, ReadOnlyClient
from recorder.poller.loop import AuthFailed, Job, PollerOutcome, PollLoop
from recorder.poller.ratelimit import RateLimiter, process_limiter
from recorder.poller.state import OrderState, load_order_states
from recorder.records import (
    Order,
    OrderStatusChange,
    Record,
    RecordSink,
    utc_now,
)
from recorder.venues.okex_v1 import rest

__all__ = ["AUTH_HINTS", "CONNECTION", "Poller", "PollerOutcome"]

log = logging.getLogger("recorder.poller")

VENUE = "okex_v1"
"""The ``venue`` of every record this poller writes (and of the stored orders it resumes from)."""

CONNECTION = "rest"
"""The ``connection`` of every feed event the poller writes."""

AUTH_HINTS: Mapping[int, str] = {
    10005: "the secret key is not known to the exchange: check OKEX_SECRET_KEY",
    10006: "the api key is not known to the exchange: check OKEX_API_KEY (wrong key, or deleted)",
    10007: "the signature does not match: the secret key is wrong for this api key (OKEX_SECRET_KEY)",
    10017: "the api key lacks a permission: grant it read access to the account and orders",
    10216: "this endpoint is not open to the api key: check its permissions",
    1014: "the api key is not allowed to make this call: check its permissions",
    1209: "the api key is not allowed to make this call: check its permissions",
    10100: "the account is frozen: a person must act on the exchange's side",
    1048: "the account is frozen: a person must act on the exchange's side",
}
"""The likely cause of each authentication failure, for the one message an operator reads."""

T = TypeVar("T")

_ABSORB_CHUNK = 1000
"""Orders absorbed (and handed to the sink) between two yields to the event loop: a large
open-orders answer (thousands) must not hold up the next page request."""


_AuthFailed = AuthFailed


class Poller:
    """Polls balances and orders until stopped; see the module docstring.

    ``client`` defaults to a :class:`ReadOnlyClient` on ``rest_url`` with the
    process-wide limiter (or ``limiter``); ``clock`` stamps the records
    (timezone-aware UTC); ``known_orders`` is the state loaded from storage
    (:func:`recorder.poller.state.load_order_states`) so a restart resumes; or give
    ``state_url`` (the SQL database URL) and :meth:`run` loads it first, read-only.
    """

    def __init__(
        self,
        settings: PollerSettings,
        credentials: Credentials,
        sink: RecordSink,
        *,
        client: ReadOnlyClient | None = None,
        clock: Callable[[], datetime] | None = None,
        limiter: RateLimiter | None = None,
        rest_url: str = DEFAULT_REST_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        known_orders: Mapping[int, OrderState] | None = None,
        state_url: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._clock = clock or utc_now
        self._owns_client = client is None
        self._client = client or ReadOnlyClient(
            credentials,
            rest_url=rest_url,
            timeout=settings.request_timeout,
            limiter=limiter or process_limiter(settings),
            transport=transport,
            clock=self._clock,
        )
        self._limiter = self._client.limiter
        self._credentials = credentials
        self._known: dict[int, OrderState] = dict(known_orders or {})
        self._state_url = state_url if known_orders is None else None
        self._rng = rng
        self._core = PollLoop(venue=VENUE, sink=sink, limiter=self._limiter, policy=settings.backoff,
                              ban_seconds=settings.ban_seconds, auth_message=self._auth_message,
                              clock=self._clock, rng=rng, label="OKEx")
        self.rounds = 0  # completed order sweeps (all symbols)
        self.balance_polls = 0

    def __repr__(self) -> str:
        symbols = self._settings.symbols
        return f"Poller(symbols={symbols!r}, {self._credentials!r}, outcome={self.outcome.value})"

    @property
    def outcome(self) -> PollerOutcome:
        """RUNNING, STOPPED or AUTH_FAILED (the generic loop's)."""
        return self._core.outcome

    @property
    def auth_error(self) -> ExchangeError | None:
        """The error that stopped polling (an authentication failure), if any."""
        return self._core.auth_error

    @property
    def known_orders(self) -> Mapping[int, OrderState]:
        """The last state seen of every order (read-only view for status and tests)."""
        return dict(self._known)

    # --- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Poller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this poller made it (:meth:`run` does this when it ends)."""
        if self._owns_client:
            await self._client.aclose()

    async def run(self, stop: asyncio.Event) -> PollerOutcome:
        """Poll until ``stop`` is set or the credentials are rejected; return why it ended.

        Never raises for exchange or network trouble (those are retried or
        reported); returns :attr:`PollerOutcome.AUTH_FAILED` after an auth failure.
        """
        if self._state_url is not None:
            await self.load_known_orders(self._state_url)
        jobs = [Job("balances", self._settings.balance_interval, self.poll_balances)]
        if self._settings.symbols:
            jobs.append(Job("orders", self._settings.order_interval, self.sync_orders))
        try:
            return await self._core.run(jobs, stop)
        finally:
            await self.aclose()

    async def load_known_orders(self, url: str) -> int:
        """Read the last stored state of every order of the configured symbols (in a thread).

        Returns how many orders are known. Raises
        :class:`~recorder.errors.StoreUnavailableError` when the database cannot be read.
        """
        known = await asyncio.to_thread(load_order_states, url, self._settings.symbols, venue=VENUE)
        known.update(self._known)  # anything seen in this process is newer
        self._known = known
        self._state_url = None
        log.info("poller: %d known orders loaded from storage", len(known))
        return len(known)

    # --- one round of each job -----------------------------------------------------------------

    async def poll_balances(self) -> None:
        """Fetch the spot (and wallet, if enabled) balances once and hand them to the sink."""
        records: list[Record] = []
        spot = await self._step("userinfo.do", self._client.fetch_userinfo)
        records.extend(spot or ())
        if self._settings.include_wallet:
            wallet = await self._step("wallet_info.do", self._client.fetch_wallet_info)
            records.extend(wallet or ())
        if records:
            self._sink(records)
        self.balance_polls += 1

    async def sync_orders(self) -> None:
        """One sweep over every symbol: open orders, then history status 0 and 1, every page."""
        for symbol in self._settings.symbols:
            await self.sync_symbol(symbol)
        self.rounds += 1

    async def sync_symbol(self, symbol: str) -> None:
        """Open orders and every history page of ``symbol``; changes go to the sink as they arrive.

        Pipelined: one task fetches the answers (open orders, then history status 0 and
        1, page by page, each request as soon as the limiter allows) while this one
        absorbs them in the order they were fetched, yielding to the loop between
        chunks, so parsing and storing a page never delays the next request. What
        reaches the sink is the same as fetching and absorbing one answer at a time.
        """
        answers: asyncio.Queue[Sequence[Order] | None] = asyncio.Queue()  # <= 20 pages / 2 s
        fetcher = asyncio.create_task(self._fetch_symbol(symbol, answers), name=f"poller-fetch-{symbol}")
        try:
            while (orders := await answers.get()) is not None:
                await self._absorb_chunked(orders)
        except BaseException:
            fetcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetcher
            raise
        await fetcher  # re-raises what ended the fetching (an authentication failure)

    async def _fetch_symbol(self, symbol: str, answers: asyncio.Queue[Sequence[Order] | None]) -> None:
        """Fetch open orders and every history page of ``symbol`` into ``answers``; None ends it.

        ``order_info.do`` and the first ``order_history.do`` page (separate limiter
        windows) are requested together; their answers are queued in that order.
        """
        length = self._settings.page_length

        def history(status: int, page: int) -> Awaitable[rest.OrderHistoryPage | None]:
            return self._step(
                f"order_history.do {symbol} status {status} page {page}",
                functools.partial(self._client.fetch_order_history, symbol, status, page, length),
            )

        try:
            first_task = asyncio.ensure_future(history(0, 1))
            try:
                open_orders = await self._step(
                    f"order_info.do {symbol}", functools.partial(self._client.fetch_open_orders, symbol)
                )
                first = await first_task
            except BaseException:
                first_task.cancel()
                await asyncio.gather(first_task, return_exceptions=True)
                raise
            if open_orders is not None:
                answers.put_nowait(open_orders)
            for status in (0, 1):
                page = 1
                answer = first if status == 0 else await history(status, page)
                while answer is not None:  # None: skipped (logged); the next round tries again
                    answers.put_nowait(answer.orders)
                    if len(answer.orders) < length or page * length >= answer.total:
                        break
                    page += 1
                    answer = await history(status, page)
        finally:
            answers.put_nowait(None)

    async def _absorb_chunked(self, orders: Sequence[Order]) -> None:
        """:meth:`_absorb` in chunks of :data:`_ABSORB_CHUNK`, letting the fetcher run in between."""
        if len(orders) <= _ABSORB_CHUNK:
            self._absorb(orders)
            return
        for start in range(0, len(orders), _ABSORB_CHUNK):
            self._absorb(orders[start:start + _ABSORB_CHUNK])
            await asyncio.sleep(0)

    def _absorb(self, orders: Iterable[Order]) -> None:
        records: list[Record] = []
        updates: dict[int, OrderState] = {}
        for order in orders:
            known = updates.get(order.order_id) or self._known.get(order.order_id)
            if known is not None and not known.is_superseded_by(order):
                continue
            records.append(order)
            if known is None or known.status is not order.status:
                records.append(
                    OrderStatusChange(venue=VENUE,
                        order_id=order.order_id,
                        symbol=order.symbol,
                        status=order.status,
                        previous_status=None if known is None else known.status,
                        deal_amount=order.deal_amount,
                        ts_recv=order.ts_recv,
                    )
                )
            updates[order.order_id] = OrderState.of(order)
        if records:
            self._sink(records)
            self._known.update(updates)

    # --- error handling ------------------------------------------------------------------------

    async def _step(self, what: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """Run ``call`` through the generic loop (retries, ban, auth; see the module docstring).

        The client waits for the limiter itself, so the loop does not. Raises
        :class:`AuthFailed` (after reporting it) on an authentication failure.
        """
        return await self._core.call(what, None, call)

    def _auth_message(self, exc: ExchangeError) -> str:
        hint = AUTH_HINTS.get(exc.code, "the credentials were rejected")
        return (
            f"OKEx rejected the API credentials ({self._credentials.masked_api_key}): error {exc.code} "
            f"\u201c{exc.message_en}\u201d: likely cause: {hint}. Polling stopped; fix the "
            "credentials and restart (the collector keeps recording)."
        )
