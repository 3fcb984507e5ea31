"""Data-quality measures against values computed by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis import quality

T0 = pd.Timestamp("2024-05-01T00:00:00Z")
END = T0 + pd.Timedelta(hours=1)


def at(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


@pytest.fixture
def events() -> pd.DataFrame:
    rows = [
        ("disconnected", at(10), at(15), ("btc_usdt", "eth_usdt")),
        ("stall", at(14), at(20), ("btc_usdt",)),
        ("book_reset", at(50), pd.NaT, ("eth_usdt",)),  # still open: runs to the end
        ("connected", at(16), at(16), ("btc_usdt",)),  # an instant, not a gap
        ("resubscribed", at(-1), at(1), ()),  # no symbols: all of them; clipped at the start
    ]
    frame = pd.DataFrame(rows, columns=["kind", "ts_start", "ts_end", "symbols"])
    frame["ts_end"] = pd.to_datetime(frame["ts_end"], utc=True)
    frame["connection"] = "market-0"
    return frame.set_index("ts_start")


def test_gap_intervals_merge_overlaps_per_symbol(events: pd.DataFrame) -> None:
    gaps = quality.gap_intervals(events, ["btc_usdt", "eth_usdt"], T0, END)
    assert list(gaps.itertuples(index=False, name=None)) == [
        ("btc_usdt", at(0), at(1), pd.Timedelta(minutes=1)),
        ("btc_usdt", at(10), at(20), pd.Timedelta(minutes=10)),
        ("eth_usdt", at(0), at(1), pd.Timedelta(minutes=1)),
        ("eth_usdt", at(10), at(15), pd.Timedelta(minutes=5)),
        ("eth_usdt", at(50), at(60), pd.Timedelta(minutes=10)),
    ]


def test_coverage_per_symbol_and_overall(events: pd.DataFrame) -> None:
    result = quality.coverage(events, ["btc_usdt", "eth_usdt"], T0, END)
    assert result["gaps"].to_dict() == {"btc_usdt": 2, "eth_usdt": 3, "*": 3}
    assert result["unwatched"].to_dict() == {
        "btc_usdt": pd.Timedelta(minutes=11),
        "eth_usdt": pd.Timedelta(minutes=16),
        "*": pd.Timedelta(minutes=21),
    }
    assert result["coverage"].tolist() == pytest.approx([49 / 60, 44 / 60, 39 / 60])


def test_a_refused_subscription_is_a_gap_of_its_symbol_open_or_closed() -> None:
    rows = [
        ("subscribe_error", at(5), at(5), ("eth_usdt",)),  # the instant: not a gap by itself
        ("subscribe_refused", at(5), at(8), ("eth_usdt",)),  # refused at 5, first data at 8
        ("subscribe_refused", at(40), pd.NaT, ("xrp_usdt",)),  # still refused: runs to the end
        ("book_audit_failed", at(20), at(21), ("eth_usdt",)),  # suspect snapshots, not unwatched time
        ("audit_unavailable", at(0), at(60), ()),  # REST down: not a gap of the market data
    ]
    frame = pd.DataFrame(rows, columns=["kind", "ts_start", "ts_end", "symbols"])
    frame["ts_end"] = pd.to_datetime(frame["ts_end"], utc=True)
    result = quality.coverage(frame.set_index("ts_start"), ["btc_usdt", "eth_usdt", "xrp_usdt"], T0, END)
    assert result["gaps"].to_dict() == {"btc_usdt": 0, "eth_usdt": 1, "xrp_usdt": 1, "*": 2}
    assert result.loc["btc_usdt", "coverage"] == 1.0
    assert result.loc["eth_usdt", "coverage"] == pytest.approx(57 / 60)
    assert result.loc["xrp_usdt", "coverage"] == pytest.approx(40 / 60)
    assert "subscribe_refused" in quality.GAP_KINDS


def test_coverage_rejects_naive_bounds(events: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="no timezone"):
        quality.coverage(events, ["btc_usdt"], "2024-05-01", END)


@pytest.fixture
def frame() -> pd.DataFrame:
    events = [at(0), at(1), at(2), at(3), at(0)]
    delays = [pd.Timedelta(milliseconds=ms) for ms in (10, 20, 30, 40, 5)]
    return pd.DataFrame(
        {
            "symbol": ["btc_usdt"] * 4 + ["eth_usdt"],
            "ts_recv": [e + d for e, d in zip(events, delays, strict=True)],
        },
        index=pd.DatetimeIndex(events, name="ts_event"),
    )


def test_latency_in_milliseconds(frame: pd.DataFrame) -> None:
    assert quality.latency(frame).tolist() == [10.0, 20.0, 30.0, 40.0, 5.0]


def test_latency_summary_quantiles(frame: pd.DataFrame) -> None:
    summary = quality.latency_summary(frame)
    btc = summary.loc["btc_usdt"]
    assert btc["count"] == 4
    assert [btc["mean"], btc["min"], btc["p50"], btc["p90"], btc["p99"], btc["max"]] == pytest.approx(
        [25.0, 10.0, 25.0, 37.0, 39.7, 40.0]
    )
    assert summary.loc["eth_usdt", "max"] == 5.0


def test_snapshot_cadence(frame: pd.DataFrame) -> None:
    top = pd.DataFrame(
        {
            "symbol": ["btc_usdt"] * 4 + ["eth_usdt"],
            "ts_recv": [T0 + pd.Timedelta(seconds=s) for s in (0, 1, 2, 4, 0)],
        },
        index=pd.DatetimeIndex([T0] * 5, name="ts_event"),
    )
    result = quality.snapshot_cadence(top)
    btc = result.loc["btc_usdt"]
    assert btc["snapshots"] == 4
    cadence = [btc["median_s"], btc["p90_s"], btc["max_s"], btc["rate_hz"]]
    assert cadence == pytest.approx([1.0, 1.8, 2.0, 0.75])
    assert result.loc["eth_usdt", "snapshots"] == 1
    assert math.isnan(result.loc["eth_usdt", "rate_hz"])


# ------------------------------------------------------------------ several collectors, one recording


EventRow = tuple[str | None, str, pd.Timestamp, object, tuple[str, ...]]


def collector_events(rows: list[EventRow]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["collector", "kind", "ts_start", "ts_end", "symbols"])
    frame["ts_end"] = pd.to_datetime(frame["ts_end"], utc=True)
    frame["connection"] = "ws-0"
    return frame.set_index("ts_start")


BOTH = ("btc_usdt", "eth_usdt")


@pytest.fixture
def two_collectors() -> pd.DataFrame:
    """A runs 0..58; B starts at 5 and stops at 35; C records xrp only."""
    return collector_events([
        ("A", "connected", at(0), at(0), BOTH),
        ("A", "disconnected", at(10), at(20), BOTH),
        ("A", "connected", at(20), at(20), BOTH),
        ("A", "resubscribed", at(30), at(32), ("eth_usdt",)),  # B watched eth then: no merged gap
        ("A", "stall", at(40), at(45), ("btc_usdt",)),  # B had stopped: a merged gap
        ("A", "shutdown", at(58), at(58), ()),
        ("B", "connected", at(5), at(5), BOTH),
        ("B", "disconnected", at(15), at(25), BOTH),  # overlaps A's 10..20: merged 15..20
        ("B", "connected", at(25), at(25), BOTH),
        ("B", "shutdown", at(35), at(35), ()),
        ("C", "connected", at(0), at(0), ("xrp_usdt",)),
        ("C", "disconnected", at(50), at(55), ("xrp_usdt",)),  # nobody else records xrp
    ])


def spans(gaps: pd.DataFrame) -> list[tuple[object, ...]]:
    return [tuple(row[:-1]) for row in gaps.itertuples(index=False, name=None)]


def test_merged_gaps_are_the_time_no_collector_recording_the_symbol_watched(
    two_collectors: pd.DataFrame,
) -> None:
    gaps = quality.gap_intervals(two_collectors, ["btc_usdt", "eth_usdt", "xrp_usdt"], T0, END)
    assert spans(gaps) == [
        ("btc_usdt", at(15), at(20)),
        ("btc_usdt", at(40), at(45)),
        ("eth_usdt", at(15), at(20)),
        ("xrp_usdt", at(50), at(55)),
    ]
    assert gaps["duration"].tolist() == [pd.Timedelta(minutes=5)] * 4


def test_each_collectors_own_gaps_stay_visible(two_collectors: pd.DataFrame) -> None:
    own = quality.gap_intervals(two_collectors, ["btc_usdt", "eth_usdt"], T0, END, by_collector=True)
    assert spans(own) == [
        ("A", "btc_usdt", at(10), at(20)),
        ("A", "btc_usdt", at(40), at(45)),
        ("A", "eth_usdt", at(10), at(20)),
        ("A", "eth_usdt", at(30), at(32)),
        ("B", "btc_usdt", at(15), at(25)),
        ("B", "eth_usdt", at(15), at(25)),
    ]
    only_b = quality.gap_intervals(two_collectors, ["btc_usdt", "eth_usdt"], T0, END, collector="B")
    assert spans(only_b) == [("btc_usdt", at(15), at(25)), ("eth_usdt", at(15), at(25))]


def test_merged_and_per_collector_coverage(two_collectors: pd.DataFrame) -> None:
    merged = quality.coverage(two_collectors, list(BOTH), T0, END)
    assert merged["gaps"].to_dict() == {"btc_usdt": 2, "eth_usdt": 1, "*": 2}
    assert merged["unwatched"].to_dict() == {"btc_usdt": pd.Timedelta(minutes=10),
                                             "eth_usdt": pd.Timedelta(minutes=5),
                                             "*": pd.Timedelta(minutes=10)}
    assert merged["coverage"].tolist() == pytest.approx([50 / 60, 55 / 60, 50 / 60])
    each = quality.coverage(two_collectors, list(BOTH), T0, END, by_collector=True)
    assert list(each.index) == [(c, s) for c in ("A", "B", "C") for s in ("btc_usdt", "eth_usdt", "*")]
    assert each["unwatched"].to_dict() == {
        ("A", "btc_usdt"): pd.Timedelta(minutes=15), ("A", "eth_usdt"): pd.Timedelta(minutes=12),
        ("A", "*"): pd.Timedelta(minutes=17),
        ("B", "btc_usdt"): pd.Timedelta(minutes=10), ("B", "eth_usdt"): pd.Timedelta(minutes=10),
        ("B", "*"): pd.Timedelta(minutes=10),
        ("C", "btc_usdt"): pd.Timedelta(0), ("C", "eth_usdt"): pd.Timedelta(0), ("C", "*"): pd.Timedelta(0),
    }


def test_watched_windows_given_by_the_caller_override_the_feed_events(two_collectors: pd.DataFrame) -> None:
    # B in fact ran until the end: A's stall at 40..45 was covered. A's window now ends at its last
    # event (58), B is the last to stop.
    gaps = quality.gap_intervals(two_collectors, list(BOTH), T0, END, watched={"B": (at(5), at(60))})
    assert spans(gaps) == [("btc_usdt", at(15), at(20)), ("eth_usdt", at(15), at(20))]


def test_rows_without_a_collector_count_as_one_collector() -> None:
    # An old recording (collector NULL) until 20, then a new collector from 30: 20..30 nobody watched.
    events = collector_events([
        (None, "connected", at(0), at(0), ("btc_usdt",)),
        (None, "disconnected", at(10), at(20), ("btc_usdt",)),
        ("x", "connected", at(30), at(30), ("btc_usdt",)),
        ("x", "disconnected", at(40), at(45), ("btc_usdt",)),
    ])
    gaps = quality.gap_intervals(events, ["btc_usdt"], T0, END)
    assert spans(gaps) == [("btc_usdt", at(10), at(30)), ("btc_usdt", at(40), at(45))]
    own = quality.gap_intervals(events, ["btc_usdt"], T0, END, by_collector=True)
    assert spans(own) == [("", "btc_usdt", at(10), at(20)), ("x", "btc_usdt", at(40), at(45))]
    assert spans(quality.gap_intervals(events, ["btc_usdt"], T0, END, collector=quality.NO_COLLECTOR)) == [
        ("btc_usdt", at(10), at(20))]


def test_one_collector_named_or_not_is_measured_as_before(events: pd.DataFrame) -> None:
    named = events.assign(collector="tokyo-1")
    merged = quality.gap_intervals(named, list(BOTH), T0, END)
    assert merged.equals(quality.gap_intervals(events, list(BOTH), T0, END))
    assert quality.coverage(named, list(BOTH), T0, END).equals(quality.coverage(events, list(BOTH), T0, END))


def test_an_open_gap_of_a_killed_collector_is_covered_by_the_other() -> None:
    # B was killed while disconnected (its span never closed): A watched on, so no merged gap;
    # A's own late gap at 50..52 is a merged gap (B's last known moment is 20).
    events = collector_events([
        ("A", "connected", at(0), at(0), ("btc_usdt",)),
        ("A", "disconnected", at(50), at(52), ("btc_usdt",)),
        ("B", "connected", at(1), at(1), ("btc_usdt",)),
        ("B", "disconnected", at(20), pd.NaT, ("btc_usdt",)),
    ])
    assert spans(quality.gap_intervals(events, ["btc_usdt"], T0, END)) == [("btc_usdt", at(50), at(52))]
    assert spans(quality.gap_intervals(events, ["btc_usdt"], T0, END, collector="B")) == [
        ("btc_usdt", at(20), at(60))]
