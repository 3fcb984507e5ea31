"""REST response parsing (PROTOCOL.md "REST")."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from recorder.errors import DecodeError, ErrorClass, ExchangeError, Transport, is_rate_limit
from recorder.records import (
    Balance,
    BookSnapshot,
    ChannelKind,
    Deal,
    Kline,
    KlinePeriod,
    Order,
    OrderStatus,
    OrderType,
    Side,
    Ticker,
)
from recorder.venues.okex_v1.parse import decode_json
from recorder.venues.okex_v1.rest import (
    OrderHistoryPage,
    check_result,
    parse_depth,
    parse_klines,
    parse_order_history,
    parse_orders,
    parse_ticker,
    parse_trades,
    parse_userinfo,
    parse_wallet_info,
)

RECV = datetime(2018, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
D = Decimal


def test_documented_ticker_answer() -> None:
    answer = decode_json(
        '{"date": "1410431279", "ticker": {"buy": "33.15", "high": "34.15", "last": "33.15", '
        '"low": "32.05", "sell": "33.16", "vol": "10532696.39"}}'
    )
    assert parse_ticker(answer, "ltc_btc", RECV) == Ticker(venue="okex_v1",
        symbol="ltc_btc", ts_event=datetime(2014, 9, 11, 10, 27, 59, tzinfo=UTC), ts_recv=RECV,
        buy=D("33.15"), sell=D("33.16"), last=D("33.15"), high=D("34.15"), low=D("32.05"),
        vol=D("10532696.39"),
    )


def test_documented_depth_answer_lists_asks_lowest_first_in_the_snapshot() -> None:
    answer = decode_json('{"asks": [[792, 5], [789.68, 0.018], [788.99, 0.042]], '
                         '"bids": [[787.1, 0.35], [787, 12.071], [786.5, 0.014]]}')
    assert parse_depth(answer, "btc_usdt", RECV) == BookSnapshot(venue="okex_v1",
        symbol="btc_usdt", ts_event=RECV, ts_recv=RECV, source=ChannelKind.DEPTH.value,
        asks=((D("788.99"), D("0.042")), (D("789.68"), D("0.018")), (D(792), D(5))),
        bids=((D("787.1"), D("0.35")), (D(787), D("12.071")), (D("786.5"), D("0.014"))),
    )


def test_depth_with_exponent_prices_and_explicit_event_time() -> None:
    answer = decode_json('{"asks": [["3E-8", "1"], [2E-8, 2]], "bids": [["0.00000001", "5"]]}')
    snap = parse_depth(answer, "bch_btc", RECV, ts_event=datetime(2018, 3, 1, tzinfo=UTC))
    assert snap.asks == ((D("0.00000002"), D(2)), (D("0.00000003"), D(1)))
    assert snap.bids == ((D("1E-8"), D(5)),)
    assert snap.ts_event == datetime(2018, 3, 1, tzinfo=UTC)


def test_documented_trades_answer_with_numbers_and_strings() -> None:
    answer = decode_json(
        '[{"date": 1367130137, "date_ms": 1367130137000, "price": 787.71, "amount": 0.003, "tid": 230433, '
        '"type": "buy"}, {"date": "1367130138", "price": "787.7", "amount": "1E-3", "tid": "230434", '
        '"type": "sell"}]'
    )
    assert parse_trades(answer, "btc_usdt", RECV) == [
        Deal(venue="okex_v1",
             symbol="btc_usdt", tid=230433, price=D("787.71"), amount=D("0.003"), side=Side.BUY,
             ts_event=datetime(2013, 4, 28, 6, 22, 17, tzinfo=UTC), ts_recv=RECV),
        Deal(venue="okex_v1",
             symbol="btc_usdt", tid=230434, price=D("787.7"), amount=D("0.001"), side=Side.SELL,
             ts_event=datetime(2013, 4, 28, 6, 22, 18, tzinfo=UTC), ts_recv=RECV),
    ]


def test_trades_prefer_date_ms() -> None:
    answer = [{"date": 1, "date_ms": 1367130137123, "price": "1", "amount": "1", "tid": 1, "type": "buy"}]
    [deal] = parse_trades(answer, "btc_usdt", RECV)
    assert deal.ts_event == datetime(2013, 4, 28, 6, 22, 17, 123000, tzinfo=UTC)


def test_kline_answer_rows() -> None:
    answer = decode_json('[[1417536000000, 2370.16, 2380, 2352, 2367.37, 17259.83], '
                         '["1417622400000", "2367.37", "2390", "2360", "2380", "0"]]')
    first, second = parse_klines(answer, "btc_usdt", KlinePeriod.DAY_1, RECV)
    assert first == Kline(venue="okex_v1", symbol="btc_usdt", period=KlinePeriod.DAY_1,
                          ts_event=datetime(2014, 12, 2, 16, 0, tzinfo=UTC), ts_recv=RECV,
                          open=D("2370.16"), high=D(2380), low=D(2352), close=D("2367.37"),
                          volume=D("17259.83"))
    assert (second.ts_event, second.close, second.volume) == (
        datetime(2014, 12, 3, 16, 0, tzinfo=UTC), D(2380), D(0)
    )


def test_userinfo_gives_one_spot_balance_per_currency() -> None:
    answer = decode_json(
        '{"result": true, "info": {"funds": {"free": {"btc": "0.5", "ltc": "0", "usdt": "1E+2"}, '
        '"freezed": {"btc": "0.25", "ltc": "0", "eth": "1"}}}}'
    )
    assert parse_userinfo(answer, RECV) == [
        Balance(venue="okex_v1",
                ts_recv=RECV, account="spot", currency="btc", free=D("0.5"), frozen=D("0.25")),
        Balance(venue="okex_v1", ts_recv=RECV, account="spot", currency="eth", free=D(0), frozen=D(1)),
        Balance(venue="okex_v1", ts_recv=RECV, account="spot", currency="ltc", free=D(0), frozen=D(0)),
        Balance(venue="okex_v1", ts_recv=RECV, account="spot", currency="usdt", free=D(100), frozen=D(0)),
    ]


def test_wallet_info_uses_free_and_holds() -> None:
    answer = decode_json('{"result": true, "info": {"funds": {"free": {"btc": "2"}, "holds": {"btc": "1"}}}}')
    assert parse_wallet_info(answer, RECV) == [
        Balance(venue="okex_v1", ts_recv=RECV, account="wallet", currency="btc", free=D(2), frozen=D(1)),
    ]


ORDER = (
    '{"order_id": 10000591, "orders_id": 10000591, "symbol": "btc_usd", "type": "buy", "price": 500, '
    '"amount": 0.1, "deal_amount": 0, "avg_price": 0, "create_date": 1418008467000, "status": 0}'
)


def test_documented_order_info_answer() -> None:
    answer = decode_json(f'{{"result": true, "orders": [{ORDER}]}}')
    assert parse_orders(answer, RECV) == [
        Order(venue="okex_v1",
              order_id=10000591, symbol="btc_usd", type=OrderType.BUY, price=D(500), amount=D("0.1"),
              deal_amount=D(0), avg_price=D(0), status=OrderStatus.OPEN,
              ts_event=datetime(2014, 12, 8, 3, 14, 27, tzinfo=UTC), ts_recv=RECV)
    ]


def test_market_orders_have_no_price_or_no_amount() -> None:
    answer = decode_json(
        '{"result": true, "orders": ['
        '{"order_id": 1, "symbol": "ltc_btc", "type": "buy_market", "price": "0.5", "amount": "", '
        '"deal_amount": "3", "avg_price": "0.01", "create_date": 1418008467000, "status": 2},'
        '{"orders_id": "2", "symbol": "ltc_btc", "type": "sell_market", "amount": "4", '
        '"deal_amount": "1", "avg_price": "0.011", "create_date": "1418008468000", "status": "-1"}]}'
    )
    buy, sell = parse_orders(answer, RECV)
    assert (buy.order_id, buy.type, buy.price, buy.amount, buy.status) == (
        1, OrderType.BUY_MARKET, D("0.5"), None, OrderStatus.FILLED
    )
    assert (sell.order_id, sell.type, sell.price, sell.amount, sell.deal_amount, sell.status) == (
        2, OrderType.SELL_MARKET, None, D(4), D(1), OrderStatus.CANCELLED
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [(-1, OrderStatus.CANCELLED), (0, OrderStatus.OPEN), (1, OrderStatus.PARTIALLY_FILLED),
     (2, OrderStatus.FILLED), (3, OrderStatus.CANCELLING), (4, OrderStatus.FAILED), (5, OrderStatus.PLACING)],
)
def test_order_info_status_codes(status: int, expected: OrderStatus) -> None:
    order = decode_json(ORDER)
    assert isinstance(order, dict)
    [parsed] = parse_orders({"result": True, "orders": [{**order, "status": status}]}, RECV)
    assert parsed.status is expected


def test_order_history_page_and_its_status_4_means_cancelling() -> None:
    order = decode_json(ORDER)
    assert isinstance(order, dict)
    answer = {"result": True, "current_page": 1, "page_length": 200, "total": 3,
              "orders": [{**order, "status": 4}, {**order, "order_id": 2, "status": 2}]}
    page = parse_order_history(answer, RECV)
    assert isinstance(page, OrderHistoryPage)
    assert (page.current_page, page.page_length, page.total) == (1, 200, 3)
    assert [(o.order_id, o.status) for o in page.orders] == [
        (10000591, OrderStatus.CANCELLING), (2, OrderStatus.FILLED)
    ]


def test_error_answer_becomes_the_typed_rest_error() -> None:
    answer = decode_json('{"result": false, "error_code": 10001}')
    with pytest.raises(ExchangeError) as info:
        check_result(answer, "ticker.do")
    error = info.value
    assert (error.code, error.transport, error.error_class) == (
        10001, Transport.REST, ErrorClass.RATE_LIMITED
    )
    assert str(error) == (
        "OKEx rest error 10001: Request frequency too high to exceed the limit allowed (ticker.do)"
    )
    assert is_rate_limit(error)


@pytest.mark.parametrize(
    "parse",
    [
        lambda a: parse_ticker(a, "btc_usdt", RECV),
        lambda a: parse_depth(a, "btc_usdt", RECV),
        lambda a: parse_trades(a, "btc_usdt", RECV),
        lambda a: parse_klines(a, "btc_usdt", KlinePeriod.MIN_1, RECV),
        lambda a: parse_userinfo(a, RECV),
        lambda a: parse_wallet_info(a, RECV),
        lambda a: parse_orders(a, RECV),
        lambda a: parse_order_history(a, RECV),
    ],
)
def test_every_parser_raises_the_typed_error_for_an_error_answer(parse: object) -> None:
    with pytest.raises(ExchangeError) as info:
        parse({"result": False, "error_code": "10007"})  # type: ignore[operator]
    assert (info.value.code, info.value.error_class) == (10007, ErrorClass.AUTH)


def test_successful_or_non_object_answers_pass_check_result() -> None:
    answers: list[object] = [{"result": True}, {"asks": []}, [], "x", None, {"result": "false"}]
    for answer in answers:
        before = repr(answer)
        assert check_result(answer, "x") is None
        assert repr(answer) == before  # the answer is inspected, never changed
    # ...while the same shapes with result false are errors (the contrast this test guards)
    with pytest.raises(ExchangeError) as exc:
        check_result({"result": False, "error_code": 10007}, "userinfo.do")
    assert exc.value.code == 10007 and exc.value.message_en == "Signature does not match"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"result": False}, "result false without an error_code"),
        ({"result": False, "error_code": "x"}, "error_code is not a number"),
    ],
)
def test_unusable_error_answers_are_decode_errors(answer: object, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        check_result(answer, "userinfo.do")


@pytest.mark.parametrize(
    ("call", "answer", "message"),
    [
        ("ticker", [], "ticker.do: expected a JSON object, got list"),
        ("ticker", {"date": "1"}, "ticker.do: missing field 'ticker'"),
        ("ticker", {"ticker": {}}, "ticker.do: missing field 'date'"),
        ("ticker", {"date": "x", "ticker": {}}, "field 'date': not an integer"),
        ("ticker", {"date": "1", "ticker": {"buy": None}}, "field 'buy'"),
        ("ticker", {"date": "1", "ticker": {"buy": "1", "sell": "1", "last": "1", "high": "1", "low": "1"}},
         "missing field 'vol'"),
        ("depth", {"asks": []}, "depth.do: missing field 'bids'"),
        ("depth", {"asks": [[1]], "bids": []}, "a level must be [price, amount]"),
        ("depth", {"asks": "x", "bids": []}, "expected a JSON list, got str"),
        ("depth", {"asks": [[-1, 1]], "bids": []}, "impossible level"),
        ("trades", {"x": 1}, "trades.do: expected a JSON list, got dict"),
        ("trades", [1], "expected a JSON object, got int"),
        ("trades", [{"type": "hold"}], "unknown trade type 'hold'"),
        ("trades", [{"type": ["buy"]}], "unknown trade type"),
        ("trades", [{"type": "buy", "date": 1, "price": "1", "amount": "1"}], "missing field 'tid'"),
        ("trades", [{"type": "buy", "date_ms": "soon", "price": "1", "amount": "1", "tid": 1}],
         "field 'date_ms'"),
        ("klines", [[1, 2, 3]], "a row must be"),
        ("klines", [["x", 1, 1, 1, 1, 1]], "not an integer"),
        ("userinfo", {"result": True}, "missing field 'info'"),
        ("userinfo", {"result": True, "info": {"funds": {"free": []}}}, "must be objects"),
        ("userinfo", {"result": True, "info": {"funds": {"free": {"btc": 0.5}}}}, "got float"),
        ("userinfo", {"result": True, "info": {"funds": {"freezed": {}}}}, "missing field 'free'"),
        ("orders", {"result": True}, "missing field 'orders'"),
        ("orders", {"result": True, "orders": [{"type": "buy", "symbol": "a_b"}]},
         "missing field 'order_id'"),
        ("orders", {"result": True, "orders": [{"type": "hodl"}]}, "unknown order type 'hodl'"),
        ("orders", {"result": True, "orders": [{"type": "buy", "symbol": 1}]}, "symbol must be a string"),
        ("orders", {"result": True, "orders": [{"type": "buy", "symbol": "a_b", "order_id": 1, "status": 9,
                                                "create_date": 1}]}, "unknown order status 9"),
        ("history", {"result": True, "orders": [], "current_page": 1, "page_length": 2},
         "missing field 'total'"),
    ],
)
def test_wrong_shapes_are_decode_errors_never_bare_exceptions(
    call: str, answer: object, message: str
) -> None:
    parsers = {
        "ticker": lambda: parse_ticker(answer, "btc_usdt", RECV),
        "depth": lambda: parse_depth(answer, "btc_usdt", RECV),
        "trades": lambda: parse_trades(answer, "btc_usdt", RECV),
        "klines": lambda: parse_klines(answer, "btc_usdt", KlinePeriod.MIN_1, RECV),
        "userinfo": lambda: parse_userinfo(answer, RECV),
        "orders": lambda: parse_orders(answer, RECV),
        "history": lambda: parse_order_history(answer, RECV),
    }
    with pytest.raises(DecodeError) as info:
        parsers[call]()
    assert message in str(info.value)
