"""OKX v5 records → the project's venue-neutral records (:mod:`recorder.records`). Pure.

Implements the mapping table of ``docs/venues/okx_v5.md`` ("Mapping to the neutral
records"). Every neutral record carries ``venue = "okx_v5"`` and the venue's own
instrument id (``BTC-USDT``); v5's empty strings already became None in :mod:`.parse`
and stay None here (never zero); prices and amounts are exact Decimals, book levels are
rebuilt from the integer ticks with the instrument's :class:`~.book.Scale`.

Feed events: a dropped book (:class:`~.records.BookGap`) opens a span of the kind its
reason names (:data:`GAP_KIND`: a sequence break, a checksum mismatch, a book reset, a
refused subscription); the session closes it at the next snapshot of that book. A
``notice`` (64008) opens a ``PLANNED_DISCONNECT`` span, closed when the replacement
connection delivers.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from recorder.errors import DecodeError
from recorder.records import (
    BookSnapshot,
    Deal,
    FeedEvent,
    FeedEventKind,
    Instrument,
    Kline,
    KlinePeriod,
    Side,
    Ticker,
)

from . import records as v5
from .book import Scale
from .errors import lookup

__all__ = [
    "GAP_KIND",
    "KLINE_PERIODS",
    "book_snapshot",
    "close",
    "deal",
    "error_detail",
    "gap_event",
    "instrument",
    "kline",
    "kline_period",
    "notice_event",
    "refused_event",
    "ticker",
]

VENUE = v5.VENUE

KLINE_PERIODS: dict[str, KlinePeriod] = {
    "1s": KlinePeriod.SEC_1,
    "1m": KlinePeriod.MIN_1,
    "3m": KlinePeriod.MIN_3,
    "5m": KlinePeriod.MIN_5,
    "15m": KlinePeriod.MIN_15,
    "30m": KlinePeriod.MIN_30,
    "1H": KlinePeriod.HOUR_1,
    "2H": KlinePeriod.HOUR_2,
    "4H": KlinePeriod.HOUR_4,
    # UTC+8-aligned bars (PROTOCOL.md §3.4: 6H and longer open at UTC+8)
    "6H": KlinePeriod.HOUR_6_UTC8,
    "12H": KlinePeriod.HOUR_12_UTC8,
    "1D": KlinePeriod.DAY_1_UTC8,
    "2D": KlinePeriod.DAY_2_UTC8,
    "3D": KlinePeriod.DAY_3_UTC8,
    "5D": KlinePeriod.DAY_5_UTC8,
    "1W": KlinePeriod.WEEK_1_UTC8,
    "1M": KlinePeriod.MONTH_1_UTC8,
    "3M": KlinePeriod.MONTH_3_UTC8,
    # UTC-aligned bars
    "6Hutc": KlinePeriod.HOUR_6,
    "12Hutc": KlinePeriod.HOUR_12,
    "1Dutc": KlinePeriod.DAY_1,
    "2Dutc": KlinePeriod.DAY_2,
    "3Dutc": KlinePeriod.DAY_3,
    "5Dutc": KlinePeriod.DAY_5,
    "1Wutc": KlinePeriod.WEEK_1,
    "1Mutc": KlinePeriod.MONTH_1,
    "3Mutc": KlinePeriod.MONTH_3,
}
"""v5 candle bar (§3.4) → neutral period. ``1D`` opens at 00:00 UTC+8 (16:00 UTC the day
before) and becomes ``day+8``; ``1Dutc`` opens at 00:00 UTC and becomes ``day`` (the
period v1's ``day`` shares). See :class:`~recorder.records.KlinePeriod`."""

GAP_KIND: dict[v5.GapReason, FeedEventKind] = {
    v5.GapReason.SEQUENCE: FeedEventKind.SEQUENCE_BREAK,
    v5.GapReason.CHECKSUM: FeedEventKind.CHECKSUM_MISMATCH,
    v5.GapReason.NO_SNAPSHOT: FeedEventKind.BOOK_RESET,
    v5.GapReason.DECODE: FeedEventKind.BOOK_RESET,
    v5.GapReason.CROSSED: FeedEventKind.RESUBSCRIBED,  # as v1: a crossed_book instant, then this span
    v5.GapReason.SUBSCRIBE_ERROR: FeedEventKind.SUBSCRIBE_REFUSED,
    v5.GapReason.PLANNED: FeedEventKind.PLANNED_DISCONNECT,
    v5.GapReason.CONNECTION: FeedEventKind.DISCONNECTED,
}
"""The feed-event kind of the span a :class:`~.records.BookGap` opens."""


def ticker(t: v5.V5Ticker) -> Ticker:
    """A ``tickers`` push (§3.1) as a neutral :class:`~recorder.records.Ticker`.

    ``bid``/``ask`` → ``buy``/``sell``; 24 h ``high``/``low``/``vol`` (base currency);
    ``vol_quote`` the 24 h quote-currency volume; absent values stay None.
    """
    return Ticker(
        venue=VENUE,
        symbol=t.instrument,
        ts_event=t.ts_event,
        ts_recv=t.ts_recv,
        buy=t.bid,
        sell=t.ask,
        last=t.last,
        high=t.high_24h,
        low=t.low_24h,
        vol=t.volume_24h,
        bid_size=t.bid_size,
        ask_size=t.ask_size,
        last_size=t.last_size,
        open_24h=t.open_24h,
        vol_quote=t.quote_volume_24h,
    )


def book_snapshot(s: v5.BookSnapshot, depth: int | None = None) -> BookSnapshot:
    """A v5 book state (integer levels) as a neutral snapshot of its top ``depth`` levels
    (all by default): exact Decimal ``(price, amount)`` via the snapshot's scale, ``source``
    the v5 channel (``books``, ``books5``, ``bbo-tbt``), ``seq_id`` the v5 ``seqId``."""
    scale = Scale(s.price_decimals, s.size_decimals)
    bids = s.bids if depth is None else s.bids[:depth]
    asks = s.asks if depth is None else s.asks[:depth]
    return BookSnapshot(
        venue=VENUE,
        symbol=s.instrument,
        ts_event=s.ts_event,
        ts_recv=s.ts_recv,
        bids=tuple((scale.price(p), scale.size(q)) for p, q, _ in bids),
        asks=tuple((scale.price(p), scale.size(q)) for p, q, _ in asks),
        source=s.channel,
        seq_id=s.seq_id,
    )


def deal(t: v5.Trade) -> Deal:
    """A ``trades`` push (§3.3) as a neutral :class:`~recorder.records.Deal`.

    ``tid`` is the numeric ``tradeId`` as an int (v5 ids are decimal strings); ``count`` the
    fills aggregated. Raises :class:`~recorder.errors.DecodeError` for a ``tradeId`` that is
    not a decimal integer (quarantine the frame).
    """
    tid = t.trade_id
    if not (tid.isascii() and tid.isdigit()) or len(tid) > 19:
        raise DecodeError(f"field 'trade.tradeId': {tid!r} is not a numeric trade id (int64)")
    return Deal(
        venue=VENUE,
        symbol=t.instrument,
        tid=int(tid),
        price=t.price,
        amount=t.size,
        side=Side.BUY if t.side is v5.Side.BUY else Side.SELL,
        ts_event=t.ts_event,
        ts_recv=t.ts_recv,
        count=t.count,
    )


def kline_period(bar: str) -> KlinePeriod:
    """The neutral period of a v5 bar (``1m``, ``1D``, ``1Dutc``...); DecodeError if unknown."""
    try:
        return KLINE_PERIODS[bar]
    except KeyError:
        raise DecodeError(f"okx_v5 candle bar {bar!r} has no neutral period") from None


def kline(c: v5.Candle) -> Kline:
    """A candle row (§3.4) as a neutral :class:`~recorder.records.Kline`: ``ts_event`` the
    open time, ``volume`` base currency (``vol``), ``volume_quote`` quote currency
    (``volCcyQuote``, else ``volCcy``: for SPOT both are quote), ``confirmed`` from ``confirm``.

    Raises DecodeError for an unknown bar or a row without a base volume.
    """
    if c.volume is None:
        raise DecodeError(f"candle {c.instrument} {c.bar}: field 'vol' is empty")
    return Kline(
        venue=VENUE,
        symbol=c.instrument,
        period=kline_period(c.bar),
        ts_event=c.ts_event,
        ts_recv=c.ts_recv,
        open=c.open,
        high=c.high,
        low=c.low,
        close=c.close,
        volume=c.volume,
        volume_quote=c.volume_ccy_quote if c.volume_ccy_quote is not None else c.volume_ccy,
        confirmed=c.confirmed,
    )


def instrument(i: v5.Instrument) -> Instrument:
    """An instrument (§4.5) as a neutral :class:`~recorder.records.Instrument` (state kept raw)."""
    return Instrument(
        venue=VENUE,
        symbol=i.instrument,
        ts_recv=i.ts_recv,
        base=i.base,
        quote=i.quote,
        tick_size=i.tick_size,
        lot_size=i.lot_size,
        min_size=i.min_size,
        state=i.state,
        inst_type=i.inst_type,
        ts_listed=i.list_time,
        ts_expiry=i.exp_time,
    )


def error_detail(code: int | None, msg: str) -> str:
    """``"<code> <documented text> (server: <msg>)"`` for an error event (§7.3); for one without a
    code (None), ``"error event without a code: <msg>"`` (``(no msg)`` when that is empty too)."""
    if code is None:
        return f"error event without a code: {msg or '(no msg)'}"
    known = lookup(code)
    text = known.text if known is not None else "undocumented code"
    return f"{code} {text}" + (f" (server: {msg})" if msg and msg != text else "")


def gap_event(gap: v5.BookGap, connection: str) -> FeedEvent:
    """The open span (``ts_end`` None) of a dropped book: kind from :data:`GAP_KIND`, from the
    moment the gap was seen; the caller closes it at the book's next snapshot."""
    return FeedEvent(
        kind=GAP_KIND[gap.reason],
        ts_start=gap.ts_recv,
        ts_end=None,
        connection=connection,
        symbols=(gap.instrument,),
        channel=gap.channel,
        detail=gap.detail,
        venue=VENUE,
    )


def refused_event(err: v5.ErrorEvent, arg_channel: str, inst_id: str, connection: str) -> FeedEvent:
    """The open ``SUBSCRIBE_REFUSED`` span of one refused arg, with the v5 code and its
    documented text in ``detail``; closed by the channel's first data after a retry."""
    return FeedEvent(
        kind=FeedEventKind.SUBSCRIBE_REFUSED,
        ts_start=err.ts_recv,
        ts_end=None,
        connection=connection,
        symbols=(inst_id,) if inst_id else (),
        channel=arg_channel,
        detail=error_detail(err.code, err.msg),
        venue=VENUE,
    )


def notice_event(n: v5.Notice, connection: str, symbols: tuple[str, ...], channels: str = "") -> FeedEvent:
    """The open ``PLANNED_DISCONNECT`` span of a notice (§2.6, 64008: service upgrade)."""
    return FeedEvent(
        kind=FeedEventKind.PLANNED_DISCONNECT,
        ts_start=n.ts_recv,
        ts_end=None,
        connection=connection,
        symbols=symbols,
        channel=channels,
        detail=f"planned: {error_detail(n.code, n.msg)}",
        venue=VENUE,
    )


def close(event: FeedEvent, ts_end: datetime) -> FeedEvent:
    """``event`` closed at ``ts_end`` (same ``event_id``; storage upserts)."""
    return replace(event, ts_end=max(ts_end, event.ts_start))
