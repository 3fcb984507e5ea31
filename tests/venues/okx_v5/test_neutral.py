"""The v5 → neutral record mapping (docs/venues/okx_v5.md "Mapping to the neutral records")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from recorder.errors import DecodeError
from recorder.records import FeedEventKind, KlinePeriod, Side
from recorder.venues.okx_v5 import neutral
from recorder.venues.okx_v5 import records as v5
from recorder.venues.okx_v5.book import Scale
from recorder.venues.okx_v5.channels import CANDLE_BARS, ChannelArg, UrlKind
from recorder.venues.okx_v5.session import V5Session

from . import frames

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EV = datetime.fromtimestamp(1597026383085 / 1000, UTC)


def _session() -> V5Session:
    return V5Session(UrlKind.PUBLIC, scales={"BTC-USDT": Scale.from_sizes("0.01", "0.00000001")})


def test_ticker_fields_and_empty_strings_become_none() -> None:
    t = _session().receive(frames.TICKER, T0)[0]
    assert isinstance(t, v5.V5Ticker)
    n = neutral.ticker(t)
    assert (n.venue, n.symbol, n.ts_event, n.ts_recv) == ("okx_v5", "BTC-USDT", EV, T0)
    assert (n.buy, n.sell, n.last, n.high, n.low, n.vol) == (
        Decimal("8888.88"), Decimal("9999.99"), Decimal("9999.99"), Decimal("10000"), Decimal("8888.88"),
        Decimal("2222"),
    )  # fmt: skip
    assert (n.bid_size, n.ask_size, n.last_size, n.open_24h, n.vol_quote) == (
        Decimal("5"), Decimal("11"), Decimal("0.1"), Decimal("9000"), Decimal("2222"),
    )  # fmt: skip
    empty = frames.TICKER.replace('"last": "9999.99"', '"last": ""').replace(
        '"bidPx": "8888.88"', '"bidPx": ""'
    )
    e = neutral.ticker(_session().receive(empty, T0)[0])  # type: ignore[arg-type]
    assert e.last is None and e.buy is None and e.sell == Decimal("9999.99")


def test_book_snapshot_exact_decimals_source_and_seq() -> None:
    s = _session()
    snap = (
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":'
        '[["8476.98","415","0","13"],["8477","1e-7","0","1"]],"bids":[["8476.97","0.00000256","0","12"],'
        '["8476.5","2.5","0","1"]],"ts":"1597026383085","checksum":0,"seqId":123456,"prevSeqId":-1}]}'
    )
    out = s.receive(snap, T0)
    n = neutral.book_snapshot(out[0])  # type: ignore[arg-type]
    assert n.venue == "okx_v5" and n.symbol == "BTC-USDT" and n.source == "books" and n.seq_id == 123456
    assert n.bids == ((Decimal("8476.97"), Decimal("0.00000256")), (Decimal("8476.5"), Decimal("2.5")))
    assert n.asks == ((Decimal("8476.98"), Decimal("415")), (Decimal("8477"), Decimal("0.0000001")))
    assert n.ts_event == EV and n.ts_recv == T0
    top = neutral.book_snapshot(out[0], depth=1)  # type: ignore[arg-type]
    assert top.bids == n.bids[:1] and top.asks == n.asks[:1]


def test_trade_to_deal_numeric_id_and_count() -> None:
    trade = v5.Trade("BTC-USDT", "130639474", Decimal("42219.9"), Decimal("0.12060306"), v5.Side.SELL, EV, T0,
                     count=3)  # fmt: skip
    d = neutral.deal(trade)
    assert (d.venue, d.symbol, d.tid, d.price, d.amount, d.side, d.count) == (
        "okx_v5", "BTC-USDT", 130639474, Decimal("42219.9"), Decimal("0.12060306"), Side.SELL, 3,
    )  # fmt: skip
    assert (
        neutral.deal(v5.Trade("BTC-USDT", "1", Decimal(1), Decimal(1), v5.Side.BUY, EV, T0)).side is Side.BUY
    )


@pytest.mark.parametrize("tid", ["abc", "12a", "-5", "1.5", "99999999999999999999", "١٢"])
def test_non_numeric_trade_id_is_a_clear_error(tid: str) -> None:
    with pytest.raises(DecodeError, match="tradeId"):
        neutral.deal(v5.Trade("BTC-USDT", tid, Decimal(1), Decimal(1), v5.Side.BUY, EV, T0))


def test_every_bar_has_a_neutral_period_and_utc8_alignment_is_kept() -> None:
    assert set(neutral.KLINE_PERIODS) == set(CANDLE_BARS)
    assert len(set(neutral.KLINE_PERIODS.values())) == len(CANDLE_BARS)
    assert neutral.kline_period("1D") is KlinePeriod.DAY_1_UTC8 and KlinePeriod.DAY_1_UTC8.utc8_aligned
    assert neutral.kline_period("1Dutc") is KlinePeriod.DAY_1 and not KlinePeriod.DAY_1.utc8_aligned
    assert neutral.kline_period("1M") is KlinePeriod.MONTH_1_UTC8
    assert neutral.kline_period("1Mutc") is KlinePeriod.MONTH_1
    for period in KlinePeriod:
        assert len(period.value) <= 8  # the klines.period column is String(8)
        assert period.duration > timedelta(0)
    with pytest.raises(DecodeError):
        neutral.kline_period("7m")


def test_new_periods_are_not_v1_periods() -> None:
    assert KlinePeriod.MONTH_1 not in KlinePeriod.v1_periods()
    assert KlinePeriod.MONTH_1.rest_name is None and KlinePeriod.DAY_1.rest_name == "1day"
    assert len(KlinePeriod.v1_periods()) == 13


def test_candle_to_kline() -> None:
    o, h, lo, c_ = Decimal("8533.02"), Decimal("8553.74"), Decimal("8527.17"), Decimal("8548.26")
    c = v5.Candle("BTC-USDT", "1D", EV, T0, o, h, lo, c_, Decimal("45247"), Decimal("529.5858061"),
                  Decimal("529.58"), True)  # fmt: skip
    k = neutral.kline(c)
    assert (k.venue, k.symbol, k.period, k.ts_event, k.confirmed) == (
        "okx_v5",
        "BTC-USDT",
        KlinePeriod.DAY_1_UTC8,
        EV,
        True,
    )
    assert (k.open, k.high, k.low, k.close, k.volume, k.volume_quote) == (
        Decimal("8533.02"), Decimal("8553.74"), Decimal("8527.17"), Decimal("8548.26"), Decimal("45247"),
        Decimal("529.58"),
    )  # fmt: skip
    old = neutral.kline(
        v5.Candle("BTC-USDT", "1m", EV, T0, Decimal(1), Decimal(1), Decimal(1), Decimal(1), Decimal(2),
                  Decimal(3), None, None)
    )
    assert old.volume_quote == Decimal(3) and old.confirmed is None


def test_instrument() -> None:
    i = v5.Instrument("BTC-USDT", "SPOT", "BTC", "USDT", Decimal("0.1"), Decimal("0.00000001"),
                      Decimal("0.00001"), "live", EV, None, T0)  # fmt: skip
    n = neutral.instrument(i)
    assert (n.venue, n.symbol, n.base, n.quote, n.tick_size, n.lot_size, n.min_size, n.state) == (
        "okx_v5",
        "BTC-USDT",
        "BTC",
        "USDT",
        Decimal("0.1"),
        Decimal("0.00000001"),
        Decimal("0.00001"),
        "live",
    )
    assert n.ts_listed == EV and n.ts_expiry is None and n.inst_type == "SPOT"


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        (v5.GapReason.SEQUENCE, FeedEventKind.SEQUENCE_BREAK),
        (v5.GapReason.CHECKSUM, FeedEventKind.CHECKSUM_MISMATCH),
        (v5.GapReason.NO_SNAPSHOT, FeedEventKind.BOOK_RESET),
        (v5.GapReason.DECODE, FeedEventKind.BOOK_RESET),
        (v5.GapReason.SUBSCRIBE_ERROR, FeedEventKind.SUBSCRIBE_REFUSED),
    ],
)
def test_gap_spans(reason: v5.GapReason, kind: FeedEventKind) -> None:
    e = neutral.gap_event(v5.BookGap("BTC-USDT", "books", T0, reason, "why", True), "okx_v5-public-0")
    assert (e.kind, e.ts_start, e.ts_end, e.symbols, e.channel, e.venue, e.detail) == (
        kind,
        T0,
        None,
        ("BTC-USDT",),
        "books",
        "okx_v5",
        "why",
    )
    closed = neutral.close(e, T0 + timedelta(seconds=2))
    assert closed.event_id == e.event_id and closed.ts_end == T0 + timedelta(seconds=2)


def test_notice_and_refusal_spans_carry_code_and_documented_text() -> None:
    s = _session()
    notice = s.receive(frames.NOTICE, T0)[0]
    e = neutral.notice_event(notice, "c", ("BTC-USDT",))  # type: ignore[arg-type]
    assert e.kind is FeedEventKind.PLANNED_DISCONNECT and e.ts_end is None and e.venue == "okx_v5"
    assert "64008" in e.detail and "service upgrade" in e.detail
    s.subscribe([ChannelArg("tickers", "BTC-USDT")])
    s.data_to_send()
    err = s.receive('{"id":"1","event":"error","code":"60018","msg":"doesn\'t exist","connId":"x"}', T0)[0]
    r = neutral.refused_event(err, "tickers", "BTC-USDT", "c")  # type: ignore[arg-type]
    assert r.kind is FeedEventKind.SUBSCRIBE_REFUSED and r.channel == "tickers"
    assert (
        r.detail.startswith("60018 wrong URL, or channel/instId does not exist")
        and "doesn't exist" in r.detail
    )
