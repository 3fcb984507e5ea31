"""Channel names ``ok_sub_spot_<base>_<quote>_<kind>`` (PROTOCOL.md "WebSocket")."""

import pytest

from recorder.errors import ChannelError, SymbolError
from recorder.records import ChannelKind, KlinePeriod
from recorder.venues.okex_v1.channels import Channel, channel_name, parse_channel, validate_symbol


@pytest.mark.parametrize(
    ("name", "symbol", "kind", "period"),
    [
        ("ok_sub_spot_bch_btc_ticker", "bch_btc", ChannelKind.TICKER, None),
        ("ok_sub_spot_bch_btc_depth", "bch_btc", ChannelKind.DEPTH, None),
        ("ok_sub_spot_bch_btc_depth_5", "bch_btc", ChannelKind.DEPTH_5, None),
        ("ok_sub_spot_ltc_btc_depth_10", "ltc_btc", ChannelKind.DEPTH_10, None),
        ("ok_sub_spot_btc_usdt_depth_20", "btc_usdt", ChannelKind.DEPTH_20, None),
        ("ok_sub_spot_btc_usdt_deals", "btc_usdt", ChannelKind.DEALS, None),
        ("ok_sub_spot_btc_usdt_kline_1min", "btc_usdt", ChannelKind.KLINE, KlinePeriod.MIN_1),
        ("ok_sub_spot_btc_usdt_kline_day", "btc_usdt", ChannelKind.KLINE, KlinePeriod.DAY_1),
        ("ok_sub_spot_btc_usdt_kline_3day", "btc_usdt", ChannelKind.KLINE, KlinePeriod.DAY_3),
        ("ok_sub_spot_btc_usdt_kline_week", "btc_usdt", ChannelKind.KLINE, KlinePeriod.WEEK_1),
        ("ok_sub_spot_eth_okb_order", "eth_okb", ChannelKind.ORDER, None),
        ("ok_sub_spot_eth_okb_balance", "eth_okb", ChannelKind.BALANCE, None),
    ],
)
def test_documented_channel_names_round_trip(
    name: str, symbol: str, kind: ChannelKind, period: KlinePeriod | None
) -> None:
    channel = parse_channel(name)
    assert channel == Channel(symbol, kind, period)
    assert channel.name == name
    assert str(channel) == name
    assert channel_name(symbol, kind, period) == name


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        (42, ChannelError, "must be a string, got int"),
        ("addChannel", ChannelError, "not a spot channel"),
        ("ok_sub_futureusd_btc_ticker_this_week", ChannelError, "not a spot channel"),
        ("ok_sub_spot_bch_btc_trades", ChannelError, "unknown channel kind"),
        ("ok_sub_spot_bch_btc_depth_50", ChannelError, "unknown channel kind"),
        ("ok_sub_spot_bch_btc_kline_2min", ChannelError, "unknown kline period"),
        ("ok_sub_spot_BCH_btc_ticker", SymbolError, "malformed symbol"),
        ("ok_sub_spot_bchbtc_ticker", SymbolError, "malformed symbol"),
    ],
)
def test_malformed_channel_names_say_what_is_wrong(
    name: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        parse_channel(name)


def test_kline_channel_needs_a_period_and_other_kinds_none() -> None:
    with pytest.raises(ChannelError, match="needs a period"):
        Channel("bch_btc", ChannelKind.KLINE)
    with pytest.raises(ChannelError, match="needs a period"):
        Channel("bch_btc", ChannelKind.TICKER, KlinePeriod.MIN_1)


@pytest.mark.parametrize(
    ("symbol", "message"),
    [
        ("BTC_USDT", "must be lower case \\('btc_usdt'\\)"),
        ("btcusdt", "malformed symbol"),
        ("btc_usdt; drop table", "malformed symbol"),
        ("../etc", "malformed symbol"),
        (None, "must be a string"),
    ],
)
def test_malformed_symbols_are_rejected(symbol: object, message: str) -> None:
    with pytest.raises(SymbolError, match=message):
        validate_symbol(symbol)


def test_known_only_symbols_come_from_the_pairs_table() -> None:
    assert validate_symbol("bch_btc", known_only=True) == "bch_btc"
    with pytest.raises(SymbolError, match="unknown symbol 'zzz_btc'"):
        validate_symbol("zzz_btc", known_only=True)
