"""OKX v5 wire → typed records (:mod:`.records`). Pure functions, no I/O.

Implements PROTOCOL.md §0 and §8.1 (strings → exact Decimals, ``""`` → None,
ms-epoch strings → aware UTC datetimes), §2.3 (push envelope), §3.1 tickers,
§3.3 trades, §3.4 candles, §4.5 instruments, §5.1 balances, §5.2 orders and
§5.3 fills. Books are parsed by :mod:`.book` (integer ticks) via :mod:`.session`.

Every malformed input raises :class:`~recorder.errors.DecodeError` whose message
names the field (``"ticker field 'last': ..."``), never a KeyError/TypeError.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import msgspec

from recorder.errors import DecodeError

from .records import (
    Balance,
    Candle,
    Fill,
    Instrument,
    Order,
    OrderState,
    Side,
    Trade,
    V5Ticker,
)
from .schemas import (
    BalanceData,
    FillData,
    InstrumentData,
    OrderData,
    RestEnvelope,
    TickerData,
    TimeData,
    TradeData,
    WsMessage,
)

__all__ = [
    "PING",
    "PONG",
    "decode_data",
    "decode_item",
    "decode_items",
    "decode_ws_message",
    "parse_balances",
    "parse_candle",
    "parse_decimal",
    "parse_fill",
    "parse_instrument",
    "parse_ms",
    "parse_order",
    "parse_ticker",
    "parse_trade",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
"""What a v5 number string may look like: ASCII digits, optional sign, point and exponent.
(:class:`~decimal.Decimal` alone would also take ``" 1"``, ``"1_000"``, ``"Infinity"`` and
non-ASCII digits.)"""
T = TypeVar("T")

PONG = "pong"
"""What :func:`decode_ws_message` returns for the text frame ``pong`` (§2.1)."""
PING = "ping"
"""What :func:`decode_ws_message` returns for the text frame ``ping``: the server's own keep-alive
(clients send ``ping`` and get ``pong``; a server may ping too, and the answer is ``pong``)."""

_WS_DECODER = msgspec.json.Decoder(WsMessage)
_DATA_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {}
_ITEM_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {}


def decode_ws_message(frame: str | bytes) -> WsMessage | str:
    """Decode one WebSocket text frame (§2.3): :data:`PONG` for ``pong``, :data:`PING` for ``ping``,
    else a :class:`WsMessage`.

    Raises :class:`~recorder.errors.DecodeError` (with the frame as sample) for
    anything that is not a JSON object of the v5 envelope.
    """
    if frame == "pong" or frame == b"pong":
        return PONG
    if frame == "ping" or frame == b"ping":
        return PING
    try:
        return _WS_DECODER.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"okx_v5 frame: {exc}", sample=frame) from None


def decode_data(raw: msgspec.Raw | bytes, type_: type[T], what: str) -> list[T]:
    """Decode a raw ``data`` array (of a push §2.3 or REST answer §4.0) into ``list[type_]``.

    Raises :class:`~recorder.errors.DecodeError` naming ``what`` and the field
    (msgspec's path, e.g. ``$[0].px``).
    """
    dec = _DATA_DECODERS.get(type_)
    if dec is None:
        dec = _DATA_DECODERS[type_] = msgspec.json.Decoder(list[type_])  # type: ignore[valid-type]
    try:
        return dec.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"okx_v5 {what} data: {exc}", sample=bytes(raw)) from None


def decode_items(raw: msgspec.Raw | bytes, what: str) -> list[msgspec.Raw]:
    """A raw ``data`` array as its raw items (for decoding them one by one). Raises DecodeError
    when ``data`` is not a JSON array."""
    return decode_data(raw, msgspec.Raw, what)


def decode_item(raw: msgspec.Raw | bytes, type_: type[T], what: str) -> T:
    """One raw item of a ``data`` array as ``type_``. Raises DecodeError naming ``what`` and the field."""
    dec = _ITEM_DECODERS.get(type_)
    if dec is None:
        dec = _ITEM_DECODERS[type_] = msgspec.json.Decoder(type_)
    try:
        return dec.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"okx_v5 {what} data: {exc}", sample=bytes(raw)) from None


def decode_rest_envelope(body: bytes | str) -> RestEnvelope:
    """The REST envelope (§4.0). Raises DecodeError for non-JSON or a body without ``code``."""
    try:
        return msgspec.json.decode(body, type=RestEnvelope)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"okx_v5 REST answer: {exc}", sample=body) from None


def parse_decimal(value: str, field: str) -> Decimal | None:
    """A v5 number string as an exact Decimal; ``""`` → None (§0). Exponent notation is accepted.

    Raises :class:`~recorder.errors.DecodeError` naming ``field`` for a malformed or
    non-finite value (``"NaN"``, ``"Infinity"``).
    """
    if value == "":
        return None
    if NUMBER.fullmatch(value) is None:
        raise DecodeError(f"field {field!r}: {value!r} is not a decimal number")
    try:
        d = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise DecodeError(f"field {field!r}: {value!r} is not a decimal number") from None
    if not d.is_finite():
        raise DecodeError(f"field {field!r}: {value!r} is not a finite number")
    return d


def _required_decimal(value: str, field: str) -> Decimal:
    d = parse_decimal(value, field)
    if d is None:
        raise DecodeError(f"field {field!r} is empty")
    return d


def parse_ms(value: str, field: str) -> datetime | None:
    """A v5 ms-epoch string (§0, ``"1597026383085"``) as an aware UTC datetime, exactly; ``""`` → None.

    Raises :class:`~recorder.errors.DecodeError` naming ``field`` for anything but digits.
    """
    if value == "":
        return None
    if not (value.isascii() and value.isdigit()):
        raise DecodeError(f"field {field!r}: {value!r} is not a millisecond timestamp")
    return _EPOCH + timedelta(milliseconds=int(value))


def _required_ms(value: str, field: str) -> datetime:
    t = parse_ms(value, field)
    if t is None:
        raise DecodeError(f"field {field!r} is empty")
    return t


def _opt_str(value: str) -> str | None:
    return value if value != "" else None


def _enum(cls: Callable[[str], T], value: str, field: str) -> T:
    try:
        return cls(value)
    except ValueError:
        raise DecodeError(f"field {field!r}: unknown value {value!r}") from None


def parse_ticker(d: TickerData, ts_recv: datetime) -> V5Ticker:
    """A ``tickers`` item (§3.1) as a :class:`V5Ticker`. Raises DecodeError naming the field, also for
    a negative price, size or volume (0 is possible: no bid yet)."""
    t = V5Ticker(
        instrument=d.instId,
        ts_event=_required_ms(d.ts, "ticker.ts"),
        ts_recv=ts_recv,
        last=parse_decimal(d.last, "ticker.last"),
        last_size=parse_decimal(d.lastSz, "ticker.lastSz"),
        bid=parse_decimal(d.bidPx, "ticker.bidPx"),
        bid_size=parse_decimal(d.bidSz, "ticker.bidSz"),
        ask=parse_decimal(d.askPx, "ticker.askPx"),
        ask_size=parse_decimal(d.askSz, "ticker.askSz"),
        open_24h=parse_decimal(d.open24h, "ticker.open24h"),
        high_24h=parse_decimal(d.high24h, "ticker.high24h"),
        low_24h=parse_decimal(d.low24h, "ticker.low24h"),
        volume_24h=parse_decimal(d.vol24h, "ticker.vol24h"),
        quote_volume_24h=parse_decimal(d.volCcy24h, "ticker.volCcy24h"),
        sod_utc0=parse_decimal(d.sodUtc0, "ticker.sodUtc0"),
        sod_utc8=parse_decimal(d.sodUtc8, "ticker.sodUtc8"),
        inst_type=_opt_str(d.instType),
    )
    # no "-" (no sign, no negative exponent): no value is negative, and the check costs one join
    if "-" in "".join((d.last, d.lastSz, d.bidPx, d.bidSz, d.askPx, d.askSz, d.open24h, d.high24h,
                       d.low24h, d.vol24h, d.volCcy24h, d.sodUtc0, d.sodUtc8)):
        for name in _TICKER_NUMBERS:
            value = getattr(t, name)
            if value is not None and value < 0:
                raise DecodeError(f"ticker: impossible negative {name} {value}")
    return t


_TICKER_NUMBERS = ("last", "last_size", "bid", "bid_size", "ask", "ask_size", "open_24h", "high_24h",
                   "low_24h", "volume_24h", "quote_volume_24h", "sod_utc0", "sod_utc8")


def parse_trade(d: TradeData, ts_recv: datetime) -> Trade:
    """A ``trades``/``trades-all`` item (§3.3) or REST trade (§4.3). Raises DecodeError naming the
    field, also for a price or size <= 0 (a trade has both)."""
    count: int | None = None
    if d.count != "":
        if not (d.count.isascii() and d.count.isdigit()):
            raise DecodeError(f"field 'trade.count': {d.count!r} is not an integer")
        count = int(d.count)
    if d.tradeId == "":
        raise DecodeError("field 'trade.tradeId' is empty")
    price = _required_decimal(d.px, "trade.px")
    size = _required_decimal(d.sz, "trade.sz")
    if price <= 0 or size <= 0:
        raise DecodeError(f"trade: impossible price {price}, size {size}")
    return Trade(
        instrument=d.instId,
        trade_id=d.tradeId,
        price=price,
        size=size,
        side=_enum(Side, d.side, "trade.side"),
        ts_event=_required_ms(d.ts, "trade.ts"),
        ts_recv=ts_recv,
        count=count,
        source=_opt_str(d.source),
        seq_id=d.seqId,
    )


def parse_candle(row: Sequence[object], instrument: str, bar: str, ts_recv: datetime) -> Candle:
    """One candle array ``[ts,o,h,l,c,vol,volCcy,volCcyQuote,confirm]`` (§3.4, §4.4).

    Rows of 7 elements (older payloads) give ``volume_ccy_quote=None`` and
    ``confirmed=None``. Raises DecodeError naming the position for fewer than 5
    elements, non-string elements or bad values, for ``confirm`` not ``"0"``/``"1"``, and for an
    impossible candle (a price <= 0, a negative volume).
    """
    names = ("ts", "o", "h", "l", "c", "vol", "volCcy", "volCcyQuote", "confirm")
    if not isinstance(row, Sequence) or isinstance(row, str) or len(row) < 5:
        raise DecodeError(f"candle row {row!r} has fewer than 5 elements (ts,o,h,l,c)")
    cells: list[str] = []
    for i, cell in enumerate(row[:9]):
        if not isinstance(cell, str):
            raise DecodeError(f"field 'candle.{names[i]}': {cell!r} is not a string")
        cells.append(cell)
    cells += [""] * (9 - len(cells))
    confirm = cells[8]
    if confirm not in ("", "0", "1"):
        raise DecodeError(f"field 'candle.confirm': {confirm!r} is not '0' or '1'")
    c = Candle(
        instrument=instrument,
        bar=bar,
        ts_event=_required_ms(cells[0], "candle.ts"),
        ts_recv=ts_recv,
        open=_required_decimal(cells[1], "candle.o"),
        high=_required_decimal(cells[2], "candle.h"),
        low=_required_decimal(cells[3], "candle.l"),
        close=_required_decimal(cells[4], "candle.c"),
        volume=parse_decimal(cells[5], "candle.vol"),
        volume_ccy=parse_decimal(cells[6], "candle.volCcy"),
        volume_ccy_quote=parse_decimal(cells[7], "candle.volCcyQuote"),
        confirmed=None if confirm == "" else confirm == "1",
    )
    volumes = [v for v in (c.volume, c.volume_ccy, c.volume_ccy_quote) if v is not None]
    if min(c.open, c.high, c.low, c.close) <= 0 or (volumes and min(volumes) < 0):
        raise DecodeError(f"candle: impossible candle open {c.open} high {c.high} low {c.low} "
                          f"close {c.close} volume {c.volume}")
    return c


def parse_instrument(d: InstrumentData, ts_recv: datetime) -> Instrument:
    """An instrument (§4.5, §3.5). Raises DecodeError naming the field (tickSz/lotSz must be set)."""
    return Instrument(
        instrument=d.instId,
        inst_type=d.instType,
        base=_opt_str(d.baseCcy),
        quote=_opt_str(d.quoteCcy),
        tick_size=_required_decimal(d.tickSz, "instrument.tickSz"),
        lot_size=_required_decimal(d.lotSz, "instrument.lotSz"),
        min_size=parse_decimal(d.minSz, "instrument.minSz"),
        state=d.state,
        list_time=parse_ms(d.listTime, "instrument.listTime"),
        exp_time=parse_ms(d.expTime, "instrument.expTime"),
        ts_recv=ts_recv,
    )


def parse_balances(d: BalanceData, ts_recv: datetime) -> list[Balance]:
    """One account item of ``/account/balance`` (§5.1) as one :class:`Balance` per currency."""
    return [
        Balance(
            currency=c.ccy,
            cash=parse_decimal(c.cashBal, "balance.cashBal"),
            available=parse_decimal(c.availBal, "balance.availBal"),
            frozen=parse_decimal(c.frozenBal, "balance.frozenBal"),
            order_frozen=parse_decimal(c.ordFrozen, "balance.ordFrozen"),
            equity=parse_decimal(c.eq, "balance.eq"),
            equity_usd=parse_decimal(c.eqUsd, "balance.eqUsd"),
            ts_event=parse_ms(c.uTime, "balance.uTime"),
            ts_recv=ts_recv,
        )
        for c in d.details
    ]


def parse_order(d: OrderData, ts_recv: datetime) -> Order:
    """An order (§5.2). ``px`` ``""`` (market) and ``avgPx`` ``""`` (unfilled) become None."""
    if d.ordId == "":
        raise DecodeError("field 'order.ordId' is empty")
    return Order(
        instrument=d.instId,
        order_id=d.ordId,
        client_order_id=_opt_str(d.clOrdId),
        side=_enum(Side, d.side, "order.side"),
        order_type=d.ordType,
        state=_enum(OrderState, d.state, "order.state"),
        price=parse_decimal(d.px, "order.px"),
        size=parse_decimal(d.sz, "order.sz"),
        filled_size=parse_decimal(d.accFillSz, "order.accFillSz"),
        avg_price=parse_decimal(d.avgPx, "order.avgPx"),
        fee=parse_decimal(d.fee, "order.fee"),
        fee_ccy=_opt_str(d.feeCcy),
        category=_opt_str(d.category),
        target_ccy=_opt_str(d.tgtCcy),
        ts_created=_required_ms(d.cTime, "order.cTime"),
        ts_updated=_required_ms(d.uTime, "order.uTime"),
        ts_recv=ts_recv,
    )


def parse_fill(d: FillData, ts_recv: datetime) -> Fill:
    """A fill (§5.3). ``ts_event`` is ``fillTime``."""
    if d.tradeId == "":
        raise DecodeError("field 'fill.tradeId' is empty")
    return Fill(
        instrument=d.instId,
        trade_id=d.tradeId,
        order_id=d.ordId,
        bill_id=_opt_str(d.billId),
        price=_required_decimal(d.fillPx, "fill.fillPx"),
        size=_required_decimal(d.fillSz, "fill.fillSz"),
        side=_enum(Side, d.side, "fill.side"),
        liquidity=_opt_str(d.execType),
        fee=parse_decimal(d.fee, "fill.fee"),
        fee_ccy=_opt_str(d.feeCcy),
        ts_event=_required_ms(d.fillTime, "fill.fillTime"),
        ts_recv=ts_recv,
    )


def parse_server_time(d: TimeData) -> int:
    """The ``/public/time`` item (§4.6) as ms since the epoch. Raises DecodeError."""
    if not (d.ts.isascii() and d.ts.isdigit()):
        raise DecodeError(f"field 'time.ts': {d.ts!r} is not a millisecond timestamp")
    return int(d.ts)


__all__ += ["decode_rest_envelope", "parse_server_time"]
