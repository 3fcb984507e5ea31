"""WebSocket frame decoding (PROTOCOL.md "WebSocket", "Server → client")."""

import json
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from recorder.errors import DecodeError, ErrorClass, Transport
from recorder.records import (
    Balance,
    ChannelKind,
    Deal,
    DepthUpdate,
    Kline,
    KlinePeriod,
    Order,
    OrderStatus,
    OrderType,
    Side,
    Ticker,
)
from recorder.venues.okex_v1.parse import (
    MAX_INFLATED_SIZE,
    ErrorAck,
    LoginResult,
    Ping,
    Pong,
    Rejected,
    SubscribeAck,
    deal_timestamp,
    decode_frame,
    decode_json,
    inflate,
    ms_to_datetime,
)

RECV = datetime(2018, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)
D = Decimal


def deflate(text: str, *, sync_flush: bool = False) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH if sync_flush else
                                                                 zlib.Z_FINISH)


# --- JSON and DEFLATE ---------------------------------------------------------------------------


def test_json_numbers_stay_exact() -> None:
    assert decode_json(b'{"asks": [[792, 5], [787.1, 0.35], [1E-8, 10532696.39199642]]}') == {
        "asks": [[792, 5], [D("787.1"), D("0.35")], [D("0.00000001"), D("10532696.39199642")]]
    }
    assert type(decode_json("[0.1]")[0]) is Decimal  # type: ignore[index]


@pytest.mark.parametrize("text", ['[{"channel": "x"', "", "{'event': 'pong'}", "[1,]", b"\xff\xfe"])
def test_bad_json_is_a_decode_error_with_a_sample(text: str | bytes) -> None:
    with pytest.raises(DecodeError, match="not valid JSON") as info:
        decode_json(text)
    raw = text.encode() if isinstance(text, str) else text
    assert info.value.sample == raw


def test_inflate_round_trips_a_complete_stream_and_a_sync_flushed_one() -> None:
    text = '[{"event":"pong"}]' * 50
    assert inflate(deflate(text)) == text.encode()
    assert inflate(deflate(text, sync_flush=True)) == text.encode()


def test_truncated_deflate_data_is_a_decode_error() -> None:
    data = deflate('[{"channel":"ok_sub_spot_bch_btc_ticker","data":{}}]' * 20)
    with pytest.raises(DecodeError, match="truncated DEFLATE data"):
        inflate(data[: len(data) // 2])


@pytest.mark.parametrize("data", [b"\xff\xff\xff\xff garbage", b"\x07"])
def test_garbage_deflate_data_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError, match="bad DEFLATE data") as info:
        inflate(data)
    assert info.value.sample == data


def test_empty_binary_frame_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="truncated DEFLATE data"):
        decode_frame(b"", RECV)


def test_bytes_after_the_deflate_stream_are_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="bytes after the end"):
        inflate(deflate('{"event":"pong"}') + b"junk")


def test_deflate_bomb_is_capped() -> None:
    bomb = deflate(" " * (MAX_INFLATED_SIZE + 1))
    assert len(bomb) < 100_000
    with pytest.raises(DecodeError, match="inflates to more than 16777216 bytes"):
        inflate(bomb)
    with pytest.raises(DecodeError, match="more than 10 bytes"):
        inflate(deflate("x" * 11), max_size=10)
    assert inflate(deflate("x" * 10), max_size=10) == b"x" * 10


# --- control messages ---------------------------------------------------------------------------


def test_pong_is_a_bare_object() -> None:
    assert decode_frame('{"event":"pong"}', RECV) == [Pong()]
    assert decode_frame(deflate('{"event":"pong"}'), RECV) == [Pong()]


def test_subscription_and_unsubscription_acks() -> None:
    frame = (
        '[{"channel":"addChannel","data":{"result":true,"channel":"ok_sub_spot_bch_btc_ticker"}},'
        '{"channel":"removeChannel","data":{"result":true,"channel":"ok_sub_spot_bch_btc_depth"}}]'
    )
    assert decode_frame(frame, RECV) == [
        SubscribeAck(channel="ok_sub_spot_bch_btc_ticker", subscribed=True),
        SubscribeAck(channel="ok_sub_spot_bch_btc_depth", subscribed=False),
    ]


def test_login_result_true() -> None:
    assert decode_frame('[{"channel":"login","data":{"result":true}}]', RECV) == [LoginResult(ok=True)]


