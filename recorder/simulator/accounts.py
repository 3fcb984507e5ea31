"""The simulated accounts: balances, orders, fills and cancels. Pure, no I/O.

Orders follow the v1 statuses (:class:`~recorder.records.OrderStatus`). A limit
buy freezes ``price * amount`` of the quote currency, a limit sell ``amount`` of
the base currency; fills move the frozen funds, cancels release what is left.
No fees. Errors raise :class:`AccountError` carrying the documented REST code.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Context, Decimal

from recorder.records import OrderStatus, OrderType, Side
from recorder.simulator.market import Market, Trade
from recorder.simulator.settings import AccountSettings
from recorder.venues.okex_v1.pairs import pairs

_HOUR_MS = 3_600_000
# Balances are kept exactly, whatever their size: the default context would round every sum
# to 28 significant digits (a configured 38-digit balance must be sent as configured).
_EXACT = Context(prec=400)


class AccountError(Exception):
    """An account operation failed with a documented REST error code (e.g. 10009, 10010)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(slots=True)
class SimOrder:
    """One order as the exchange keeps it (mutable inside the simulator)."""

    order_id: int
    symbol: str
    type: OrderType
    price: Decimal
    amount: Decimal
    create_ms: int
    deal_amount: Decimal = Decimal(0)
    deal_value: Decimal = Decimal(0)
    status: OrderStatus = OrderStatus.OPEN

    @property
    def avg_price(self) -> Decimal:
        if not self.deal_amount:
            return Decimal(0)
        return (self.deal_value / self.deal_amount).quantize(pairs()[self.symbol].quote_increment.normalize())

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.deal_amount

    @property
    def is_open(self) -> bool:
        return self.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)

    def copy(self) -> SimOrder:
        return SimOrder(
            self.order_id,
            self.symbol,
            self.type,
            self.price,
            self.amount,
            self.create_ms,
            self.deal_amount,
            self.deal_value,
            self.status,
        )


class Account:
    """One account: free and frozen balances per currency, and its orders."""

    def __init__(self, settings: AccountSettings) -> None:
        self.settings = settings
        self.api_key = settings.api_key
        self.free: dict[str, Decimal] = {c: Decimal(a) for c, a in settings.balances.items()}
        self.freezed: dict[str, Decimal] = {c: Decimal(0) for c in settings.balances}
        self.orders: dict[int, SimOrder] = {}
        # The wallet account (wallet_info.do) is separate from spot: a tenth of the start balances.
        self.wallet_free: dict[str, Decimal] = {c: _EXACT.divide(Decimal(a), 10)
                                                for c, a in settings.balances.items()}

    def __repr__(self) -> str:
        return f"Account(api_key={self.api_key!r}, orders={len(self.orders)})"

    def currencies(self) -> list[str]:
        return sorted(set(self.free) | set(self.freezed))

    def open_orders(self, symbol: str | None = None) -> list[SimOrder]:
        return [o for o in self.orders.values() if o.is_open and (symbol is None or o.symbol == symbol)]

    def _move(self, currency: str, free: Decimal, freezed: Decimal) -> None:
        self.free[currency] = _EXACT.add(self.free.get(currency, Decimal(0)), free)
        self.freezed[currency] = _EXACT.add(self.freezed.get(currency, Decimal(0)), freezed)

    def add_order(self, order: SimOrder) -> SimOrder:
        """Register an open limit order, freezing its funds; raises 10010 when they are short."""
        pair = pairs()[order.symbol]
        if order.type in (OrderType.BUY, OrderType.BUY_MARKET):
            currency, need = pair.quote, order.price * order.remaining
        else:
            currency, need = pair.base, order.remaining
        if order.is_open:
            if self.free.get(currency, Decimal(0)) < need:
                raise AccountError(10010, "insufficient balance")
            self._move(currency, -need, need)
        self.orders[order.order_id] = order
        return order

    def fill(self, order_id: int, amount: Decimal, price: Decimal | None = None) -> SimOrder:
        """Fill ``amount`` (capped at what remains) at ``price`` (default the order's price)."""
        order = self._get(order_id)
        if not order.is_open:
            raise AccountError(1051 if order.status is OrderStatus.FILLED else 1050, "order is not open")
        amount = min(amount, order.remaining)
        if amount <= 0:
            return order
        price = order.price if price is None else price
        pair = pairs()[order.symbol]
        value = price * amount
        if order.type in (OrderType.BUY, OrderType.BUY_MARKET):
            frozen = order.price * amount
            self._move(pair.quote, frozen - value, -frozen)
            self._move(pair.base, amount, Decimal(0))
        else:
            self._move(pair.base, Decimal(0), -amount)
            self._move(pair.quote, value, Decimal(0))
        order.deal_amount += amount
        order.deal_value += value
        order.status = OrderStatus.FILLED if order.remaining <= 0 else OrderStatus.PARTIALLY_FILLED
        return order

    def cancel(self, order_id: int) -> SimOrder:
        """Cancel an open order, releasing its frozen funds. 10009 unknown, 10050 twice, 1051 filled."""
        order = self._get(order_id)
        if order.status is OrderStatus.CANCELLED:
            raise AccountError(10050, "order already cancelled")
        if order.status is OrderStatus.FILLED:
            raise AccountError(1051, "order already filled")
        pair = pairs()[order.symbol]
        if order.type in (OrderType.BUY, OrderType.BUY_MARKET):
            frozen = order.price * order.remaining
            self._move(pair.quote, frozen, -frozen)
        else:
            self._move(pair.base, order.remaining, -order.remaining)
        order.status = OrderStatus.CANCELLED
        return order

    def _get(self, order_id: int) -> SimOrder:
        order = self.orders.get(order_id)
        if order is None:
            raise AccountError(10009, "order does not exist")
        return order

    def on_trade(self, symbol: str, trade: Trade) -> list[SimOrder]:
        """Fill this account's open orders the market ``trade`` traded through. Returns the changed ones."""
        changed: list[SimOrder] = []
        left = trade.amount
        for order in self.open_orders(symbol):
            if left <= 0:
                break
            crosses = (
                order.type is OrderType.BUY and trade.side is Side.SELL and trade.price <= order.price
            ) or (order.type is OrderType.SELL and trade.side is Side.BUY and trade.price >= order.price)
            if crosses:
                fill = min(left, order.remaining)
                self.fill(order.order_id, fill)
                left -= fill
                changed.append(order)
        return changed


