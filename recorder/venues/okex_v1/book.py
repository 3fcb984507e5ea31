"""The order book kept from depth pushes (PROTOCOL.md "WebSocket", depth channels).

* ``ok_sub_spot_X_depth`` (incremental): the first push after construction or
  :meth:`OrderBook.reset` is the full book; later pushes are changes: amount 0
  deletes the level, a known price replaces its amount, an unknown price adds it.
  A first push that cannot be a whole book (:func:`whole_book_problem`: a side
  without levels) is refused with BookError and the book stays
  empty.
* ``ok_sub_spot_X_depth_Y`` (Y in 5, 10, 20): every push is the full top-Y book
  and replaces the book wholesale.

Prices are kept as integer ticks: ``price * 10**d`` with ``d`` the decimals of the pair's
``quote_increment`` (:func:`recorder.venues.okex_v1.pairs.pairs`), so ``"1E-8"`` and
``"0.00000001"`` are the same level and the book's dictionaries and sorted lists hash and compare
ints, not Decimals. A price finer than that scale (off the pair's grid), or any price of a symbol
the pair table does not hold (scale 0), makes the book's scale finer for as long as the book lives
(until :meth:`OrderBook.reset`): the keys are multiplied up, nothing is ever rounded, and the level
is kept exactly as before (a book keeps whatever prices the exchange sends, on the grid or not).
A price no integer scale should hold (finer than 10^-40, or 10^60 ticks and more) turns the book
back to Decimal keys until :meth:`OrderBook.reset`, the old behaviour, rather than build huge ints.
The levels themselves are the ``(price, amount)`` Decimal tuples of the update that set them, so
the snapshots hold the exchange's values exactly (digits and exponent as received).
A book whose best bid is at or above its best ask after an update is crossed:
:meth:`OrderBook.apply` raises :class:`~recorder.errors.CrossedBookError` and the
book becomes invalid until :meth:`OrderBook.reset` (an incremental book must be
rebuilt from a fresh full push; a full-depth push repairs it by itself).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence
from datetime import datetime
from decimal import MAX_PREC, MIN_EMIN, Context, Decimal, InvalidOperation, Overflow
from itertools import repeat

from recorder.errors import BookError, CrossedBookError
from recorder.records import BookSnapshot, ChannelKind, DepthUpdate, Level

__all__ = ["DEFAULT_MAX_DEPTH", "MAX_DECIMALS", "OrderBook", "price_decimals", "whole_book_problem"]

DEFAULT_MAX_DEPTH = 200
"""The incremental depth channel carries up to 200 levels per side."""

_DEPTH_KINDS = frozenset({ChannelKind.DEPTH, ChannelKind.DEPTH_5, ChannelKind.DEPTH_10, ChannelKind.DEPTH_20})

MAX_DECIMALS = 40
"""The finest scale a book takes (the pair table's finest is 10 decimals); finer: Decimal keys."""
MAX_TICKS_EXPONENT = 60
"""Ticks of 10^60 and more (a price the exchange never sends): Decimal keys, not huge ints."""

_EXACT = Context(prec=MAX_PREC, Emax=MAX_TICKS_EXPONENT - 1, Emin=MIN_EMIN,
                 traps=[InvalidOperation, Overflow])
"""Products of a price and a power of ten in this context are never rounded; too large ones raise Overflow."""
_mul = _EXACT.multiply

Key = int | Decimal
"""A level's key: its integer ticks, or its Decimal price while a book is on Decimal keys."""


def price_decimals(symbol: str) -> int:
    """The decimals of ``symbol``'s ``quote_increment`` in the pair table (0 for a symbol not in it)."""
    from recorder.venues.okex_v1.pairs import pairs

    pair = pairs().get(symbol)
    if pair is None:
        return 0
    return _decimals_of(pair.quote_increment)


def _decimals_of(value: Decimal) -> int:
    exponent = value.normalize(_EXACT).as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    return max(0, -exponent)


def whole_book_problem(update: DepthUpdate) -> str | None:
    """Why ``update`` cannot be an incremental channel's full push (None: it can).

    The shape part of the book evidence rule (docs/collector.md "Order books"): a
    whole book has at least one bid and one ask level with an amount other than 0.
    (Levels of amount 0 in a full push are tolerated and dropped, and a repeated
    price keeps its last amount, as ever; an increment of one level is what this
    rule refuses.)
    """
    bids = sum(1 for level in update.bids if level[1])
    asks = sum(1 for level in update.asks if level[1])
    if not bids or not asks:
        return f"{bids} bid and {asks} ask levels (a whole book has both sides)"
    return None


class _Scale:
    """The fixed-point scale shared by both sides of a book: ``ticks = price * factor``
    (``factor = 10**decimals``); ``factor`` None: the book is on Decimal keys."""

    __slots__ = ("base", "decimals", "factor", "sides")

    def __init__(self, decimals: int) -> None:
        self.base = min(decimals, MAX_DECIMALS)
        self.decimals = self.base
        self.factor: Decimal | None = Decimal(1).scaleb(self.base, _EXACT)
        self.sides: tuple[_Side, ...] = ()

    def reset(self) -> None:
        """Back to the pair's scale (the sides are empty)."""
        if self.decimals != self.base or self.factor is None:
            self.decimals = self.base
            self.factor = Decimal(1).scaleb(self.base, _EXACT)

    def ticks(self, prices: Sequence[Decimal]) -> list[Key]:
        """The keys of ``prices`` (ticks, exactly); the scale is widened first when one is off it."""
        factor = self.factor
        if factor is None:
            return list(prices)
        try:
            scaled = list(map(_mul, prices, repeat(factor)))
        except Overflow:
            self._to_decimal_keys()
            return list(prices)
        ticks: list[Key] = list(map(int, scaled))
        if scaled != ticks:  # Decimal == int, element by element: one is not a whole number of ticks
            self._widen(prices)
            return self.ticks(prices)
        return ticks

    def key(self, price: Decimal) -> Key:
        """The key of one price (the slow path of :meth:`_Side.change`: off the scale, or Decimal keys)."""
        return self.ticks((price,))[0]

    def _widen(self, prices: Sequence[Decimal]) -> None:
        """Make the scale fine enough for every price of ``prices``; the sides' keys are multiplied up."""
        decimals = max(self.decimals, *map(_decimals_of, prices))
        if decimals > MAX_DECIMALS:
            self._to_decimal_keys()
            return
        up = 10 ** (decimals - self.decimals)
        self.decimals = decimals
        self.factor = Decimal(1).scaleb(decimals, _EXACT)
        for side in self.sides:
            side.levels = {ticks * up: level for ticks, level in side.levels.items()}
            side.prices = [ticks * up for ticks in side.prices]
            side.first = {ticks * up: price for ticks, price in side.first.items()}

    def _to_decimal_keys(self) -> None:
        """Key both sides by their Decimal prices (numerically equal to the ticks they replace)."""
        self.factor = None
        for side in self.sides:
            levels = side.levels
            side.prices = [levels[ticks][0] for ticks in side.prices]
            side.first = {levels[ticks][0]: price for ticks, price in side.first.items()}
            side.levels = {level[0]: level for level in levels.values()}


class _Side:
    """One side of the book: ``ticks -> (price, amount)`` plus the ticks sorted ascending.

    The level tuples are kept as they are (those of the update that set them), so
    :meth:`OrderBook.top` hands them out without building new ones. ``first`` holds the price
    a level was first entered with where a later update replaced it (or a push repeated it):
    the crossed-book message names that one, as the Decimal-keyed book did (its dict kept the
    first key), so the text of a CROSSED_BOOK feed event is unchanged.
    """

    __slots__ = ("first", "levels", "prices", "scale")

    def __init__(self, scale: _Scale) -> None:
        self.scale = scale
        self.levels: dict[Key, Level] = {}
        self.prices: list[Key] = []
        self.first: dict[Key, Decimal] = {}

    def clear(self) -> None:
        self.levels.clear()
        self.prices.clear()
        self.first.clear()

    def key(self, ticks: Key) -> Decimal:
        """The price level ``ticks`` was first entered with."""
        first = self.first.get(ticks)
        return self.levels[ticks][0] if first is None else first

    def load(self, levels: Sequence[Level], ticks: Sequence[Key]) -> None:
        # A price repeated within one push: the last one wins (as in an increment).
        book = dict(zip(ticks, levels, strict=True))
        first: dict[Key, Decimal] = {}
        if len(book) != len(levels):  # a repeated price: remember its first form
            for t, level in zip(ticks, levels, strict=True):
                first.setdefault(t, level[0])
        for price in [price for price, level in book.items() if not level[1]]:
            del book[price]
            first.pop(price, None)
        self.levels = book
        self.prices = sorted(book)
        self.first = first

    def change(self, level: Level) -> None:
        factor = self.scale.factor
        price: Key
        if factor is None:  # on Decimal keys
            price = level[0]
        else:
            try:
                scaled = _mul(level[0], factor)
                price = int(scaled)
            except Overflow:  # so large that the book gives way to Decimal keys
                price = self.scale.key(level[0])
            else:
                if scaled != price:  # off the scale: widen it (both sides)
                    price = self.scale.key(level[0])
        levels = self.levels
        if not level[1]:
            if levels.pop(price, None) is not None:
                prices = self.prices
                del prices[bisect_left(prices, price)]
                if self.first:
                    self.first.pop(price, None)
        elif price in levels:
            self.first.setdefault(price, levels[price][0])
            levels[price] = level
        else:
            levels[price] = level
            insort(self.prices, price)

    def drop(self, ticks: list[Key]) -> None:
        """Forget the levels at ``ticks`` (trimmed; the caller cuts them from ``prices``)."""
        levels = self.levels
        for price in ticks:
            del levels[price]
        if self.first:
            for price in ticks:
                self.first.pop(price, None)


class OrderBook:
    """The order book of one symbol, kept from :class:`~recorder.records.DepthUpdate` pushes.

    ``max_depth`` bounds the levels kept per side (the worst are dropped). ``decimals`` is
    the price scale (default: :func:`price_decimals` of ``symbol``, from the pair table); a
    price finer than it widens it (see the module doc), so any value gives the same book.
    Raises ValueError for ``max_depth`` < 1 or negative ``decimals``.
    Not thread-safe; one book per symbol and connection.
    """

    __slots__ = ("_asks", "_bids", "_invalid", "_ready", "_scale", "_source", "max_depth", "symbol",
                 "ts_event", "ts_recv")

    def __init__(self, symbol: str, max_depth: int = DEFAULT_MAX_DEPTH, decimals: int | None = None) -> None:
        if max_depth < 1:
            raise ValueError(f"max_depth must be >= 1, got {max_depth}")
        if decimals is not None and decimals < 0:
            raise ValueError(f"decimals must be >= 0, got {decimals}")
        self.symbol = symbol
        self.max_depth = max_depth
        self._scale = scale = _Scale(price_decimals(symbol) if decimals is None else decimals)
        self._bids = _Side(scale)  # best = highest = last
        self._asks = _Side(scale)  # best = lowest = first
        scale.sides = (self._bids, self._asks)
        self._ready = False
        self._invalid = False
        self._source = ChannelKind.DEPTH
        self.ts_event: datetime | None = None
        """``ts_event`` of the last update applied."""
        self.ts_recv: datetime | None = None
        """``ts_recv`` of the last update applied."""

    def __repr__(self) -> str:
        state = "invalid" if self._invalid else "ready" if self._ready else "empty"
        return (f"OrderBook({self.symbol!r}, {state}, {len(self._bids.prices)} bids, "
                f"{len(self._asks.prices)} asks, source={self._source.value})")

    @property
    def is_ready(self) -> bool:
        """True once a full book has been applied and no crossed update has broken it since."""
        return self._ready and not self._invalid

    @property
    def source(self) -> ChannelKind:
        """The channel kind the book is kept from (DEPTH or DEPTH_5/10/20)."""
        return self._source

    def reset(self) -> None:
        """Forget everything: the next incremental push is taken as the full book."""
        self._bids.clear()
        self._asks.clear()
        self._scale.reset()
        self._ready = False
        self._invalid = False
        self.ts_event = None
        self.ts_recv = None

    def apply(self, update: DepthUpdate) -> None:
        """Apply one depth push to the book.

        A DEPTH push is the full book when the book is not ready (first push after
        construction or :meth:`reset`), else an increment (amount 0 deletes, known
        price replaces, new price adds). A DEPTH_5/10/20 push replaces the book.
        Then each side is trimmed to ``max_depth`` levels.

        Raises :class:`~recorder.errors.CrossedBookError` when the result is crossed
        (best bid >= best ask): the book is then invalid and must be :meth:`reset`.
        Raises :class:`~recorder.errors.BookError` for another symbol, a non-depth
        kind, an increment to an invalid book, an increment to a book kept
        from a full-depth channel, or a first DEPTH push that is not a whole book
        (:func:`whole_book_problem`; the book stays not ready). PROTOCOL.md "WebSocket", depth channels.
        """
        if update.symbol != self.symbol:
            raise BookError(f"depth update for {update.symbol} applied to the book of {self.symbol}")
        kind = update.kind
        if kind is ChannelKind.DEPTH:
            if self._invalid:
                raise BookError(f"book of {self.symbol} is invalid after a crossed update: reset() it first")
            if self._ready:
                if self._source is not ChannelKind.DEPTH:
                    raise BookError(
                        f"incremental depth update for {self.symbol} applied to a book kept from "
                        f"{self._source.value}: reset() it first"
                    )
                bid_change, ask_change = self._bids.change, self._asks.change
                for level in update.bids:
                    bid_change(level)
                for level in update.asks:
                    ask_change(level)
            else:
                problem = whole_book_problem(update)
                if problem is not None:
                    raise BookError(f"first push for {self.symbol} is not a whole book: {problem}")
                self._load(update)
        elif kind in _DEPTH_KINDS:
            self._load(update)
        else:
            raise BookError(f"{kind.value} update is not a depth push")
        self._source = kind
        self.ts_event = update.ts_event
        self.ts_recv = update.ts_recv
        self._trim()
        bid_prices, ask_prices = self._bids.prices, self._asks.prices
        if bid_prices and ask_prices and bid_prices[-1] >= ask_prices[0]:
            self._invalid = True
            raise CrossedBookError(self.symbol, self._bids.key(bid_prices[-1]), self._asks.key(ask_prices[0]))

    def _load(self, update: DepthUpdate) -> None:
        bids, asks = update.bids, update.asks
        self._bids.clear()  # the keys of the old levels must not be widened in vain
        self._asks.clear()
        ticks = self._scale.ticks([level[0] for level in bids + asks])
        n = len(bids)
        self._bids.load(bids, ticks[:n])
        self._asks.load(asks, ticks[n:])
        self._ready = True
        self._invalid = False

    def _trim(self) -> None:
        limit = self.max_depth
        bids = self._bids
        excess = len(bids.prices) - limit
        if excess > 0:
            bids.drop(bids.prices[:excess])  # the lowest bids
            del bids.prices[:excess]
        asks = self._asks
        excess = len(asks.prices) - limit
        if excess > 0:
            asks.drop(asks.prices[limit:])  # the highest asks
            del asks.prices[limit:]

    def top(self, n: int | None = None) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """The best ``n`` levels per side (all with None): ``(bids best-first, asks best-first)``.

        Only the ``n`` levels returned are touched (the sides are kept sorted).
        Returns empty tuples for an empty book; does not check :attr:`is_ready`.
        """
        bid_prices, ask_prices = self._bids.prices, self._asks.prices
        bid_levels, ask_levels = self._bids.levels, self._asks.levels
        if n is None:
            bid_slice = bid_prices[::-1]
            ask_slice = ask_prices
        else:
            if n < 0:
                raise ValueError(f"n must be >= 0, got {n}")
            bid_slice = bid_prices[: -n - 1 : -1] if n else []
            ask_slice = ask_prices[:n]
        return tuple(map(bid_levels.__getitem__, bid_slice)), tuple(map(ask_levels.__getitem__, ask_slice))

    def best_bid(self) -> Level | None:
        """The highest bid, or None."""
        prices = self._bids.prices
        return self._bids.levels[prices[-1]] if prices else None

    def best_ask(self) -> Level | None:
        """The lowest ask, or None."""
        prices = self._asks.prices
        return self._asks.levels[prices[0]] if prices else None

    def snapshot(
        self, depth: int | None = None, ts_event: datetime | None = None, ts_recv: datetime | None = None,
        *, top: tuple[tuple[Level, ...], tuple[Level, ...]] | None = None,
    ) -> BookSnapshot:
        """The top ``depth`` levels (all with None) as a :class:`~recorder.records.BookSnapshot`.

        The one place a v1 book snapshot is built. ``ts_event`` / ``ts_recv`` default to those
        of the last update applied; ``top`` is :meth:`top` already taken by the caller (the
        session's snapshot cadence compares it), so it is not walked twice.
        Raises :class:`~recorder.errors.BookError` when the book is not ready
        (no full push yet, or invalid after a crossed update).
        """
        if not self.is_ready:
            state = "invalid after a crossed update" if self._invalid else "not ready (no full book yet)"
            raise BookError(f"book of {self.symbol} is {state}")
        ts_event = ts_event if ts_event is not None else self.ts_event
        ts_recv = ts_recv if ts_recv is not None else self.ts_recv
        if ts_event is None or ts_recv is None:  # pragma: no cover - a ready book has both
            raise BookError(f"book of {self.symbol} has no timestamps")
        bids, asks = self.top(depth) if top is None else top
        return BookSnapshot(
            venue="okex_v1", symbol=self.symbol, ts_event=ts_event, ts_recv=ts_recv, bids=bids, asks=asks,
            source=self._source.value,
        )
