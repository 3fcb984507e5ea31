"""Data-quality measures: gaps in the feed, message latency, snapshot cadence.

Pure functions over the frames of :mod:`analysis.load`. **feed events**
(``load_feed_events``): UTC index ``ts_start``; columns ``kind`` (the
:class:`recorder.records.FeedEventKind` value, e.g. ``"disconnected"``), ``ts_end``
(UTC, NaT while the span is open), ``connection``, ``symbols`` (tuple of str),
``channel``, ``detail``, ``event_id``, ``collector`` (the collector's id; None for
recordings older than schema revision 0002, and optional: frames without it are one
collector).

Across collectors (several collectors recording the same symbols into one recording), gap
and coverage measures are those of the merged recording by default: a gap one collector
covered is no gap. See :func:`gap_intervals` for the rule; ``by_collector=True`` or
``collector="id"`` show each collector's own gaps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from recorder.records import FeedEventKind

__all__ = [
    "GAP_KINDS",
    "NO_COLLECTOR",
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
        FeedEventKind.SEQUENCE_BREAK,
        FeedEventKind.CHECKSUM_MISMATCH,
        FeedEventKind.PLANNED_DISCONNECT,
    )
)
"""Feed-event kinds during which a symbol's market data was not watched.

The OKX v5 spans count as v1's do: ``sequence_break`` and ``checksum_mismatch`` (a book
dropped until its fresh snapshot, the v5 ``book_reset``) and ``planned_disconnect`` (a
maintenance notice until the first data on the replacement connection, the v5 planned
``disconnected``).

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


Interval = tuple[pd.Timestamp, pd.Timestamp]

NO_COLLECTOR = ""
"""The collector label of feed events without a collector id (recordings older than schema 0002)."""


def _intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """The intersection of two sorted lists of disjoint closed intervals (empty pieces dropped)."""
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end or (start == end and (a[i][0] == a[i][1] or b[j][0] == b[j][1])):
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _collectors(frame: pd.DataFrame) -> list[str]:
    """The collector label of each row: its ``collector``, or :data:`NO_COLLECTOR` (NULL / no column)."""
    if "collector" not in frame.columns:
        return [NO_COLLECTOR] * len(frame)
    return [NO_COLLECTOR if value is None or value is pd.NA or value is pd.NaT
            or (isinstance(value, float) and np.isnan(value)) else str(value)
            for value in frame["collector"]]


def _spans(
    frame: pd.DataFrame, symbols: Sequence[str], lo: pd.Timestamp, hi: pd.Timestamp, wanted: set[str]
) -> dict[str, list[Interval]]:
    """Per symbol, the merged gap intervals of the events in ``frame`` (columns, not index)."""
    per_symbol: dict[str, list[Interval]] = {s: [] for s in symbols}
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
    return {symbol: _merge(intervals) for symbol, intervals in per_symbol.items()}


def _window(frame: pd.DataFrame) -> Interval:
    """From the first event's start to the last moment any event names (an open span: its start)."""
    starts = [_utc(t) for t in frame["ts_start"]]
    ends = [_utc(t) for t in frame["ts_end"] if t is not None and t is not pd.NaT]
    return min(starts), max(starts + ends)


def _merged_spans(
    frame: pd.DataFrame,
    symbols: Sequence[str],
    lo: pd.Timestamp,
    hi: pd.Timestamp,
    wanted: set[str],
    watched: Mapping[str, tuple[object, object]] | None,
) -> dict[str, list[Interval]]:
    """Per symbol, the time no collector recording it watched (see :func:`gap_intervals`)."""
    labels = _collectors(frame)
    rows: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        rows.setdefault(label, []).append(i)
    if len(rows) <= 1:
        return _spans(frame, symbols, lo, hi, wanted)
    parts = {c: frame.iloc[index] for c, index in rows.items()}
    gaps = {c: _spans(part, symbols, lo, hi, wanted) for c, part in parts.items()}
    windows = {c: _window(part) for c, part in parts.items()}
    for c, (w0, w1) in (watched or {}).items():
        if c in windows:
            windows[c] = (_utc(w0), _utc(w1))
    named = {c: {s for listed in part["symbols"] for s in listed} for c, part in parts.items()}
    out: dict[str, list[Interval]] = {}
    for symbol in symbols:
        recorders = [c for c in rows if symbol in named[c]] or list(rows)
        if len(recorders) == 1:
            out[symbol] = gaps[recorders[0]][symbol]
            continue
        earliest = min(recorders, key=lambda c: windows[c][0])
        latest = max(recorders, key=lambda c: windows[c][1])
        unwatched: list[Interval] = [(lo, hi)]
        for c in recorders:
            w0 = lo if c == earliest else max(lo, windows[c][0])
            w1 = hi if c == latest else min(hi, windows[c][1])
            outside = [(lo, hi)] if w1 < w0 else [i for i in ((lo, w0), (w1, hi)) if i[0] < i[1]]
            unwatched = _intersect(unwatched, _merge([*outside, *gaps[c][symbol]]))
        out[symbol] = unwatched
    return out


