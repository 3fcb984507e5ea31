"""Market measures against values computed by hand on small fixed frames."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import market

T0 = pd.Timestamp("2024-05-01T00:00:00Z")


def ts(seconds: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


def idx(*seconds: float) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([ts(s) for s in seconds], name="ts_event")


@pytest.fixture
def top() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["btc_usdt", "btc_usdt"],
            "ts_recv": [ts(0.1), ts(60.1)],
            "bid_price": [100.0, 100.5],
            "bid_amount": [2.0, 1.0],
            "ask_price": [102.0, 101.5],
            "ask_amount": [1.0, 3.0],
        },
        index=idx(0, 60),
    )


def test_mid_is_mean_of_best_bid_and_ask(top: pd.DataFrame) -> None:
    assert market.mid(top).tolist() == [101.0, 101.0]


def test_spread_absolute_and_in_bps_of_mid(top: pd.DataFrame) -> None:
    result = market.spread(top)
    assert result["spread"].tolist() == [2.0, 1.0]
    assert result["spread_bps"].tolist() == pytest.approx([198.01980198019803, 99.00990099009901])


def test_microprice_leans_to_the_thinner_side(top: pd.DataFrame) -> None:
    # (100*1 + 102*2)/3 and (100.5*3 + 101.5*1)/4
    assert market.microprice(top).tolist() == pytest.approx([101.33333333333333, 100.75])


@pytest.fixture
def levels() -> pd.DataFrame:
    rows = [
        # btc at t0: bids 100x2, 99x3, 98x5; asks 102x1, 103x4, 110x10
        ("btc_usdt", 0, "bid", 0, 100.0, 2.0),
        ("btc_usdt", 0, "bid", 1, 99.0, 3.0),
        ("btc_usdt", 0, "bid", 2, 98.0, 5.0),
        ("btc_usdt", 0, "ask", 0, 102.0, 1.0),
        ("btc_usdt", 0, "ask", 1, 103.0, 4.0),
        ("btc_usdt", 0, "ask", 2, 110.0, 10.0),
        # eth at t1: bids only
        ("eth_usdt", 1, "bid", 0, 10.0, 7.0),
    ]
    frame = pd.DataFrame(rows, columns=["symbol", "t", "side", "level", "price", "amount"])
    frame["ts_recv"] = [ts(t + 0.5) for t in frame["t"]]
    frame["source"] = "depth"
    frame.index = pd.DatetimeIndex([ts(t) for t in frame["t"]], name="ts_event")
    return frame.drop(columns="t")


@pytest.mark.parametrize(("n", "expected"), [(1, 1 / 3), (2, 0.0), (3, -0.2)])
def test_imbalance_of_top_n_levels(levels: pd.DataFrame, n: int, expected: float) -> None:
    result = market.imbalance(levels, n)
    btc = result[result["symbol"] == "btc_usdt"]
    assert btc["imbalance"].tolist() == pytest.approx([expected])
    assert btc.index.tolist() == [T0]


def test_imbalance_of_a_one_sided_book_is_one(levels: pd.DataFrame) -> None:
    eth = market.imbalance(levels, 5).query("symbol == 'eth_usdt'")
    assert eth[["bid_amount", "ask_amount", "imbalance"]].to_numpy().tolist() == [[7.0, 0.0, 1.0]]


def test_depth_within_bps_of_mid(levels: pd.DataFrame) -> None:
    # mid 101: 100 bps -> [99.99, 102.01]; 200 bps -> [98.98, 103.02]
    narrow = market.depth_within(levels, 100).query("symbol == 'btc_usdt'")
    wide = market.depth_within(levels, 200).query("symbol == 'btc_usdt'")
    assert narrow[["mid", "bid_depth", "ask_depth", "bid_notional", "ask_notional"]].to_numpy().tolist() == [
        [101.0, 2.0, 1.0, 200.0, 102.0]
    ]
    assert wide[["bid_depth", "ask_depth", "bid_notional", "ask_notional"]].to_numpy().tolist() == [
        [5.0, 5.0, 497.0, 514.0]
    ]


def test_depth_of_one_sided_book_has_no_mid(levels: pd.DataFrame) -> None:
    eth = market.depth_within(levels, 100).query("symbol == 'eth_usdt'")
    assert math.isnan(eth["mid"].iloc[0])
    assert eth[["bid_depth", "ask_depth"]].to_numpy().tolist() == [[0.0, 0.0]]


@pytest.fixture
def deals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["btc_usdt", "btc_usdt", "btc_usdt", "eth_usdt", "btc_usdt"],
            "tid": [1, 2, 3, 4, 5],
            "price": [100.0, 101.0, 99.0, 10.0, 102.0],
            "amount": [1.0, 2.0, 1.0, 3.0, 0.5],
            "side": ["buy", "sell", "buy", "buy", "sell"],
            "ts_recv": [ts(6), ts(31), ts(60), ts(61), ts(131)],
        },
        index=idx(5, 30, 59, 60, 130),
    )


def test_ohlcv_bars_from_deals(deals: pd.DataFrame) -> None:
    bars = market.ohlcv(deals, "1min")
    btc = bars[bars["symbol"] == "btc_usdt"]
    assert btc.index.tolist() == [ts(0), ts(60), ts(120)]
    assert btc[["open", "high", "low", "close"]].iloc[[0, 2]].to_numpy().tolist() == [
        [100.0, 101.0, 99.0, 99.0],
        [102.0, 102.0, 102.0, 102.0],
    ]
    assert btc["open"].isna().tolist() == [False, True, False]
    assert btc["volume"].tolist() == [4.0, 0.0, 0.5]
    assert btc["notional"].tolist() == [401.0, 0.0, 51.0]
    assert btc["count"].tolist() == [3, 0, 1]
    eth = bars[bars["symbol"] == "eth_usdt"]
    assert eth.index.tolist() == [ts(60)]
    assert eth[["open", "close", "volume", "count"]].to_numpy().tolist() == [[10.0, 10.0, 3.0, 1]]


def test_compare_klines_uses_the_last_push_and_flags_differences(deals: pd.DataFrame) -> None:
    bars = market.ohlcv(deals, "1min")
    klines = pd.DataFrame(
        {
            "symbol": ["btc_usdt"] * 3,
            "period": ["1min"] * 3,
            "ts_recv": [ts(6), ts(60.5), ts(140)],
            "open": [100.0, 100.0, 102.0],
            "high": [100.0, 101.0, 102.5],
            "low": [100.0, 99.0, 102.0],
            "close": [100.0, 99.0, 102.0],
            "volume": [1.0, 4.0, 0.7],
        },
        index=idx(0, 0, 120),
    )
    result = market.compare_klines(bars, klines)
    assert result.index.tolist() == [ts(0), ts(120)]
    assert result["match"].tolist() == [True, False]
    assert result["high_diff"].tolist() == [0.0, -0.5]
    assert result["volume_diff"].tolist() == pytest.approx([0.0, -0.2])


def test_vwap_overall_and_per_bar(deals: pd.DataFrame) -> None:
    overall = market.vwap(deals)
    assert overall.loc["btc_usdt", "vwap"] == pytest.approx(100.44444444444444)  # 452 / 4.5
    assert overall.loc["btc_usdt", "volume"] == 4.5
    assert overall.loc["eth_usdt", "vwap"] == 10.0
    bars = market.vwap(deals, "1min").query("symbol == 'btc_usdt'")
    assert bars["vwap"].iloc[0] == pytest.approx(100.25)  # 401 / 4
    assert np.isnan(bars["vwap"].iloc[1])
    assert bars["vwap"].iloc[2] == 102.0


def test_realized_volatility_on_a_regular_grid() -> None:
    prices = pd.Series([100.0, 110.0, 99.0], index=idx(10, 70, 190))
    # grid 100, 110, 110 (carried), 99 -> returns ln 1.1, 0, ln(0.9)
    assert market.realized_volatility(prices, "1min") == pytest.approx(0.1420734621032929)
    windows = market.realized_volatility(prices, "1min", window="2min")
    assert isinstance(windows, pd.Series)
    assert windows.tolist() == pytest.approx([0.09531017980432493, 0.10536051565782628])


def test_signed_trade_flow(deals: pd.DataFrame) -> None:
    flow = market.signed_trade_flow(deals, "1min").query("symbol == 'btc_usdt'")
    assert flow["buy_volume"].tolist() == [2.0, 0.0, 0.0]
    assert flow["sell_volume"].tolist() == [2.0, 0.0, 0.5]
    assert flow["net"].tolist() == [0.0, 0.0, -0.5]
    assert flow["imbalance"].iloc[[0, 2]].tolist() == [0.0, -1.0]
    assert np.isnan(flow["imbalance"].iloc[1])
    assert flow["cumulative_net"].tolist() == [0.0, 0.0, -0.5]


def test_measures_of_empty_deals_are_empty(deals: pd.DataFrame) -> None:
    empty = deals.iloc[:0]
    assert len(market.ohlcv(empty)) == 0
    assert len(market.signed_trade_flow(empty)) == 0


def test_next_mid_change_looks_ahead_per_symbol() -> None:
    top = pd.DataFrame(
        {
            "symbol": ["btc_usdt", "eth_usdt", "btc_usdt", "btc_usdt"],
            "bid_price": [100.0, 10.0, 101.0, 99.0],
            "ask_price": [102.0, 12.0, 103.0, 101.0],
        },
        index=idx(0, 0.5, 0.8, 2),
    )
    # btc mids 101, 102, 100 at 0, 0.8, 2; 1 s ahead: 0 -> 2 (first at or after 1 s), 0.8 -> 2, 2 -> none
    change = market.next_mid_change(top, "1s")
    assert change.iloc[[0, 2]].tolist() == [-1.0, -2.0]
    assert change.iloc[[1, 3]].isna().tolist() == [True, True]  # eth has no later snapshot
    assert market.next_mid_change(top, "500ms").iloc[0] == 1.0  # 0 -> 0.8


def test_liquidity_grid_averages_binned_size(levels: pd.DataFrame) -> None:
    btc = levels[levels["symbol"] == "btc_usdt"]
    later = btc.set_axis(btc.index + pd.Timedelta(seconds=5)).assign(ts_recv=ts(5.5))
    later = later[later["price"] != 110.0]  # the 110 ask is gone in the second snapshot
    grid = market.liquidity_grid(pd.concat([btc, later]), price_step=5.0, freq="10s")
    assert grid.index.tolist() == [T0]
    # bins: 95 <- 98, 99; 100 <- 100, 102, 103; 110 <- 110 (10 in one snapshot, 0 in the other)
    assert grid.columns.tolist() == [95.0, 100.0, 110.0]
    assert grid.iloc[0].tolist() == [8.0, 7.0, 5.0]
