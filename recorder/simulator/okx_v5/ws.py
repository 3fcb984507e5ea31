"""The v5 WebSocket endpoints ``/ws/v5/public``, ``/ws/v5/business``, ``/ws/v5/private`` (PROTOCOL.md v5 §2).

One :class:`Connection` per client with an 8-hex ``connId``, its subscriptions
and an outgoing queue drained by one writer task (frames leave in queue order).
Text ``ping`` -> text ``pong``; the server closes with 4004 after
``idle_timeout`` s without traffic (§2.1); subscribe/unsubscribe/login requests
are answered per §2.2/§2.5 with v5 error codes (60012, 60013, 60018, 64001,
64002, 64003, 60011, 60014, 60019, 60031, 6000x, 60024).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import WSMsgType, web

from recorder.simulator.okx_v5.feed import BARS
from recorder.simulator.okx_v5.wire import sign
from recorder.simulator.truth import TruthFault, TruthPush

if TYPE_CHECKING:
    from recorder.simulator.okx_v5.account import Account
    from recorder.simulator.okx_v5.server import Simulator

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode

PUBLIC_CHANNELS = frozenset({"tickers", "books", "books5", "bbo-tbt", "books-l2-tbt", "books50-l2-tbt",
                             "trades", "instruments", "status"})  # fmt: skip
TBT_CHANNELS = frozenset({"books-l2-tbt", "books50-l2-tbt"})
BUSINESS_CHANNELS = frozenset({f"candle{b}" for b in BARS} | {"trades-all"})
# Real candle channels that are not modelled here (UTC+8 bars, 1s, weeks, months): answered 60018.
PRIVATE_CHANNELS = frozenset({"account", "orders"})
INST_CHANNELS = frozenset({"tickers", "books", "books5", "bbo-tbt", "books-l2-tbt", "books50-l2-tbt",
                           "trades", "trades-all"} | {f"candle{b}" for b in BARS})  # fmt: skip


@dataclass(slots=True)
class Outgoing:
    """One frame to send: a JSON object (or the text ``pong``) and its truth rows."""

    payload: Any
    truth: list[TruthPush] = field(default_factory=list)
    is_data: bool = False  # a market/account push (counts for faults.close_after_messages)
    drop: str | None = None  # send nothing, record this fault kind instead (a gap)


class Connection:
    """One client connection."""

    def __init__(self, conn_id: int, kind: str, ws: web.WebSocketResponse, request: web.Request,
                 seed: int) -> None:  # fmt: skip
        self.id = conn_id
        self.kind = kind  # public / business / private
        self.ws = ws
        self.request = request
        self.conn_hex = f"{zlib.crc32(f'{seed}:{conn_id}'.encode()):08x}"
        self.subs: dict[tuple[str, str], dict[str, str]] = {}  # (channel, instId or "") -> arg
        self.account: Account | None = None
        self.logged_in = False
        self.opened = time.monotonic()
        self.last_traffic = self.opened
        self.requests: deque[float] = deque()
        self.data_pushes = 0
        self.candle_last: dict[tuple[str, str], int] = {}  # (bar, instId) -> ts of the last candle pushed
        self.queue: asyncio.Queue[Outgoing | None] = asyncio.Queue()
        self.closing = False

    def enqueue(self, item: Outgoing) -> None:
        if not self.closing:
            self.queue.put_nowait(item)

    def subscribed(self, channel: str, inst_id: str = "") -> bool:
        return (channel, inst_id) in self.subs


def _truth_channel(channel: str, inst_id: str) -> str:
    return f"{channel}:{inst_id}" if inst_id else channel


class WsHub:
    """Every WebSocket connection of one v5 simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.connections: dict[int, Connection] = {}
        self._next_id = 0
        self._background: set[asyncio.Future[None]] = set()
        self.timers: list[asyncio.TimerHandle] = []  # notice closes, cancelled on stop

    # ---- lifecycle ------------------------------------------------------------------------------
    async def handle(self, request: web.Request, *, kind: str) -> web.WebSocketResponse:
        """aiohttp handler for one of the three URLs: serve one client until either side closes."""
        ws = web.WebSocketResponse(autoping=True, max_msg_size=64 * 1024, compress=True, timeout=2.0)
        await ws.prepare(request)
        self._next_id += 1
        conn = Connection(self._next_id, kind, ws, request, self.sim.settings.seed)
        self.connections[conn.id] = conn
        writer = asyncio.create_task(self._writer(conn))
        watchdog = asyncio.create_task(self._watchdog(conn))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self.on_text(conn, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self._error(conn, None, "60012", "Invalid request: binary frame")
        finally:
            self.connections.pop(conn.id, None)
            conn.closing = True
            conn.queue.put_nowait(None)
            for task in (watchdog, writer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return ws

    async def _watchdog(self, conn: Connection) -> None:
        """Close 4004 after ``idle_timeout`` s without traffic (not while stalled)."""
        idle = self.sim.settings.idle_timeout
        while True:
            now = time.monotonic()
            if self.sim.faults.stalled:
                conn.last_traffic = max(conn.last_traffic, now - idle / 2)
            elif now - conn.last_traffic >= idle:
                conn.closing = True
                await conn.ws.close(code=4004, message=b"No data received in 30s")
                return
            await asyncio.sleep(min(max(conn.last_traffic + idle - now, 0.005), 0.25))

    async def _writer(self, conn: Connection) -> None:
        sim = self.sim
        while True:
            item = await conn.queue.get()
            if item is None:
                return
            latency = sim.faults.settings.ws_latency
            if latency:
                await asyncio.sleep(latency)
            if sim.faults.stalled:
                continue  # a stalled server sends nothing, not even pongs
            if item.drop is not None:
                sim.truth.record_fault(TruthFault(conn.id, item.drop, 0, sim.clock_dt()))
                continue
            text = item.payload if isinstance(item.payload, str) else _encode(item.payload).decode()
            try:
                await conn.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return
            if item.payload != "pong" or sim.settings.pings_keep_alive:
                conn.last_traffic = time.monotonic()
            if item.truth and sim.truth.enabled:
                sent_at = sim.clock_dt()
                sim.truth.record(
                    TruthPush(p.connection_id, p.channel, p.data, p.ts_ms, sent_at, p.seq, p.bids, p.asks)
                    for p in item.truth
                )
            if item.is_data:
                conn.data_pushes += 1
                limit = sim.faults.settings.close_after_messages
                if limit is not None and conn.data_pushes >= limit:
                    self.abort(conn)
                    return

    def abort(self, conn: Connection) -> None:
        """Drop the TCP connection without a close frame."""
        conn.closing = True
        transport = conn.request.transport
        if transport is not None:
            transport.abort()

    async def close(self, conn: Connection, code: int, reason: str) -> None:
        conn.closing = True
        with contextlib.suppress(Exception):
            await conn.ws.close(code=code, message=reason.encode())

    # ---- sending --------------------------------------------------------------------------------
    def event(self, conn: Connection, obj: dict[str, Any]) -> None:
        """Queue a control event (ack, error, login, notice), recorded in the truth as ``event:<name>``."""
        obj["connId"] = conn.conn_hex
        now = self.sim.now_ms()
        push = TruthPush(conn.id, f"event:{obj['event']}", obj, now, self.sim.clock_dt())
        conn.enqueue(Outgoing(obj, [push]))

    def _error(self, conn: Connection, req_id: str | None, code: str, msg: str) -> None:
        obj: dict[str, Any] = {"event": "error", "code": code, "msg": msg}
        if req_id is not None:
            obj = {"id": req_id, **obj}
        self.event(conn, obj)

    def push(self, conn: Connection, arg: dict[str, str], data: list[Any], *, action: str | None = None,
             ts_ms: int, seq: int | None = None, book: tuple[Any, Any] | None = None,
             drop: str | None = None) -> None:  # fmt: skip
        """Queue a data push ``{"arg", ["action"], "data"}`` and its truth (one row per data item)."""
        obj: dict[str, Any] = {"arg": arg}
        if action is not None:
            obj["action"] = action
        obj["data"] = data
        channel = _truth_channel(arg["channel"], arg.get("instId", ""))
        sent_at = self.sim.clock_dt()
        bids, asks = book if book is not None else (None, None)
        truth = [TruthPush(conn.id, channel, d, ts_ms, sent_at, seq, bids, asks) for d in data]
        conn.enqueue(Outgoing(obj, truth, is_data=True, drop=drop))

    # ---- requests -------------------------------------------------------------------------------
    def on_text(self, conn: Connection, text: str) -> None:
        if text == "ping":
            if self.sim.settings.pings_keep_alive:
                conn.last_traffic = time.monotonic()
            conn.enqueue(Outgoing("pong", [TruthPush(conn.id, "pong", "pong", self.sim.now_ms(),
                                                     self.sim.clock_dt())]))  # fmt: skip
            return
        try:
            req = json.loads(text)
        except ValueError:
            # The real service echoes the request; a broken login would echo its passphrase and sign.
            echo = "<login request not echoed>" if "login" in text else text[:200]
            self._error(conn, None, "60012", f"Invalid request: {echo}")
            return
        if not isinstance(req, dict):
            self._error(conn, None, "60012", f"Invalid request: {text[:200]}")
            return
        req_id = req.get("id")
        req_id = str(req_id) if req_id is not None else None
        op = req.get("op")
        if op not in ("subscribe", "unsubscribe", "login"):
            self._error(
                conn,
                req_id,
                "60019" if isinstance(op, str) else "60012",
                f"Invalid op: op:{op}" if isinstance(op, str) else f"Invalid request: {text[:200]}",
            )
            return
        now = time.monotonic()
        while conn.requests and conn.requests[0] <= now - 3600:
            conn.requests.popleft()
        if len(conn.requests) >= self.sim.settings.ws_requests_per_hour:
            self._error(conn, req_id, "60014", "Requests too frequent.")
            return
        conn.requests.append(now)
        args = req.get("args")
        if not isinstance(args, list) or not args or not all(isinstance(a, dict) for a in args):
            self._error(conn, req_id, "60012", f"Invalid request: {text[:200]}")
            return
        if op == "login":
            self._login(conn, req_id, args[0])
            return
        for arg in args:
            if op == "subscribe":
                self._subscribe(conn, req_id, arg)
            else:
                self._unsubscribe(conn, req_id, arg)

    def _login(self, conn: Connection, req_id: str | None, arg: dict[str, Any]) -> None:
        """§2.5: sign = Base64(HMAC(secret, timestamp + "GET" + "/users/self/verify")), seconds timestamp."""
        if conn.logged_in:
            self._error(conn, req_id, "60031", "The WS login has already been done.")
            return
        key, pp, ts, sg = (str(arg.get(k, "")) for k in ("apiKey", "passphrase", "timestamp", "sign"))
        try:
            ts_s = float(ts)
        except ValueError:
            self._error(conn, req_id, "60004", f"Invalid timestamp: {ts[:40]}")
            return
        if abs(self.sim.now_ms() / 1000 - ts_s) > self.sim.settings.login_window:
            self._error(conn, req_id, "60006", "Timestamp request expired.")
            return
        account = self.sim.accounts.get(key)
        if account is None:
            self._error(conn, req_id, "60005", "Invalid apiKey.")
            return
        if pp != account.settings.passphrase:
            self._error(conn, req_id, "60024", "Wrong passphrase.")
            return
        if sg != sign(account.settings.secret, f"{ts}GET/users/self/verify"):
            self._error(conn, req_id, "60007", "Invalid sign.")
            return
        conn.logged_in = True
        conn.account = account
        obj: dict[str, Any] = {"event": "login", "code": "0", "msg": ""}
        if req_id is not None:
            obj = {"id": req_id, **obj}
        self.event(conn, obj)

    def _check(self, conn: Connection, arg: dict[str, Any]) -> tuple[str, str] | None:
        """None if ``arg`` may be subscribed on ``conn``, else ``(code, msg)``."""
        channel = arg.get("channel")
        inst_id = arg.get("instId", "")
        if not isinstance(channel, str) or not channel or not isinstance(inst_id, str):
            return "60013", f"Invalid args: {json.dumps(arg)[:200]}"
        what = f"channel:{channel}" + (f",instId:{inst_id}" if inst_id else "")
        wrong = (f"Wrong URL or {what} doesn't exist. Please use the correct URL, channel and parameters "
                 "referring to API document.")  # fmt: skip
        refused = self.sim.take_refusal(channel, inst_id)
        if refused is not None:
            return refused, wrong if refused == "60018" else f"Refused: {what}"
        if conn.kind == "public" and channel in BUSINESS_CHANNELS:
            return (
                "64001",
                "This channel has been migrated to the '/business' URL. Please subscribe using the new "
                f"URL. More details can refer to: {what}",
            )
        if conn.kind == "business" and channel in PUBLIC_CHANNELS:
            return (
                "64002",
                f'This channel is not supported by "business" URL. Please use "/public" URL. {what}',
            )
        if channel in PRIVATE_CHANNELS:
            if conn.kind != "private":
                return "60018", wrong
            if not conn.logged_in:
                return "60011", "Please log in."
            return None
        if conn.kind == "private" or (channel not in PUBLIC_CHANNELS and channel not in BUSINESS_CHANNELS):
            return "60018", wrong
        if channel in INST_CHANNELS and inst_id not in self.sim.feeds:
            return "60018", wrong
        if channel == "instruments" and arg.get("instType") != "SPOT":
            return "60018", wrong
        if channel in TBT_CHANNELS and not self.sim.settings.tbt_allowed:
            return "64003", "Your trading fee tier doesn't meet the requirement to access this channel"
        if channel == "books50-l2-tbt":
            return "60018", wrong  # not modelled (books-l2-tbt is, as a mirror of books)
        return None

    def _subscribe(self, conn: Connection, req_id: str | None, arg: dict[str, Any]) -> None:
        problem = self._check(conn, arg)
        if problem is not None:
            self._error(conn, req_id, *problem)
            return
        channel, inst_id = arg["channel"], arg.get("instId", "")
        clean = {k: str(v) for k, v in arg.items() if k in ("channel", "instId", "instType", "ccy")}
        ack: dict[str, Any] = {"event": "subscribe", "arg": clean}
        if req_id is not None:
            ack = {"id": req_id, **ack}
        self.event(conn, ack)
        conn.subs[(channel, inst_id)] = clean
        conn.candle_last.pop((channel, inst_id), None)
        self.sim.initial_push(conn, clean)

    def _unsubscribe(self, conn: Connection, req_id: str | None, arg: dict[str, Any]) -> None:
        channel, inst_id = arg.get("channel"), arg.get("instId", "")
        if not isinstance(channel, str) or (channel, inst_id) not in conn.subs:
            msg = f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist."
            self._error(conn, req_id, "60018", msg)
            return
        clean = conn.subs.pop((channel, inst_id))
        ack: dict[str, Any] = {"event": "unsubscribe", "arg": clean}
        if req_id is not None:
            ack = {"id": req_id, **ack}
        self.event(conn, ack)

    # ---- fan-out ---------------------------------------------------------------------------------
    def subscribers(self, channel: str, inst_id: str = "") -> list[Connection]:
        return [c for c in self.connections.values() if (channel, inst_id) in c.subs and not c.closing]

    def notice(self, *, close_after: float, code: int) -> list[Connection]:
        """Send the 64008 notice to public/private (and, if configured, business) connections."""
        kinds = {"public", "private"} | ({"business"} if self.sim.settings.notice_on_business else set())
        targets = [c for c in self.connections.values() if c.kind in kinds and not c.closing]
        msg = "The connection will soon be closed for a service upgrade. Please reconnect."
        for conn in targets:
            self.event(conn, {"event": "notice", "code": "64008", "msg": msg})
        loop = asyncio.get_running_loop()
        for conn in targets:
            self.timers.append(loop.call_later(close_after, self._close_later, conn, code))
        return targets

    def _close_later(self, conn: Connection, code: int) -> None:
        self.spawn(self.close(conn, code, "service upgrade"))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task kept until it ends."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
