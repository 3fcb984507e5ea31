"""The simulated market: a seeded, deterministic model per symbol, no I/O.

Each :class:`SymbolMarket` keeps an order book of up to ``depth`` levels per side
that changes one level at a time (add, replace, delete), trades that hit it (tid
increasing), rolling 24 h ticker statistics and klines for every period. Time is
passed in (``now_ms``), never read, and randomness comes from an RNG seeded with
``(seed, symbol)``: the same seed and the same calls give the same events.
Prices and amounts are :class:`~decimal.Decimal` on the pair's increments
(``recorder.venues.okex_v1.pairs``).
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Context, Decimal

from recorder.records import KlinePeriod, Side
from recorder.venues.okex_v1.pairs import Pair, pairs

# Rough starting prices (late 2018) for known pairs; others get a seeded price.
_BASE_PRICES = {
    "btc_usdt": "6500",
    "eth_usdt": "210",
    "ltc_usdt": "52",
    "bch_usdt": "450",
    "okb_usdt": "1.2",
    "ltc_btc": "0.0085",
    "bch_btc": "0.07",
    "eth_btc": "0.032",
    "etc_btc": "0.0014",
}
# Typical order value in quote currency, to size amounts.
_QUOTE_SCALE = {"usdt": 3000.0, "btc": 0.4, "eth": 12.0, "okb": 2500.0}
_DAY_MS = 86_400_000
_KLINE_HISTORY = 300  # rows of synthetic history per period
_TRADE_HISTORY = 600


class BookSide(enum.Enum):
    BID = "bids"
    ASK = "asks"


@dataclass(frozen=True, slots=True)
class BookChange:
    """One level changed: ``amount`` is the new amount, 0 means the level is gone."""

    side: BookSide
    price: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Trade:
    """A trade. ``side`` is the aggressor: BUY hit the asks (WebSocket ``bid``)."""

    tid: int
    price: Decimal
    amount: Decimal
    side: Side
    ts_ms: int


@dataclass(frozen=True, slots=True)
class TickerStats:
    buy: Decimal
    sell: Decimal
    last: Decimal
    high: Decimal
    low: Decimal
    vol: Decimal
    change: Decimal
    day_high: Decimal
    day_low: Decimal


@dataclass(frozen=True, slots=True)
class KlineRow:
    ts_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one market step did: the book changes in order, the trades, what moved."""

    symbol: str
    seq: int
    ts_ms: int
    changes: tuple[BookChange, ...]
    trades: tuple[Trade, ...]
    ticker_changed: bool


def format_decimal(value: Decimal, *, exponent: bool = False) -> str:
    """A plain decimal string (``"0.0085"``, ``"6500"``); with ``exponent``, Python's short
    scientific form for tiny values (``"1E-8"``), as the real service sometimes sent."""
    # normalize() rounds to the context's precision (28 digits): give it enough for every digit,
    # so a configured "99999999999999999999.999999999999999999" is sent exactly as configured.
    value = value.normalize(Context(prec=max(28, len(value.as_tuple().digits)))) if value else Decimal(0)
    if exponent:
        return str(value)
    return format(value, "f")


def period_start(ts_ms: int, period: KlinePeriod) -> int:
    """Start (ms) of the kline bucket holding ``ts_ms``: epoch-aligned multiples of the period."""
    length = int(period.duration.total_seconds() * 1000)
    return ts_ms - ts_ms % length


