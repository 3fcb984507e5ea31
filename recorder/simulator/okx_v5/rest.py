"""The v5 REST API ``/api/v5/...`` (PROTOCOL.md v5 §4-§7), a thin aiohttp shell.

Order of checks for every request: a 429 storm (fault), the REST faults shared
with v1 (latency, 5xx -> 50001, errors -> 50026), the endpoint, then for private
endpoints the signature checks in the order of §10 (50103/50104/50106/50107
missing header, 50112 malformed timestamp, 50102 expired, 50111 unknown key,
50101 live key with ``x-simulated-trading: 1`` or the reverse, 50105 passphrase,
50113 signature) with HTTP 401 and no ``data`` key, then the
endpoint's rate limit (§7.1; HTTP 429 ``{"msg":"Too Many Requests","code":"50011"}``),
then the endpoint. Success: ``{"code":"0","msg":"","data":[...]}``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from recorder.simulator.okx_v5.account import DAY_MS, Account, AccountError, Fill, Order
from recorder.simulator.okx_v5.feed import BARS
from recorder.simulator.okx_v5.wire import parse_iso_ms, sign
from recorder.simulator.truth import TruthPush

if TYPE_CHECKING:
    from recorder.simulator.okx_v5.server import Simulator

_encode = msgspec.json.Encoder().encode
Params = dict[str, str]


class V5Error(Exception):
    """A v5 error answer: ``code`` (string), ``msg``, HTTP ``status``; ``data`` False = no data key."""

    def __init__(self, code: str, msg: str, status: int = 200, *, data: bool = True) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg, self.status, self.data = code, msg, status, data


def _auth(code: str, msg: str) -> V5Error:
    return V5Error(code, msg, 401, data=False)


def _required(params: Params, name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise V5Error("50014", f"Parameter {name} can not be empty.", 400)
    return value


def _limit(params: Params, default: int, hi: int) -> int:
    raw = params.get("limit", "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise V5Error("51000", "Parameter limit error", 400) from None
    if not 1 <= value <= hi:
        raise V5Error("51000", "Parameter limit error", 400)
    return value


def _int_param(params: Params, name: str) -> int | None:
    raw = params.get(name, "")
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise V5Error("51000", f"Parameter {name} error", 400) from None


def page(
    items: Sequence[Any], key: Callable[[Any], int], params: Params, *, limit: int, nearest: bool = True
) -> list[Any]:
    """Cursor pagination of newest-first ``items`` (§5.4): ``after`` = older than, ``before`` = newer than.

    With ``before`` alone and ``nearest`` the page holds the ``limit`` records nearest to the cursor
    (polling forwards with ``before = newest stored`` never skips any); otherwise the latest ones
    (§4.3/§4.4: "before alone returns the latest"). Pages are newest first either way.
    """
    after, before = _int_param(params, "after"), _int_param(params, "before")
    out = [i for i in items if (after is None or key(i) < after) and (before is None or key(i) > before)]
    if before is not None and after is None and nearest:
        return out[-limit:]
    return out[:limit]


class _Window:
    def __init__(self) -> None:
        self.times: deque[float] = deque()


class RestApi:
    """The ``/api/v5`` routes of one simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._windows: dict[tuple[str, str], _Window] = {}
        self.requests = 0
        self.public: dict[str, Callable[[Params], list[Any]]] = {
            "public/time": self._time,
            "public/instruments": self._instruments,
            "system/status": self._status,
            "market/ticker": self._ticker,
            "market/tickers": self._tickers,
            "market/books": self._books,
            "market/trades": self._trades,
            "market/history-trades": self._history_trades,
            "market/candles": self._candles,
            "market/history-candles": self._history_candles,
        }
        self.private: dict[str, Callable[[Account, Params], list[Any]]] = {
            "asset/currencies": self._currencies,
            "account/balance": self._balance,
            "trade/orders-pending": self._orders_pending,
            "trade/orders-history": lambda a, p: self._orders_finished(a, p, 7 * DAY_MS),
            "trade/orders-history-archive": lambda a, p: self._orders_finished(a, p, 90 * DAY_MS),
            "trade/order": self._order,
            "trade/fills": lambda a, p: self._fills(a, p, 3 * DAY_MS),
            "trade/fills-history": lambda a, p: self._fills(a, p, 90 * DAY_MS, inst_type_required=True),
        }

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/v5/{path:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one REST request; the answer is recorded in the truth as ``rest:<path>``."""
        sim = self.sim
        path = request.match_info["path"]
        self.requests += 1
        try:
            body = await self._answer(request, path)
            status = 200
        except V5Error as exc:
            body = {"code": exc.code, "msg": exc.msg, "data": []}
            if not exc.data:
                body = {"msg": exc.msg, "code": exc.code}
            status = exc.status
        if sim.truth.enabled:
            now = sim.now_ms()
            sim.truth.record([TruthPush(0, f"rest:{path}", body, now, sim.clock_dt())])
        return web.Response(body=_encode(body), status=status, content_type="application/json")

    async def _answer(self, request: web.Request, path: str) -> dict[str, Any]:
        sim = self.sim
        storm = sim.take_storm()
        if storm == 429:
            raise V5Error("50011", "Too Many Requests", 429, data=False)
        if storm is not None:
            msg = "Rate limit reached. Please refer to API documentation and throttle requests accordingly."
            raise V5Error("50011", msg, storm)
        latency = sim.faults.settings.rest_latency
        if latency:
            await asyncio.sleep(latency)
        fault = sim.faults.take_rest_fault()
        if fault is not None:
            if fault >= 500:
                raise V5Error("50001", "Service temporarily unavailable. Please try again later.", 503)
            raise V5Error("50026", "System error. Try again later.", 500)
        public, private = self.public.get(path), self.private.get(path)
        if public is None and private is None:
            raise V5Error("404", f"Not Found: /api/v5/{path}", 404, data=False)
        if request.method != "GET":
            raise V5Error("405", "Method Not Allowed", 405, data=False)
        params: Params = {k: v for k, v in request.query.items()}
        if private is not None:
            account = self._authenticate(request)
            self._rate(path, account.settings.api_key)
            try:
                data = private(account, params)
            except AccountError as exc:
                raise V5Error(exc.code, exc.msg) from None
        else:
            assert public is not None
            self._rate(path, request.remote or "")
            data = public(params)
        return {"code": "0", "msg": "", "data": data}

    def _authenticate(self, request: web.Request) -> Account:
        h = request.headers
        key, pp = h.get("OK-ACCESS-KEY", ""), h.get("OK-ACCESS-PASSPHRASE", "")
        sg, ts = h.get("OK-ACCESS-SIGN", ""), h.get("OK-ACCESS-TIMESTAMP", "")
        if not key:
            raise _auth("50103", 'Request header "OK-ACCESS-KEY" can not be empty.')
        if not pp:
            raise _auth("50104", 'Request header "OK-ACCESS-PASSPHRASE" can not be empty.')
        if not sg:
            raise _auth("50106", 'Request header "OK-ACCESS-SIGN" can not be empty.')
        if not ts:
            raise _auth("50107", 'Request header "OK-ACCESS-TIMESTAMP" can not be empty.')
        ts_ms = parse_iso_ms(ts)
        if ts_ms is None:
            raise _auth("50112", 'Invalid "OK-ACCESS-TIMESTAMP".')
        if abs(self.sim.now_ms() - ts_ms) > self.sim.settings.clock_window * 1000:
            raise _auth("50102", "Timestamp request expired.")
        account = self.sim.accounts.get(key)
        if account is None:
            raise _auth("50111", 'Invalid "OK-ACCESS-KEY".')
        if (h.get("x-simulated-trading", "0") == "1") != self.sim.settings.demo_trading:
            raise _auth("50101", "APIKey does not match current environment.")
        if pp != account.settings.passphrase:
            raise _auth("50105", 'Invalid "OK-ACCESS-PASSPHRASE".')
        prehash = ts + request.method.upper() + request.raw_path
        if sg != sign(account.settings.secret, prehash):
            raise _auth("50113", "Invalid Sign")
        return account

    def _rate(self, path: str, who: str) -> None:
        limit = self.sim.settings.rate_limits.get(path)
        if limit is None:
            return
        w = self._windows.setdefault((path, who), _Window())
        now = time.monotonic()
        while w.times and w.times[0] <= now - self.sim.settings.rate_window:
            w.times.popleft()
        if len(w.times) >= limit:
            raise V5Error("50011", "Too Many Requests", 429, data=False)
        w.times.append(now)

    def reset_limits(self) -> None:
        self._windows.clear()

    # ---- public --------------------------------------------------------------------------------
    def _feed(self, params: Params) -> Any:
        inst_id = _required(params, "instId")
        feed = self.sim.feeds.get(inst_id)
        if feed is None:
            raise V5Error("51001", "Instrument ID does not exist")
        return feed

    def _time(self, params: Params) -> list[Any]:
        return [{"ts": str(self.sim.now_ms())}]

    def _instruments(self, params: Params) -> list[Any]:
        inst_type = _required(params, "instType")
        if inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise V5Error("51000", "Parameter instType error", 400)
        if inst_type != "SPOT":
            return []
        items = [f.instrument() for f in self.sim.feeds.values()]
        inst_id = params.get("instId")
        return [i for i in items if not inst_id or i["instId"] == inst_id]

    def _status(self, params: Params) -> list[Any]:
        state = params.get("state")
        return [dict(i) for i in self.sim.status_items if not state or i["state"] == state]

    def _ticker(self, params: Params) -> list[Any]:
        return [self._feed(params).ticker(self.sim.now_ms())]

    def _tickers(self, params: Params) -> list[Any]:
        inst_type = _required(params, "instType")
        if inst_type != "SPOT":
            return []
        now = self.sim.now_ms()
        return [f.ticker(now) for f in self.sim.feeds.values()]

    def _books(self, params: Params) -> list[Any]:
        feed = self._feed(params)
        raw = params.get("sz", "")
        try:
            depth = int(raw) if raw else 1
        except ValueError:
            raise V5Error("51000", "Parameter sz error", 400) from None
        if not 1 <= depth <= 400:
            raise V5Error("51000", "Parameter sz error", 400)
        bids, asks = feed.levels(depth)
        return [{"asks": asks, "bids": bids, "ts": str(self.sim.now_ms()), "seqId": feed.seq_id}]

    def _trades(self, params: Params) -> list[Any]:
        feed = self._feed(params)
        limit = _limit(params, 100, 500)
        return [feed.trade_all_item(t) for t in reversed(feed.market.trades)][:limit]

    def _history_trades(self, params: Params) -> list[Any]:
        feed = self._feed(params)
        limit = _limit(params, 100, 100)
        if params.get("type", "1") != "1":
            raise V5Error("51000", "Parameter type error", 400)
        trades = list(reversed(feed.market.trades))
        chosen = page(trades, lambda t: t.tid, params, limit=limit, nearest=False)
        return [feed.trade_all_item(t) for t in chosen]

    def _candles(self, params: Params, *, history: bool = False) -> list[Any]:
        feed = self._feed(params)
        bar = params.get("bar") or "1m"
        if bar not in BARS:
            raise V5Error("51000", "Parameter bar error", 400)
        limit = _limit(params, 100, 100 if history else 300)
        rows = feed.candle_rows(bar, self.sim.now_ms())
        if not history:
            rows = rows[:1440]
        return page(rows, lambda r: int(r[0]), params, limit=limit, nearest=False)

    def _history_candles(self, params: Params) -> list[Any]:
        return self._candles(params, history=True)

    # ---- private -------------------------------------------------------------------------------
    def _currencies(self, account: Account, params: Params) -> list[Any]:
        ccys = sorted({c for f in self.sim.feeds for c in f.split("-")})
        wanted = {c for c in params.get("ccy", "").split(",") if c}
        return [{"ccy": c, "name": c, "chain": f"{c}-{c}", "canDep": True, "canWd": True,
                 "canInternal": True, "minWd": "0.001", "maxWd": "1000000", "wdTickSz": "8",
                 "minFee": "0", "maxFee": "0", "fee": "0", "mainNet": True, "logoLink": "",
                 "minDep": "0.00000001", "needTag": False}
                for c in ccys if not wanted or c in wanted]  # fmt: skip

    def _balance(self, account: Account, params: Params) -> list[Any]:
        wanted = {c for c in params.get("ccy", "").split(",") if c} or None
        if wanted is not None and len(wanted) > 20:
            raise V5Error("51000", "Parameter ccy error", 400)
        return [account.balance(self.sim.now_ms(), self.sim.usd_price, wanted)]

    @staticmethod
    def _filter_orders(orders: list[Order], params: Params) -> list[Order]:
        inst_type = params.get("instType")
        if inst_type and inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise V5Error("51000", "Parameter instType error", 400)
        if inst_type and inst_type != "SPOT":
            return []
        inst_id, state = params.get("instId"), params.get("state")
        ord_types = {t for t in params.get("ordType", "").split(",") if t}
        begin, end = _int_param(params, "begin"), _int_param(params, "end")
        return [o for o in orders
                if (not inst_id or o.inst_id == inst_id) and (not state or o.state == state)
                and (not ord_types or o.ord_type in ord_types)
                and (begin is None or o.c_time >= begin) and (end is None or o.c_time <= end)]  # fmt: skip

    @property
    def _nearest(self) -> bool:
        return self.sim.settings.before_page == "nearest"

    def _orders_pending(self, account: Account, params: Params) -> list[Any]:
        orders = self._filter_orders(account.open_orders(), params)
        limit = _limit(params, 100, 100)
        return [
            o.wire() for o in page(orders, lambda o: o.ord_id, params, limit=limit, nearest=self._nearest)
        ]

    def _orders_finished(self, account: Account, params: Params, window_ms: int) -> list[Any]:
        _required(params, "instType")
        orders = self._filter_orders(account.finished_orders(self.sim.now_ms(), window_ms), params)
        limit = _limit(params, 100, 100)
        return [
            o.wire() for o in page(orders, lambda o: o.ord_id, params, limit=limit, nearest=self._nearest)
        ]

    def _order(self, account: Account, params: Params) -> list[Any]:
        _required(params, "instId")
        raw = params.get("ordId", "")
        if not raw:
            raise V5Error("50014", "Parameter ordId can not be empty.", 400)
        try:
            order = account.get(int(raw))
        except ValueError:
            raise V5Error("51000", "Parameter ordId error", 400) from None
        if order.inst_id != params["instId"]:
            raise V5Error("51603", "Order does not exist")
        return [order.wire()]

    def _fills(self, account: Account, params: Params, window_ms: int, *,
               inst_type_required: bool = False) -> list[Any]:  # fmt: skip
        if inst_type_required:
            _required(params, "instType")
        inst_type = params.get("instType")
        if inst_type and inst_type != "SPOT":
            return []
        inst_id, ord_id = params.get("instId"), params.get("ordId")
        begin, end = _int_param(params, "begin"), _int_param(params, "end")
        fills: list[Fill] = [
            f for f in account.recent_fills(self.sim.now_ms(), window_ms)
            if (not inst_id or f.inst_id == inst_id) and (not ord_id or str(f.ord_id) == ord_id)
            and (begin is None or f.ts >= begin) and (end is None or f.ts <= end)
        ]  # fmt: skip
        limit = _limit(params, 100, 100)
        return [
            f.wire() for f in page(fills, lambda f: f.bill_id, params, limit=limit, nearest=self._nearest)
        ]
