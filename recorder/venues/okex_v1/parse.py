"""WebSocket frame decoding (PROTOCOL.md "WebSocket", "Server → client").

A frame is text, or a binary frame holding raw DEFLATE data (or, as some servers send, the
JSON text itself uncompressed). It holds one JSON object or a list of them; each object
becomes one or more typed messages:

* ``{"event": "pong"}`` -> :class:`Pong`
* ``{"event": "ping"}`` -> :class:`Ping` (the server's own keep-alive)
* ``{"channel": "addChannel"|"removeChannel", "data": {"result": true, "channel": C}}``
  -> :class:`SubscribeAck`
* ``{"channel": "login", "data": {"result": true}}`` -> :class:`LoginResult`
* error acks, in both shapes seen in the wild,
  ``{"channel": C, "success": false, "errorcode": N}`` and
  ``{"channel": C, "data": {"result": false, "error_code": N}}`` -> :class:`ErrorAck`
* ``ok_sub_spot_<symbol>_<kind>`` data -> :class:`~recorder.records.Ticker`,
  :class:`~recorder.records.DepthUpdate`, :class:`~recorder.records.Deal` (one per
  trade), :class:`~recorder.records.Kline` (one per row), :class:`~recorder.records.Order`,
  :class:`~recorder.records.Balance` (one per currency)
* anything else inside a frame -> :class:`Rejected` with a reason; the other
  objects of the frame still decode.

This module is the ingest hot path: channel names parsed once and cached, Decimal(str)
conversions, no logging. A frame of market-data pushes (a list of ``{"channel", "data"}``
objects of depth or deals channels, with nothing else in them) is first decoded by a
*typed* msgspec decoder into Structs (:func:`_typed_frame`: several times faster than
building dicts, see bench/README.md "Where the CPU time goes"); it applies the same rules
and builds the same records as the general path, and any frame it does not take whole
(another shape, another channel, a value that breaks a rule) is decoded again by the
general path (one msgspec decode into Python objects), which says what is wrong.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from itertools import chain
from typing import cast

import msgspec

from recorder.errors import ChannelError, DecodeError, ExchangeError, Transport
from recorder.records import (
    Balance,
    ChannelKind,
    Deal,
    DepthUpdate,
    Kline,
    Level,
    Order,
    OrderStatus,
    OrderType,
    Side,
    Ticker,
)
from recorder.venues.okex_v1.channels import Channel, parse_channel
from recorder.venues.okex_v1.enums import order_status
from recorder.venues.okex_v1.errors import exchange_error
from recorder.venues.okex_v1.numbers import parse_decimal, parse_int

__all__ = [
    "MAX_INFLATED_SIZE",
    "ErrorAck",
    "LoginResult",
    "Message",
    "Ping",
    "Pong",
    "Rejected",
    "SubscribeAck",
    "deal_timestamp",
    "decode_frame",
    "decode_json",
    "inflate",
    "ms_to_datetime",
    "parse_balance_maps",
]

MAX_INFLATED_SIZE = 16 * 1024 * 1024
"""A binary frame that inflates to more than this is rejected (a DEFLATE bomb guard)."""

SAMPLE_SIZE = 2048
"""How many bytes of an offending payload a :class:`Rejected` / DecodeError keeps."""

EXCHANGE_TZ = timezone(timedelta(hours=8), "UTC+8")
"""The exchange's wall clock (deal times are ``HH:MM:SS`` in this zone)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HALF_DAY = timedelta(hours=12)
_ONE_DAY = timedelta(days=1)


# --- messages that are not records ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pong:
    """The server's answer to ``{"event": "ping"}``."""


@dataclass(frozen=True, slots=True)
class Ping:
    """``{"event": "ping"}`` from the server: keep-alive, like a pong (the protocol documents no
    answer to it: clients ping, the server pongs)."""


@dataclass(frozen=True, slots=True)
class SubscribeAck:
    """``addChannel`` (``subscribed=True``) or ``removeChannel`` (False) succeeded for ``channel``."""

    channel: str
    subscribed: bool = True


