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