def gap_intervals(
    events: pd.DataFrame,
    symbols: Sequence[str],
    start: object,
    end: object,
    kinds: Iterable[str] = GAP_KINDS,
    *,
    by_collector: bool = False,
    collector: str | None = None,
    watched: Mapping[str, tuple[object, object]] | None = None,
) -> pd.DataFrame:
    """The merged unwatched intervals of each symbol, clipped to ``[start, end]``.

    An event of one of ``kinds`` covers ``[ts_start, ts_end]``; a span still open
    (``ts_end`` NaT) runs to ``end``. It affects the symbols it lists; an event listing
    no symbols affects every symbol. Overlapping or touching intervals of one symbol
    are merged. ``start``/``end`` are tz-aware timestamps (UTC).

    **Several collectors** (the ``collector`` column of feed events; rows without one,
    recorded before schema revision 0002, are one collector labelled :data:`NO_COLLECTOR`,
    ``""``): by default the gaps are those of the *merged* recording: a moment of a symbol
    is unwatched only if every collector recording that symbol was unwatched then. A
    collector records the symbols its events name (``connected`` lists its connection's
    symbols; if no collector names a symbol, all of them record it). A collector watches
    from its first feed event to the last moment one of its events names (it writes
    ``connected`` when it starts and ``shutdown`` when it stops; a killed collector's last
    event is the last moment known), except during its own gaps; the collector that
    started first is taken to watch from ``start`` and the one that stopped last until
    ``end``, as a single collector always is (feed events cannot tell when recording began
    or ended). ``watched`` (``{collector: (from, to)}``) overrides those windows where you
    know better (e.g. from the process supervisor). ``collector="id"`` gives that one
    collector's own gaps (as a single collector); ``by_collector=True`` gives every
    collector's own gaps, with a ``collector`` column.

    Returns columns ``symbol``, ``start``, ``end`` (UTC), ``duration`` (timedelta64),
    sorted by symbol then start (with ``by_collector``: ``collector`` first, sorted by it).
    Raises ValueError for naive bounds.
    """
    lo, hi = _utc(start), _utc(end)
    wanted = set(kinds)
    frame = events.reset_index()
    labels = _collectors(frame)
    if collector is not None:
        frame = frame[np.asarray([label == collector for label in labels], dtype=bool)]
    rows: list[tuple[object, ...]] = []
    if by_collector:
        for label in sorted(set(labels if collector is None else [collector])):
            part = frame[np.asarray([x == label for x in _collectors(frame)], dtype=bool)]
            spans = _spans(part, symbols, lo, hi, wanted)
            rows.extend((label, symbol, a, b, b - a) for symbol in sorted(spans) for a, b in spans[symbol])
        columns = ["collector", "symbol", "start", "end", "duration"]
    else:
        spans = (_spans(frame, symbols, lo, hi, wanted) if collector is not None
                 else _merged_spans(frame, symbols, lo, hi, wanted, watched))
        rows = [(symbol, a, b, b - a) for symbol in sorted(spans) for a, b in spans[symbol]]
        columns = ["symbol", "start", "end", "duration"]
    result = pd.DataFrame(rows, columns=columns)
    result["start"] = pd.to_datetime(result["start"], utc=True)
    result["end"] = pd.to_datetime(result["end"], utc=True)
    result["duration"] = pd.to_timedelta(result["duration"])
    return result


def _coverage_rows(gaps: pd.DataFrame, symbols: Sequence[str]) -> list[tuple[str, int, object]]:
    rows: list[tuple[str, int, object]] = []
    for symbol in sorted(symbols):
        part = gaps[gaps["symbol"] == symbol]
        unwatched = part["duration"].sum() if len(part) else pd.Timedelta(0)
        rows.append((symbol, len(part), unwatched))
    union = _merge(zip(gaps["start"], gaps["end"], strict=True))
    rows.append(("*", len(union), sum((b - a for a, b in union), pd.Timedelta(0))))
    return rows


def coverage(
    events: pd.DataFrame,
    symbols: Sequence[str],
    start: object,
    end: object,
    kinds: Iterable[str] = GAP_KINDS,
    *,
    by_collector: bool = False,
    collector: str | None = None,
    watched: Mapping[str, tuple[object, object]] | None = None,
) -> pd.DataFrame:
    """Per-symbol coverage of ``[start, end]`` and total unwatched time.

    Uses :func:`gap_intervals` (same ``by_collector``, ``collector`` and ``watched``: by
    default the merged recording of all collectors). Returns a frame indexed by ``symbol``
    with columns ``gaps`` (int64, number of merged gaps), ``unwatched`` (timedelta64) and
    ``coverage`` (float64, ``1 - unwatched / (end - start)``), plus a last row
    ``"*"`` for the union over all symbols (time during which at least one symbol was
    unwatched). With ``by_collector=True`` the index is (``collector``, ``symbol``), one
    such block per collector.
    """
    lo, hi = _utc(start), _utc(end)
    span = hi - lo
    gaps = gap_intervals(events, symbols, lo, hi, kinds, by_collector=by_collector, collector=collector,
                         watched=watched)
    if by_collector:
        labels = sorted(set(_collectors(events.reset_index())) if collector is None else {collector})
        rows = [(label, *row) for label in labels
                for row in _coverage_rows(gaps[gaps["collector"] == label], symbols)]
        result = pd.DataFrame(rows, columns=["collector", "symbol", "gaps", "unwatched"])
        result = result.set_index(["collector", "symbol"])
    else:
        result = pd.DataFrame(_coverage_rows(gaps, symbols), columns=["symbol", "gaps", "unwatched"])
        result = result.set_index("symbol")
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