@dataclass(frozen=True, slots=True)
class LoginResult:
    """The answer to a login: ``ok``, or the typed WebSocket ``error`` the server gave."""

    ok: bool
    error: ExchangeError | None = None


@dataclass(frozen=True, slots=True)
class ErrorAck:
    """The server refused something about ``channel`` with a WebSocket error code."""

    channel: str
    error: ExchangeError


@dataclass(frozen=True, slots=True)
class Rejected:
    """One object of a frame that could not be decoded: ``reason`` says why.

    ``channel`` is the object's channel name when it had a string one, else ``""``;
    ``sample`` holds (at most :data:`SAMPLE_SIZE` bytes of) the object re-encoded as JSON.
    """

    channel: str
    reason: str
    sample: bytes


Message = (
    Pong | Ping | SubscribeAck | LoginResult | ErrorAck | Ticker | DepthUpdate | Deal | Kline | Order
    | Balance | Rejected
)
"""Anything :func:`decode_frame` returns in its list."""


# --- bytes -> JSON ------------------------------------------------------------------------------

_json_decoder = msgspec.json.Decoder(float_hook=Decimal)
_json_encoder = msgspec.json.Encoder(decimal_format="number")
_SYNC_FLUSH_TAIL = b"\x00\x00\xff\xff"


def decode_json(data: bytes | bytearray | memoryview | str) -> object:
    """Decode JSON text exactly: JSON numbers with a fraction or exponent become Decimal.

    Takes bytes or str; returns the decoded object (dict, list, str, int, Decimal,
    bool, None). Raises :class:`~recorder.errors.DecodeError` (with a sample of the
    input) for anything that is not valid JSON, including truncated text.
    """
    try:
        return _json_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}", sample=bytes(data[:SAMPLE_SIZE])
                          if not isinstance(data, str) else data[:SAMPLE_SIZE]) from exc


