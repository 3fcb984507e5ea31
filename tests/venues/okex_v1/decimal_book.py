"""The Decimal-keyed v1 order book as it was before integer ticks (commit d7e2dd6): the oracle of
tests/venues/okex_v1/test_book_ticks.py. Kept verbatim below this docstring; not used by the recorder.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from recorder.errors import BookError, CrossedBookError
from recorder.records import BookSnapshot, ChannelKind, DepthUpdate, Level

__all__ = ["OrderBook"]

DEFAULT_MAX_DEPTH = 200
"""The incremental depth channel carries up to 200 levels per side."""

_DEPTH_KINDS = frozenset({ChannelKind.DEPTH, ChannelKind.DEPTH_5, ChannelKind.DEPTH_10, ChannelKind.DEPTH_20})


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


class _Side:
    """One side of the book: ``price -> (price, amount)`` plus the prices sorted ascending.

    The level tuples are kept as they are (those of the update that set them), so
    :meth:`OrderBook.top` hands them out without building new ones.
    """

    __slots__ = ("levels", "prices")

    def __init__(self) -> None:
        self.levels: dict[Decimal, Level] = {}
        self.prices: list[Decimal] = []

    def clear(self) -> None:
        self.levels.clear()
        self.prices.clear()

    def load(self, levels: Iterable[Level]) -> None:
        # A price repeated within one push: the last one wins (as in an increment).
        book = {level[0]: level for level in levels}
        for price in [price for price, level in book.items() if not level[1]]:
            del book[price]
        self.levels = book
        self.prices = sorted(book)

    def change(self, level: Level) -> None:
        price = level[0]
        levels = self.levels
        if not level[1]:
            if levels.pop(price, None) is not None:
                prices = self.prices
                del prices[bisect_left(prices, price)]
        elif price in levels:
            levels[price] = level
        else:
            levels[price] = level
            insort(self.prices, price)


class OrderBook:
    """The order book of one symbol, kept from :class:`~recorder.records.DepthUpdate` pushes.

    ``max_depth`` bounds the levels kept per side (the worst are dropped).
    Not thread-safe; one book per symbol and connection.
    """

    __slots__ = ("_asks", "_bids", "_invalid", "_ready", "_source", "max_depth", "symbol", "ts_event",
                 "ts_recv")

    def __init__(self, symbol: str, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        if max_depth < 1:
            raise ValueError(f"max_depth must be >= 1, got {max_depth}")
        self.symbol = symbol
        self.max_depth = max_depth
        self._bids = _Side()  # best = highest = last
        self._asks = _Side()  # best = lowest = first
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
            raise CrossedBookError(self.symbol, bid_prices[-1], ask_prices[0])

    def _load(self, update: DepthUpdate) -> None:
        self._bids.load(update.bids)
        self._asks.load(update.asks)
        self._ready = True
        self._invalid = False

    def _trim(self) -> None:
        limit = self.max_depth
        bids = self._bids
        excess = len(bids.prices) - limit
        if excess > 0:
            for price in bids.prices[:excess]:  # the lowest bids
                del bids.levels[price]
            del bids.prices[:excess]
        asks = self._asks
        excess = len(asks.prices) - limit
        if excess > 0:
            for price in asks.prices[limit:]:  # the highest asks
                del asks.levels[price]
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
