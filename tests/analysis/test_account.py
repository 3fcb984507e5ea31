"""Account measures against values computed by hand on small fixed frames."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import account

T0 = pd.Timestamp("2024-05-01T00:00:00Z")


def ts(seconds: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


def idx(name: str, *seconds: float) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([ts(s) for s in seconds], name=name)


@pytest.fixture
def tickers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["btc_usdt", "usdt_abc", "btc_usdt"],
            "buy": [100.0, 3.0, 110.0],
            "sell": [102.0, 5.0, 112.0],
            "last": [101.5, 4.0, 111.0],
        },
        index=idx("ts_event", 0, 0, 600),
    )


@pytest.fixture
def balances() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account": ["spot"] * 6,
            "currency": ["btc", "btc", "usdt", "eth", "abc", "btc"],
            "free": [1.0, 1.0, 100.0, 3.0, 8.0, 2.0],
            "frozen": [0.0, 0.5, 0.0, 0.0, 0.0, 0.0],
        },
        index=idx("ts_recv", -60, 300, 300, 300, 300, 900),
    )


def test_balances_valued_with_the_last_price_before_each_poll(
    tickers: pd.DataFrame, balances: pd.DataFrame
) -> None:
    valued = account.value_balances(balances, tickers, quote="usdt")
    assert valued.index.equals(balances.index)
    assert valued["total"].tolist() == [1.0, 1.5, 100.0, 3.0, 8.0, 2.0]
    # before any btc price: NaN; mid 101; usdt = 1; eth has no market; abc = 1 / mid(usdt_abc) = 1/4; mid 111
    expected = [math.nan, 151.5, 100.0, math.nan, 2.0, 222.0]
    np.testing.assert_array_equal(valued["value"].to_numpy(), expected)
    last = account.value_balances(balances, tickers, quote="usdt", price="last")
    assert last["value"].iloc[1] == 152.25  # 1.5 * 101.5


def test_portfolio_value_sums_each_poll(tickers: pd.DataFrame, balances: pd.DataFrame) -> None:
    total = account.portfolio_value(account.value_balances(balances, tickers))
    assert total.index.tolist() == [ts(-60), ts(300), ts(900)]
    np.testing.assert_array_equal(total.to_numpy(), [math.nan, 253.5, 222.0])


@pytest.fixture
def orders() -> pd.DataFrame:
    rows = [
        # order_id, symbol, type, price, amount, deal_amount, avg_price, status, created, seen
        (1, "btc_usdt", "buy", 101.0, 2.0, 2.0, 101.5, "filled", 30, 60),
        (2, "btc_usdt", "sell", 103.0, 4.0, 0.0, 0.0, "open", 120, 121),
        (2, "btc_usdt", "sell", 103.0, 4.0, 1.0, 103.0, "cancelled", 120, 200),
        (3, "btc_usdt", "buy_market", 500.0, math.nan, 4.9, 102.0, "filled", 180, 182),
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "order_id", "symbol", "type", "price", "amount", "deal_amount", "avg_price", "status", "c", "s"
        ],
    )
    frame["ts_recv"] = [ts(s) for s in frame["s"]]
    frame.index = pd.DatetimeIndex([ts(c) for c in frame["c"]], name="ts_event")
    return frame.drop(columns=["c", "s"])


@pytest.fixture
def changes() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": [1, 1, 1, 2],
            "symbol": ["btc_usdt"] * 4,
            "status": ["open", "partially_filled", "filled", "open"],
            "previous_status": [None, "open", "partially_filled", None],
            "deal_amount": [0.0, 1.0, 2.0, 0.0],
        },
        index=idx("ts_recv", 31, 40, 50, 121),
    )


@pytest.fixture
def top() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["btc_usdt", "btc_usdt"],
            "bid_price": [100.0, 101.0],
            "ask_price": [102.0, 103.0],
        },
        index=idx("ts_event", 0, 60),
    )


def test_latest_orders_keeps_the_last_seen_state(orders: pd.DataFrame) -> None:
    latest = account.latest_orders(orders)
    assert latest["order_id"].tolist() == [1, 2, 3]
    assert latest["status"].tolist() == ["filled", "cancelled", "filled"]


def test_order_fills_ratio_time_to_fill_and_slippage(
    orders: pd.DataFrame, changes: pd.DataFrame, top: pd.DataFrame
) -> None:
    fills = account.order_fills(orders, changes, top).set_index("order_id")
    np.testing.assert_array_equal(fills["fill_ratio"].to_numpy(), [1.0, 0.25, math.nan])
    # order 1: first seen filled at 50 s, created 30 s; order 3: no change rows, own ts_recv 182 - 180
    assert fills.loc[1, "time_to_fill"] == pd.Timedelta(seconds=20)
    assert pd.isna(fills.loc[2, "time_to_fill"])
    assert fills.loc[3, "time_to_fill"] == pd.Timedelta(seconds=2)
    # mids as of creation: 101 (snapshot at 0 s), 102 (at 60 s), 102
    assert fills["mid_at_creation"].tolist() == [101.0, 102.0, 102.0]
    # buy 101.5 vs 101: +0.5/101; sell 103 vs 102: price improvement -1/102; buy 102 vs 102: 0
    assert fills["slippage_bps"].tolist() == pytest.approx([49.504950495049506, -98.0392156862745, 0.0])


def test_order_fills_without_book_has_no_slippage(orders: pd.DataFrame, changes: pd.DataFrame) -> None:
    fills = account.order_fills(orders, changes)
    assert fills["slippage_bps"].isna().all()


@pytest.fixture
def trades() -> pd.DataFrame:
    rows = [
        (11, "buy", 2.0, 100.0),
        (12, "buy", 2.0, 110.0),
        (13, "sell", 3.0, 120.0),
        (14, "sell", 2.0, 90.0),
        (15, "sell", 1.0, 95.0),  # nothing filled: ignored
    ]
    frame = pd.DataFrame(rows, columns=["order_id", "type", "deal_amount", "avg_price"])
    frame.loc[4, "deal_amount"] = 0.0
    frame["symbol"] = "btc_usdt"
    frame["status"] = "filled"
    frame["ts_recv"] = [ts(i * 10 + 1) for i in range(5)]
    frame.index = idx("ts_event", 0, 10, 20, 30, 40)
    return frame


def test_realised_pnl_fifo(trades: pd.DataFrame) -> None:
    pnl = account.realised_pnl(trades, "fifo")
    # sell 3 @120 against 2 @100 + 1 @110 = 360 - 310; sell 2 @90 against 1 @110, 1 unmatched
    assert pnl["order_id"].tolist() == [13, 14]
    assert pnl["cost"].tolist() == [310.0, 110.0]
    assert pnl["realised"].tolist() == [50.0, -20.0]
    assert pnl["unmatched"].tolist() == [0.0, 1.0]
    assert pnl["cumulative"].tolist() == [50.0, 30.0]


def test_realised_pnl_average_cost(trades: pd.DataFrame) -> None:
    pnl = account.realised_pnl(trades, "average")
    # average cost 105: 360 - 315; then 1 held at 105: 90 - 105
    assert pnl["cost"].tolist() == [315.0, 105.0]
    assert pnl["realised"].tolist() == [45.0, -15.0]
    assert pnl["unmatched"].tolist() == [0.0, 1.0]
    assert pnl["cumulative"].tolist() == [45.0, 30.0]


def test_realised_pnl_rejects_unknown_method(trades: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown method"):
        account.realised_pnl(trades, "lifo")  # type: ignore[arg-type]
