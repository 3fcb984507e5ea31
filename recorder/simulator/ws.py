"""The WebSocket endpoint (PROTOCOL.md "WebSocket"), a thin shell around the market.

One :class:`Connection` per client: its subscriptions, its compression switch, its
logged-in account and an outgoing queue drained by one writer task, so that the
order of frames on a connection is the order in which they were queued.
:class:`WsHub` handles client requests and fans market steps out to subscribers.
Error acks use the WebSocket table (docs/simulator.md "Error acks").
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import itertools
import json
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from recorder.errors import ChannelError
from recorder.records import ChannelKind, KlinePeriod
from recorder.simulator import wire
from recorder.simulator.accounts import Account, SimOrder
from recorder.simulator.faults import Faults
from recorder.simulator.market import Market, StepResult, format_decimal
from recorder.simulator.settings import SimulatorSettings
from recorder.simulator.truth import Truth, TruthFault, TruthPush
from recorder.venues.okex_v1 import signing
from recorder.venues.okex_v1.channels import Channel, parse_channel

log = logging.getLogger(__name__)

# WebSocket error codes (error-codes.csv, transport websocket) -- docs/simulator.md "Error acks".
WS_MISSING_PARAMETER = 10000
WS_BAD_LOGIN = 10005
WS_CHANNEL_UNAVAILABLE = 10015
WS_AUTH_REQUIRED = 10017
WS_BAD_DATA_FORMAT = 20101
WS_BAD_EVENT = 20103
WS_BAD_JSON = 20107

_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class _Outgoing:
    payload: Any  # a list of objects, or the pong object
    truth: list[TruthPush] = field(default_factory=list)
    is_data: bool = False  # a market/account push (counts for close_after_messages)


class Connection:
    """One client connection's state."""

    def __init__(self, conn_id: int, ws: ServerConnection, *, compress: bool) -> None:
        self.id = conn_id
        self.ws = ws
        self.subs: set[str] = set()
        self.compress = compress
        self.account: Account | None = None
        self.opened = time.monotonic()
        self.last_ping = self.opened
        self.data_pushes = 0
        self.last_top: dict[str, Any] = {}  # depth_Y channel -> the (bids, asks) last sent
        self.queue: asyncio.Queue[_Outgoing | None] = asyncio.Queue()
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)

    def deflate(self, text: bytes) -> bytes:
        """Raw DEFLATE, full flush: each frame inflates on its own or as part of one stream."""
        return self._deflate.compress(text) + self._deflate.flush(zlib.Z_FULL_FLUSH)

    def enqueue(self, item: _Outgoing) -> None:
        self.queue.put_nowait(item)


def _ack(channel: str) -> list[dict[str, Any]]:
    return [{"binary": 0, "channel": "addChannel", "data": {"result": True, "channel": channel}}]


def _error(channel: str, code: int) -> list[dict[str, Any]]:
    return [{"binary": 0, "channel": channel, "success": False, "errorcode": code}]


