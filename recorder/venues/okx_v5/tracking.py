"""Small pure state keepers for candles and instruments (PROTOCOL.md §3.4, §3.5, §4.5, §8.7, §8.8).

* :class:`CandleFinaliser`: the same candle is pushed repeatedly while it forms;
  it is final when ``confirm == "1"`` arrives or, since a ``confirm:"1"`` push is
  not guaranteed (**unconfirmed**), when a candle with a later open time arrives.
* :class:`InstrumentTracker`: diffs instrument lists (REST refreshes or
  ``instruments`` pushes) into listings, state changes, tick/lot size changes and
  disappearances (delisted instruments vanish from the REST list).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .records import VENUE, Candle, Instrument

__all__ = ["CandleFinaliser", "FinalCandle", "InstrumentChange", "InstrumentTracker"]


@dataclass(frozen=True, slots=True)
class FinalCandle:
    """A closed candle. ``by_successor``: closed because a later candle arrived, not by ``confirm``."""

    candle: Candle
    by_successor: bool


class CandleFinaliser:
    """Per ``(instrument, bar)``: hands out each candle once, when it is final (§3.4, §8.7).

    ``finalise_on_successor`` (default True) closes the forming candle when a later
    open time appears (for feeds that never send ``confirm == "1"``).
    """

    def __init__(self, *, finalise_on_successor: bool = True) -> None:
        self.finalise_on_successor = finalise_on_successor
        self._forming: dict[tuple[str, str], Candle] = {}
        self._last_final: dict[tuple[str, str], datetime] = {}

    def feed(self, candle: Candle) -> list[FinalCandle]:
        """Take one candle push; return the candles that became final (oldest first)."""
        key = (candle.instrument, candle.bar)
        out: list[FinalCandle] = []
        last_final = self._last_final.get(key)
        if last_final is not None and candle.ts_event <= last_final:
            return out  # a re-push of a candle already final (or older): nothing new
        forming = self._forming.get(key)
        if forming is not None and candle.ts_event > forming.ts_event and self.finalise_on_successor:
            out.append(FinalCandle(forming, by_successor=True))
            self._last_final[key] = forming.ts_event
            del self._forming[key]
        if candle.confirmed:
            out.append(FinalCandle(candle, by_successor=False))
            self._last_final[key] = candle.ts_event
            self._forming.pop(key, None)
        else:
            current = self._forming.get(key)
            if current is None or candle.ts_event >= current.ts_event:
                self._forming[key] = candle
        return out

    def forming(self, instrument: str, bar: str) -> Candle | None:
        """The latest push of the candle still forming, if any."""
        return self._forming.get((instrument, bar))


@dataclass(frozen=True, slots=True)
class InstrumentChange:
    """One change of an instrument. ``old`` None: newly listed; ``new`` None: vanished from a full list.

    ``state_changed`` / ``scale_changed`` (``tickSz`` or ``lotSz``; re-scale books) say what changed.
    """

    instrument: str
    old: Instrument | None
    new: Instrument | None
    venue: str = VENUE

    @property
    def state_changed(self) -> bool:
        return self.old is None or self.new is None or self.old.state != self.new.state

    @property
    def scale_changed(self) -> bool:
        return (
            self.old is not None
            and self.new is not None
            and (self.old.tick_size, self.old.lot_size) != (self.new.tick_size, self.new.lot_size)
        )


_COMPARED = (
    "inst_type", "base", "quote", "tick_size", "lot_size", "min_size", "state", "list_time", "exp_time",
)


class InstrumentTracker:
    """The known instruments, and what changed at each update (§4.5, §3.5, §8.8)."""

    def __init__(self) -> None:
        self.known: dict[str, Instrument] = {}

    def update(self, instruments: Iterable[Instrument], *, complete: bool) -> list[InstrumentChange]:
        """Apply a list; ``complete=True`` for a full REST list (missing ids = vanished),
        False for a partial push (§3.5: whether a push is the full list is unconfirmed)."""
        changes: list[InstrumentChange] = []
        seen: set[str] = set()
        for inst in instruments:
            seen.add(inst.instrument)
            old = self.known.get(inst.instrument)
            if old is None or any(getattr(old, f) != getattr(inst, f) for f in _COMPARED):
                changes.append(InstrumentChange(inst.instrument, old, inst))
            self.known[inst.instrument] = inst
        if complete:
            for gone in sorted(set(self.known) - seen):
                changes.append(InstrumentChange(gone, self.known.pop(gone), None))
        return changes