def inflate(data: bytes | bytearray | memoryview, *, max_size: int = MAX_INFLATED_SIZE) -> bytes:
    """Inflate a binary frame of raw DEFLATE data (``zlib.decompressobj(-zlib.MAX_WBITS)``).

    Accepts a complete stream (final block) or one that ends with a sync flush
    (``00 00 ff ff``). Returns the inflated bytes. Raises
    :class:`~recorder.errors.DecodeError` for invalid or truncated data, for bytes
    after the end of the stream, and when the result would exceed ``max_size``.
    PROTOCOL.md "Server → client".
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, max_size + 1)  # one byte more tells "too big"
    except zlib.error as exc:
        raise DecodeError(f"bad DEFLATE data: {exc}", sample=bytes(data[:SAMPLE_SIZE])) from exc
    if len(out) > max_size:
        raise DecodeError(f"DEFLATE frame inflates to more than {max_size} bytes",
                          sample=bytes(data[:SAMPLE_SIZE]))
    if inflater.eof:
        if inflater.unused_data:
            raise DecodeError("bytes after the end of the DEFLATE stream", sample=bytes(data[:SAMPLE_SIZE]))
    elif bytes(data[-4:]) != _SYNC_FLUSH_TAIL:
        raise DecodeError("truncated DEFLATE data (no final block, no sync flush)",
                          sample=bytes(data[:SAMPLE_SIZE]))
    return out


# --- time ---------------------------------------------------------------------------------------


def ms_to_datetime(ms: object) -> datetime:
    """Epoch milliseconds (int or digit string) -> exact aware UTC datetime.

    Raises :class:`~recorder.errors.DecodeError` for anything else or out of range.
    """
    value = parse_int(ms)
    try:
        return _EPOCH + timedelta(milliseconds=value)
    except OverflowError:
        raise DecodeError(f"timestamp out of range: {value} ms") from None


_HHMMSS = re.compile(r"([01]\d|2[0-3]):([0-5]\d):([0-5]\d)")


def deal_timestamp(hhmmss: str, ts_recv: datetime) -> datetime:
    """Turn a deal's ``HH:MM:SS`` exchange wall time (UTC+8, no date) into a UTC datetime.

    Of the candidate instants on the exchange-local day before, of and after
    ``ts_recv``, returns the one nearest to ``ts_recv`` (an aware datetime), so
    a deal at ``23:59:59`` received at ``00:00:01`` local lands on the previous
    day. Raises :class:`~recorder.errors.DecodeError` for a malformed time and
    ``ValueError`` for a naive ``ts_recv``. PROTOCOL.md "WebSocket", deals.
    """
    if ts_recv.tzinfo is None:
        raise ValueError("ts_recv must be timezone-aware (UTC)")
    m = _HHMMSS.fullmatch(hhmmss) if type(hhmmss) is str else None
    if m is None:
        raise DecodeError(f"deal time is not HH:MM:SS: {hhmmss!r:.40}")
    local_recv = ts_recv.astimezone(EXCHANGE_TZ)
    candidate = local_recv.replace(
        hour=int(m.group(1)), minute=int(m.group(2)), second=int(m.group(3)), microsecond=0
    )
    delta = candidate - local_recv
    if delta > _HALF_DAY:
        candidate -= _ONE_DAY
    elif delta <= -_HALF_DAY:
        candidate += _ONE_DAY
    return candidate.astimezone(UTC)


# --- channel data -------------------------------------------------------------------------------


class _Reject(Exception):
    """Internal: this object cannot be decoded (becomes a :class:`Rejected`)."""


@functools.lru_cache(maxsize=8192)
def _channel(name: str) -> Channel | ChannelError:
    try:
        return parse_channel(name)
    except ChannelError as exc:
        return exc


def _need_dict(value: object, what: str) -> dict[str, object]:
    if type(value) is not dict:
        raise _Reject(f"{what} must be an object, got {type(value).__name__}")
    return value


def _need_list(value: object, what: str) -> list[object]:
    if type(value) is not list:
        raise _Reject(f"{what} must be a list, got {type(value).__name__}")
    return value


def _field(obj: dict[str, object], key: str, what: str) -> object:
    try:
        return obj[key]
    except KeyError:
        raise _Reject(f"{what}: missing field {key!r}") from None


def _dec_field(obj: dict[str, object], key: str, what: str) -> Decimal:
    try:
        return parse_decimal(obj[key])
    except KeyError:
        raise _Reject(f"{what}: missing field {key!r}") from None
    except DecodeError as exc:
        raise _Reject(f"{what}: field {key!r}: {exc}") from None


def _optional_decimal(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    return parse_decimal(value)


_PLAIN_NUMBERS = re.compile(r"[0-9.eE+-]*")
"""Characters of plain decimal strings: no spaces, no ``_``, no NaN or Infinity."""


def _levels(raw: object, side: str) -> tuple[Level, ...]:
    rows = _need_list(raw, f"depth {side}")
    # The hot path, at C level: every row a [str, str] list of plain numbers, prices > 0,
    # amounts >= 0. Anything else takes the checking loop below, which says what is wrong.
    pairs = cast("list[list[object]]", rows)
    if pairs and set(map(type, pairs)) == {list} and set(map(len, pairs)) == {2}:
        flat = cast("list[str]", list(chain.from_iterable(pairs)))  # checked next
        if set(map(type, flat)) == {str} and _PLAIN_NUMBERS.fullmatch("".join(flat)):
            try:
                numbers = list(map(Decimal, flat))
            except InvalidOperation:
                pass
            else:
                prices = numbers[0::2]
                amounts = numbers[1::2]
                if min(prices) > 0 and min(amounts) >= 0:
                    return tuple(zip(prices, amounts, strict=True))
    return _levels_checked(rows, side)


def _levels_checked(rows: list[object], side: str) -> tuple[Level, ...]:
    out: list[Level] = []
    append = out.append
    for row in rows:
        if type(row) is not list or len(row) != 2:
            raise _Reject(f"depth {side}: a level must be [price, amount], got {row!r:.60}")
        price = parse_decimal(row[0])
        amount = parse_decimal(row[1])
        if price <= 0 or amount < 0:
            raise _Reject(f"depth {side}: impossible level [{price}, {amount}]")
        append((price, amount))
    return tuple(out)


def _ticker(channel: Channel, data: object, ts_recv: datetime) -> list[Message]:
    d = _need_dict(data, "ticker data")
    what = "ticker data"
    get = d.get
    ticker = Ticker(venue="okex_v1",
        symbol=channel.symbol,
        ts_event=ms_to_datetime(_field(d, "timestamp", what)),
        ts_recv=ts_recv,
        buy=_dec_field(d, "buy", what),
        sell=_dec_field(d, "sell", what),
        last=_dec_field(d, "last", what),
        high=_dec_field(d, "high", what),
        low=_dec_field(d, "low", what),
        vol=_dec_field(d, "vol", what),
        change=_optional_decimal(get("change")),
        day_high=_optional_decimal(get("dayHigh")),
        day_low=_optional_decimal(get("dayLow")),
    )
    # Prices and volumes are never negative (0 is possible: no bid, no trade yet); `change` may be.
    for name in ("buy", "sell", "last", "high", "low", "vol", "day_high", "day_low"):
        value = getattr(ticker, name)
        if value is not None and value < 0:
            raise _Reject(f"ticker data: impossible negative {name} {value}")
    return [ticker]


def _depth(channel: Channel, data: object, ts_recv: datetime) -> list[Message]:
    d = _need_dict(data, "depth data")
    asks = d.get("asks")
    bids = d.get("bids")
    if asks is None and bids is None:
        raise _Reject("depth data: missing both 'asks' and 'bids'")
    return [
        DepthUpdate(venue="okex_v1",
            symbol=channel.symbol,
            kind=channel.kind,
            ts_event=ms_to_datetime(_field(d, "timestamp", "depth data")),
            ts_recv=ts_recv,
            bids=() if bids is None else _levels(bids, "bids"),
            asks=() if asks is None else _levels(asks, "asks"),
        )
    ]


_DEAL_SIDES = {"bid": Side.BUY, "ask": Side.SELL}


def _row_rejected(channel: Channel, row: object, reason: str) -> Rejected:
    """One bad row of a list-valued push (deals, klines): only that row is set aside.

    ``sample`` is ``{"channel": C, "data": [row]}``, the frame the exchange would have sent
    for that row alone, so the quarantine row holds exactly the row that was refused.
    """
    return Rejected(channel=channel.name, reason=f"{channel.name}: {reason}",
                    sample=_sample({"channel": channel.name, "data": [row]}))


def _deals(channel: Channel, data: object, ts_recv: datetime) -> list[Message]:
    rows = _need_list(data, "deals data")
    out: list[Message] = []
    symbol = channel.symbol
    times: dict[str, datetime] = {}  # deals of one push share few distinct seconds
    for row in rows:
        # Each deal is its own record: a bad one is rejected alone, its neighbours decode.
        try:
            out.append(_deal(symbol, row, times, ts_recv))
        except (_Reject, DecodeError) as exc:
            out.append(_row_rejected(channel, row, str(exc)))
    return out


def _deal(symbol: str, row: object, times: dict[str, datetime], ts_recv: datetime) -> Deal:
    if type(row) is not list or len(row) < 5:
        raise _Reject(f"deals: a deal must be [tid, price, amount, time, type], got {row!r:.80}")
    side = _DEAL_SIDES.get(row[4]) if type(row[4]) is str else None
    if side is None:
        raise _Reject(f"deals: unknown deal type {row[4]!r:.20} (expected 'bid' or 'ask')")
    hhmmss = row[3]
    if type(hhmmss) is not str:
        raise _Reject(f"deals: time must be an 'HH:MM:SS' string, got {hhmmss!r:.20}")
    price = parse_decimal(row[1])
    amount = parse_decimal(row[2])
    if price <= 0 or amount <= 0:  # as for depth levels: a trade has a price and an amount
        raise _Reject(f"deals: impossible deal price {price}, amount {amount}")
    ts_event = times.get(hhmmss)
    if ts_event is None:
        ts_event = times[hhmmss] = deal_timestamp(hhmmss, ts_recv)
    return Deal(venue="okex_v1",
        symbol=symbol,
        tid=parse_int(row[0]),
        price=price,
        amount=amount,
        side=side,
        ts_event=ts_event,
        ts_recv=ts_recv,
    )


def _klines(channel: Channel, data: object, ts_recv: datetime) -> list[Message]:
    rows = _need_list(data, "kline data")
    if rows and type(rows[0]) is not list:
        rows = [rows]  # a single candle sent flat
    period = channel.period
    assert period is not None  # a KLINE channel always has one
    out: list[Message] = []
    for row in rows:
        # Each candle is its own record: a bad one is rejected alone, its neighbours decode.
        try:
            if type(row) is not list or len(row) < 6:
                raise _Reject(f"kline: a row must be [ts_ms, open, high, low, close, volume], "
                              f"got {row!r:.80}")
            k = Kline(venue="okex_v1",
                symbol=channel.symbol,
                period=period,
                ts_event=ms_to_datetime(row[0]),
                ts_recv=ts_recv,
                open=parse_decimal(row[1]),
                high=parse_decimal(row[2]),
                low=parse_decimal(row[3]),
                close=parse_decimal(row[4]),
                volume=parse_decimal(row[5]),
            )
            if min(k.open, k.high, k.low, k.close) <= 0 or k.volume < 0:  # as for deals and depth levels
                raise _Reject(f"kline: impossible candle open {k.open} high {k.high} low {k.low} "
                              f"close {k.close} volume {k.volume}")
            out.append(k)
        except (_Reject, DecodeError) as exc:
            out.append(_row_rejected(channel, row, str(exc)))
    return out


def _order_type(value: object) -> OrderType:
    try:
        return OrderType(value)
    except ValueError:
        raise _Reject(f"unknown order type {value!r:.30}") from None


def _order_status(value: object) -> OrderStatus:
    code = parse_int(value)
    try:
        return order_status(code)
    except ValueError:
        raise _Reject(f"unknown order status {code}") from None


def _order(channel: Channel, data: object, ts_recv: datetime) -> list[Message]:
    d = _need_dict(data, "order data")
    what = "order data"
    symbol = d.get("symbol", channel.symbol)
    if type(symbol) is not str:
        raise _Reject(f"order data: symbol must be a string, got {type(symbol).__name__}")
    avg = d.get("averagePrice")
    return [
        Order(venue="okex_v1",
            order_id=parse_int(_field(d, "orderId", what)),
            symbol=symbol,
            type=_order_type(_field(d, "tradeType", what)),
            price=_optional_decimal(d.get("tradeUnitPrice")),
            amount=_optional_decimal(d.get("tradeAmount")),
            deal_amount=_dec_field(d, "completedTradeAmount", what),
            avg_price=Decimal(0) if avg is None or avg == "" else parse_decimal(avg),
            status=_order_status(_field(d, "status", what)),
            ts_event=ms_to_datetime(_field(d, "createdDate", what)),
            ts_recv=ts_recv,
        )
    ]


def parse_balance_maps(
    free: object, frozen: object, account: str, ts_recv: datetime, what: str = "balances"
) -> list[Balance]:
    """One :class:`~recorder.records.Balance` per currency present in either map, sorted by currency.

    ``free`` and ``frozen`` are ``{currency: amount}`` objects; a currency missing
    from one of them has 0 there. Shared by the WebSocket balance channel and the
    REST userinfo / wallet_info parsers. Raises :class:`~recorder.errors.DecodeError`
    (its message starting with ``what``) on wrong shapes or bad amounts.
    """
    if type(free) is not dict or type(frozen) is not dict:
        raise DecodeError(f"{what}: free and frozen amounts must be objects")
    zero = Decimal(0)
    out: list[Balance] = []
    for currency in sorted(free.keys() | frozen.keys()):
        if type(currency) is not str or not currency:
            raise DecodeError(f"{what}: currency must be a non-empty string, got {currency!r:.30}")
        f = free.get(currency)
        z = frozen.get(currency)
        out.append(
            Balance(venue="okex_v1",
                ts_recv=ts_recv,
                account=account,
                currency=currency,
                free=zero if f is None else parse_decimal(f),
                frozen=zero if z is None else parse_decimal(z),
            )
        )
    return out


def _balance(channel: Channel, data: object, ts_recv: datetime) -> list[Message]:
    d = _need_dict(data, "balance data")
    info = _need_dict(_field(d, "info", "balance data"), "balance info")
    free = info.get("free", {})
    frozen = info.get("freezed", {})
    if "free" not in info and "freezed" not in info:
        raise _Reject("balance info: missing both 'free' and 'freezed'")
    return list(parse_balance_maps(free, frozen, "spot", ts_recv, "balance info"))


_DECODERS: dict[ChannelKind, Callable[[Channel, object, datetime], list[Message]]] = {
    ChannelKind.TICKER: _ticker,
    ChannelKind.DEPTH: _depth,
    ChannelKind.DEPTH_5: _depth,
    ChannelKind.DEPTH_10: _depth,
    ChannelKind.DEPTH_20: _depth,
    ChannelKind.DEALS: _deals,
    ChannelKind.KLINE: _klines,
    ChannelKind.ORDER: _order,
    ChannelKind.BALANCE: _balance,
}


# --- objects ------------------------------------------------------------------------------------


def _error_code(value: object) -> int:
    try:
        return parse_int(value)
    except DecodeError:
        raise _Reject(f"error code is not a number: {value!r:.30}") from None


def _decode_object(obj: dict[str, object], ts_recv: datetime) -> list[Message]:
    channel = obj.get("channel")
    if type(channel) is not str:
        if channel is None and obj.get("event") == "pong":
            return [Pong()]
        if channel is None and obj.get("event") == "ping":
            return [Ping()]
        if channel is None:
            raise _Reject("object has neither a 'channel' nor a known 'event'")
        raise _Reject(f"channel must be a string, got {type(channel).__name__}")
    data = obj.get("data")
    # Error ack, first shape: {"channel": C, "success": false, "errorcode": N}
    success = obj.get("success")
    if success is False or (success is not True and "errorcode" in obj):
        raw = obj.get("errorcode")
        if raw is None and type(data) is dict:
            raw = data.get("error_code")
        if raw is None:
            raise _Reject("error ack without an error code")
        error = exchange_error(_error_code(raw), Transport.WEBSOCKET, context=channel)
        if channel == "login":
            return [LoginResult(ok=False, error=error)]
        return [ErrorAck(channel=channel, error=error)]
    if type(data) is dict and "result" in data:
        result = data["result"]
        if result is False or "error_code" in data:
            # Second shape: {"channel": C, "data": {"result": false, "error_code": N}}
            raw = data.get("error_code")
            if raw is None:
                raise _Reject("failed result without an error code")
            about = data.get("channel")
            target = about if type(about) is str else channel
            error = exchange_error(_error_code(raw), Transport.WEBSOCKET, context=target)
            if channel == "login":
                return [LoginResult(ok=False, error=error)]
            return [ErrorAck(channel=target, error=error)]
        if result is not True:
            raise _Reject(f"'result' must be true or false, got {result!r:.30}")
        if channel == "login":
            return [LoginResult(ok=True)]
        if channel in ("addChannel", "removeChannel"):
            about = data.get("channel")
            if type(about) is not str:
                raise _Reject(f"{channel} ack without a channel name")
            return [SubscribeAck(channel=about, subscribed=channel == "addChannel")]
        if len(data) == 1 or (len(data) == 2 and "channel" in data):
            # {"channel": "ok_sub_spot_X_order", "data": {"result": true}}: subscribed
            return [SubscribeAck(channel=channel)]
    parsed = _channel(channel)
    if isinstance(parsed, ChannelError):
        raise _Reject(str(parsed))
    if data is None:
        raise _Reject(f"{channel}: missing field 'data'")
    return _DECODERS[parsed.kind](parsed, data, ts_recv)


def _plain_json(frame: bytes | bytearray | memoryview, inflate_error: DecodeError | None) -> bytes:
    """``frame`` itself when it is UTF-8 JSON text (a binary frame sent uncompressed); else
    DecodeError saying what was tried: DEFLATE (``inflate_error``, or: it inflated to no JSON) and
    UTF-8 JSON."""
    data = bytes(frame)
    deflate_why = "it inflates to no JSON" if inflate_error is None else str(inflate_error)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        why = f"not UTF-8 ({exc.reason} at byte {exc.start})"
    else:
        try:
            decode_json(data)
        except DecodeError as exc:
            why = str(exc)
        else:
            return data
    raise DecodeError(f"binary frame is neither raw DEFLATE data ({deflate_why}) nor uncompressed UTF-8 "
                      f"JSON ({why})", sample=data[:SAMPLE_SIZE])


def _sample(obj: object) -> bytes:
    try:
        return _json_encoder.encode(obj)[:SAMPLE_SIZE]
    except (msgspec.EncodeError, TypeError, ValueError, OverflowError):  # pragma: no cover
        return repr(obj).encode("utf-8", "replace")[:SAMPLE_SIZE]


def _rejected(obj: object, reason: str) -> Rejected:
    channel = obj.get("channel") if type(obj) is dict else None
    return Rejected(channel=channel if type(channel) is str else "", reason=reason, sample=_sample(obj))


# --- the typed fast path -----------------------------------------------------------------------


class _Push(msgspec.Struct, forbid_unknown_fields=True):
    """``{"channel": C, "data": ...}`` and nothing else (acks and errors carry more keys)."""

    channel: str
    data: msgspec.Raw


class _DepthData(msgspec.Struct, forbid_unknown_fields=True):
    timestamp: int
    asks: list[tuple[str, str]] | None = None
    bids: list[tuple[str, str]] | None = None


_typed_pushes = msgspec.json.Decoder(list[_Push])
_typed_depth = msgspec.json.Decoder(_DepthData)
_typed_deals = msgspec.json.Decoder(list[tuple[str, str, str, str, str]])
_TYPED_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)


def _typed_levels(pairs: list[tuple[str, str]]) -> tuple[Level, ...] | None:
    """:func:`_levels`' fast branch on typed rows; None when a row would need the checking loop."""
    if not pairs:
        return ()
    flat = list(chain.from_iterable(pairs))
    if not _PLAIN_NUMBERS.fullmatch("".join(flat)):
        return None
    try:
        numbers = list(map(Decimal, flat))
    except InvalidOperation:
        return None
    prices = numbers[0::2]
    amounts = numbers[1::2]
    if min(prices) > 0 and min(amounts) >= 0:
        return tuple(zip(prices, amounts, strict=True))
    return None


