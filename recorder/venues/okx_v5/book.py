"""The OKX v5 order book in integer ticks, with seqId chaining and the CRC32 checksum.

Implements PROTOCOL.md §3.2 ("Applying an update", "Sequence rules", "Checksum")
and §9 (worked checksum example).

* Prices and sizes are fixed-point integers: ``price_ticks = price * 10**price_decimals``
  and ``size_units = size * 10**size_decimals``, the decimals taken from the
  instrument's ``tickSz`` and ``lotSz`` (:meth:`Scale.from_sizes`). ``"3366"`` and
  ``"3366.0"`` are the same level. A value finer than the scale is a
  :class:`~recorder.errors.DecodeError` (never silently rounded).
* The strings last received for each level are kept too: the checksum is
  computed on them exactly as received (§3.2 step 4; for a price sent in two
  textual forms the most recent string is used, as PROTOCOL.md §11 assumes).
* Sequence: a snapshot starts the chain; every update's ``prevSeqId`` must equal
  the last ``seqId``. ``seqId == prevSeqId`` is a heartbeat; ``seqId < prevSeqId``
  (with a linking ``prevSeqId``) is the documented reset after maintenance,
  accepted unless ``accept_sequence_reset=False``. Anything else raises
  :class:`~recorder.errors.SequenceGapError` and drops the book.
* Checksum: verified when the exchange sends a non-zero value, skipped when it
  sends 0 or none (:class:`ChecksumMode`); a mismatch raises
  :class:`~recorder.errors.ChecksumMismatchError` and drops the book.
* Impossible values: a level with a price <= 0 or a negative size is a
  :class:`~recorder.errors.DecodeError` (as v1's depth levels); a book whose best bid is at or
  above its best ask after a snapshot or update is crossed:
  :class:`~recorder.errors.CrossedBookError`, and the book is dropped (never stored).
"""

from __future__ import annotations

import enum
import zlib
from bisect import bisect_left, insort
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from recorder.errors import BookError, ChecksumMismatchError, CrossedBookError, DecodeError, SequenceGapError

from .parse import NUMBER
from .records import BookLevel, BookSnapshot

__all__ = [
    "CHECKSUM_LEVELS",
    "ChecksumMode",
    "OrderBook",
    "Scale",
    "checksum",
    "checksum_string",
    "decimals_of",
    "to_fixed",
]

CHECKSUM_LEVELS = 25
"""Levels per side that feed the checksum (§3.2 step 2)."""

def decimals_of(increment: str) -> int:
    """Decimal places of a ``tickSz``/``lotSz`` string (§4.5): ``"0.1"`` → 1, ``"1"`` → 0, ``"1e-8"`` → 8.

    Raises :class:`~recorder.errors.DecodeError` for a non-positive or malformed value.
    """
    if not isinstance(increment, str) or NUMBER.fullmatch(increment) is None:
        raise DecodeError(f"increment {increment!r} is not a decimal number")
    d = Decimal(increment)
    if d <= 0:
        raise DecodeError(f"increment {increment!r} must be a positive number")
    exponent = d.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def to_fixed(text: str, decimals: int, field: str = "value") -> int:
    """``text`` (a v5 number string, §0) as an integer scaled by ``10**decimals``, exactly (§3.2:
    prices compare as decimals).

    Plain unsigned notation takes a fast path; signs and exponent notation (``"1e-07"``) go
    through :class:`~decimal.Decimal`. Raises :class:`~recorder.errors.DecodeError` naming
    ``field`` for an empty, malformed or non-finite value, or one finer than the scale.
    """
    whole, _, frac = text.partition(".")
    if whole.isascii() and whole.isdigit() and (not frac or (frac.isascii() and frac.isdigit())):
        n = len(frac)
        if n <= decimals:
            return int(whole + frac) * 10 ** (decimals - n)
        if frac[decimals:].strip("0"):
            raise DecodeError(f"{field} {text!r} is finer than the scale (10^-{decimals})")
        return int(whole + frac[:decimals])
    if not isinstance(text, str) or NUMBER.fullmatch(text) is None:
        raise DecodeError(f"{field} {text!r} is not a decimal number")
    scaled = Decimal(text).scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise DecodeError(f"{field} {text!r} is finer than the scale (10^-{decimals})")
    return int(scaled)


