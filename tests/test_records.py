"""The typed records (recorder.records)."""

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from recorder.records import (
    BookSnapshot,
    ChannelKind,
    FeedEvent,
    FeedEventKind,
    KlinePeriod,
    OrderStatus,
    Side,
    Ticker,
    utc_now,
)
from recorder.venues.okex_v1.enums import order_status

T0 = datetime(2018, 3, 1, 12, 0, tzinfo=UTC)


def test_records_are_frozen_and_slotted() -> None:
    ticker = Ticker(venue="okex_v1",
                    symbol="bch_btc", ts_event=T0, ts_recv=T0, buy=Decimal(1), sell=Decimal(2),
                    last=Decimal(1), high=Decimal(2), low=Decimal(1), vol=Decimal(3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ticker.buy = Decimal(5)  # type: ignore[misc]
    assert not hasattr(ticker, "__dict__")
    assert (ticker.change, ticker.day_high, ticker.day_low) == (None, None, None)


def test_full_depth_kinds_know_their_level_count() -> None:
    assert [k.full_depth for k in ChannelKind] == [None, None, 5, 10, 20, None, None, None, None]


@pytest.mark.parametrize(
    ("name", "period", "rest_name", "duration"),
    [
        ("1min", KlinePeriod.MIN_1, "1min", timedelta(minutes=1)),
        ("12hour", KlinePeriod.HOUR_12, "12hour", timedelta(hours=12)),
        ("day", KlinePeriod.DAY_1, "1day", timedelta(days=1)),
        ("1day", KlinePeriod.DAY_1, "1day", timedelta(days=1)),
        ("week", KlinePeriod.WEEK_1, "1week", timedelta(weeks=1)),
        ("1week", KlinePeriod.WEEK_1, "1week", timedelta(weeks=1)),
        ("3day", KlinePeriod.DAY_3, None, timedelta(days=3)),
    ],
)
def test_kline_periods_accept_websocket_and_rest_names(
    name: str, period: KlinePeriod, rest_name: str | None, duration: timedelta
) -> None:
    assert KlinePeriod.parse(name) is period
    assert period.rest_name == rest_name
    assert period.duration == duration


def test_unknown_kline_period_is_named() -> None:
    with pytest.raises(ValueError, match="unknown kline period '2min'"):
        KlinePeriod.parse("2min")


def test_order_status_codes_and_finality() -> None:
    assert [s.value for s in OrderStatus] == [
        "cancelled", "open", "partially_filled", "filled", "cancelling", "failed", "placing"
    ]
    assert [order_status(code) for code in range(-1, 6)] == list(OrderStatus)  # the v1 codes, in order
    assert {s for s in OrderStatus if s.is_final} == {
        OrderStatus.CANCELLED, OrderStatus.FILLED, OrderStatus.FAILED
    }
    assert Side("buy") is Side.BUY


def test_book_snapshot_best_levels() -> None:
    snap = BookSnapshot(venue="okex_v1", symbol="bch_btc", ts_event=T0, ts_recv=T0,
                        bids=((Decimal("0.1"), Decimal(1)),), asks=())
    assert snap.best_bid == (Decimal("0.1"), Decimal(1))
    assert snap.best_ask is None
    assert snap.source == ChannelKind.DEPTH.value


def test_feed_event_spans_and_instants() -> None:
    open_span = FeedEvent(kind=FeedEventKind.DISCONNECTED, ts_start=T0, ts_end=None, connection="c1")
    closed = dataclasses.replace(open_span, ts_end=T0 + timedelta(seconds=3))
    assert open_span.duration is None
    assert closed.duration == timedelta(seconds=3)
    assert closed.event_id == open_span.event_id
    other = FeedEvent(kind=FeedEventKind.CONNECTED, ts_start=T0, ts_end=T0, connection="c1")
    assert other.event_id != open_span.event_id and other.duration == timedelta(0)


def test_utc_now_is_aware_utc() -> None:
    now = utc_now()
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
