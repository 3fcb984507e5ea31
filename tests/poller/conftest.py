"""Poller test helpers: a simulator account with a known secret, a recording sink,
trading calls made directly with httpx + signing (never through the poller's client)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from decimal import Decimal
from typing import Any

import httpx
import pytest

from recorder.backoff import BackoffPolicy
from recorder.config import PollerSettings
from recorder.credentials import Credentials
from recorder.poller.ratelimit import RateLimiter
from recorder.poller.service import Poller
from recorder.records import (
    Balance,
    FeedEvent,
    FeedEventKind,
    Order,
    OrderStatus,
    OrderStatusChange,
    Record,
)
from recorder.simulator import AccountSettings, Simulator, SimulatorSettings
from recorder.simulator.accounts import SimOrder
from recorder.venues.okex_v1.signing import signed_params
from tests.fixtures.simulator import fast_settings

API_KEY = "7e5t0000-poll-4sim-8abc-" + uuid.uuid4().hex[:12]
SECRET = "POLLER-TEST-SECRET-" + uuid.uuid4().hex
CREDS = Credentials(API_KEY, SECRET)
ACCOUNT = AccountSettings(api_key=API_KEY, secret=SECRET)
SYMBOLS = ("btc_usdt", "ltc_btc", "eth_btc")
TWO_DAYS_MS = 2 * 86_400_000
FAST_BACKOFF = BackoffPolicy(initial=0.02, factor=1.5, cap=0.2, jitter=0.5)


def sim_settings(**changes: Any) -> SimulatorSettings:
    """Fast simulator settings with the test account (seeded history, no background activity)."""
    return fast_settings(accounts=(ACCOUNT,), updates_per_second=0.0, **changes)


def poller_settings(**changes: Any) -> PollerSettings:
    base: dict[str, Any] = {
        "symbols": SYMBOLS,
        "balance_interval": 0.2,
        "order_interval": 0.2,
        "backoff": FAST_BACKOFF,
        "request_timeout": 5.0,
    }
    base.update(changes)
    return PollerSettings(**base)


class RecordingSink:
    """Collects every record handed over; wakes waiters on each batch."""

    def __init__(self, then: Callable[[Sequence[Record]], None] | None = None) -> None:
        self.records: list[Record] = []
        self.batches = 0
        self._then = then
        self._changed = asyncio.Event()

    def __call__(self, records: Sequence[Record]) -> None:
        if self._then is not None:
            self._then(records)
        self.records.extend(records)
        self.batches += 1
        self._changed.set()

    def of(self, cls: type[Any]) -> list[Any]:
        return [r for r in self.records if isinstance(r, cls)]

    def events(self, kind: FeedEventKind) -> list[FeedEvent]:
        return [r for r in self.of(FeedEvent) if r.kind is kind]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


async def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait (polling the loop every 10 ms) until ``predicate()``; fail after a generous timeout."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def make_poller(sim: Simulator, sink: RecordingSink, settings: PollerSettings | None = None,
                **kwargs: Any) -> Poller:
    settings = settings or poller_settings()
    kwargs.setdefault("limiter", RateLimiter.from_settings(settings))
    kwargs.setdefault("credentials", CREDS)
    creds = kwargs.pop("credentials")
    return Poller(settings, creds, sink, rest_url=sim.rest_url, **kwargs)


class Trader:
    """Places and cancels orders through the simulator's trade.do / cancel_order.do, signed here."""

    def __init__(self, sim: Simulator) -> None:
        self._http = httpx.AsyncClient(base_url=sim.rest_url + "/")

    async def _post(self, endpoint: str, params: dict[str, str]) -> dict[str, Any]:
        body = signed_params(params, API_KEY, SECRET)
        response = await self._http.post(endpoint, data=body)
        answer: dict[str, Any] = response.json()
        assert answer.get("result") is True, answer
        return answer

    async def place(self, symbol: str, side: str, price: str, amount: str) -> int:
        params = {"symbol": symbol, "type": side, "price": price, "amount": amount}
        answer = await self._post("trade.do", params)
        return int(answer["order_id"])

    async def cancel(self, symbol: str, order_id: int) -> None:
        await self._post("cancel_order.do", {"symbol": symbol, "order_id": str(order_id)})

    async def aclose(self) -> None:
        await self._http.aclose()


@pytest.fixture
def simulator_settings() -> SimulatorSettings:
    return sim_settings()


@pytest.fixture
async def trader(simulator: Simulator) -> AsyncIterator[Trader]:
    t = Trader(simulator)
    yield t
    await t.aclose()


def servable_orders(sim: Simulator, symbols: Sequence[str] = SYMBOLS) -> dict[int, SimOrder]:
    """The orders order_history.do/order_info.do can still serve (the last two days)."""
    account = sim.accounts[API_KEY]
    oldest = int(sim.clock().timestamp() * 1000) - TWO_DAYS_MS
    return {o.order_id: o for o in account.orders.values() if o.symbol in symbols and o.create_ms >= oldest}


def order_view(order: Order | SimOrder) -> tuple[Any, ...]:
    """The fields both sides hold, for exact comparison."""
    if isinstance(order, SimOrder):
        return (order.order_id, order.symbol, order.type, order.price, order.amount, order.deal_amount,
                order.avg_price, order.status, order.create_ms)
    return (order.order_id, order.symbol, order.type, order.price, order.amount, order.deal_amount,
            order.avg_price, order.status, int(order.ts_event.timestamp() * 1000))


def latest_orders(records: Sequence[Record]) -> dict[int, Order]:
    out: dict[int, Order] = {}
    for r in records:
        if isinstance(r, Order):
            out[r.order_id] = r
    return out


def status_paths(records: Sequence[Record]) -> dict[int, list[tuple[OrderStatus | None, OrderStatus]]]:
    out: dict[int, list[tuple[OrderStatus | None, OrderStatus]]] = {}
    for r in records:
        if isinstance(r, OrderStatusChange):
            out.setdefault(r.order_id, []).append((r.previous_status, r.status))
    return out


def balances_of(sim: Simulator) -> dict[str, tuple[Decimal, Decimal]]:
    account = sim.accounts[API_KEY]
    return {c: (account.free.get(c, Decimal(0)), account.freezed.get(c, Decimal(0)))
            for c in account.currencies()}


def balance_view(records: Sequence[Balance]) -> dict[str, tuple[Decimal, Decimal]]:
    return {b.currency: (b.free, b.frozen) for b in records}