MAX_DECIMALS = 30
"""Largest scale accepted (v5 increments have at most about 12 decimals)."""


@dataclass(frozen=True, slots=True)
class Scale:
    """Fixed-point scale of one instrument (§4.5): decimals of ``tickSz`` (prices) and ``lotSz`` (sizes)."""

    price_decimals: int
    size_decimals: int

    def __post_init__(self) -> None:
        for name in ("price_decimals", "size_decimals"):
            if not 0 <= getattr(self, name) <= MAX_DECIMALS:
                raise DecodeError(f"{name} {getattr(self, name)} is outside 0..{MAX_DECIMALS}")

    @classmethod
    def from_sizes(cls, tick_sz: str, lot_sz: str) -> Scale:
        """The scale of an instrument from its ``tickSz`` and ``lotSz`` strings (§4.5)."""
        return cls(decimals_of(tick_sz), decimals_of(lot_sz))

    def price(self, ticks: int) -> Decimal:
        """``ticks`` back as an exact Decimal price."""
        return Decimal(ticks).scaleb(-self.price_decimals)

    def size(self, units: int) -> Decimal:
        """``units`` back as an exact Decimal size."""
        return Decimal(units).scaleb(-self.size_decimals)


def checksum_string(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> str:
    """The §3.2 check string: bid i then ask i for i < 25, ``price:size``, all joined by ``:``.

    ``bids`` best first (descending), ``asks`` best first (ascending), strings as received.
    """
    parts: list[str] = []
    nb, na = len(bids), len(asks)
    for i in range(CHECKSUM_LEVELS):
        if i < nb:
            parts += bids[i]
        if i < na:
            parts += asks[i]
    return ":".join(parts)


def checksum(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> int:
    """CRC32 (zlib/IEEE) of :func:`checksum_string` as a signed 32-bit int (§3.2 step 5, §9)."""
    v = zlib.crc32(checksum_string(bids, asks).encode()) & 0xFFFFFFFF
    return v - (1 << 32) if v >= (1 << 31) else v


class ChecksumMode(enum.Enum):
    """How the book treats the exchange's ``checksum`` (§3.2 "Current state")."""

    VERIFY_NONZERO = "verify_nonzero"  # default: verify non-zero values, skip 0 and absent
    OFF = "off"  # never verify


class _Side:
    """One side: ``ticks -> (size_units, order_count, px_str, sz_str)`` and the ticks sorted ascending."""

    __slots__ = ("levels", "ticks")

    def __init__(self) -> None:
        self.levels: dict[int, tuple[int, int | None, str, str]] = {}
        self.ticks: list[int] = []

    @classmethod
    def load(cls, parsed: Sequence[BookLevel], raw: Sequence[Sequence[str]]) -> _Side:
        # A price repeated within one snapshot: the last one wins; size 0 means absent.
        side = cls()
        levels = side.levels
        for lv, r in zip(parsed, raw, strict=True):
            if lv[1]:
                levels[lv[0]] = (lv[1], lv[2], r[0], r[1])
            else:
                levels.pop(lv[0], None)
        side.ticks = sorted(levels)
        return side

    def set(self, tick: int, size: int, count: int | None, px: str, sz: str) -> None:
        levels = self.levels
        if size == 0:
            if levels.pop(tick, None) is not None:
                ticks = self.ticks
                del ticks[bisect_left(ticks, tick)]
        else:
            if tick not in levels:
                insort(self.ticks, tick)
            levels[tick] = (size, count, px, sz)


class OrderBook:
    """The local book of one ``(channel, instId)`` (§3.2).

    ``depth``: levels kept per side (400 for ``books``); after each message the
    worst levels beyond it are dropped (whether the server deletes them itself is
    unconfirmed, so ``truncate=False`` keeps them). Not thread-safe.
    """

    __slots__ = (
        "_asks",
        "_bids",
        "accept_sequence_reset",
        "channel",
        "checksum_mode",
        "depth",
        "instrument",
        "scale",
        "seq_id",
        "truncate",
        "ts_event",
    )

    def __init__(
        self,
        instrument: str,
        scale: Scale,
        *,
        channel: str = "books",
        depth: int = 400,
        checksum_mode: ChecksumMode = ChecksumMode.VERIFY_NONZERO,
        accept_sequence_reset: bool = True,
        truncate: bool = True,
    ) -> None:
        self.instrument = instrument
        self.channel = channel
        self.scale = scale
        self.depth = depth
        self.checksum_mode = checksum_mode
        self.accept_sequence_reset = accept_sequence_reset
        self.truncate = truncate
        self._bids = _Side()
        self._asks = _Side()
        self.seq_id: int | None = None
        self.ts_event: datetime | None = None

    @property
    def is_valid(self) -> bool:
        """True once a snapshot was applied and nothing broke the chain since."""
        return self.ts_event is not None

    def reset(self) -> None:
        """Drop the book: it is invalid until the next snapshot."""
        self._bids = _Side()
        self._asks = _Side()
        self.seq_id = None
        self.ts_event = None

    def parse_levels(self, levels: Sequence[Sequence[str]], side: str) -> tuple[BookLevel, ...]:
        """Wire levels ``[px, sz, "0", count]`` (§3.2) as ``(price_ticks, size_units, count)``.

        Raises :class:`~recorder.errors.DecodeError` naming ``side`` for a short or bad level, or an
        impossible one (price <= 0, size < 0; size 0 is a deletion).
        """
        out: list[BookLevel] = []
        pd, sd = self.scale.price_decimals, self.scale.size_decimals
        for level in levels:
            if len(level) < 2:
                raise DecodeError(f"{side} level {level!r} has fewer than 2 elements")
            count: int | None = None
            if len(level) >= 4 and level[3] != "":
                c = level[3]
                if not c.isascii() or not c.isdigit():
                    raise DecodeError(f"{side} level orderCount {c!r} is not an integer")
                count = int(c)
            price = to_fixed(level[0], pd, f"{side} price")
            size = to_fixed(level[1], sd, f"{side} size")
            if price <= 0 or size < 0:
                raise DecodeError(
                    f"{side} level {list(level[:2])!r}: impossible level (price <= 0 or size < 0)"
                )
            out.append((price, size, count))
        return tuple(out)

    def apply_snapshot(
        self,
        bids: Sequence[Sequence[str]],
        asks: Sequence[Sequence[str]],
        *,
        ts_event: datetime,
        seq_id: int | None = None,
        checksum_value: int | None = None,
    ) -> tuple[tuple[BookLevel, ...], tuple[BookLevel, ...]]:
        """Replace the book with a snapshot (§3.2: ``action: snapshot``, or any ``books5``/``bbo-tbt`` push).

        Returns the parsed ``(bids, asks)``. Raises DecodeError (book unchanged), or
        CrossedBookError or ChecksumMismatchError (book dropped).
        """
        pb = self.parse_levels(bids, "bids")
        pa = self.parse_levels(asks, "asks")
        self._bids = _Side.load(pb, bids)
        self._asks = _Side.load(pa, asks)
        self._finish(ts_event, seq_id, checksum_value)
        return pb, pa

    def apply_update(
        self,
        bids: Sequence[Sequence[str]],
        asks: Sequence[Sequence[str]],
        *,
        ts_event: datetime,
        prev_seq_id: int,
        seq_id: int,
        checksum_value: int | None = None,
    ) -> tuple[tuple[BookLevel, ...], tuple[BookLevel, ...]]:
        """Apply an ``update`` (increment) after checking the seqId chain (§3.2 rules 3–6).

        Returns the parsed ``(bids, asks)``. Raises SequenceGapError, CrossedBookError or
        ChecksumMismatchError (the book is dropped), or DecodeError (book dropped too:
        a half-understood increment cannot be trusted).
        """
        if self.ts_event is None or self.seq_id is None:
            self.reset()
            raise SequenceGapError(self.instrument, None, prev_seq_id, seq_id)
        if prev_seq_id != self.seq_id or (seq_id < prev_seq_id and not self.accept_sequence_reset):
            expected = self.seq_id
            self.reset()
            raise SequenceGapError(self.instrument, expected, prev_seq_id, seq_id)
        try:
            pb = self.parse_levels(bids, "bids")
            pa = self.parse_levels(asks, "asks")
        except DecodeError:
            self.reset()
            raise
        side = self._bids
        for lv, raw in zip(pb, bids, strict=True):
            side.set(lv[0], lv[1], lv[2], raw[0], raw[1])
        side = self._asks
        for lv, raw in zip(pa, asks, strict=True):
            side.set(lv[0], lv[1], lv[2], raw[0], raw[1])
        self._finish(ts_event, seq_id, checksum_value)
        return pb, pa

    def _finish(self, ts_event: datetime, seq_id: int | None, checksum_value: int | None) -> None:
        if self.truncate:
            depth = self.depth
            bids, asks = self._bids, self._asks
            if len(bids.ticks) > depth:
                for t in bids.ticks[: len(bids.ticks) - depth]:
                    del bids.levels[t]
                del bids.ticks[: len(bids.ticks) - depth]
            if len(asks.ticks) > depth:
                for t in asks.ticks[depth:]:
                    del asks.levels[t]
                del asks.ticks[depth:]
        bid_ticks, ask_ticks = self._bids.ticks, self._asks.ticks
        if bid_ticks and ask_ticks and bid_ticks[-1] >= ask_ticks[0]:
            best_bid, best_ask = self.scale.price(bid_ticks[-1]), self.scale.price(ask_ticks[0])
            self.reset()
            raise CrossedBookError(self.instrument, best_bid, best_ask)
        self.seq_id = seq_id
        self.ts_event = ts_event
        if checksum_value and self.checksum_mode is ChecksumMode.VERIFY_NONZERO:
            computed = self.checksum()
            if computed != checksum_value:
                self.reset()
                raise ChecksumMismatchError(self.instrument, checksum_value, computed, seq_id)

    def checksum(self) -> int:
        """The §3.2 checksum of the current book, on the strings as received."""
        b, a = self._bids, self._asks
        n = CHECKSUM_LEVELS
        bids = [(lv[2], lv[3]) for lv in (b.levels[t] for t in b.ticks[: -n - 1 : -1])]
        asks = [(lv[2], lv[3]) for lv in (a.levels[t] for t in a.ticks[:n])]
        return checksum(bids, asks)

    @property
    def bid_ticks(self) -> list[int]:
        """The bid prices held, in ticks, ascending (worst first; read only)."""
        return self._bids.ticks

    @property
    def ask_ticks(self) -> list[int]:
        """The ask prices held, in ticks, ascending (best first; read only)."""
        return self._asks.ticks

    def bids(self, n: int | None = None) -> tuple[BookLevel, ...]:
        """The best ``n`` (default all) bids, highest first, as ``(price_ticks, size_units, count)``."""
        side = self._bids
        ticks = side.ticks[::-1] if n is None else side.ticks[: -n - 1 : -1] if n > 0 else []
        return tuple((t, *side.levels[t][:2]) for t in ticks)

    def asks(self, n: int | None = None) -> tuple[BookLevel, ...]:
        """The best ``n`` (default all) asks, lowest first."""
        side = self._asks
        ticks = side.ticks if n is None else side.ticks[:n]
        return tuple((t, *side.levels[t][:2]) for t in ticks)

    def snapshot(self, ts_recv: datetime, depth: int | None = None) -> BookSnapshot:
        """The current book as a :class:`BookSnapshot` (top ``depth`` levels, default all; §3.2).

        Raises :class:`~recorder.errors.BookError` when the book is not valid.
        """
        if self.ts_event is None:
            raise BookError(f"book {self.channel}:{self.instrument} has no valid state (no snapshot)")
        return BookSnapshot(
            instrument=self.instrument,
            channel=self.channel,
            ts_event=self.ts_event,
            ts_recv=ts_recv,
            seq_id=self.seq_id,
            bids=self.bids(depth),
            asks=self.asks(depth),
            price_decimals=self.scale.price_decimals,
            size_decimals=self.scale.size_decimals,
        )
