"""The simulator process: WebSocket + REST servers on loopback around one market.

``async with Simulator(settings) as sim`` starts both servers (free ports by
default; with ``ws_port`` set and ``rest_port`` not, REST listens on ``ws_port + 1``)
and the market clock; ``sim.ws_url`` / ``sim.rest_url`` say where they
listen. :class:`SimulatorThread` runs the same in a background thread with its
own event loop, for synchronous code (tests, the demo). docs/simulator.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar

from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from recorder.errors import ConfigError
from recorder.records import OrderType
from recorder.simulator.accounts import Account, Accounts, SimOrder
from recorder.simulator.faults import Faults
from recorder.simulator.market import Market, StepResult
from recorder.simulator.rest import RestApi
from recorder.simulator.settings import SimulatorSettings
from recorder.simulator.thread import ThreadedSimulator
from recorder.simulator.truth import Truth
from recorder.simulator.ws import WsHub

T = TypeVar("T")
WS_PATHS = ("/ws/v1", "/websocket")


def rest_port_for(settings: SimulatorSettings) -> int:
    """The REST port: ``rest_port`` if set, else the WebSocket port + 1 if set, else 0 (a free port).

    Raises :class:`ConfigError` when ``ws_port`` + 1 is beyond 65535.
    """
    if settings.rest_port:
        return settings.rest_port
    if settings.ws_port:
        if settings.ws_port >= 65535:
            raise ConfigError("simulator: the REST port defaults to the WebSocket port + 1; "
                              "set rest_port (--rest-port) when ws_port is 65535")
        return settings.ws_port + 1
    return 0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Simulator:
    """The local OKEx v1 exchange. Use as ``async with Simulator(settings) as sim``.

    Attributes once started: ``ws_url``, ``rest_url``, ``market`` (the model),
    ``accounts``, ``truth`` (what was sent), ``faults`` (live switches).
    ``clock`` (default: real UTC time) stamps every event; it must return aware UTC datetimes.
    """

    def __init__(
        self, settings: SimulatorSettings | None = None, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.settings = settings or SimulatorSettings()
        self.clock = clock or _utc_now
        now_ms = self._now_ms()
        s = self.settings
        self.market = Market(s.symbols, seed=s.seed, depth=s.book_depth, now_ms=now_ms)
        self.accounts = Accounts(s.accounts, seed=s.seed)
        for account in self.accounts:
            if account.settings.seed_history:
                self.accounts.seed_history(account, self.market, now_ms)
        self.truth = Truth(memory=s.truth_memory, path=s.truth_path)
        self.faults = Faults(s.faults, seed=s.seed)
        self.ws = WsHub(s, self.market, self.accounts.get, self.truth, self.faults, self.clock)
        self.rest = RestApi(s, self.market, self.accounts, self.faults, self.clock, self._orders_changed)
        self._ws_server: Server | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.ws_port = 0
        self.rest_port = 0

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    @property
    def ws_url(self) -> str:
        """``ws://HOST:PORT/ws/v1`` (``/websocket`` is served too)."""
        return f"ws://{self.settings.host}:{self.ws_port}/ws/v1"

    @property
    def rest_url(self) -> str:
        """``http://HOST:PORT/api/v1`` (append ``/ticker.do`` etc.)."""
        return f"http://{self.settings.host}:{self.rest_port}/api/v1"

    @property
    def demo_account(self) -> Account:
        """The first configured account (the demo account by default)."""
        return next(iter(self.accounts))

    # ---- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start both servers and the market clock. Raises ConfigError if a port is taken."""
        s = self.settings
        rest_port = rest_port_for(s)
        try:
            self._ws_server = await serve(
                self.ws.handler,
                s.host,
                s.ws_port,
                process_request=self._check_path,
                compression=None,
                ping_interval=None,
                max_size=1 << 20,
                close_timeout=2,
            )
            self.ws_port = self._ws_server.sockets[0].getsockname()[1]
            self._runner = web.AppRunner(self.rest.app(), access_log=None, handle_signals=False)
            await self._runner.setup()
            site = web.TCPSite(self._runner, s.host, rest_port)
            await site.start()
        except OSError as exc:
            await self.stop()
            raise ConfigError(f"simulator cannot listen on {s.host} (WebSocket port {s.ws_port or 'any'}, "
                              f"REST port {rest_port or 'any'}): {exc.strerror or exc}") from None
        self.rest_port = self._runner.addresses[0][1]
        if s.updates_per_second > 0:
            for symbol in self.market.symbols:
                self._tasks.append(asyncio.create_task(self._tick_loop(symbol)))
        if s.account_activity:
            self._tasks.append(asyncio.create_task(self._activity_loop()))

    async def stop(self) -> None:
        """Stop the clock, close every connection and both servers. Idempotent."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._ws_server is not None:
            self._ws_server.close(close_connections=True)
            await self._ws_server.wait_closed()
            self._ws_server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.truth.close()

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] not in WS_PATHS:
            return connection.respond(404, "not found: use /ws/v1\n")
        return None

    # ---- the clock -----------------------------------------------------------------------------
    async def _tick_loop(self, symbol: str) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.settings.updates_per_second
        next_at = loop.time()
        while True:
            next_at += interval
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:
                next_at = loop.time()  # fell far behind: do not burst
            else:
                await asyncio.sleep(0)
            self.step(symbol)

    async def _activity_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.account_activity_interval)
            for account in self.accounts:
                orders = self.accounts.activity_step(account, self.market, self._now_ms())
                self._orders_changed(account, orders)

    def step(self, symbol: str) -> StepResult:
        """Advance ``symbol``'s market by one update now and push it (call from the loop's thread)."""
        result = self.market[symbol].step(self._now_ms())
        for trade in result.trades:
            for account in self.accounts:
                self._orders_changed(account, account.on_trade(symbol, trade))
        self.ws.broadcast(result)
        return result

    async def advance(self, steps: int = 1, symbol: str | None = None) -> list[StepResult]:
        """Step ``symbol`` (default every symbol) ``steps`` times, then let the writers run."""
        out = [self.step(sym) for _ in range(steps) for sym in ([symbol] if symbol else self.market.symbols)]
        await asyncio.sleep(0)
        return out

    def _orders_changed(self, account: Account, orders: list[SimOrder]) -> None:
        if orders:
            self.ws.push_account(account, [o.copy() for o in orders])

    # ---- test hooks ----------------------------------------------------------------------------
    def fill_order(
        self, order_id: int, amount: Decimal | str, price: Decimal | str | None = None
    ) -> SimOrder:
        """Fill ``amount`` of an open order (at its price unless ``price``), pushing order + balance."""
        account, _ = self.accounts.find_order(order_id)
        order = account.fill(order_id, Decimal(amount), None if price is None else Decimal(price))
        self._orders_changed(account, [order])
        return order.copy()

    def place_order(
        self,
        symbol: str,
        order_type: OrderType | str,
        price: Decimal | str,
        amount: Decimal | str,
        api_key: str | None = None,
    ) -> SimOrder:
        """Place a limit order for ``api_key`` (default: the demo account), pushing it."""
        account = self.accounts[api_key] if api_key else self.demo_account
        order = self.accounts.place(
            account, symbol, OrderType(order_type), Decimal(price), Decimal(amount), self._now_ms()
        )
        self._orders_changed(account, [order])
        return order.copy()

    def cancel_order(self, order_id: int) -> SimOrder:
        """Cancel an open order, pushing it."""
        account, _ = self.accounts.find_order(order_id)
        order = account.cancel(order_id)
        self._orders_changed(account, [order])
        return order.copy()

    def drop_connections(self, *, abrupt: bool = True) -> int:
        """Close every WebSocket connection now; returns how many."""
        return self.ws.drop_connections(abrupt=abrupt)

    def stall(self, seconds: float | None = None) -> None:
        """Stop pushing and answering pings for ``seconds`` (None: until ``faults.resume()``)."""
        self.faults.stall(seconds)

    def unban(self) -> None:
        """Lift REST IP bans and reset the rate-limit windows."""
        self.rest.unban()

    @property
    def connection_count(self) -> int:
        return len(self.ws.connections)


class SimulatorThread(ThreadedSimulator[Simulator]):
    """A :class:`Simulator` in a background thread with its own loop (sync context manager).

    Exposes the same attributes; the hooks (``fill_order``, ``place_order``,
    ``cancel_order``, ``drop_connections``, ``advance``, ``unban``) run inside the
    simulator's loop and are safe to call from any thread. ``faults`` and ``truth``
    are thread-safe themselves. The thread shell is :class:`ThreadedSimulator`.
    """

    thread_name = "okex-simulator"

    def __init__(
        self, settings: SimulatorSettings | None = None, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        super().__init__()
        self.settings = settings or SimulatorSettings()
        self._clock = clock

    def _make(self) -> Simulator:
        return Simulator(self.settings, clock=self._clock)

    def fill_order(
        self, order_id: int, amount: Decimal | str, price: Decimal | str | None = None
    ) -> SimOrder:
        return self.call(self.sim.fill_order, order_id, amount, price)

    def place_order(
        self,
        symbol: str,
        order_type: OrderType | str,
        price: Decimal | str,
        amount: Decimal | str,
        api_key: str | None = None,
    ) -> SimOrder:
        return self.call(self.sim.place_order, symbol, order_type, price, amount, api_key)

    def cancel_order(self, order_id: int) -> SimOrder:
        return self.call(self.sim.cancel_order, order_id)

    def drop_connections(self, *, abrupt: bool = True) -> int:
        return self.call(self.sim.drop_connections, abrupt=abrupt)

    def advance(self, steps: int = 1, symbol: str | None = None) -> list[StepResult]:
        return self.run(self.sim.advance(steps, symbol))

    def unban(self) -> None:
        self.call(self.sim.unban)
