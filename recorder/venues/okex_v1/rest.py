"""REST response parsing (PROTOCOL.md "REST"): decoded JSON in, typed records out.

Every ``parse_*`` takes the decoded JSON answer (:func:`recorder.venues.okex_v1.parse.decode_json`)
and the local receive time ``ts_recv`` (plus the ``symbol`` where the answer
does not name it), and returns typed records. A wrong shape (missing field,
wrong type, bad number) raises :class:`~recorder.errors.DecodeError`, never a bare
KeyError/TypeError/ValueError. An error answer ``{"result": false, "error_code": N}``
raises the typed :class:`~recorder.errors.ExchangeError` (see :func:`check_result`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from recorder.errors import DecodeError, Transport
from recorder.records import (
    Balance,
    BookSnapshot,
    Deal,
    Kline,
    KlinePeriod,
    Level,
    Order,
    OrderStatus,
    OrderType,
    Side,
    Ticker,
)
from recorder.venues.okex_v1.enums import order_status
from recorder.venues.okex_v1.errors import exchange_error
from recorder.venues.okex_v1.numbers import parse_decimal, parse_int
from recorder.venues.okex_v1.parse import ms_to_datetime, parse_balance_maps

__all__ = [
    "OrderHistoryPage",
    "check_result",
    "parse_depth",
    "parse_klines",
    "parse_order_history",
    "parse_orders",
    "parse_ticker",
    "parse_trades",
    "parse_userinfo",
    "parse_wallet_info",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderHistoryPage:
    """One page of ``order_history.do``: ``total`` orders in all, ``orders`` on this page."""

    current_page: int
    page_length: int
    total: int
    orders: tuple[Order, ...]


# --- helpers ------------------------------------------------------------------------------------


def _obj(value: object, what: str) -> Mapping[str, object]:
    if type(value) is not dict:
        raise DecodeError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def _list(value: object, what: str) -> list[object]:
    if type(value) is not list:
        raise DecodeError(f"{what}: expected a JSON list, got {type(value).__name__}")
    return value


def _get(obj: Mapping[str, object], key: str, what: str) -> object:
    try:
        return obj[key]
    except KeyError:
        raise DecodeError(f"{what}: missing field {key!r}") from None


def _dec(obj: Mapping[str, object], key: str, what: str) -> Decimal:
    try:
        return parse_decimal(_get(obj, key, what))
    except DecodeError as exc:
        raise DecodeError(f"{what}: field {key!r}: {exc}") from None


def _optional_dec(obj: Mapping[str, object], key: str, what: str) -> Decimal | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    try:
        return parse_decimal(value)
    except DecodeError as exc:
        raise DecodeError(f"{what}: field {key!r}: {exc}") from None


def _int(obj: Mapping[str, object], key: str, what: str) -> int:
    try:
        return parse_int(_get(obj, key, what))
    except DecodeError as exc:
        raise DecodeError(f"{what}: field {key!r}: {exc}") from None


def _seconds_to_datetime(value: object, what: str) -> datetime:
    seconds = parse_int(value)
    try:
        return _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise DecodeError(f"{what}: timestamp out of range: {seconds} s") from None


def check_result(obj: object, context: str = "") -> None:
    """Raise the typed error if ``obj`` is an error answer ``{"result": false, "error_code": N}``.

    ``context`` (e.g. the endpoint) is carried in the error's message. Returns
    None for anything else. Raises :class:`~recorder.errors.ExchangeError` built by
    :func:`recorder.venues.okex_v1.errors.exchange_error` with transport REST, or
    :class:`~recorder.errors.DecodeError` for ``result: false`` without a usable
    code. PROTOCOL.md "REST".
    """
    if type(obj) is not dict or obj.get("result") is not False:
        return
    raw = obj.get("error_code", obj.get("errorcode"))
    if raw is None:
        raise DecodeError(f"{context or 'REST answer'}: result false without an error_code", sample=repr(obj))
    try:
        code = parse_int(raw)
    except DecodeError as exc:
        raise DecodeError(f"{context or 'REST answer'}: error_code is not a number: {raw!r:.30}") from exc
    raise exchange_error(code, Transport.REST, context=context)


def _check(obj: object, what: str) -> Mapping[str, object]:
    check_result(obj, what)
    return _obj(obj, what)


# --- market data --------------------------------------------------------------------------------


def parse_ticker(obj: object, symbol: str, ts_recv: datetime) -> Ticker:
    """``GET /ticker.do`` -> :class:`~recorder.records.Ticker`.

    ``{"date": "1410431279", "ticker": {"buy", "high", "last", "low", "sell", "vol"}}``:
    ``date`` is epoch seconds (string or number) and becomes ``ts_event``.
    Raises DecodeError / ExchangeError. PROTOCOL.md "REST", Public.
    """
    what = "ticker.do"
    answer = _check(obj, what)
    ticker = _obj(_get(answer, "ticker", what), f"{what} ticker")
    try:
        ts_event = _seconds_to_datetime(_get(answer, "date", what), what)
    except DecodeError as exc:
        raise DecodeError(f"{what}: field 'date': {exc}") from None
    return Ticker(venue="okex_v1",
        symbol=symbol,
        ts_event=ts_event,
        ts_recv=ts_recv,
        buy=_dec(ticker, "buy", what),
        sell=_dec(ticker, "sell", what),
        last=_dec(ticker, "last", what),
        high=_dec(ticker, "high", what),
        low=_dec(ticker, "low", what),
        vol=_dec(ticker, "vol", what),
        change=_optional_dec(ticker, "change", what),
        day_high=_optional_dec(ticker, "dayHigh", what),
        day_low=_optional_dec(ticker, "dayLow", what),
    )


def _rest_levels(raw: object, what: str) -> list[Level]:
    out: list[Level] = []
    for row in _list(raw, what):
        if type(row) is not list or len(row) != 2:
            raise DecodeError(f"{what}: a level must be [price, amount], got {row!r:.60}")
        price, amount = parse_decimal(row[0]), parse_decimal(row[1])
        if price <= 0 or amount < 0:
            raise DecodeError(f"{what}: impossible level [{price}, {amount}]")
        out.append((price, amount))
    return out


def parse_depth(
    obj: object, symbol: str, ts_recv: datetime, ts_event: datetime | None = None
) -> BookSnapshot:
    """``GET /depth.do`` -> :class:`~recorder.records.BookSnapshot` (source DEPTH).

    The answer lists asks highest price first; the snapshot holds asks lowest
    (best) first and bids highest first, whatever order they arrived in. The
    answer carries no time: ``ts_event`` defaults to ``ts_recv``. Raises
    DecodeError / ExchangeError. PROTOCOL.md "REST", Public.
    """
    what = "depth.do"
    answer = _check(obj, what)
    asks = _rest_levels(_get(answer, "asks", what), f"{what} asks")
    bids = _rest_levels(_get(answer, "bids", what), f"{what} bids")
    asks.sort()
    bids.sort(reverse=True)
    return BookSnapshot(venue="okex_v1",
        symbol=symbol,
        ts_event=ts_recv if ts_event is None else ts_event,
        ts_recv=ts_recv,
        bids=tuple(bids),
        asks=tuple(asks),
        source="depth",
    )


_TRADE_SIDES = {"buy": Side.BUY, "sell": Side.SELL, "bid": Side.BUY, "ask": Side.SELL}


def parse_trades(obj: object, symbol: str, ts_recv: datetime) -> list[Deal]:
    """``GET /trades.do`` -> list of :class:`~recorder.records.Deal`, in the answer's order.

    Each trade ``{"date", "date_ms", "price", "amount", "tid", "type"}``; fields may
    be strings or numbers; ``date_ms`` is preferred over ``date`` (seconds) for
    ``ts_event``. Raises DecodeError / ExchangeError. PROTOCOL.md "REST", Public.
    """
    what = "trades.do"
    check_result(obj, what)
    out: list[Deal] = []
    for item in _list(obj, what):
        trade = _obj(item, f"{what} trade")
        raw_type = trade.get("type")
        side = _TRADE_SIDES.get(raw_type) if type(raw_type) is str else None
        if side is None:
            raise DecodeError(f"{what}: unknown trade type {trade.get('type')!r:.20}")
        if "date_ms" in trade:
            try:
                ts_event = ms_to_datetime(trade["date_ms"])
            except DecodeError as exc:
                raise DecodeError(f"{what}: field 'date_ms': {exc}") from None
        else:
            try:
                ts_event = _seconds_to_datetime(_get(trade, "date", what), what)
            except DecodeError as exc:
                raise DecodeError(f"{what}: field 'date': {exc}") from None
        out.append(
            Deal(venue="okex_v1",
                symbol=symbol,
                tid=_int(trade, "tid", what),
                price=_dec(trade, "price", what),
                amount=_dec(trade, "amount", what),
                side=side,
                ts_event=ts_event,
                ts_recv=ts_recv,
            )
        )
    return out


def parse_klines(obj: object, symbol: str, period: KlinePeriod, ts_recv: datetime) -> list[Kline]:
    """``GET /kline.do`` -> list of :class:`~recorder.records.Kline`.

    Each row is ``[ts_ms, open, high, low, close, volume]`` (numbers or strings);
    ``ts_ms`` (the period's start) becomes ``ts_event``. Raises DecodeError /
    ExchangeError. PROTOCOL.md "REST", Public.
    """
    what = "kline.do"
    check_result(obj, what)
    out: list[Kline] = []
    for row in _list(obj, what):
        if type(row) is not list or len(row) < 6:
            raise DecodeError(
                f"{what}: a row must be [ts_ms, open, high, low, close, volume], got {row!r:.80}"
            )
        out.append(
            Kline(venue="okex_v1",
                symbol=symbol,
                period=period,
                ts_event=ms_to_datetime(row[0]),
                ts_recv=ts_recv,
                open=parse_decimal(row[1]),
                high=parse_decimal(row[2]),
                low=parse_decimal(row[3]),
                close=parse_decimal(row[4]),
                volume=parse_decimal(row[5]),
            )
        )
    return out


# --- account ------------------------------------------------------------------------------------


def _funds(obj: object, what: str) -> Mapping[str, object]:
    answer = _check(obj, what)
    info = _obj(_get(answer, "info", what), f"{what} info")
    return _obj(_get(info, "funds", f"{what} info"), f"{what} funds")


def parse_userinfo(obj: object, ts_recv: datetime) -> list[Balance]:
    """``POST /userinfo.do`` -> one spot :class:`~recorder.records.Balance` per currency.

    ``{"result": true, "info": {"funds": {"free": {cur: amount}, "freezed": {cur: amount}}}}``;
    a currency present in only one map has 0 in the other. Sorted by currency.
    Raises DecodeError / ExchangeError. PROTOCOL.md "REST", Private.
    """
    funds = _funds(obj, "userinfo.do")
    return parse_balance_maps(
        _get(funds, "free", "userinfo.do funds"), funds.get("freezed", {}), "spot", ts_recv, "userinfo.do"
    )


def parse_wallet_info(obj: object, ts_recv: datetime) -> list[Balance]:
    """``POST /wallet_info.do`` -> one wallet :class:`~recorder.records.Balance` per currency.

    Same shape as userinfo with ``free`` and ``holds`` (``holds`` becomes
    ``frozen``). Raises DecodeError / ExchangeError. PROTOCOL.md "REST", Private.
    """
    funds = _funds(obj, "wallet_info.do")
    frozen = funds.get("holds", funds.get("freezed", {}))
    return parse_balance_maps(
        _get(funds, "free", "wallet_info.do funds"), frozen, "wallet", ts_recv, "wallet_info.do"
    )


def _order_status(value: object, what: str, *, history: bool) -> OrderStatus:
    code = parse_int(value)
    try:
        return order_status(code, history=history)  # order_history.do: 4 = "cancel in progress"
    except ValueError:
        raise DecodeError(f"{what}: unknown order status {code}") from None


def _order(item: object, ts_recv: datetime, what: str, *, history: bool = False) -> Order:
    order = _obj(item, f"{what} order")
    raw_type = _get(order, "type", what)
    try:
        order_type = OrderType(raw_type)
    except (ValueError, TypeError):
        raise DecodeError(f"{what}: unknown order type {raw_type!r:.30}") from None
    symbol = _get(order, "symbol", what)
    if type(symbol) is not str:
        raise DecodeError(f"{what}: symbol must be a string, got {type(symbol).__name__}")
    order_id = order.get("order_id", order.get("orders_id"))
    if order_id is None:
        raise DecodeError(f"{what}: missing field 'order_id'")
    try:
        status = _order_status(_get(order, "status", what), what, history=history)
        ts_event = ms_to_datetime(_get(order, "create_date", what))
        oid = parse_int(order_id)
    except DecodeError as exc:
        raise DecodeError(f"{what}: {exc}") from None
    return Order(venue="okex_v1",
        order_id=oid,
        symbol=symbol,
        type=order_type,
        price=_optional_dec(order, "price", what),
        amount=_optional_dec(order, "amount", what),
        deal_amount=_optional_dec(order, "deal_amount", what) or Decimal(0),
        avg_price=_optional_dec(order, "avg_price", what) or Decimal(0),
        status=status,
        ts_event=ts_event,
        ts_recv=ts_recv,
    )


def parse_orders(obj: object, ts_recv: datetime) -> list[Order]:
    """``POST /order_info.do`` or ``/orders_info.do`` -> list of :class:`~recorder.records.Order`.

    ``{"result": true, "orders": [order, ...]}``. Market orders may have an empty
    or absent ``price`` (sell) or ``amount`` (buy): None. ``create_date`` (ms)
    becomes ``ts_event``. Raises DecodeError / ExchangeError. PROTOCOL.md "An order".
    """
    what = "order_info.do"
    answer = _check(obj, what)
    return [_order(item, ts_recv, what) for item in _list(_get(answer, "orders", what), f"{what} orders")]


def parse_order_history(obj: object, ts_recv: datetime) -> OrderHistoryPage:
    """``POST /order_history.do`` -> :class:`OrderHistoryPage`.

    ``{"result": true, "current_page", "page_length", "total", "orders": [...]}``;
    status 4 on this endpoint means "cancel in progress" (CANCELLING). Raises
    DecodeError / ExchangeError. PROTOCOL.md "REST", Private, and "An order".
    """
    what = "order_history.do"
    answer = _check(obj, what)
    orders = _list(_get(answer, "orders", what), f"{what} orders")
    return OrderHistoryPage(
        current_page=_int(answer, "current_page", what),
        page_length=_int(answer, "page_length", what),
        total=_int(answer, "total", what),
        orders=tuple(_order(item, ts_recv, what, history=True) for item in orders),
    )
