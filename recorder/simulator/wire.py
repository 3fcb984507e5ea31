"""Wire shapes the simulator sends (PROTOCOL.md "Server → client" and "REST"). Pure.

WebSocket data uses strings for prices and amounts; REST ``depth.do``,
``trades.do``, ``kline.do`` and the order objects use JSON numbers (the
encoders in :mod:`recorder.simulator.rest` write Decimals as numbers).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from recorder.simulator.accounts import Account, SimOrder
from recorder.simulator.market import BookChange, BookSide, KlineRow, TickerStats, Trade, format_decimal
from recorder.venues.okex_v1.enums import ORDER_STATUS_CODE
from recorder.venues.okex_v1.pairs import pairs

EXCHANGE_TZ = timezone(timedelta(hours=8))
"""The exchange's wall clock for ``deals`` times (UTC+8)."""

Levels = list[list[str]]


def ws_levels(levels: Iterable[tuple[Decimal, Decimal]], *, exponent: bool) -> Levels:
    return [[format_decimal(p, exponent=exponent), format_decimal(a, exponent=exponent)] for p, a in levels]


def ws_book(
    bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]], ts_ms: int, *, exponent: bool
) -> dict[str, Any]:
    """A depth push: ``bids`` highest first and ``asks`` given lowest first, sent highest first."""
    return {
        "asks": ws_levels(reversed(asks), exponent=exponent),
        "bids": ws_levels(bids, exponent=exponent),
        "timestamp": ts_ms,
    }


def ws_depth_changes(changes: Iterable[BookChange], ts_ms: int, *, exponent: bool) -> dict[str, Any]:
    """An incremental depth push: the final amount of every changed level ("0" = deleted)."""
    asks: dict[Decimal, Decimal] = {}
    bids: dict[Decimal, Decimal] = {}
    for change in changes:
        (asks if change.side is BookSide.ASK else bids)[change.price] = change.amount
    return {
        "asks": ws_levels(sorted(asks.items(), reverse=True), exponent=exponent),
        "bids": ws_levels(sorted(bids.items(), reverse=True), exponent=exponent),
        "timestamp": ts_ms,
    }


def ws_ticker(t: TickerStats, ts_ms: int, *, exponent: bool) -> dict[str, Any]:
    def f(v: Decimal) -> str:
        return format_decimal(v, exponent=exponent)

    return {
        "buy": f(t.buy),
        "sell": f(t.sell),
        "last": f(t.last),
        "high": f(t.high),
        "low": f(t.low),
        "vol": f(t.vol),
        "change": f(t.change),
        "dayHigh": f(t.day_high),
        "dayLow": f(t.day_low),
        "timestamp": ts_ms,
    }


def exchange_hhmmss(ts_ms: int) -> str:
    """``HH:MM:SS`` exchange-local (UTC+8) wall time of ``ts_ms``."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(EXCHANGE_TZ).strftime("%H:%M:%S")


def ws_deals(trades: Iterable[Trade], *, exponent: bool) -> list[list[str]]:
    """``[tid, price, amount, "HH:MM:SS", "bid"|"ask"]`` strings; ``bid`` = buyer-initiated."""
    return [
        [
            str(t.tid),
            format_decimal(t.price, exponent=exponent),
            format_decimal(t.amount, exponent=exponent),
            exchange_hhmmss(t.ts_ms),
            "bid" if t.side.value == "buy" else "ask",
        ]
        for t in trades
    ]


def ws_kline(row: KlineRow, *, exponent: bool) -> list[list[str]]:
    return [
        [
            str(row.ts_ms),
            *(
                format_decimal(v, exponent=exponent)
                for v in (row.open, row.high, row.low, row.close, row.volume)
            ),
        ]
    ]


def ws_order(order: SimOrder) -> dict[str, Any]:
    """An ``ok_sub_spot_X_order`` push body."""
    return {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "tradeType": order.type.value,
        "tradeAmount": format_decimal(order.amount),
        "tradeUnitPrice": format_decimal(order.price),
        "completedTradeAmount": format_decimal(order.deal_amount),
        "averagePrice": format_decimal(order.avg_price),
        "tradePrice": format_decimal(order.deal_value),
        "unTrade": format_decimal(order.remaining),
        "createdDate": str(order.create_ms),
        "status": ORDER_STATUS_CODE[order.status],
    }


def ws_balance(account: Account, symbol: str) -> dict[str, Any]:
    """An ``ok_sub_spot_X_balance`` push body: the pair's two currencies."""
    pair = pairs()[symbol]
    currencies = (pair.base, pair.quote)
    return {
        "info": {
            "free": {c: format_decimal(account.free.get(c, Decimal(0))) for c in currencies},
            "freezed": {c: format_decimal(account.freezed.get(c, Decimal(0))) for c in currencies},
        }
    }


def rest_order(order: SimOrder) -> dict[str, Any]:
    """An order object of ``order_info.do`` & co (numbers as JSON numbers)."""
    return {
        "order_id": order.order_id,
        "orders_id": order.order_id,
        "symbol": order.symbol,
        "type": order.type.value,
        "price": order.price,
        "amount": order.amount,
        "deal_amount": order.deal_amount,
        "avg_price": order.avg_price,
        "create_date": order.create_ms,
        "status": ORDER_STATUS_CODE[order.status],
    }
