"""Wire → records (PROTOCOL.md §0, §2.3, §3, §4.5, §5): every example frame and odd inputs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.errors import DecodeError
from recorder.venues.okx_v5 import parse as P
from recorder.venues.okx_v5.records import OrderState, Side
from recorder.venues.okx_v5.schemas import (
    BalanceData,
    FillData,
    InstrumentData,
    OrderData,
    TickerData,
    TradeData,
    WsMessage,
)

from .frames import CANDLE, TICKER, TRADES

RECV = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def ms(n: int) -> datetime:
    return datetime.fromtimestamp(n // 1000, tz=UTC).replace(microsecond=(n % 1000) * 1000)


def data_of(frame: str, type_: type) -> list:  # type: ignore[type-arg]
    msg = P.decode_ws_message(frame)
    assert isinstance(msg, WsMessage) and msg.data
    return P.decode_data(msg.data, type_, "test")


def test_ticker_example_frame() -> None:
    (d,) = data_of(TICKER, TickerData)
    t = P.parse_ticker(d, RECV)
    assert t.venue == "okx_v5" and t.instrument == "BTC-USDT" and t.inst_type == "SPOT"
    assert t.ts_event == ms(1597026383085) and t.ts_recv == RECV
    assert (t.last, t.last_size, t.ask, t.ask_size, t.bid, t.bid_size) == (
        Decimal("9999.99"),
        Decimal("0.1"),
        Decimal("9999.99"),
        Decimal("11"),
        Decimal("8888.88"),
        Decimal("5"),
    )
    assert (t.open_24h, t.high_24h, t.low_24h) == (Decimal("9000"), Decimal("10000"), Decimal("8888.88"))
    assert (t.volume_24h, t.quote_volume_24h, t.sod_utc0, t.sod_utc8) == (Decimal("2222"),) * 4


def test_ticker_empty_strings_become_none_never_zero() -> None:
    frame = json.loads(TICKER)
    frame["data"][0].update(last="", lastSz="", bidPx="", bidSz="", instType="")
    (d,) = data_of(json.dumps(frame), TickerData)
    t = P.parse_ticker(d, RECV)
    assert (t.last, t.last_size, t.bid, t.bid_size, t.inst_type) == (None, None, None, None, None)
    assert t.ask == Decimal("9999.99")


def test_ticker_exponent_notation_is_exact() -> None:
    frame = json.loads(TICKER)
    frame["data"][0].update(last="1e-07", bidPx="4.2E+3")
    (d,) = data_of(json.dumps(frame), TickerData)
    t = P.parse_ticker(d, RECV)
    assert t.last == Decimal("0.0000001") and t.bid == Decimal("4200")


@pytest.mark.parametrize("field", ["instId", "ts"])
def test_ticker_missing_required_field_names_it(field: str) -> None:
    frame = json.loads(TICKER)
    del frame["data"][0][field]
    with pytest.raises(DecodeError, match=field):
        data_of(json.dumps(frame), TickerData)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("last", "NaN"),
        ("last", "abc"),
        ("ts", "1.5e12"),
        ("ts", ""),
        ("bidPx", " 1"),
        ("askSz", "Infinity"),
        ("ts", "-5"),
    ],
)
def test_ticker_bad_values_name_the_field(field: str, value: str) -> None:
    frame = json.loads(TICKER)
    frame["data"][0][field] = value
    (d,) = data_of(json.dumps(frame), TickerData)
    with pytest.raises(DecodeError, match=field):
        P.parse_ticker(d, RECV)


@pytest.mark.parametrize(("field", "value", "name"), [("last", "-1", "last"), ("bidSz", "-0.5", "bid_size"),
                                                   ("vol24h", "-1e-8", "volume_24h")])
def test_ticker_negative_values_are_impossible(field: str, value: str, name: str) -> None:
    frame = json.loads(TICKER)
    frame["data"][0][field] = value
    (d,) = data_of(json.dumps(frame), TickerData)
    with pytest.raises(DecodeError, match=f"impossible negative {name} "):
        P.parse_ticker(d, RECV)


def test_ticker_zero_and_negative_zero_are_kept() -> None:
    frame = json.loads(TICKER)
    frame["data"][0].update(bidPx="0", bidSz="-0", last="1e-8")
    (d,) = data_of(json.dumps(frame), TickerData)
    t = P.parse_ticker(d, RECV)
    assert (t.bid, t.bid_size, t.last) == (Decimal(0), Decimal(0), Decimal("1e-8"))


def test_number_where_string_expected_names_the_path() -> None:
    frame = json.loads(TICKER)
    frame["data"][0]["last"] = 9999.99
    with pytest.raises(DecodeError, match=r"last"):
        data_of(json.dumps(frame), TickerData)


def test_trade_example_frame() -> None:
    (d,) = data_of(TRADES, TradeData)
    t = P.parse_trade(d, RECV)
    assert (t.instrument, t.trade_id, t.price, t.size, t.side) == (
        "BTC-USDT",
        "130639474",
        Decimal("42219.9"),
        Decimal("0.12060306"),
        Side.BUY,
    )
    assert (t.ts_event, t.count, t.source, t.seq_id) == (ms(1630048897897), 3, "0", 1234)


def test_trades_all_item_without_count_or_seqid() -> None:
    raw = b'[{"instId":"BTC-USDT","tradeId":"1","px":"1","sz":"2","side":"sell","ts":"1"}]'
    (d,) = P.decode_data(raw, TradeData, "trades-all")
    t = P.parse_trade(d, RECV)
    assert (t.count, t.seq_id, t.source, t.side) == (None, None, None, Side.SELL)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("side", "BUY", "side"),
        ("px", "", "px"),
        ("count", "3.0", "count"),
        ("tradeId", "", "tradeId"),
        ("sz", "1,5", "sz"),
    ],
)
def test_trade_bad_values(field: str, value: str, needle: str) -> None:
    item = json.loads(TRADES)["data"][0]
    item[field] = value
    (d,) = P.decode_data(json.dumps([item]).encode(), TradeData, "trades")
    with pytest.raises(DecodeError, match=needle):
        P.parse_trade(d, RECV)


def test_candle_example_frame() -> None:
    msg = P.decode_ws_message(CANDLE)
    assert isinstance(msg, WsMessage) and msg.data
    (row,) = P.decode_data(msg.data, list, "candle1m")
    c = P.parse_candle(row, "BTC-USDT", "1m", RECV)
    assert c.ts_event == ms(1597026383085)
    assert (c.open, c.high, c.low, c.close) == (
        Decimal("8533.02"),
        Decimal("8553.74"),
        Decimal("8527.17"),
        Decimal("8548.26"),
    )
    assert (c.volume, c.volume_ccy, c.volume_ccy_quote, c.confirmed) == (
        Decimal("45247"),
        Decimal("529.5858061"),
        Decimal("5529.5858061"),
        False,
    )


def test_candle_short_rows_and_confirm() -> None:
    seven = ["1597026383085", "1", "2", "0.5", "1.5", "10", "15"]
    c = P.parse_candle(seven, "BTC-USDT", "1m", RECV)
    assert (c.volume_ccy_quote, c.confirmed) == (None, None)
    nine = [*seven, "20", "1"]
    assert P.parse_candle(nine, "BTC-USDT", "1m", RECV).confirmed is True
    five = seven[:5]
    assert P.parse_candle(five, "BTC-USDT", "1m", RECV).volume is None


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        (["1597026383085", "1", "2", "0.5"], "fewer than 5"),
        ("1597026383085,1,2,3,4", "fewer than 5"),
        (["1597026383085", 1, "2", "0.5", "1.5"], "candle.o"),
        (["x", "1", "2", "0.5", "1.5"], "candle.ts"),
        (["1", "", "2", "0.5", "1.5"], "candle.o"),
        (["1", "1", "2", "0.5", "1.5", "1", "1", "1", "2"], "confirm"),
    ],
)
def test_candle_bad_rows(row: object, needle: str) -> None:
    with pytest.raises(DecodeError, match=needle):
        P.parse_candle(row, "BTC-USDT", "1m", RECV)  # type: ignore[arg-type]


INSTRUMENT = {
    "instType": "SPOT",
    "instId": "BTC-USDT",
    "baseCcy": "BTC",
    "quoteCcy": "USDT",
    "tickSz": "0.1",
    "lotSz": "0.00000001",
    "minSz": "0.00001",
    "state": "live",
    "listTime": "1606468572000",
    "expTime": "",
    "ctVal": "",
    "lever": "10",
    "instIdCode": 1,
    "upcChg": [],
    "futureSettlement": False,
}


def test_instrument_spot_fields_and_empty_derivative_fields() -> None:
    (d,) = P.decode_data(json.dumps([INSTRUMENT]).encode(), InstrumentData, "instruments")
    i = P.parse_instrument(d, RECV)
    assert (i.instrument, i.inst_type, i.base, i.quote, i.state) == (
        "BTC-USDT",
        "SPOT",
        "BTC",
        "USDT",
        "live",
    )
    assert (i.tick_size, i.lot_size, i.min_size) == (
        Decimal("0.1"),
        Decimal("0.00000001"),
        Decimal("0.00001"),
    )
    assert i.list_time == ms(1606468572000) and i.exp_time is None


@pytest.mark.parametrize("field", ["tickSz", "lotSz", "state", "instId"])
def test_instrument_missing_field_named(field: str) -> None:
    item = dict(INSTRUMENT)
    del item[field]
    with pytest.raises(DecodeError, match=field):
        P.decode_data(json.dumps([item]).encode(), InstrumentData, "instruments")


def test_balance_example() -> None:
    from .frames import REST_BALANCE

    env = P.decode_rest_envelope(REST_BALANCE)
    assert env.data
    (d,) = P.decode_data(env.data, BalanceData, "balance")
    (b,) = P.parse_balances(d, RECV)
    assert (b.currency, b.cash, b.available, b.frozen, b.order_frozen, b.equity, b.equity_usd) == (
        "USDT",
        Decimal("4850.43"),
        Decimal("4834.31"),
        Decimal("158.57"),
        Decimal("0"),
        Decimal("4992.89"),
        Decimal("4991.54"),
    )
    assert b.ts_event == ms(1705449605015)


ORDER = {
    "instType": "SPOT",
    "instId": "BTC-USDT",
    "ordId": "680800019749904384",
    "clOrdId": "",
    "tag": "",
    "px": "",
    "sz": "100",
    "ordType": "market",
    "side": "buy",
    "posSide": "net",
    "tdMode": "cash",
    "tgtCcy": "quote_ccy",
    "state": "live",
    "accFillSz": "0",
    "avgPx": "",
    "fillPx": "",
    "fillSz": "0",
    "fillTime": "",
    "tradeId": "",
    "fee": "0",
    "feeCcy": "BTC",
    "rebate": "0",
    "rebateCcy": "USDT",
    "category": "normal",
    "cTime": "1708587373361",
    "uTime": "1708587373362",
}


def test_market_order_empty_price_and_avg_are_none() -> None:
    (d,) = P.decode_data(json.dumps([ORDER]).encode(), OrderData, "orders")
    o = P.parse_order(d, RECV)
    assert (o.price, o.avg_price, o.client_order_id) == (None, None, None)
    assert (o.side, o.state, o.order_type, o.size, o.filled_size, o.fee) == (
        Side.BUY,
        OrderState.LIVE,
        "market",
        Decimal("100"),
        Decimal("0"),
        Decimal("0"),
    )
    assert (o.ts_created, o.ts_updated) == (ms(1708587373361), ms(1708587373362))
    assert o.target_ccy == "quote_ccy"  # a market buy's size of 100 is in USDT
    assert not o.state.is_terminal


def test_order_unknown_state_is_named() -> None:
    (d,) = P.decode_data(json.dumps([{**ORDER, "state": "exploded"}]).encode(), OrderData, "orders")
    with pytest.raises(DecodeError, match=r"order\.state"):
        P.parse_order(d, RECV)


FILL = {
    "instType": "SPOT",
    "instId": "BTC-USDT",
    "tradeId": "123",
    "ordId": "680800019749904384",
    "clOrdId": "",
    "billId": "680800019754098688",
    "subType": "1",
    "tag": "",
    "fillPx": "42000.1",
    "fillSz": "0.001",
    "side": "buy",
    "posSide": "net",
    "execType": "T",
    "fee": "-0.000001",
    "feeCcy": "BTC",
    "feeRate": "-0.001",
    "fillIdxPx": "",
    "fillPnl": "0",
    "fillTime": "1708587373361",
    "ts": "1708587373400",
    "tradeQuoteCcy": "USDT",
}


def test_fill() -> None:
    (d,) = P.decode_data(json.dumps([FILL]).encode(), FillData, "fills")
    f = P.parse_fill(d, RECV)
    assert (f.trade_id, f.order_id, f.bill_id, f.price, f.size, f.side, f.liquidity, f.fee, f.fee_ccy) == (
        "123",
        "680800019749904384",
        "680800019754098688",
        Decimal("42000.1"),
        Decimal("0.001"),
        Side.BUY,
        "T",
        Decimal("-0.000001"),
        "BTC",
    )
    assert f.ts_event == ms(1708587373361)


@pytest.mark.parametrize("field", ["fillPx", "fillTime", "ordId", "side"])
def test_fill_missing_field_named(field: str) -> None:
    item = dict(FILL)
    del item[field]
    with pytest.raises(DecodeError, match=field):
        P.decode_data(json.dumps([item]).encode(), FillData, "fills")


@pytest.mark.parametrize("frame", ["", "not json", "[1,2]", '{"event": 5}', b"\xff\xfe", '{"arg": "books"}'])
def test_bad_frames_are_decode_errors_with_sample(frame: str | bytes) -> None:
    with pytest.raises(DecodeError) as info:
        P.decode_ws_message(frame)
    sample = frame.encode() if isinstance(frame, str) else frame
    assert info.value.sample == sample


def test_pong_text() -> None:
    assert P.decode_ws_message("pong") == P.PONG
    assert P.decode_ws_message(b"pong") == P.PONG


@given(st.text(max_size=30))
def test_parse_decimal_never_raises_anything_but_decode_error(text: str) -> None:
    try:
        d = P.parse_decimal(text, "f")
    except DecodeError as exc:
        assert "'f'" in str(exc)
    else:
        assert d is None or d.is_finite()


@given(st.text(max_size=20))
def test_parse_ms_never_raises_anything_but_decode_error(text: str) -> None:
    try:
        P.parse_ms(text, "f")
    except DecodeError as exc:
        assert "'f'" in str(exc)


@given(st.integers(min_value=0, max_value=10**13))
def test_parse_ms_is_exact(n: int) -> None:
    assert P.parse_ms(str(n), "ts") == ms(n)


@given(
    st.dictionaries(
        st.sampled_from(sorted(TickerData.__struct_fields__)),
        st.one_of(st.text(max_size=8), st.integers(), st.none()),
        max_size=8,
    )
)
def test_random_ticker_items_raise_only_decode_error(item: dict[str, object]) -> None:
    try:
        (d,) = P.decode_data(msgspec.json.encode([item]), TickerData, "tickers")
        P.parse_ticker(d, RECV)
    except DecodeError:
        pass


@pytest.mark.parametrize(
    ("type_", "item", "field", "value", "needle"),
    [
        (InstrumentData, INSTRUMENT, "tickSz", "", "tickSz"),
        (InstrumentData, INSTRUMENT, "minSz", "abc", "minSz"),
        (InstrumentData, INSTRUMENT, "listTime", "soon", "listTime"),
        (OrderData, ORDER, "cTime", "", "cTime"),
        (OrderData, ORDER, "side", "short", "side"),
        (OrderData, ORDER, "avgPx", "1,0", "avgPx"),
        (OrderData, ORDER, "ordId", "", "ordId"),
        (FillData, FILL, "fillSz", "", "fillSz"),
        (FillData, FILL, "fee", "NaN", "fee"),
        (FillData, FILL, "tradeId", "", "tradeId"),
    ],
)
def test_odd_values_in_private_and_reference_items(
    type_: type, item: dict[str, object], field: str, value: str, needle: str
) -> None:
    parser = {InstrumentData: P.parse_instrument, OrderData: P.parse_order, FillData: P.parse_fill}[type_]
    (d,) = P.decode_data(json.dumps([{**item, field: value}]).encode(), type_, "x")
    with pytest.raises(DecodeError, match=needle):
        parser(d, RECV)  # type: ignore[operator]


@pytest.mark.parametrize("value", [None, 5, True, [], {}])
def test_non_string_values_are_named(value: object) -> None:
    with pytest.raises(DecodeError, match="fillPx"):
        P.decode_data(json.dumps([{**FILL, "fillPx": value}]).encode(), FillData, "fills")


def test_balance_empty_strings_and_exponents() -> None:
    raw = json.dumps(
        [
            {
                "uTime": "",
                "totalEq": "",
                "details": [
                    {"ccy": "BTC", "eq": "", "cashBal": "1E-8", "availBal": "", "frozenBal": "0", "uTime": ""}
                ],
            }
        ]
    )
    (d,) = P.decode_data(raw.encode(), BalanceData, "balance")
    (b,) = P.parse_balances(d, RECV)
    assert (b.cash, b.available, b.frozen, b.equity, b.equity_usd, b.ts_event) == (
        Decimal("0.00000001"),
        None,
        Decimal("0"),
        None,
        None,
        None,
    )
    with pytest.raises(DecodeError, match="ccy"):
        P.decode_data(b'[{"details": [{"eq": "1"}]}]', BalanceData, "balance")
    with pytest.raises(DecodeError, match="details"):
        P.decode_data(b'[{"uTime": "1"}]', BalanceData, "balance")


def test_every_record_carries_the_venue() -> None:
    (t,) = data_of(TICKER, TickerData)
    (tr,) = data_of(TRADES, TradeData)
    (o,) = P.decode_data(json.dumps([ORDER]).encode(), OrderData, "orders")
    (f,) = P.decode_data(json.dumps([FILL]).encode(), FillData, "fills")
    (i,) = P.decode_data(json.dumps([INSTRUMENT]).encode(), InstrumentData, "instruments")
    records = [
        P.parse_ticker(t, RECV),
        P.parse_trade(tr, RECV),
        P.parse_order(o, RECV),
        P.parse_fill(f, RECV),
        P.parse_instrument(i, RECV),
        P.parse_candle(["1", "1", "1", "1", "1"], "BTC-USDT", "1m", RECV),
    ]
    assert {r.venue for r in records} == {"okx_v5"}
    assert all(r.ts_recv == RECV for r in records)