def _parse_request(raw: str | bytes) -> Any:
    """JSON, or the single-quoted Python-literal form of the official examples; ValueError if neither."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        return json.loads(text)
    except ValueError:
        pass
    stripped = text.strip()
    if stripped[:1] in "{[" and len(stripped) < 65536:
        try:
            return ast.literal_eval(stripped)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
    raise ValueError("not JSON")


class WsHub:
    """All WebSocket connections of one simulator: requests in, pushes out."""

    def __init__(
        self,
        settings: SimulatorSettings,
        market: Market,
        accounts_lookup: Callable[[str], Account | None],
        truth: Truth,
        faults: Faults,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.market = market
        self._account = accounts_lookup
        self.truth = truth
        self.faults = faults
        self.clock = clock
        self.connections: dict[int, Connection] = {}
        self._ids = itertools.count(1)
        self._exp = settings.exponent_prices

    # ---- connection lifecycle ------------------------------------------------------------------
    async def handler(self, ws: ServerConnection) -> None:
        """websockets handler: serve one client until it or the simulator closes."""
        conn = Connection(next(self._ids), ws, compress=self.settings.compress_always)
        self.connections[conn.id] = conn
        writer = asyncio.create_task(self._writer(conn))
        watchdog = asyncio.create_task(self._watchdog(conn))
        try:
            async for message in ws:
                self.on_message(conn, message)
        except ConnectionClosed:
            pass
        finally:
            self.connections.pop(conn.id, None)
            conn.queue.put_nowait(None)
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _watchdog(self, conn: Connection) -> None:
        """Close on ping timeout (unless stalled) or by the close_every_seconds fault."""
        while True:
            now = time.monotonic()
            every = self.faults.settings.close_every_seconds
            if every is not None and now - conn.opened >= every:
                await conn.ws.close(1011, "fault: connection lifetime over")
                return
            if self.faults.stalled:
                conn.last_ping = max(conn.last_ping, now - self.settings.ping_timeout / 2)
            elif now - conn.last_ping >= self.settings.ping_timeout:
                await conn.ws.close(1000, "no ping")
                return
            deadline = conn.last_ping + self.settings.ping_timeout - now
            if every is not None:
                deadline = min(deadline, conn.opened + every - now)
            await asyncio.sleep(min(max(deadline, 0.005), 0.2))

    async def _writer(self, conn: Connection) -> None:
        while True:
            item = await conn.queue.get()
            if item is None:
                return
            latency = self.faults.settings.ws_latency
            if latency:
                await asyncio.sleep(latency)
            if self.faults.stalled:
                continue  # a stalled server sends nothing, not even pongs
            text = _encode(item.payload)
            try:
                if item.is_data:
                    kind = self.faults.take_frame_fault()
                    if kind is not None:
                        broken = self.faults.broken_frame(kind, text, compress=conn.compress)
                        await conn.ws.send(broken)
                        self.truth.record_fault(TruthFault(conn.id, kind.value, len(broken), self.clock()))
                await conn.ws.send(conn.deflate(text) if conn.compress else text.decode("utf-8"))
            except ConnectionClosed:
                return
            if item.truth and self.truth.enabled:
                sent_at = self.clock()
                self.truth.record(
                    TruthPush(p.connection_id, p.channel, p.data, p.ts_ms, sent_at, p.seq, p.bids, p.asks)
                    for p in item.truth
                )
            if item.is_data:
                conn.data_pushes += 1
                limit = self.faults.settings.close_after_messages
                if limit is not None and conn.data_pushes >= limit:
                    await conn.ws.close(1011, "fault: message limit reached")
                    return

    def drop_connections(self, *, abrupt: bool = True) -> int:
        """Close every connection now (abruptly: no close frame). Returns how many."""
        conns = list(self.connections.values())
        for conn in conns:
            if abrupt:
                conn.ws.transport.abort()
            else:
                asyncio.get_running_loop().create_task(conn.ws.close(1001, "going away"))
        return len(conns)

    # ---- requests ------------------------------------------------------------------------------
    def _send(self, conn: Connection, payload: Any, *, channel: str | None = None) -> None:
        truth: list[TruthPush] = []
        if isinstance(payload, list) and self.truth.enabled:
            now = self.clock()
            ms = int(now.timestamp() * 1000)
            truth = [TruthPush(conn.id, obj.get("channel", ""), obj.get("data"), ms, now) for obj in payload]
        conn.enqueue(_Outgoing(payload, truth))

    def on_message(self, conn: Connection, raw: str | bytes) -> None:
        """Handle one client frame: ping, addChannel/removeChannel, login (one object or a list)."""
        try:
            request = _parse_request(raw)
        except ValueError:
            self._send(conn, _error("", WS_BAD_JSON))
            return
        items = request if isinstance(request, list) else [request]
        for item in items:
            if not isinstance(item, dict):
                self._send(conn, _error("", WS_BAD_DATA_FORMAT))
                continue
            self._on_request(conn, item)

    def _on_request(self, conn: Connection, req: dict[str, Any]) -> None:
        event = req.get("event")
        if event == "ping":
            conn.last_ping = time.monotonic()
            conn.enqueue(_Outgoing({"event": "pong"}))
            return
        if str(req.get("binary", "0")) in ("1", "True", "true"):
            conn.compress = True
        if event == "login":
            self._login(conn, req.get("parameters"))
        elif event in ("addChannel", "removeChannel"):
            channel = req.get("channel")
            if not isinstance(channel, str) or not channel:
                self._send(conn, _error(str(event), WS_MISSING_PARAMETER))
            elif event == "addChannel":
                self._subscribe(conn, channel)
            else:
                conn.subs.discard(channel)
                self._send(
                    conn,
                    [{"binary": 0, "channel": "removeChannel", "data": {"result": True, "channel": channel}}],
                )
        else:
            name = event if isinstance(event, str) else ""
            self._send(conn, _error(name, WS_BAD_EVENT))

    def _login(self, conn: Connection, params: Any) -> None:
        if not isinstance(params, dict) or not params.get("api_key") or not params.get("sign"):
            self._send(conn, _error("login", WS_MISSING_PARAMETER))
            return
        api_key = str(params["api_key"])
        account = self._account(api_key)
        if account is None or not signing.verify(
            {"api_key": api_key, "sign": str(params["sign"])}, account.settings.secret
        ):
            self._send(conn, _error("login", WS_BAD_LOGIN))
            return
        conn.account = account
        for symbol in self.market.symbols:
            conn.subs.add(f"ok_sub_spot_{symbol}_order")
            conn.subs.add(f"ok_sub_spot_{symbol}_balance")
        self._send(conn, [{"channel": "login", "data": {"result": True}}])

    def _subscribe(self, conn: Connection, name: str) -> None:
        try:
            channel = parse_channel(name)
        except ChannelError:
            self._send(conn, _error(name, WS_CHANNEL_UNAVAILABLE))
            return
        if channel.symbol not in self.market:
            self._send(conn, _error(name, WS_CHANNEL_UNAVAILABLE))
            return
        if channel.kind in (ChannelKind.ORDER, ChannelKind.BALANCE) and conn.account is None:
            self._send(conn, _error(name, WS_AUTH_REQUIRED))
            return
        conn.subs.add(name)
        self._send(conn, _ack(name))
        self._initial_push(conn, channel)

    def _initial_push(self, conn: Connection, channel: Channel) -> None:
        """Right after the ack: the full book (depth, depth_Y) or the current ticker."""
        sm = self.market[channel.symbol]
        ts = int(self.clock().timestamp() * 1000)
        name = channel.name
        if channel.kind is ChannelKind.DEPTH:
            bids, asks = sm.book()
            data = wire.ws_book(bids, asks, ts, exponent=self._exp)
            book = self._truth_book(bids, asks)
            push = TruthPush(conn.id, name, data, ts, self.clock(), sm.seq, *book)
        elif channel.kind.full_depth is not None:
            bids, asks = sm.book(channel.kind.full_depth)
            conn.last_top[name] = (bids, asks)
            data = wire.ws_book(bids, asks, ts, exponent=self._exp)
            push = TruthPush(conn.id, name, data, ts, self.clock(), sm.seq)
        elif channel.kind is ChannelKind.TICKER:
            data = wire.ws_ticker(sm.ticker(), ts, exponent=self._exp)
            push = TruthPush(conn.id, name, data, ts, self.clock(), sm.seq)
        else:
            return
        conn.enqueue(_Outgoing([{"channel": name, "data": data}], [push], is_data=True))

    def _truth_book(
        self, bids: Iterable[tuple[Any, Any]], asks: Iterable[tuple[Any, Any]]
    ) -> tuple[Any, Any]:
        if not self.truth.enabled:
            return None, None
        exp = self._exp
        return (
            tuple((format_decimal(p, exponent=exp), format_decimal(a, exponent=exp)) for p, a in bids),
            tuple((format_decimal(p, exponent=exp), format_decimal(a, exponent=exp)) for p, a in asks),
        )

    # ---- fan-out -------------------------------------------------------------------------------
    def broadcast(self, step: StepResult) -> None:
        """Push one market step to every subscriber: only the channels that changed."""
        if not self.connections:
            return
        symbol, ts, exp = step.symbol, step.ts_ms, self._exp
        sm = self.market[symbol]
        prefix = f"ok_sub_spot_{symbol}_"
        wanted = {ch for c in self.connections.values() for ch in c.subs if ch.startswith(prefix)}
        objects: dict[str, Any] = {}
        depth_book: tuple[Any, Any] = (None, None)
        if step.ticker_changed and prefix + "ticker" in wanted:
            objects[prefix + "ticker"] = wire.ws_ticker(sm.ticker(), ts, exponent=exp)
        if step.changes and prefix + "depth" in wanted:
            objects[prefix + "depth"] = wire.ws_depth_changes(step.changes, ts, exponent=exp)
            depth_book = self._truth_book(*sm.book())
        tops: dict[str, Any] = {}
        if any(prefix + f"depth_{y}" in wanted for y in (5, 10, 20)):
            all_bids, all_asks = sm.book()
            for y in (5, 10, 20):
                if prefix + f"depth_{y}" in wanted:
                    tops[prefix + f"depth_{y}"] = (all_bids[:y], all_asks[:y])
        if step.trades:
            if prefix + "deals" in wanted:
                objects[prefix + "deals"] = wire.ws_deals(step.trades, exponent=exp)
            for period in KlinePeriod.v1_periods():
                name = prefix + f"kline_{period.value}"
                if name in wanted:
                    rows = sm.kline_rows(period, size=1)
                    objects[name] = wire.ws_kline(rows[-1], exponent=exp)
        if not objects and not tops:
            return
        now = self.clock()
        for conn in list(self.connections.values()):
            mine = [(ch, d) for ch, d in objects.items() if ch in conn.subs]
            for ch, top in tops.items():
                if ch in conn.subs and conn.last_top.get(ch) != top:
                    conn.last_top[ch] = top
                    mine.append((ch, wire.ws_book(top[0], top[1], ts, exponent=exp)))
            if not mine:
                continue
            truth = (
                [
                    TruthPush(
                        conn.id,
                        ch,
                        d,
                        ts,
                        now,
                        step.seq,
                        *(depth_book if ch == prefix + "depth" else (None, None)),
                    )
                    for ch, d in mine
                ]
                if self.truth.enabled
                else []
            )
            conn.enqueue(_Outgoing([{"channel": ch, "data": d} for ch, d in mine], truth, is_data=True))

    def push_account(self, account: Account, orders: Iterable[SimOrder]) -> None:
        """Order and balance pushes for every connection logged in as ``account``."""
        orders = list(orders)
        if not orders:
            return
        now = self.clock()
        ts = int(now.timestamp() * 1000)
        for conn in list(self.connections.values()):
            if conn.account is not account:
                continue
            objs: list[tuple[str, Any]] = []
            for order in orders:
                objs.append((f"ok_sub_spot_{order.symbol}_order", wire.ws_order(order)))
            for symbol in dict.fromkeys(o.symbol for o in orders):
                objs.append((f"ok_sub_spot_{symbol}_balance", wire.ws_balance(account, symbol)))
            objs = [(ch, d) for ch, d in objs if ch in conn.subs]
            if objs:
                truth = [TruthPush(conn.id, ch, d, ts, now) for ch, d in objs]
                conn.enqueue(_Outgoing([{"channel": ch, "data": d} for ch, d in objs], truth, is_data=True))


def utc_ms(dt: datetime | None = None) -> int:
    """Milliseconds since the epoch of ``dt`` (default now, UTC)."""
    return int((dt or datetime.now(UTC)).timestamp() * 1000)