def test_login_refused_carries_the_websocket_error() -> None:
    [result] = decode_frame('[{"channel":"login","data":{"result":false,"error_code":10005}}]', RECV)
    assert isinstance(result, LoginResult) and not result.ok
    assert result.error is not None
    assert (result.error.code, result.error.transport, result.error.error_class) == (
        10005, Transport.WEBSOCKET, ErrorClass.AUTH
    )
    assert result.error.message_en == "api_key or sign is invalid"


def test_error_ack_in_the_simulator_shape() -> None:
    frame = '[{"binary":0,"channel":"ok_sub_spot_bch_btc_depth_50","success":false,"errorcode":10015}]'
    [ack] = decode_frame(frame, RECV)
    assert isinstance(ack, ErrorAck)
    assert ack.channel == "ok_sub_spot_bch_btc_depth_50"
    assert (ack.error.code, ack.error.transport) == (10015, Transport.WEBSOCKET)
    assert ack.error.message_en == "Channel subscription temporally not available"
    assert ack.error.message_zh == "暂不支持此channel订阅"
    assert ack.error.context == "ok_sub_spot_bch_btc_depth_50"


@pytest.mark.parametrize("code", ["10001", "20107"])
def test_error_ack_with_a_string_code(code: str) -> None:
    [ack] = decode_frame(f'{{"channel":"ok_sub_spot_bch_btc_ticker","errorcode":"{code}"}}', RECV)
    assert isinstance(ack, ErrorAck) and ack.error.code == int(code)


def test_error_ack_in_the_data_result_shape_names_the_channel_it_is_about() -> None:
    frame = (
        '[{"channel":"addChannel","data":{"result":false,"error_code":"10001",'
        '"channel":"ok_sub_spot_BCH_btc_ticker"}},'
        '{"channel":"ok_sub_spot_bch_btc_order","data":{"result":false,"error_code":10017}}]'
    )
    first, second = decode_frame(frame, RECV)
    assert isinstance(first, ErrorAck) and isinstance(second, ErrorAck)
    assert (first.channel, first.error.code, first.error.message_en) == (
        "ok_sub_spot_BCH_btc_ticker", 10001, "Illegal parameters"
    )
    assert (second.channel, second.error.code, second.error.error_class) == (
        "ok_sub_spot_bch_btc_order", 10017, ErrorClass.AUTH
    )


def test_data_channel_result_true_is_a_subscription_ack() -> None:
    assert decode_frame('[{"channel":"ok_sub_spot_bch_btc_balance","data":{"result":true}}]', RECV) == [
        SubscribeAck(channel="ok_sub_spot_bch_btc_balance")
    ]


# --- market data --------------------------------------------------------------------------------

TICKER = (
    '[{"binary":0,"channel":"ok_sub_spot_bch_btc_ticker","data":{"buy":"33.15","high":"34.15",'
    '"last":"33.15","low":"32.05","sell":"33.16","vol":"10532696.39199642","change":"-0.5",'
    '"dayHigh":"34.2","dayLow":"32","timestamp":1519905600123}}]'
)


def test_ticker_push_becomes_a_ticker_with_both_clocks() -> None:
    assert decode_frame(TICKER, RECV) == [
        Ticker(venue="okex_v1",
            symbol="bch_btc",
            ts_event=datetime(2018, 3, 1, 12, 0, 0, 123000, tzinfo=UTC),
            ts_recv=RECV,
            buy=D("33.15"),
            sell=D("33.16"),
            last=D("33.15"),
            high=D("34.15"),
            low=D("32.05"),
            vol=D("10532696.39199642"),
            change=D("-0.5"),
            day_high=D("34.2"),
            day_low=D(32),
        )
    ]


def test_compressed_ticker_push_decodes_the_same() -> None:
    assert decode_frame(deflate(TICKER), RECV) == decode_frame(TICKER, RECV)


def test_ticker_without_optional_fields_and_with_a_string_timestamp() -> None:
    frame = (
        '{"channel":"ok_sub_spot_ltc_btc_ticker","data":{"buy":"1","sell":"2","last":"1.5","high":"2",'
        '"low":"1","vol":"0","timestamp":"1519905600000"}}'
    )
    [ticker] = decode_frame(frame, RECV)
    assert isinstance(ticker, Ticker)
    assert (ticker.symbol, ticker.change, ticker.day_high, ticker.day_low) == ("ltc_btc", None, None, None)
    assert ticker.ts_event == datetime(2018, 3, 1, 12, 0, tzinfo=UTC)


