"""The pure market model: deterministic, on the pair's increments, never crossed."""

from __future__ import annotations

from decimal import Decimal

from recorder.records import KlinePeriod
from recorder.simulator.market import BookSide, Market, SymbolMarket, format_decimal
from recorder.venues.okex_v1.pairs import pairs

NOW = 1_541_462_400_000  # 2018-11-06T00:00:00Z


def _run(seed: int, steps: int = 300) -> list[object]:
    m = SymbolMarket("ltc_btc", seed=seed, depth=200, now_ms=NOW)
    out: list[object] = [m.book()]
    for i in range(steps):
        r = m.step(NOW + i * 100)
        out.append((r.changes, r.trades, r.ticker_changed))
    return out


def test_same_seed_same_events_and_different_seed_different_events() -> None:
    assert _run(5) == _run(5)
    assert _run(5) != _run(6)


def test_book_stays_uncrossed_bounded_and_on_increments() -> None:
    for symbol in ("btc_usdt", "ltc_btc", "bch_btc"):
        pair = pairs()[symbol]
        m = SymbolMarket(symbol, seed=3, depth=200, now_ms=NOW)
        for i in range(1500):
            r = m.step(NOW + i * 50)
            final = {(c.side, c.price): c.amount for c in r.changes}  # the last change per level wins
            for (side, price), amount in final.items():
                levels = m.bids if side is BookSide.BID else m.asks
                assert levels.get(price, Decimal(0)) == amount
            bids, asks = m.book()
            assert len(bids) <= 200 and len(asks) <= 200
            assert bids[0][0] < asks[0][0]
        for price, amount in list(m.bids.items()) + list(m.asks.items()):
            assert price % pair.quote_increment == 0 and price > 0
            assert amount % pair.base_increment == 0 and amount >= pair.min_size
        for t in m.trades:
            assert t.price % pair.quote_increment == 0


def test_trades_update_ticker_and_klines() -> None:
    m = SymbolMarket("eth_btc", seed=9, depth=200, now_ms=NOW)
    tids = []
    for i in range(400):
        r = m.step(NOW + i * 1000)
        tids += [t.tid for t in r.trades]
    assert tids == sorted(tids) and len(set(tids)) == len(tids) and tids
    last = m.trades[-1]
    assert m.ticker().last == last.price
    row = m.kline_rows(KlinePeriod.MIN_1, size=1)[0]
    assert row.close == last.price and row.low <= last.price <= row.high
    assert row.ts_ms == last.ts_ms - last.ts_ms % 60_000
    for period in KlinePeriod.v1_periods():
        assert len(m.kline_rows(period)) >= 300


def test_exponent_form_for_tiny_prices() -> None:
    assert format_decimal(Decimal("0.00000001"), exponent=True) == "1E-8"
    assert format_decimal(Decimal("0.00000001")) == "0.00000001"
    assert format_decimal(Decimal("6500.0000")) == "6500"
    assert Decimal(format_decimal(Decimal("0.00000255"), exponent=True)) == Decimal("0.00000255")


def test_market_holds_every_symbol() -> None:
    m = Market(["btc_usdt", "ltc_btc"], seed=1, depth=50, now_ms=NOW)
    assert list(m) == ["btc_usdt", "ltc_btc"] and "ltc_btc" in m and "xrp_btc" not in m