def _typed_depth_push(channel: Channel, raw: msgspec.Raw, ts_recv: datetime) -> list[Message] | None:
    try:
        d = _typed_depth.decode(raw)
    except _TYPED_ERRORS:
        return None
    if d.asks is None and d.bids is None:
        return None
    bids = () if d.bids is None else _typed_levels(d.bids)
    asks = () if d.asks is None else _typed_levels(d.asks)
    if bids is None or asks is None:
        return None
    try:
        ts_event = ms_to_datetime(d.timestamp)
    except DecodeError:
        return None
    return [DepthUpdate(venue="okex_v1", symbol=channel.symbol, kind=channel.kind, ts_event=ts_event,
                        ts_recv=ts_recv, bids=bids, asks=asks)]


def _typed_deals_push(channel: Channel, raw: msgspec.Raw, ts_recv: datetime) -> list[Message] | None:
    try:
        rows = _typed_deals.decode(raw)
    except _TYPED_ERRORS:
        return None
    symbol = channel.symbol
    times: dict[str, datetime] = {}
    try:
        return [_deal(symbol, list(row), times, ts_recv) for row in rows]
    except (_Reject, DecodeError):  # the general path rejects that row alone, with its reason
        return None


_TYPED: dict[ChannelKind, Callable[[Channel, msgspec.Raw, datetime], list[Message] | None]] = {
    ChannelKind.DEPTH: _typed_depth_push,
    ChannelKind.DEPTH_5: _typed_depth_push,
    ChannelKind.DEPTH_10: _typed_depth_push,
    ChannelKind.DEPTH_20: _typed_depth_push,
    ChannelKind.DEALS: _typed_deals_push,
}