def test_incremental_depth_keeps_levels_exactly_as_sent() -> None:
    frame = (
        '[{"binary":0,"channel":"ok_sub_spot_bch_btc_depth","data":{"asks":[["0.1053","1.2"],'
        '["1E-8","0"]],"bids":[["0.00000001","3.5"],[0.1049, 2]],"timestamp":1519905600123}}]'
    )
    assert decode_frame(frame, RECV) == [
        DepthUpdate(venue="okex_v1",
            symbol="bch_btc",
            kind=ChannelKind.DEPTH,
            ts_event=datetime(2018, 3, 1, 12, 0, 0, 123000, tzinfo=UTC),
            ts_recv=RECV,
            asks=((D("0.1053"), D("1.2")), (D("0.00000001"), D(0))),
            bids=((D("0.00000001"), D("3.5")), (D("0.1049"), D(2))),
        )
    ]


@pytest.mark.parametrize("kind", [ChannelKind.DEPTH_5, ChannelKind.DEPTH_10, ChannelKind.DEPTH_20])
def test_full_depth_channels_carry_their_kind(kind: ChannelKind) -> None:
    frame = (
        f'{{"channel":"ok_sub_spot_eth_usdt_{kind.value}","data":{{"asks":[["700","1"]],"bids":[],'
        '"timestamp":1}}'
    )
    [update] = decode_frame(frame, RECV)
    assert isinstance(update, DepthUpdate)
    assert (update.kind, update.symbol, update.asks, update.bids) == (kind, "eth_usdt", ((D(700), D(1)),), ())
    assert update.ts_event == datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)


def test_depth_increment_with_only_one_side() -> None:
    [update] = decode_frame('{"channel":"ok_sub_spot_bch_btc_depth","data":{"bids":[["1","0"]],'
                            '"timestamp":1}}', RECV)
    assert isinstance(update, DepthUpdate)
    assert (update.bids, update.asks) == (((D(1), D(0)),), ())


def test_deals_push_becomes_deals_with_utc_times_and_sides() -> None:
    frame = (
        '[{"channel":"ok_sub_spot_bch_btc_deals","data":[["2001","0.1051","0.5","20:00:00","bid"],'
        '["2002","1E-8","10","19:59:59","ask"]]}]'
    )
    assert decode_frame(frame, RECV) == [
        Deal(venue="okex_v1", symbol="bch_btc", tid=2001, price=D("0.1051"), amount=D("0.5"), side=Side.BUY,
             ts_event=datetime(2018, 3, 1, 12, 0, 0, tzinfo=UTC), ts_recv=RECV),
        Deal(venue="okex_v1", symbol="bch_btc", tid=2002, price=D("0.00000001"), amount=D(10), side=Side.SELL,
             ts_event=datetime(2018, 3, 1, 11, 59, 59, tzinfo=UTC), ts_recv=RECV),
    ]


def test_kline_push_becomes_klines() -> None:
    frame = (
        '[{"channel":"ok_sub_spot_bch_btc_kline_1min","data":[["1519905600000","0.105","0.106",'
        '"0.104","0.1055","12.5"],["1519905660000","0.1055","0.1055","0.1055","0.1055","0"]]}]'
    )
    first, second = decode_frame(frame, RECV)
    assert first == Kline(venue="okex_v1", symbol="bch_btc", period=KlinePeriod.MIN_1,
                          ts_event=datetime(2018, 3, 1, 12, 0, tzinfo=UTC), ts_recv=RECV, open=D("0.105"),
                          high=D("0.106"), low=D("0.104"), close=D("0.1055"), volume=D("12.5"))
    assert isinstance(second, Kline)
    assert (second.ts_event, second.volume) == (datetime(2018, 3, 1, 12, 1, tzinfo=UTC), D(0))


def test_kline_push_of_a_single_flat_row() -> None:
    frame = '{"channel":"ok_sub_spot_bch_btc_kline_day","data":["1519862400000","1","2","0.5","1.5","9"]}'
    [kline] = decode_frame(frame, RECV)
    assert isinstance(kline, Kline)
    assert (kline.period, kline.ts_event, kline.close) == (
        KlinePeriod.DAY_1, datetime(2018, 3, 1, 0, 0, tzinfo=UTC), D("1.5")
    )


