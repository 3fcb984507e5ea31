"""Channels, URLs and connection planning (PROTOCOL.md §1, §2.2, §2.4, §3.4)."""

from __future__ import annotations

import msgspec
import pytest

from recorder.errors import ChannelError
from recorder.venues.okx_v5.channels import (
    CANDLE_BARS,
    Channel,
    ChannelArg,
    UrlKind,
    candle_channel,
    parse_channel,
    plan_connections,
    split_requests,
)


def test_urls_per_channel() -> None:
    assert ChannelArg("books", "BTC-USDT").url_kind is UrlKind.PUBLIC
    assert ChannelArg("tickers", "BTC-USDT").url_kind is UrlKind.PUBLIC
    assert ChannelArg("candle1m", "BTC-USDT").url_kind is UrlKind.BUSINESS
    assert ChannelArg("candle1Dutc", "BTC-USDT").url_kind is UrlKind.BUSINESS
    assert ChannelArg("trades-all", "BTC-USDT").url_kind is UrlKind.BUSINESS
    assert ChannelArg("trades", "BTC-USDT").url_kind is UrlKind.PUBLIC


def test_channel_depths_and_kinds() -> None:
    assert [Channel.BOOKS.depth, Channel.BOOKS5.depth, Channel.BBO_TBT.depth] == [400, 5, 1]
    assert Channel.BOOKS.is_incremental_book and not Channel.BOOKS5.is_incremental_book
    assert not Channel.TRADES.is_book


def test_candle_channel_names() -> None:
    assert candle_channel("1m") == "candle1m"
    assert len(CANDLE_BARS) == 27
    assert parse_channel("candle3Mutc") == "3Mutc"
    with pytest.raises(ChannelError, match="7m"):
        candle_channel("7m")
    with pytest.raises(ChannelError, match="ticker"):
        parse_channel("ticker")  # v5 is "tickers"


def test_arg_encodes_with_venue_field_names_and_omits_empty() -> None:
    assert (
        msgspec.json.encode(ChannelArg("tickers", "BTC-USDT")) == b'{"channel":"tickers","instId":"BTC-USDT"}'
    )
    assert msgspec.json.encode(ChannelArg("instruments", instType="SPOT")) == (
        b'{"channel":"instruments","instType":"SPOT"}'
    )


def test_plan_spreads_deep_books_under_the_limit_and_splits_urls() -> None:
    args = [ChannelArg("books", f"C{i}-USDT") for i in range(70)]
    args += [ChannelArg("tickers", f"C{i}-USDT") for i in range(70)]
    args += [ChannelArg("candle1m", "BTC-USDT"), ChannelArg("books", "C0-USDT")]  # duplicate dropped
    plans = plan_connections(args)
    public = [p for p in plans if p.url_kind is UrlKind.PUBLIC]
    business = [p for p in plans if p.url_kind is UrlKind.BUSINESS]
    assert [a for p in business for a in p.args] == [ChannelArg("candle1m", "BTC-USDT")]
    for p in public:
        assert sum(a.channel == "books" for a in p.args) <= 29
        assert len(p.args) <= 100
    assert sorted((a for p in public for a in p.args), key=repr) == sorted(args[:140], key=repr)


def test_plan_rejects_nonsense_limits() -> None:
    with pytest.raises(ChannelError):
        plan_connections([], max_args=0)


def test_split_requests_stays_under_the_size_limit() -> None:
    args = [ChannelArg("tickers", f"COIN{i:05d}-USDT") for i in range(5000)]
    groups = split_requests(args)
    assert [a for g in groups for a in g] == args
    for g in groups:
        body = msgspec.json.encode({"id": "99999999", "op": "unsubscribe", "args": g})
        assert len(body) <= 64 * 1024
    assert len(groups) > 1