class Accounts:
    """All simulated accounts and the exchange-wide order id counter."""

    def __init__(self, settings: Sequence[AccountSettings], *, seed: int) -> None:
        self._rng = random.Random(f"okex-sim:{seed}:accounts")
        self.next_order_id = 10_000_000 + self._rng.randint(0, 999_999)
        self.by_key: dict[str, Account] = {s.api_key: Account(s) for s in settings}

    def __getitem__(self, api_key: str) -> Account:
        return self.by_key[api_key]

    def __iter__(self) -> Iterator[Account]:
        return iter(self.by_key.values())

    def get(self, api_key: str) -> Account | None:
        return self.by_key.get(api_key)

    def find_order(self, order_id: int) -> tuple[Account, SimOrder]:
        for account in self.by_key.values():
            if order_id in account.orders:
                return account, account.orders[order_id]
        raise AccountError(10009, "order does not exist")

    def new_order_id(self) -> int:
        oid = self.next_order_id
        self.next_order_id += self._rng.randint(1, 7)
        return oid

    def place(
        self,
        account: Account,
        symbol: str,
        order_type: OrderType,
        price: Decimal,
        amount: Decimal,
        now_ms: int,
    ) -> SimOrder:
        """Place a limit order (validated against the pair's increments). Raises AccountError."""
        pair = pairs()[symbol]
        if price <= 0 or amount <= 0:
            raise AccountError(10008, "price and amount must be positive")
        if amount < pair.min_size:
            raise AccountError(10011, "amount below the minimum order size")
        price = price.quantize(pair.quote_increment.normalize(), rounding=ROUND_DOWN)
        amount = amount.quantize(pair.base_increment.normalize(), rounding=ROUND_DOWN)
        order = SimOrder(self.new_order_id(), symbol, order_type, price, amount, now_ms)
        return account.add_order(order)

    def seed_history(self, account: Account, market: Market, now_ms: int) -> None:
        """A deterministic order history for ``account``: filled, partially filled, cancelled and
        open orders within the last two days, and a few older ones (outside order_history.do)."""
        r = self._rng
        symbols = list(market.symbols)
        plan = [
            (OrderStatus.FILLED, 10),
            (OrderStatus.PARTIALLY_FILLED, 3),
            (OrderStatus.CANCELLED, 6),
            (OrderStatus.OPEN, 4),
        ]
        items: list[tuple[int, OrderStatus, str]] = []
        for status, count in plan:
            for _ in range(count):
                items.append((now_ms - r.randint(1, 46 * _HOUR_MS), status, r.choice(symbols)))
        for _ in range(3):  # older than two days
            items.append(
                (now_ms - r.randint(50 * _HOUR_MS, 90 * _HOUR_MS), OrderStatus.FILLED, r.choice(symbols))
            )
        items.sort(key=lambda it: it[0])
        for created, status, symbol in items:
            sm = market[symbol]
            pair = sm.pair
            side = OrderType.BUY if r.random() < 0.5 else OrderType.SELL
            offset = sm.spacing * r.randint(5, 40)
            price = sm.mid() - offset if side is OrderType.BUY else sm.mid() + offset
            price = price.quantize(pair.quote_increment.normalize())
            amount = (pair.min_size * r.randint(1, 30)).quantize(pair.base_increment.normalize())
            order = SimOrder(self.new_order_id(), symbol, side, price, amount, created)
            if status is OrderStatus.FILLED:
                order.deal_amount, order.deal_value, order.status = amount, amount * price, status
            elif status is OrderStatus.CANCELLED:
                part = (amount * Decimal(r.choice([0, 0, 1, 2])) / 4).quantize(
                    pair.base_increment.normalize()
                )
                order.deal_amount, order.deal_value, order.status = part, part * price, status
            if status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
                try:
                    account.add_order(order)
                except AccountError:
                    continue
                if status is OrderStatus.PARTIALLY_FILLED:
                    account.fill(
                        order.order_id,
                        (amount / 2).quantize(pair.base_increment.normalize(), rounding=ROUND_DOWN),
                    )
            else:
                account.orders[order.order_id] = order

    def activity_step(self, account: Account, market: Market, now_ms: int) -> list[SimOrder]:
        """One step of background activity: place a limit order near the price, or cancel one."""
        r = self._rng
        open_orders = account.open_orders()
        if open_orders and (len(open_orders) >= 8 or r.random() < 0.35):
            order = r.choice(sorted(open_orders, key=lambda o: o.order_id))
            return [account.cancel(order.order_id)]
        symbol = r.choice(list(market.symbols))
        sm = market[symbol]
        side = OrderType.BUY if r.random() < 0.5 else OrderType.SELL
        offset = sm.spacing * r.randint(-1, 4)
        price = sm.mid() - offset if side is OrderType.BUY else sm.mid() + offset
        amount = sm.pair.min_size * r.randint(1, 10)
        try:
            return [self.place(account, symbol, side, price, amount, now_ms)]
        except AccountError:
            return []