# --- account channels ---------------------------------------------------------------------------


def test_order_push_becomes_an_order() -> None:
    frame = (
        '[{"channel":"ok_sub_spot_bch_btc_order","data":{"symbol":"bch_btc","orderId":10000591,'
        '"tradeType":"sell","tradeAmount":"0.1","tradeUnitPrice":"0.105","completedTradeAmount":"0.05",'
        '"averagePrice":"0.1051","tradePrice":"0.005255","createdDate":"1418008467000","status":1}}]'
    )
    assert decode_frame(frame, RECV) == [
        Order(venue="okex_v1",
              order_id=10000591, symbol="bch_btc", type=OrderType.SELL, price=D("0.105"), amount=D("0.1"),
              deal_amount=D("0.05"), avg_price=D("0.1051"), status=OrderStatus.PARTIALLY_FILLED,
              ts_event=datetime(2014, 12, 8, 3, 14, 27, tzinfo=UTC), ts_recv=RECV)
    ]


def test_market_buy_order_push_has_no_amount() -> None:
    frame = (
        '{"channel":"ok_sub_spot_bch_btc_order","data":{"orderId":"7","tradeType":"buy_market",'
        '"tradeAmount":"","tradeUnitPrice":"100","completedTradeAmount":"0","averagePrice":"0",'
        '"createdDate":1418008467000,"status":"0"}}'
    )
    [order] = decode_frame(frame, RECV)
    assert isinstance(order, Order)
    assert (order.order_id, order.symbol, order.type, order.price, order.amount, order.status) == (
        7, "bch_btc", OrderType.BUY_MARKET, D(100), None, OrderStatus.OPEN
    )


def test_balance_push_becomes_spot_balances_one_per_currency() -> None:
    frame = (
        '[{"channel":"ok_sub_spot_bch_btc_balance","data":{"info":{"free":{"btc":"1.5","bch":"0"},'
        '"freezed":{"btc":"0.25","usdt":"3"}}}}]'
    )
    assert decode_frame(frame, RECV) == [
        Balance(venue="okex_v1", ts_recv=RECV, account="spot", currency="bch", free=D(0), frozen=D(0)),
        Balance(venue="okex_v1",
                ts_recv=RECV, account="spot", currency="btc", free=D("1.5"), frozen=D("0.25")),
        Balance(venue="okex_v1", ts_recv=RECV, account="spot", currency="usdt", free=D(0), frozen=D(3)),
    ]