class SymbolMarket:
    """The market of one symbol. Pure: call :meth:`step` with the current time."""

    def __init__(self, symbol: str, *, seed: int, depth: int, now_ms: int) -> None:
        self.symbol = symbol
        self.pair: Pair = pairs()[symbol]
        self.depth = depth
        self.seq = 0
        self._rng = random.Random(f"okex-sim:{seed}:{symbol}")
        self.tick = self.pair.quote_increment.normalize()  # "0.00000100" has exponent -8: normalise
        self.lot = self.pair.base_increment.normalize()
        base = _BASE_PRICES.get(symbol)
        mid = Decimal(base) if base else Decimal(str(round(self._rng.uniform(0.5, 50), 4)))
        mid = self._q_price(mid)
        self.spacing = max(self.tick, self._q_price(mid * Decimal("0.0003")))
        self._quote_scale = _QUOTE_SCALE.get(self.pair.quote, 100.0)
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        half = self.spacing
        initial = depth * 9 // 10
        for i in range(initial):
            self.bids[self._q_price(mid - half - self.spacing * i)] = self._amount(mid)
            self.asks[self._q_price(mid + half + self.spacing * i)] = self._amount(mid)
        self.bids = {p: a for p, a in self.bids.items() if p > 0}
        # 24 h statistics: a seeded baseline plus the trades of the last 24 h.
        r = self._rng
        self._open24 = self._q_price(mid * Decimal(str(round(1 + r.uniform(-0.04, 0.04), 6))))
        self._base_high = self._q_price(
            max(self._open24, mid) * Decimal(str(round(1 + r.uniform(0, 0.03), 6)))
        )
        self._base_low = self._q_price(
            min(self._open24, mid) * Decimal(str(round(1 - r.uniform(0, 0.03), 6)))
        )
        self._base_vol = self._q_amount(
            Decimal(str(round(r.uniform(500, 5000) * self._quote_scale, 2))) / mid
        )
        self._recent: deque[Trade] = deque()  # trades of the last 24 h
        self._recent_vol = Decimal(0)
        self.trades: deque[Trade] = deque(maxlen=_TRADE_HISTORY)
        self.next_tid = r.randint(1_000_000, 9_000_000)
        self.last = mid
        self.klines: dict[KlinePeriod, dict[int, list[Decimal]]] = {}
        self._seed_history(now_ms, mid)
        self._last_ticker_key = self._ticker_key()

    # ---- helpers -------------------------------------------------------------------------------
    def _q_price(self, value: Decimal) -> Decimal:
        return value.quantize(self.tick, rounding=ROUND_HALF_EVEN)

    def _q_amount(self, value: Decimal) -> Decimal:
        q = value.quantize(self.lot, rounding=ROUND_DOWN)
        return max(q, self.pair.min_size)

    def _amount(self, price: Decimal) -> Decimal:
        value = self._rng.expovariate(1.0) * self._quote_scale / float(price)
        return self._q_amount(Decimal(repr(round(value, 10))))

    def _seed_history(self, now_ms: int, mid: Decimal) -> None:
        r = self._rng
        for i in range(60, 0, -1):
            price = self._q_price(mid * Decimal(str(round(1 + r.uniform(-0.002, 0.002), 6))))
            side = Side.BUY if r.random() < 0.5 else Side.SELL
            trade = Trade(self.next_tid, price, self._amount(price), side, now_ms - i * 1000)
            self.next_tid += 1
            self.trades.append(trade)
        for period in KlinePeriod.v1_periods():
            length = int(period.duration.total_seconds() * 1000)
            start = period_start(now_ms, period)
            rows: dict[int, list[Decimal]] = {}
            close = mid
            step = 0.001 * (length / 60_000) ** 0.5
            for i in range(_KLINE_HISTORY):  # backwards from the current bucket
                open_ = self._q_price(close * Decimal(str(round(1 + r.gauss(0, step), 8))))
                hi = self._q_price(max(open_, close) * Decimal(str(round(1 + abs(r.gauss(0, step / 2)), 8))))
                lo = self._q_price(min(open_, close) * Decimal(str(round(1 - abs(r.gauss(0, step / 2)), 8))))
                vol = self._q_amount(Decimal(str(round(r.uniform(5, 50) * length / 60_000, 4))))
                rows[start - i * length] = [open_, hi, lo, close, vol]
                close = open_
            self.klines[period] = dict(sorted(rows.items()))

    # ---- state ---------------------------------------------------------------------------------
    def best_bid(self) -> Decimal | None:
        return max(self.bids) if self.bids else None

    def best_ask(self) -> Decimal | None:
        return min(self.asks) if self.asks else None

    def mid(self) -> Decimal:
        bb, ba = self.best_bid(), self.best_ask()
        if bb is None or ba is None:
            return self.last
        return self._q_price((bb + ba) / 2)

    def book(
        self, depth: int | None = None
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """``(bids highest first, asks lowest first)``, each cut to ``depth`` levels."""
        bids = sorted(self.bids.items(), key=lambda kv: kv[0], reverse=True)
        asks = sorted(self.asks.items(), key=lambda kv: kv[0])
        if depth is not None:
            bids, asks = bids[:depth], asks[:depth]
        return bids, asks

    def ticker(self) -> TickerStats:
        """The current ticker: best bid/ask, last, rolling 24 h high/low/volume."""
        prices = [t.price for t in self._recent]
        high = max([self._base_high, *prices])
        low = min([self._base_low, *prices])
        bb, ba = self.best_bid(), self.best_ask()
        return TickerStats(
            buy=bb if bb is not None else self.last,
            sell=ba if ba is not None else self.last,
            last=self.last,
            high=high,
            low=low,
            vol=self._base_vol + self._recent_vol,
            change=self.last - self._open24,
            day_high=high,
            day_low=low,
        )

    def _ticker_key(self) -> tuple[Decimal, ...]:
        t = self.ticker()
        return (t.buy, t.sell, t.last, t.high, t.low, t.vol)

    def trades_since(self, since: int | None, limit: int = 60) -> list[Trade]:
        """Up to ``limit`` trades with tid > ``since`` (oldest first); the newest ones without it."""
        if since is None:
            return list(self.trades)[-limit:]
        return [t for t in self.trades if t.tid > since][:limit]

    def kline_rows(
        self, period: KlinePeriod, *, since_ms: int | None = None, size: int | None = None
    ) -> list[KlineRow]:
        """Kline rows oldest first; ``since_ms`` keeps rows starting at or after it, ``size`` the last N."""
        rows = [KlineRow(ts, *vals) for ts, vals in self.klines[period].items()]
        if since_ms is not None:
            rows = [r for r in rows if r.ts_ms >= since_ms]
        if size is not None:
            rows = rows[-size:]
        return rows

    # ---- evolution -----------------------------------------------------------------------------
    def step(self, now_ms: int) -> StepResult:
        """Advance the market by one update: 1-3 level changes or trades. Returns what happened."""
        self.seq += 1
        changes: list[BookChange] = []
        trades: list[Trade] = []
        r = self._rng
        for _ in range(r.randint(1, 3)):
            roll = r.random()
            if roll < 0.22:
                self._trade(now_ms, changes, trades)
            elif roll < 0.55:
                self._add(changes)
            elif roll < 0.85:
                self._replace(changes)
            else:
                self._delete(changes)
        for side in BookSide:
            self._refill(side, changes)
        for t in trades:
            self._record_trade(t)
        self._expire(now_ms)
        key = self._ticker_key()
        ticker_changed = key != self._last_ticker_key
        self._last_ticker_key = key
        return StepResult(self.symbol, self.seq, now_ms, tuple(changes), tuple(trades), ticker_changed)

    def _levels(self, side: BookSide) -> dict[Decimal, Decimal]:
        return self.bids if side is BookSide.BID else self.asks

    def _set(self, side: BookSide, price: Decimal, amount: Decimal, changes: list[BookChange]) -> None:
        levels = self._levels(side)
        if amount <= 0:
            if price in levels:
                del levels[price]
                changes.append(BookChange(side, price, Decimal(0)))
            return
        levels[price] = amount
        changes.append(BookChange(side, price, amount))

    def _pick_side(self) -> BookSide:
        return BookSide.BID if self._rng.random() < 0.5 else BookSide.ASK

    def _add(self, changes: list[BookChange]) -> None:
        side = self._pick_side()
        levels = self._levels(side)
        bb, ba = self.best_bid(), self.best_ask()
        r = self._rng
        if bb is not None and ba is not None and ba - bb > self.tick * 2 and r.random() < 0.3:
            ticks = int((ba - bb) / self.tick)
            price = bb + self.tick * r.randint(1, ticks - 1)  # inside the spread: moves the price
        else:
            ref = (bb if side is BookSide.BID else ba) or self.mid()
            k = r.randint(0, max(1, len(levels)))
            offset = self.spacing * k + self.tick * r.randint(0, 3)
            price = ref - offset if side is BookSide.BID else ref + offset
        price = self._q_price(price)
        if price <= 0 or (side is BookSide.BID and ba is not None and price >= ba):
            return
        if side is BookSide.ASK and bb is not None and price <= bb:
            return
        if price not in levels and len(levels) >= self.depth:
            worst = min(levels) if side is BookSide.BID else max(levels)
            if (side is BookSide.BID and price < worst) or (side is BookSide.ASK and price > worst):
                return
            self._set(side, worst, Decimal(0), changes)
        self._set(side, price, self._amount(price), changes)

    def _replace(self, changes: list[BookChange]) -> None:
        side = self._pick_side()
        levels = self._levels(side)
        if not levels:
            return
        price = self._rng.choice(sorted(levels))
        self._set(side, price, self._amount(price), changes)

    def _delete(self, changes: list[BookChange]) -> None:
        side = self._pick_side()
        levels = self._levels(side)
        if len(levels) <= self.depth // 4:
            return
        price = self._rng.choice(sorted(levels))
        self._set(side, price, Decimal(0), changes)

    def _trade(self, now_ms: int, changes: list[BookChange], trades: list[Trade]) -> None:
        taker = Side.BUY if self._rng.random() < 0.5 else Side.SELL
        book_side = BookSide.ASK if taker is Side.BUY else BookSide.BID
        levels = self._levels(book_side)
        if not levels:
            return
        price = min(levels) if taker is Side.BUY else max(levels)
        # Mostly part of the top level, sometimes all of it and more.
        wanted = self._q_amount(levels[price] * Decimal(str(round(self._rng.uniform(0.05, 1.6), 4))))
        while wanted > 0 and levels:
            price = min(levels) if taker is Side.BUY else max(levels)
            available = levels[price]
            fill = min(wanted, available)
            trades.append(Trade(self.next_tid, price, fill, taker, now_ms))
            self.next_tid += 1
            wanted -= fill
            self._set(book_side, price, available - fill, changes)

    def _refill(self, side: BookSide, changes: list[BookChange]) -> None:
        levels = self._levels(side)
        while len(levels) < self.depth // 4:
            if levels:
                worst = min(levels) if side is BookSide.BID else max(levels)
            else:
                other = self.best_ask() if side is BookSide.BID else self.best_bid()
                worst = other if other is not None else self.last
            price = worst - self.spacing if side is BookSide.BID else worst + self.spacing
            price = self._q_price(price)
            if price <= 0:
                return
            self._set(side, price, self._amount(price), changes)

    def _record_trade(self, trade: Trade) -> None:
        self.trades.append(trade)
        self._recent.append(trade)
        self._recent_vol += trade.amount
        self.last = trade.price
        for period, rows in self.klines.items():
            start = period_start(trade.ts_ms, period)
            row = rows.get(start)
            if row is None:
                rows[start] = [trade.price, trade.price, trade.price, trade.price, trade.amount]
                if len(rows) > 2000:
                    del rows[next(iter(rows))]
            else:
                row[1] = max(row[1], trade.price)
                row[2] = min(row[2], trade.price)
                row[3] = trade.price
                row[4] += trade.amount

    def _expire(self, now_ms: int) -> None:
        while self._recent and self._recent[0].ts_ms < now_ms - _DAY_MS:
            self._recent_vol -= self._recent.popleft().amount


class Market:
    """Every simulated symbol's :class:`SymbolMarket`, built from one seed."""

    def __init__(self, symbols: Sequence[str], *, seed: int, depth: int, now_ms: int) -> None:
        self.seed = seed
        self.symbols: dict[str, SymbolMarket] = {
            s: SymbolMarket(s, seed=seed, depth=depth, now_ms=now_ms) for s in symbols
        }

    def __getitem__(self, symbol: str) -> SymbolMarket:
        return self.symbols[symbol]

    def __contains__(self, symbol: object) -> bool:
        return symbol in self.symbols

    def __iter__(self) -> Iterator[str]:
        return iter(self.symbols)
