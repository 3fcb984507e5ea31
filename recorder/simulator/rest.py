"""The REST endpoint ``/api/v1/*.do`` (PROTOCOL.md "REST"), a thin aiohttp shell.

Every request first passes the per-IP limit (past it: HTTP 403 for the ban
period), the REST faults, then the per-endpoint limit (10001). Public endpoints
are GET with query parameters; private ones are form-encoded POSTs signed with
the account's secret (10000 missing parameter, 10006 unknown api_key, 10007
signature mismatch, 10008 illegal parameter). Failures answer
``{"result": false, "error_code": N}`` with HTTP 200.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
from aiohttp import web

from recorder.records import KlinePeriod, OrderStatus, OrderType
from recorder.simulator import wire
from recorder.simulator.accounts import Account, AccountError, Accounts, SimOrder
from recorder.simulator.faults import Faults
from recorder.simulator.market import Market, format_decimal
from recorder.simulator.settings import SimulatorSettings
from recorder.venues.okex_v1 import signing

MISSING_PARAMETER = 10000
RATE_LIMITED = 10001
SYSTEM_ERROR = 10002
UNKNOWN_API_KEY = 10006
SIGNATURE_MISMATCH = 10007
ILLEGAL_PARAMETER = 10008
MARKET_ORDERS_PAUSED = 1216

_ACCOUNT_ENDPOINTS = frozenset({"userinfo.do", "wallet_info.do"})
# PROTOCOL.md lists no per-endpoint limit ("—") for these: only the per-IP limit applies.
_UNLIMITED_ENDPOINTS = frozenset({"order_history.do", "tickers.do"})
_TWO_DAYS_MS = 2 * 86_400_000
_encode = msgspec.json.Encoder(decimal_format="number").encode

Params = Mapping[str, str]


class RestError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json")


def _require(params: Params, name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise RestError(MISSING_PARAMETER)
    return value


def _int(
    params: Params, name: str, *, default: int | None = None, lo: int | None = None, hi: int | None = None
) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise RestError(MISSING_PARAMETER)
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RestError(ILLEGAL_PARAMETER) from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise RestError(ILLEGAL_PARAMETER)
    return value


def _decimal(params: Params, name: str) -> Decimal:
    raw = _require(params, name)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise RestError(ILLEGAL_PARAMETER) from None
    if not value.is_finite():
        raise RestError(ILLEGAL_PARAMETER)
    return value


class _Window:
    """Sliding-window request counter."""

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def count(self, now: float, window: float) -> int:
        while self.times and self.times[0] <= now - window:
            self.times.popleft()
        return len(self.times)


class RestApi:
    """The ``/api/v1`` routes of one simulator."""

    def __init__(
        self,
        settings: SimulatorSettings,
        market: Market,
        accounts: Accounts,
        faults: Faults,
        clock: Callable[[], datetime],
        on_orders: Callable[[Account, list[SimOrder]], None],
    ) -> None:
        self.settings = settings
        self.market = market
        self.accounts = accounts
        self.faults = faults
        self.clock = clock
        self._on_orders = on_orders
        self._ip_windows: dict[str, _Window] = {}
        self._endpoint_windows: dict[tuple[str, str], _Window] = {}
        self._banned_until: dict[str, float] = {}
        self.requests = 0  # answered requests, all kinds

    def app(self) -> web.Application:
        """The aiohttp application serving every endpoint under ``/api/v1``."""
        app = web.Application()
        public: dict[str, Callable[[Params], Any]] = {
            "ticker.do": self._ticker,
            "depth.do": self._depth,
            "trades.do": self._trades,
            "kline.do": self._kline,
            "tickers.do": self._tickers,
        }
        private: dict[str, Callable[[Account, Params], Any]] = {
            "userinfo.do": self._userinfo,
            "wallet_info.do": self._wallet_info,
            "order_info.do": self._order_info,
            "orders_info.do": self._orders_info,
            "order_history.do": self._order_history,
            "trade.do": self._trade,
            "cancel_order.do": self._cancel_order,
        }
        for name, pfn in public.items():
            app.router.add_get(f"/api/v1/{name}", self._wrap(name, self._public(pfn)))
        for name, sfn in private.items():
            app.router.add_post(f"/api/v1/{name}", self._wrap(name, self._private(sfn)))
        return app

    def unban(self) -> None:
        """Lift every IP ban and forget request counts (test hook)."""
        self._banned_until.clear()
        self._ip_windows.clear()
        self._endpoint_windows.clear()

    def _wrap(
        self, name: str, inner: Callable[[web.Request], Awaitable[Any]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        limits = self.settings.rate_limits
        endpoint_limit = limits.account_requests if name in _ACCOUNT_ENDPOINTS else limits.endpoint_requests

        async def handle(request: web.Request) -> web.StreamResponse:
            latency = self.faults.settings.rest_latency
            if latency:
                await asyncio.sleep(latency)
            self.requests += 1
            ip = request.remote or "?"
            now = time.monotonic()
            if self._banned_until.get(ip, 0.0) > now:
                return web.Response(status=403, text="403 Forbidden: too many requests, IP banned")
            ip_window = self._ip_windows.setdefault(ip, _Window())
            if ip_window.count(now, limits.ip_window) >= limits.ip_requests:
                self._banned_until[ip] = now + limits.ban_seconds
                return web.Response(status=403, text="403 Forbidden: too many requests, IP banned")
            ip_window.times.append(now)
            fault = self.faults.take_rest_fault()
            if fault == SYSTEM_ERROR:
                return _json({"result": False, "error_code": SYSTEM_ERROR})
            if fault is not None:
                return web.Response(status=fault, text=f"{fault} simulated server error")
            if name not in _UNLIMITED_ENDPOINTS:
                window = self._endpoint_windows.setdefault((ip, name), _Window())
                if window.count(now, limits.endpoint_window) >= endpoint_limit:
                    return _json({"result": False, "error_code": RATE_LIMITED})
                window.times.append(now)
            try:
                return _json(await inner(request))
            except RestError as exc:
                return _json({"result": False, "error_code": exc.code})
            except AccountError as exc:
                return _json({"result": False, "error_code": exc.code})

        return handle

    def _public(self, fn: Callable[[Params], Any]) -> Callable[[web.Request], Awaitable[Any]]:
        async def inner(request: web.Request) -> Any:
            return fn({k: v for k, v in request.query.items()})

        return inner

    def _private(self, fn: Callable[[Account, Params], Any]) -> Callable[[web.Request], Awaitable[Any]]:
        async def inner(request: web.Request) -> Any:
            form = await request.post()
            params = {k: v for k, v in form.items() if isinstance(v, str)}
            if not params.get("api_key") or not params.get("sign"):
                raise RestError(MISSING_PARAMETER)
            account = self.accounts.get(params["api_key"])
            if account is None:
                raise RestError(UNKNOWN_API_KEY)
            if not signing.verify(params, account.settings.secret):
                raise RestError(SIGNATURE_MISMATCH)
            return fn(account, params)

        return inner

    # ---- public --------------------------------------------------------------------------------
    def _symbol(self, params: Params) -> str:
        symbol = _require(params, "symbol")
        if symbol not in self.market:
            raise RestError(ILLEGAL_PARAMETER)
        return symbol

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def _ticker_body(self, symbol: str) -> dict[str, str]:
        exp = self.settings.exponent_prices
        t = self.market[symbol].ticker()
        return {
            k: format_decimal(v, exponent=exp)
            for k, v in (
                ("buy", t.buy),
                ("high", t.high),
                ("last", t.last),
                ("low", t.low),
                ("sell", t.sell),
                ("vol", t.vol),
            )
        }

    def _ticker(self, params: Params) -> Any:
        symbol = self._symbol(params)
        return {"date": str(self._now_ms() // 1000), "ticker": self._ticker_body(symbol)}

    def _tickers(self, params: Params) -> Any:
        return {
            "date": str(self._now_ms() // 1000),
            "tickers": [{"symbol": s, **self._ticker_body(s)} for s in self.market.symbols],
        }

    def _depth(self, params: Params) -> Any:
        symbol = self._symbol(params)
        size = _int(params, "size", default=200, lo=1, hi=200)
        bids, asks = self.market[symbol].book(size)
        return {"asks": [[p, a] for p, a in reversed(asks)], "bids": [[p, a] for p, a in bids]}

    def _trades(self, params: Params) -> Any:
        symbol = self._symbol(params)
        since = _int(params, "since", default=-1, lo=-1)
        trades = self.market[symbol].trades_since(None if since < 0 else since)
        return [
            {
                "date": t.ts_ms // 1000,
                "date_ms": t.ts_ms,
                "price": t.price,
                "amount": t.amount,
                "tid": t.tid,
                "type": t.side.value,
            }
            for t in trades
        ]

    def _kline(self, params: Params) -> Any:
        symbol = self._symbol(params)
        type_name = _require(params, "type")
        try:
            period = KlinePeriod.parse(type_name)
        except ValueError:
            raise RestError(ILLEGAL_PARAMETER) from None
        if period.rest_name != type_name:
            raise RestError(ILLEGAL_PARAMETER)
        size = _int(params, "size", default=2000, lo=1, hi=2000)
        since = _int(params, "since", default=-1, lo=-1)
        rows = self.market[symbol].kline_rows(period, since_ms=None if since < 0 else since, size=size)
        return [[r.ts_ms, r.open, r.high, r.low, r.close, r.volume] for r in rows]

    # ---- private -------------------------------------------------------------------------------
    def _userinfo(self, account: Account, params: Params) -> Any:
        cur = account.currencies()
        return {
            "result": True,
            "info": {
                "funds": {
                    "free": {c: format_decimal(account.free.get(c, Decimal(0))) for c in cur},
                    "freezed": {c: format_decimal(account.freezed.get(c, Decimal(0))) for c in cur},
                }
            },
        }

    def _wallet_info(self, account: Account, params: Params) -> Any:
        cur = account.currencies()
        return {
            "result": True,
            "info": {
                "funds": {
                    "free": {c: format_decimal(account.wallet_free.get(c, Decimal(0))) for c in cur},
                    "holds": {c: "0" for c in cur},
                }
            },
        }

    def _order_info(self, account: Account, params: Params) -> Any:
        symbol = self._symbol(params)
        order_id = _int(params, "order_id", lo=-1)
        if order_id == -1:
            orders = sorted(account.open_orders(symbol), key=lambda o: o.order_id)
        else:
            order = account.orders.get(order_id)
            if order is None or order.symbol != symbol:
                raise RestError(10009)
            orders = [order]
        return {"result": True, "orders": [wire.rest_order(o) for o in orders]}

    def _orders_info(self, account: Account, params: Params) -> Any:
        symbol = self._symbol(params)
        kind = _int(params, "type", lo=0, hi=1)
        raw_ids = _require(params, "order_id").split(",")
        if len(raw_ids) > 50:
            raise RestError(ILLEGAL_PARAMETER)
        try:
            ids = [int(x) for x in raw_ids]
        except ValueError:
            raise RestError(ILLEGAL_PARAMETER) from None
        out = []
        for oid in ids:
            order = account.orders.get(oid)
            if order is None or order.symbol != symbol or order.is_open != (kind == 0):
                continue
            out.append(wire.rest_order(order))
        return {"result": True, "orders": out}

    def _order_history(self, account: Account, params: Params) -> Any:
        symbol = self._symbol(params)
        status = _int(params, "status", lo=0, hi=1)
        page = _int(params, "current_page", lo=1)
        length = _int(params, "page_length", lo=1, hi=200)
        oldest = self._now_ms() - _TWO_DAYS_MS
        orders = [
            o
            for o in account.orders.values()
            if o.symbol == symbol and o.create_ms >= oldest and o.is_open == (status == 0)
        ]
        orders.sort(key=lambda o: (o.create_ms, o.order_id), reverse=True)
        chunk = orders[(page - 1) * length : page * length]
        body = []
        for o in chunk:
            row = wire.rest_order(o)
            if o.status is OrderStatus.CANCELLING:
                row["status"] = 4  # order_history.do documents 4 for "cancel in progress"
            body.append(row)
        return {
            "result": True,
            "current_page": page,
            "page_length": length,
            "total": len(orders),
            "orders": body,
        }

    def _trade(self, account: Account, params: Params) -> Any:
        symbol = self._symbol(params)
        try:
            order_type = OrderType(_require(params, "type"))
        except ValueError:
            raise RestError(ILLEGAL_PARAMETER) from None
        if order_type in (OrderType.BUY_MARKET, OrderType.SELL_MARKET):
            raise RestError(MARKET_ORDERS_PAUSED)
        price, amount = _decimal(params, "price"), _decimal(params, "amount")
        order = self.accounts.place(account, symbol, order_type, price, amount, self._now_ms())
        self._on_orders(account, [order])
        return {"result": True, "order_id": order.order_id}

    def _cancel_order(self, account: Account, params: Params) -> Any:
        symbol = self._symbol(params)
        raw = _require(params, "order_id")
        try:
            ids = [int(x) for x in raw.split(",")]
        except ValueError:
            raise RestError(ILLEGAL_PARAMETER) from None
        if len(ids) > 3:
            raise RestError(ILLEGAL_PARAMETER)
        done: list[int] = []
        failed: list[int] = []
        last_error = 10009
        for oid in ids:
            order = account.orders.get(oid)
            if order is None or order.symbol != symbol:
                failed.append(oid)
                continue
            try:
                self._on_orders(account, [account.cancel(oid)])
                done.append(oid)
            except AccountError as exc:
                failed.append(oid)
                last_error = exc.code
        if len(ids) == 1:
            if failed:
                raise RestError(last_error)
            return {"result": True, "order_id": str(ids[0])}
        return {"success": ",".join(map(str, done)), "error": ",".join(map(str, failed))}
