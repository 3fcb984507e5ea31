"""A pre-generated, realistic OKEx v1 WebSocket stream for the in-process benchmarks.

Deterministic for a seed: many symbols (documented pairs, each priced and sized at its
own increments from the pair table, so scales are mixed as on the exchange); incremental
depth (a full first push, then changes of one to four levels, deletes included), full ``depth_20`` books,
tickers and deals, in the proportions a busy feed shows. Frames are the bytes the
exchange would send (text JSON lists), ready to feed to a decoder.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from recorder.venues.okex_v1.pairs import pairs

BASE_TS_MS = 1_795_000_000_000  # 2026-11-18, an ordinary day


@dataclass(frozen=True)
class Stream:
    frames: list[bytes]
    symbols: list[str]
    counts: dict[str, int]  # frames per channel kind


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _scale(increment: Decimal) -> int:
    return max(0, -int(increment.normalize().as_tuple().exponent))


_MID_BY_QUOTE = {"usdt": 100.0, "btc": 0.001, "eth": 0.01, "okb": 1.0}


def symbols_for(n_symbols: int) -> list[str]:
    """``n_symbols`` documented pairs, spread over the table (a stable choice)."""
    names = sorted(pairs())
    step = max(1, len(names) // n_symbols)
    chosen = names[::step][:n_symbols]
    if len(chosen) < n_symbols:
        chosen += [s for s in names if s not in chosen][: n_symbols - len(chosen)]
    return chosen


def generate(n_frames: int, n_symbols: int = 50, seed: int = 7, levels: int = 200) -> Stream:
    """Return ``n_frames`` frames over ``n_symbols`` symbols (first frame per symbol = full book)."""
    rng = random.Random(seed)
    symbols = symbols_for(n_symbols)
    table = pairs()
    pdec = {s: _scale(table[s].quote_increment) for s in symbols}  # price decimals
    adec = {s: _scale(table[s].base_increment) for s in symbols}  # amount decimals
    ticks = {s: float(table[s].quote_increment) for s in symbols}
    mids = {s: round(_MID_BY_QUOTE.get(table[s].quote, 1.0) * (1 + i % 37), pdec[s])
            for i, s in enumerate(symbols)}

    def amount(sym: str) -> str:
        inc = float(table[sym].base_increment)
        return _fmt(inc * rng.randint(1, 50_000) if inc < 0.01 else inc * rng.randint(1, 500), adec[sym])
    books: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    frames: list[bytes] = []
    counts = {"depth": 0, "depth_20": 0, "ticker": 0, "deals": 0}
    ts = BASE_TS_MS
    tid = 1_000_000

    def full_book(sym: str) -> tuple[dict[str, str], dict[str, str]]:
        mid, tick, d = mids[sym], ticks[sym], pdec[sym]
        bids = {_fmt(mid - tick * (k + 1), d): amount(sym) for k in range(levels)}
        asks = {_fmt(mid + tick * (k + 1), d): amount(sym) for k in range(levels)}
        return bids, asks

    for sym in symbols:
        bids, asks = full_book(sym)
        books[sym] = (bids, asks)
        data = {"asks": [[p, a] for p, a in sorted(asks.items(), key=lambda kv: -float(kv[0]))],
                "bids": [[p, a] for p, a in bids.items()], "timestamp": ts}
        frames.append(json.dumps([{"channel": f"ok_sub_spot_{sym}_depth", "data": data}]).encode())
        counts["depth"] += 1

    while len(frames) < n_frames:
        ts += rng.randint(0, 3)
        sym = rng.choice(symbols)
        bids, asks = books[sym]
        r = rng.random()
        if r < 0.60:  # incremental depth: one to four levels change near the top
            upd_b: list[list[str]] = []
            upd_a: list[list[str]] = []
            for _ in range(rng.randint(1, 4)):
                side, upd = (bids, upd_b) if rng.random() < 0.5 else (asks, upd_a)
                sign = -1 if side is bids else 1
                price = _fmt(mids[sym] + sign * ticks[sym] * rng.randint(1, 30), pdec[sym])
                if price in side and rng.random() < 0.3:
                    del side[price]
                    upd.append([price, "0"])
                else:
                    size = amount(sym)
                    side[price] = size
                    upd.append([price, size])
            data = {"asks": upd_a, "bids": upd_b, "timestamp": ts}
            frames.append(json.dumps([{"channel": f"ok_sub_spot_{sym}_depth", "data": data}]).encode())
            counts["depth"] += 1
        elif r < 0.70:  # full top-20 book
            top_b = sorted(bids.items(), key=lambda kv: -float(kv[0]))[:20]
            top_a = sorted(asks.items(), key=lambda kv: float(kv[0]))[:20]
            data = {"asks": [[p, a] for p, a in reversed(top_a)], "bids": [[p, a] for p, a in top_b],
                    "timestamp": ts}
            frames.append(json.dumps([{"channel": f"ok_sub_spot_{sym}_depth_20", "data": data}]).encode())
            counts["depth_20"] += 1
        elif r < 0.85:
            mid, tick, d = mids[sym], ticks[sym], pdec[sym]
            data = {"buy": _fmt(mid - tick, d), "sell": _fmt(mid + tick, d), "last": _fmt(mid, d),
                    "high": _fmt(mid * 1.05, d), "low": _fmt(mid * 0.95, d),
                    "vol": _fmt(rng.uniform(1e3, 1e6), adec[sym]),
                    "change": _fmt(rng.uniform(-5, 5), 2), "dayHigh": _fmt(mid * 1.05, d),
                    "dayLow": _fmt(mid * 0.95, d), "timestamp": ts}
            frames.append(json.dumps([{"channel": f"ok_sub_spot_{sym}_ticker", "data": data}]).encode())
            counts["ticker"] += 1
        else:
            deals = []
            for _ in range(rng.randint(1, 3)):
                tid += 1
                secs = (ts // 1000 + 8 * 3600) % 86400
                hhmmss = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
                deals.append([str(tid), _fmt(mids[sym], pdec[sym]), amount(sym), hhmmss,
                              rng.choice(["bid", "ask"])])
            frames.append(json.dumps([{"channel": f"ok_sub_spot_{sym}_deals", "data": deals}]).encode())
            counts["deals"] += 1
    return Stream(frames, symbols, counts)


if TYPE_CHECKING:
    from recorder.collector.pipeline import FramePipeline


def pipeline(**settings: Any) -> FramePipeline:
    """The collector's pipeline over OKEx v1 sessions (default settings, ``settings`` overriding),
    a session opened per connection name on first use: what the generated frames go through."""
    from recorder.collector.pipeline import FramePipeline
    from recorder.venue import get_venue
    from recorder.venues.okex_v1.settings import V1Settings

    return FramePipeline.for_venue(get_venue("okex_v1"), V1Settings(**settings), [])