def _typed_frame(text: bytes | str, ts_recv: datetime) -> list[Message] | None:
    """The messages of a frame of depth/deals pushes, decoded into Structs; None: not such a frame
    (or a value the general path must judge), so the general path decodes it."""
    try:
        pushes = _typed_pushes.decode(text)
    except _TYPED_ERRORS:
        return None
    out: list[Message] = []
    for push in pushes:
        channel = _channel(push.channel)
        if isinstance(channel, ChannelError):
            return None
        decode = _TYPED.get(channel.kind)
        if decode is None:
            return None
        messages = decode(channel, push.data, ts_recv)
        if messages is None:
            return None
        out.extend(messages)
    return out


def decode_frame(frame: bytes | bytearray | memoryview | str, ts_recv: datetime) -> list[Message]:
    """Decode one WebSocket frame into typed messages, in order.

    ``frame`` is a text frame (``str``) or a binary frame (bytes) of raw DEFLATE
    data, or of the UTF-8 JSON text itself (uncompressed: taken when the bytes do not inflate to
    JSON and are JSON as they are); ``ts_recv`` is the aware UTC receive time stamped on every
    record.
    Returns a list of :data:`Message`: one object or a list of objects each
    give one or more messages; an object that cannot be understood becomes a
    :class:`Rejected` with a reason and the rest still decode.

    Raises :class:`~recorder.errors.DecodeError` when the frame as a whole is bad:
    a binary frame neither DEFLATE nor UTF-8 JSON (the reason says both were tried), not JSON,
    or neither an object nor a list. Raises ValueError
    for a naive ``ts_recv``. PROTOCOL.md "WebSocket", "Server → client".
    """
    if ts_recv.tzinfo is None:
        raise ValueError("ts_recv must be timezone-aware (UTC)")
    inflated = False
    if isinstance(frame, str):
        text: bytes | str = frame
    else:
        try:
            text = inflate(frame)
            inflated = True
        except DecodeError as exc:
            text = _plain_json(frame, exc)
    typed = _typed_frame(text, ts_recv)
    if typed is not None:
        return typed
    try:
        doc = decode_json(text)
    except DecodeError:
        if not inflated:
            raise
        # raw JSON text can look like a DEFLATE block ('[' and '{' are a final fixed-Huffman
        # block header) and "inflate" to noise: the bytes as they came may be the JSON
        plain = _plain_json(cast("bytes", frame), None)
        text, doc = plain, decode_json(plain)
    if type(doc) is list:
        items: list[object] = doc
    elif type(doc) is dict:
        items = [doc]
    else:
        raise DecodeError(f"a frame must hold a JSON object or list, got {type(doc).__name__}",
                          sample=text[:SAMPLE_SIZE])
    out: list[Message] = []
    for obj in items:
        if type(obj) is not dict:
            out.append(_rejected(obj, f"frame item must be an object, got {type(obj).__name__}"))
            continue
        try:
            out.extend(_decode_object(obj, ts_recv))
        except _Reject as exc:
            out.append(_rejected(obj, str(exc)))
        except DecodeError as exc:
            out.append(_rejected(obj, f"{obj.get('channel', '')}: {exc}"))
    return out
