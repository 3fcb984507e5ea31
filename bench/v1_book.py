"""The v1 order book before and after integer ticks, alternately, same process, same stream.

``python -m bench.v1_book [tiny|small|full] [--rounds N]``

*before* is the Decimal-keyed book kept as the tests' oracle (``tests/venues/okex_v1/decimal_book.py``),
*after* is ``recorder.venues.okex_v1.book``. Each round decodes the ``bench.streams`` stream afresh
(untimed: fresh Decimals, whose hash is not cached yet, as in the recorder), then takes the CPU time of

* ``book``: ``OrderBook.apply`` + ``top(20)`` + the cadence compare + ``snapshot`` for every depth
  update (the session's book work, without the session), in microseconds per depth update;
* ``session``: ``V1Session.receive`` over every frame with ``decode_frame`` replaced by a lookup of
  the pre-decoded messages (the ``session`` stage of :mod:`bench.stages` without the timers), in CPU
  seconds per 100,000 frames.

The garbage collector is off while timing (collected before), so that neither book pays for
collections of the other's garbage. Prints min and median over the rounds for each; the records
of both books are compared (``repr``, so digits and exponents too) and must be equal.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import streams
from recorder.records import DepthUpdate, FeedEvent, Record
from recorder.venue import FeedCounters
from recorder.venues.okex_v1 import session as session_module
from recorder.venues.okex_v1.book import OrderBook
from recorder.venues.okex_v1.parse import Message, decode_frame
from recorder.venues.okex_v1.settings import V1Settings
from tests.venues.okex_v1 import decimal_book

SIZES = {"tiny": (3_000, 20), "small": (30_000, 50), "full": (200_000, 100)}  # frames, symbols
T0 = datetime(2026, 11, 18, tzinfo=UTC)


def _decoded(frames: list[str], stamps: list[datetime]) -> list[list[Message]]:
    return [decode_frame(f, t) for f, t in zip(frames, stamps, strict=True)]


def _book_path(book: Callable[[str], Any], messages: list[list[Message]]) -> tuple[float, int]:
    updates = [m for ms in messages for m in ms if type(m) is DepthUpdate]
    books: dict[Any, Any] = {}
    last: dict[Any, Any] = {}
    gc.collect()
    gc.disable()
    try:
        t0 = time.process_time()
        for u in updates:
            key = (u.symbol, u.kind)
            b = books.get(key)
            if b is None:
                b = books[key] = book(u.symbol)
            b.apply(u)
            top = b.top(20)
            if top != last.get(key):
                last[key] = top
                b.snapshot(top=top)
        cpu = time.process_time() - t0
    finally:
        gc.enable()
    return cpu * 1e6 / len(updates), len(updates)


def _session(book: Callable[[str], Any], frames: list[str], stamps: list[datetime],
             messages: list[list[Message]]) -> tuple[float, list[Record]]:
    it = iter(messages)
    out: list[Record] = []
    saved = session_module.decode_frame, session_module.OrderBook
    session_module.decode_frame = lambda frame, ts: next(it)  # type: ignore[assignment]
    session_module.OrderBook = book  # type: ignore[assignment,misc]
    try:
        s = session_module.V1Session(session_module.plan_connection("ws-0", []), V1Settings(), out,
                                     FeedCounters())
        gc.collect()
        gc.disable()
        t0 = time.process_time()
        for f, t in zip(frames, stamps, strict=True):
            s.receive(f, t)
        cpu = time.process_time() - t0
    finally:
        gc.enable()
        session_module.decode_frame, session_module.OrderBook = saved
    return cpu * 100_000 / len(frames), out


def main(size: str, rounds: int) -> bool:
    """Print the figures; True when both books gave the same records."""
    n_frames, n_symbols = SIZES[size]
    frames = [f.decode() for f in streams.generate(n_frames, n_symbols).frames]
    stamps = [T0 + timedelta(milliseconds=i) for i in range(len(frames))]
    books = {"before (Decimal keys)": decimal_book.OrderBook, "after (integer ticks)": OrderBook}
    book_us: dict[str, list[float]] = {name: [] for name in books}
    session_s: dict[str, list[float]] = {name: [] for name in books}
    records: dict[str, list[str]] = {}
    n_updates = 0
    for _ in range(rounds):
        for name, book in books.items():  # alternately
            us, n_updates = _book_path(book, _decoded(frames, stamps))
            book_us[name].append(us)
            seconds, out = _session(book, frames, stamps, _decoded(frames, stamps))
            session_s[name].append(seconds)
            records.setdefault(name, [repr(replace(r, event_id="-") if isinstance(r, FeedEvent) else r)
                                      for r in out])  # event ids are random
    same = len(set(map(tuple, records.values()))) == 1
    print(f"{n_frames:,} frames, {n_symbols} symbols, {n_updates:,} depth updates, "
          f"{rounds} rounds alternately")
    for name in books:
        b, s = book_us[name], session_s[name]
        print(f"{name:22s} book path {min(b):5.2f} / {statistics.median(b):5.2f} us per depth update "
              f"(min / median); session {min(s):5.3f} / {statistics.median(s):5.3f} CPU s per 100k frames")
        print(f"{'':22s} all rounds: book {[round(x, 2) for x in b]}, session {[round(x, 3) for x in s]}")
    print(f"records of both books equal (repr): {'yes' if same else 'NO'}")
    return same


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("size", nargs="?", default="small", choices=sorted(SIZES))
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    raise SystemExit(0 if main(args.size, args.rounds) else 1)
