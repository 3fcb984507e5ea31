"""Data-quality measures: gaps in the feed, message latency, snapshot cadence.

Pure functions over the frames of :mod:`analysis.load`. **feed events**
(``load_feed_events``): UTC index ``ts_start``; columns ``kind`` (the
:class:`recorder.records.FeedEventKind` value, e.g. ``"disconnected"``), ``ts_end``
(UTC, NaT while the span is open), ``connection``, ``symbols`` (tuple of str),
``channel``, ``detail``, ``event_id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from recorder.records import FeedEventKind

__all__ = [
    "GAP_KINDS",
    "coverage",
    "gap_intervals",
    "latency",
    "latency_summary",
    "snapshot_cadence",
]

GAP_KINDS: frozenset[str] = frozenset(
    k.value
    for k in (
        FeedEventKind.DISCONNECTED,
        FeedEventKind.RESUBSCRIBED,
        FeedEventKind.BOOK_RESET,
        FeedEventKind.STALL,
        FeedEventKind.SUBSCRIBE_REFUSED,
    )
)
"""Feed-event kinds during which a symbol's market data was not watched.

A ``subscribe_refused`` span (an ``addChannel`` the exchange refused, from the refusal
until the channel's first data) counts for the symbol it lists, like a gap of the
whole symbol: coverage is per symbol, and one of its channels was not recorded.
"""


def _utc(value: object) -> pd.Timestamp:
    ts = pd.Timestamp(value)  # type: ignore[arg-type]
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no timezone; use UTC")
    return ts.tz_convert("UTC")


def _merge(intervals: Iterable[tuple[pd.Timestamp, pd.Timestamp]]) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    merged: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def gap_intervals(
    events: pd.DataFrame,
    symbols: Sequence[str],
    start: object,
    end: object,
    kinds: Iterable[str] = GAP_KINDS,
) -> pd.DataFrame:
    """The merged unwatched intervals of each symbol, clipped to ``[start, end]``.

    An event of one of ``kinds`` covers ``[ts_start, ts_end]``; a span still open
    (``ts_end`` NaT) runs to ``end``. It affects the symbols it lists; an event listing
    no symbols affects every symbol. Overlapping or touching intervals of one symbol
    are merged. ``start``/``end`` are tz-aware timestamps (UTC).

    Returns columns ``symbol``, ``start``, ``end`` (UTC), ``duration`` (timedelta64),
    sorted by symbol then start.
    """
    lo, hi = _utc(start), _utc(end)
    wanted = set(kinds)
    per_symbol: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]] = {s: [] for s in symbols}
    frame = events.reset_index()
    starts: list[object] = frame["ts_start"].tolist()
    ends: list[object] = frame["ts_end"].tolist()
    named: list[tuple[str, ...]] = [tuple(s) for s in frame["symbols"]]
    for kind, ts_start, ts_end, listed in zip(frame["kind"], starts, ends, named, strict=True):
        if kind not in wanted:
            continue
        begin = _utc(ts_start)
        finish = hi if ts_end is None or ts_end is pd.NaT else _utc(ts_end)
        begin, finish = max(begin, lo), min(finish, hi)
        if finish < begin:
            continue
        affected = list(listed) if listed else list(symbols)
        for symbol in affected:
            if symbol in per_symbol:
                per_symbol[symbol].append((begin, finish))
    rows = [
        (symbol, a, b, b - a)
        for symbol in sorted(per_symbol)
        for a, b in _merge(per_symbol[symbol])
    ]
    result = pd.DataFrame(rows, columns=["symbol", "start", "end", "duration"])
    result["start"] = pd.to_datetime(result["start"], utc=True)
    result["end"] = pd.to_datetime(result["end"], utc=True)
    result["duration"] = pd.to_timedelta(result["duration"])
    return result


def coverage(
    events: pd.DataFrame,
    symbols: Sequence[str],
    start: object,
    end: object,
    kinds: Iterable[str] = GAP_KINDS,
) -> pd.DataFrame:
    """Per-symbol coverage of ``[start, end]`` and total unwatched time.

    Uses :func:`gap_intervals`. Returns a frame indexed by ``symbol`` with columns
    ``gaps`` (int64, number of merged gaps), ``unwatched`` (timedelta64) and
    ``coverage`` (float64, ``1 - unwatched / (end - start)``), plus a last row
    ``"*"`` for the union over all symbols (time during which at least one symbol was
    unwatched).
    """
    lo, hi = _utc(start), _utc(end)
    span = hi - lo
    gaps = gap_intervals(events, symbols, lo, hi, kinds)
    rows = []
    for symbol in sorted(symbols):
        part = gaps[gaps["symbol"] == symbol]
        unwatched = part["duration"].sum() if len(part) else pd.Timedelta(0)
        rows.append((symbol, len(part), unwatched))
    union = _merge(zip(gaps["start"], gaps["end"], strict=True))
    rows.append(("*", len(union), sum((b - a for a, b in union), pd.Timedelta(0))))
    result = pd.DataFrame(rows, columns=["symbol", "gaps", "unwatched"]).set_index("symbol")
    result["gaps"] = result["gaps"].astype("int64")
    result["unwatched"] = pd.to_timedelta(result["unwatched"])
    seconds = span.total_seconds()
    result["coverage"] = 1.0 - result["unwatched"].dt.total_seconds() / seconds if seconds > 0 else np.nan
    return result


def latency(frame: pd.DataFrame) -> pd.Series:
    """Message latency ``ts_recv - ts_event`` in milliseconds (float64), on the frame's index.

    ``frame`` is any market frame with a UTC ``ts_event`` index and a ``ts_recv``
    column. Deals carry a ``ts_event`` rebuilt from whole seconds, so their latency is
    only good to a second. Negative values mean the clocks disagree.
    """
    delay = frame["ts_recv"] - frame.index.to_series()
    return (delay.dt.total_seconds() * 1000.0).rename("latency_ms")


def latency_summary(frame: pd.DataFrame, quantiles: Sequence[float] = (0.5, 0.9, 0.99)) -> pd.DataFrame:
    """Latency distribution per symbol, in milliseconds.

    Returns a frame indexed by ``symbol`` with columns ``count`` (int64), ``mean``,
    ``min``, ``p50``/``p90``/``p99`` (one per quantile, linear interpolation) and
    ``max``, all float64 ms.
    """
    values = pd.DataFrame({"symbol": frame["symbol"].to_numpy(), "ms": latency(frame).to_numpy()})
    grouped = values.groupby("symbol", sort=True, observed=True)["ms"]
    result = pd.DataFrame(
        {"count": grouped.count().astype("int64"), "mean": grouped.mean(), "min": grouped.min()}
    )
    for q in quantiles:
        result[f"p{round(q * 100):d}"] = grouped.quantile(q)
    result["max"] = grouped.max()
    return result


def snapshot_cadence(top: pd.DataFrame, clock: str = "ts_recv") -> pd.DataFrame:
    """Snapshot cadence achieved per symbol, from the intervals between consecutive snapshots.

    ``clock`` is ``"ts_recv"`` (when the collector took the snapshot, default) or
    ``"ts_event"`` (the index). Returns a frame indexed by ``symbol`` with columns
    ``snapshots`` (int64), ``median_s``, ``p90_s``, ``max_s`` (interval in seconds,
    float64) and ``rate_hz`` (``(snapshots - 1) / (last - first)`` in snapshots per
    second; NaN with fewer than two).
    """
    times = top.index.to_series() if clock == "ts_event" else top[clock]
    frame = pd.DataFrame({"symbol": top["symbol"].to_numpy(), "t": times.to_numpy()})
    rows = []
    for symbol, part in frame.groupby("symbol", sort=True, observed=True):
        t = part["t"].sort_values()
        intervals = t.diff().dropna().dt.total_seconds().astype("float64")
        elapsed = float(intervals.sum())
        rows.append(
            {
                "symbol": symbol,
                "snapshots": len(t),
                "median_s": intervals.median() if len(intervals) else np.nan,
                "p90_s": intervals.quantile(0.9) if len(intervals) else np.nan,
                "max_s": intervals.max() if len(intervals) else np.nan,
                "rate_hz": (len(t) - 1) / elapsed if elapsed > 0 else np.nan,
            }
        )
    result = pd.DataFrame(
        rows, columns=["symbol", "snapshots", "median_s", "p90_s", "max_s", "rate_hz"]
    ).set_index("symbol")
    result["snapshots"] = result["snapshots"].astype("int64")
    return result