# --- malformed objects inside a frame -----------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "channel", "reason"),
    [
        ('{"channel":"ok_sub_spot_bch_btc_trades","data":[]}', "ok_sub_spot_bch_btc_trades",
         "unknown channel kind in 'ok_sub_spot_bch_btc_trades'"),
        ('{"channel":"ok_sub_futureusd_btc_ticker_this_week","data":{}}',
         "ok_sub_futureusd_btc_ticker_this_week", "not a spot channel"),
        ('{"channel":"ok_sub_spot_bch_btc_ticker"}', "ok_sub_spot_bch_btc_ticker", "missing field 'data'"),
        ('{"channel":"ok_sub_spot_bch_btc_ticker","data":[]}', "ok_sub_spot_bch_btc_ticker",
         "ticker data must be an object, got list"),
        ('{"channel":"ok_sub_spot_bch_btc_ticker","data":{"buy":"1","timestamp":1}}',
         "ok_sub_spot_bch_btc_ticker", "ticker data: missing field 'sell'"),
        ('{"channel":"ok_sub_spot_bch_btc_ticker","data":{"buy":"x","sell":"1","last":"1","high":"1",'
         '"low":"1","vol":"1","timestamp":1}}', "ok_sub_spot_bch_btc_ticker",
         "ticker data: field 'buy': not a decimal number: 'x'"),
        ('{"channel":"ok_sub_spot_bch_btc_ticker","data":{"buy":1.5,"sell":"1","last":"1","high":"1",'
         '"low":"1","vol":"1","timestamp":1.5}}', "ok_sub_spot_bch_btc_ticker", "not an integer: 1.5"),
        ('{"channel":"ok_sub_spot_bch_btc_depth","data":{"asks":[["1","1"]]}}', "ok_sub_spot_bch_btc_depth",
         "depth data: missing field 'timestamp'"),
        ('{"channel":"ok_sub_spot_bch_btc_depth","data":{"timestamp":1}}', "ok_sub_spot_bch_btc_depth",
         "missing both 'asks' and 'bids'"),
        ('{"channel":"ok_sub_spot_bch_btc_depth","data":{"asks":{"1":"1"},"timestamp":1}}',
         "ok_sub_spot_bch_btc_depth", "depth asks must be a list, got dict"),
        ('{"channel":"ok_sub_spot_bch_btc_depth","data":{"asks":[["1"]],"timestamp":1}}',
         "ok_sub_spot_bch_btc_depth", "a level must be [price, amount]"),
        ('{"channel":"ok_sub_spot_bch_btc_depth","data":{"bids":[["0","1"]],"timestamp":1}}',
         "ok_sub_spot_bch_btc_depth", "impossible level [0, 1]"),
        ('{"channel":"ok_sub_spot_bch_btc_depth","data":{"bids":[["1",null]],"timestamp":1}}',
         "ok_sub_spot_bch_btc_depth", "got NoneType"),
        ('{"channel":"ok_sub_spot_bch_btc_deals","data":[["1","1","1","25:00:00","bid"]]}',
         "ok_sub_spot_bch_btc_deals", "deal time is not HH:MM:SS: '25:00:00'"),
        ('{"channel":"ok_sub_spot_bch_btc_deals","data":[["1","1","1","12:00:00","buy"]]}',
         "ok_sub_spot_bch_btc_deals", "unknown deal type 'buy'"),
        ('{"channel":"ok_sub_spot_bch_btc_deals","data":[["1","1","1"]]}', "ok_sub_spot_bch_btc_deals",
         "a deal must be [tid, price, amount, time, type]"),
        ('{"channel":"ok_sub_spot_bch_btc_deals","data":[["x","1","1","12:00:00","bid"]]}',
         "ok_sub_spot_bch_btc_deals", "not an integer: 'x'"),
        ('{"channel":"ok_sub_spot_bch_btc_kline_1min","data":[["1","2"]]}', "ok_sub_spot_bch_btc_kline_1min",
         "a row must be [ts_ms, open, high, low, close, volume]"),
        ('{"channel":"ok_sub_spot_bch_btc_order","data":{"orderId":1}}', "ok_sub_spot_bch_btc_order",
         "order data: missing field 'tradeType'"),
        ('{"channel":"ok_sub_spot_bch_btc_order","data":{"orderId":1,"tradeType":"short"}}',
         "ok_sub_spot_bch_btc_order", "unknown order type 'short'"),
        ('{"channel":"ok_sub_spot_bch_btc_balance","data":{"info":{"free":[]}}}',
         "ok_sub_spot_bch_btc_balance", "free and frozen amounts must be objects"),
        ('{"channel":"ok_sub_spot_bch_btc_balance","data":{"info":{}}}', "ok_sub_spot_bch_btc_balance",
         "missing both 'free' and 'freezed'"),
        ('{"channel":"ok_sub_spot_bch_btc_ticker","success":false}', "ok_sub_spot_bch_btc_ticker",
         "error ack without an error code"),
        ('{"channel":"ok_sub_spot_bch_btc_ticker","errorcode":"oops"}', "ok_sub_spot_bch_btc_ticker",
         "error code is not a number"),
        ('{"channel":"addChannel","data":{"result":true}}', "addChannel", "addChannel ack without a channel"),
        ('{"channel":"login","data":{"result":"yes"}}', "login", "'result' must be true or false"),
        ('{"channel":7,"data":{}}', "", "channel must be a string, got int"),
        ('{"event":"hello"}', "", "neither a 'channel' nor a known 'event'"),
        ('"just a string"', "", "frame item must be an object, got str"),
    ],
)
def test_malformed_object_is_rejected_with_a_reason_and_the_rest_still_decodes(
    obj: str, channel: str, reason: str
) -> None:
    messages = decode_frame(f'[{obj}, {{"event":"pong"}}]', RECV)
    assert len(messages) == 2
    rejected, pong = messages
    assert pong == Pong()
    assert isinstance(rejected, Rejected), rejected
    assert rejected.channel == channel
    assert reason in rejected.reason
    assert decode_json(rejected.sample) == decode_json(obj)


@pytest.mark.parametrize("frame", ['"pong"', "42", "null", "true"])
def test_frame_that_is_neither_object_nor_list_is_a_decode_error(frame: str) -> None:
    with pytest.raises(DecodeError, match="must hold a JSON object or list"):
        decode_frame(frame, RECV)


def test_truncated_text_frame_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="not valid JSON"):
        decode_frame(TICKER[:-20], RECV)


def test_empty_list_frame_decodes_to_nothing() -> None:
    assert decode_frame("[]", RECV) == []


def test_naive_receive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decode_frame("[]", datetime(2018, 3, 1))  # noqa: DTZ001


# --- deal times across midnight -----------------------------------------------------------------


def _utc(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("hhmmss", "recv", "expected"),
    [
        # same local day
        ("20:00:00", _utc(2018, 3, 1, 12, 0, 5), _utc(2018, 3, 1, 12, 0, 0)),
        # deal just before local midnight (16:00 UTC), received just after it
        ("23:59:58", _utc(2018, 3, 1, 16, 0, 1), _utc(2018, 3, 1, 15, 59, 58)),
        # deal just after local midnight, our clock still just before it (skew)
        ("00:00:01", _utc(2018, 3, 1, 15, 59, 59), _utc(2018, 3, 1, 16, 0, 1)),
        # exactly at local midnight
        ("00:00:00", _utc(2018, 3, 1, 16, 0, 0), _utc(2018, 3, 1, 16, 0, 0)),
        # across UTC midnight (local 08:00) nothing special happens
        ("07:59:59", _utc(2018, 3, 2, 0, 0, 2), _utc(2018, 3, 1, 23, 59, 59)),
        # across a year end in local time
        ("23:59:59", _utc(2018, 12, 31, 16, 0, 3),
         _utc(2018, 12, 31, 15, 59, 59)),
    ],
)
def test_deal_time_is_the_utc_instant_nearest_the_receive_time(
    hhmmss: str, recv: datetime, expected: datetime
) -> None:
    got = deal_timestamp(hhmmss, recv)
    assert got == expected
    assert got.tzinfo is UTC


def test_deal_time_never_lands_more_than_half_a_day_from_the_receive_time() -> None:
    recv = datetime(2018, 3, 1, 15, 30, tzinfo=UTC)  # 23:30 local
    for hour in range(24):
        got = deal_timestamp(f"{hour:02d}:30:00", recv)
        assert abs(got - recv) <= timedelta(hours=12)
        assert (got + timedelta(hours=8)).hour == hour


@pytest.mark.parametrize("text", ["24:00:00", "12:60:00", "1:00:00", "12:00", "12:00:00.5", ""])
def test_malformed_deal_time_is_a_decode_error(text: str) -> None:
    with pytest.raises(DecodeError, match="not HH:MM:SS"):
        deal_timestamp(text, RECV)


def test_epoch_milliseconds_are_exact() -> None:
    assert ms_to_datetime(1410431279123) == datetime(2014, 9, 11, 10, 27, 59, 123000, tzinfo=UTC)
    with pytest.raises(DecodeError, match="out of range"):
        ms_to_datetime(10**20)


def test_a_binary_frame_sent_uncompressed_is_taken_as_its_json() -> None:
    """Some servers send plain JSON in binary frames: it used to be quarantined as "bad DEFLATE"."""
    data = {"buy": "1.5", "sell": "2.5", "last": "2", "high": "3", "low": "1", "vol": "10",
            "timestamp": 1519905600000}  # fmt: skip
    objs = [{"channel": "ok_sub_spot_bch_btc_ticker", "data": data}, {"event": "ping"}]
    plain = json.dumps(objs).encode()
    assert decode_frame(plain, RECV) == decode_frame(deflate(json.dumps(objs)), RECV)
    ticker, ping = decode_frame(plain, RECV)
    assert isinstance(ticker, Ticker) and ticker.last == Decimal(2) and ping == Ping()


@pytest.mark.parametrize(
    ("data", "why"),
    [(b"\xff\xfe\x00junk", "not UTF-8 (invalid start byte at byte 0)"),
     (b"\x07plain text", "not valid JSON")],
)
def test_a_binary_frame_neither_deflate_nor_json_says_what_was_tried(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_frame(data, RECV)
    reason = str(info.value)
    assert reason.startswith("binary frame is neither raw DEFLATE data (")
    assert f") nor uncompressed UTF-8 JSON ({why}" in reason
