"""The OKX v5 simulator: REST + the three WebSocket URLs on one loopback port (docs/simulator.md).

``async with Simulator(V5Settings()) as sim`` starts the server (a free port by
default) and the market clock. ``sim.rest_url`` is the REST base (append
``/api/v5/...``, like ``https://www.okx.com``); ``sim.public_url``,
``sim.business_url`` and ``sim.private_url`` are the WebSocket URLs
(``/ws/v5/public`` etc.). The market model is the v1 simulator's
(:mod:`recorder.simulator.market`) at 400 levels; ``sim.truth`` records every
frame and REST answer sent (:mod:`recorder.simulator.truth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from aiohttp import web

from recorder.errors import ConfigError
from recorder.records import KlinePeriod
from recorder.simulator.faults import Faults
from recorder.simulator.market import Market, StepResult, period_start
from recorder.simulator.okx_v5.account import Accounts, Order
from recorder.simulator.okx_v5.feed import BARS, BOOK_DEPTH, InstFeed
from recorder.simulator.okx_v5.rest import RestApi
from recorder.simulator.okx_v5.settings import V5Settings
from recorder.simulator.okx_v5.wire import inst_to_symbol
from recorder.simulator.okx_v5.ws import Connection, WsHub
from recorder.simulator.settings import FaultSettings
from recorder.simulator.thread import ThreadedSimulator
from recorder.simulator.truth import DepthBook, Truth

T = TypeVar("T")
WS_PATHS = {"/ws/v5/public": "public", "/ws/v5/business": "business", "/ws/v5/private": "private"}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Simulator:
    """The local OKX v5 exchange. Use as ``async with Simulator(settings) as sim``.

    Attributes: ``settings``, ``market`` (the shared model, v1 symbols), ``feeds`` (instId ->
    :class:`InstFeed`), ``accounts``, ``truth``, ``faults`` (the v1 switches: stall, latency, REST 5xx,
    close_after_messages), ``status_items`` (``/system/status``). ``clock`` (default: real UTC time)
    stamps every event; the exchange's own time is ``clock() + clock_skew_ms``.
    """

    def __init__(self, settings: V5Settings | None = None, *, clock: Callable[[], datetime] | None = None
                 ) -> None:  # fmt: skip
        self.settings = s = settings or V5Settings()
        self.clock = clock or _utc_now
        self.clock_skew_ms = s.clock_skew_ms
        now = self.now_ms()
        symbols = [inst_to_symbol(i) for i in s.instruments]
        self.market = Market(symbols, seed=s.seed, depth=BOOK_DEPTH, now_ms=now)
        self.feeds: dict[str, InstFeed] = {
            inst: InstFeed(inst, self.market[inst_to_symbol(inst)], seed=s.seed) for inst in s.instruments
        }
        for feed in self.feeds.values():
            feed.last_book_ms = now
            feed.top_changed()
        self.accounts = Accounts(s.accounts)
        prices = {inst: f.market.mid() for inst, f in self.feeds.items()}
        for account in self.accounts:
            if account.settings.seed_history:
                account.seed_history(s.seed, now, prices)
        self.truth = Truth(memory=s.truth_memory, path=s.truth_path)
        self.faults = Faults(FaultSettings(), seed=s.seed)
        self.status_items: list[dict[str, str]] = []
        self.ws = WsHub(self)
        self.rest = RestApi(self)
        self._gaps: dict[str, int] = {}
        self._bad_checksums: dict[str, int] = {}
        self._refusals: dict[tuple[str, str], list[Any]] = {}
        self._storm_requests = 0
        self._storm_until = 0.0
        self._storm_status = 429
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0

    # ---- time ----------------------------------------------------------------------------------
    def now_ms(self) -> int:
        """The exchange's time in Unix ms (the clock plus the configured skew)."""
        return int(self.clock().timestamp() * 1000) + self.clock_skew_ms

    def clock_dt(self) -> datetime:
        return self.clock() + timedelta(milliseconds=self.clock_skew_ms)

    def set_clock_skew(self, ms: int) -> None:
        """Fault: the exchange clock runs ``ms`` ahead (negative: behind) of real time."""
        self.clock_skew_ms = int(ms)

    # ---- urls ----------------------------------------------------------------------------------
    @property
    def rest_url(self) -> str:
        """``http://HOST:PORT`` (the REST base; paths are ``/api/v5/...``)."""
        return f"http://{self.settings.host}:{self.port}"

    @property
    def public_url(self) -> str:
        return f"ws://{self.settings.host}:{self.port}/ws/v5/public"

    @property
    def business_url(self) -> str:
        return f"ws://{self.settings.host}:{self.port}/ws/v5/business"

    @property
    def private_url(self) -> str:
        return f"ws://{self.settings.host}:{self.port}/ws/v5/private"

    @property
    def demo_account(self) -> Any:
        """The first configured account (the demo account by default)."""
        return next(iter(self.accounts))

    # ---- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen and start the market clock. Raises ConfigError if the port is taken."""
        app = web.Application()
        for path, kind in WS_PATHS.items():
            app.router.add_get(path, functools.partial(self.ws.handle, kind=kind))
        self.rest.routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.settings.host, self.settings.port).start()
        except OSError as exc:
            await self.stop()
            raise ConfigError(f"v5 simulator cannot listen on {self.settings.host}: {exc.strerror or exc}"
                              ) from None  # fmt: skip
        self.port = self._runner.addresses[0][1]
        if self.settings.updates_per_second > 0:
            for inst in self.feeds:
                self._tasks.append(asyncio.create_task(self._tick_loop(inst)))
        self._tasks.append(asyncio.create_task(self._periodic()))

    async def stop(self) -> None:
        """Stop the clock, close every connection and the server. Idempotent."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for timer in self.ws.timers:
            timer.cancel()
        conns = list(self.ws.connections.values())
        await asyncio.gather(*(self.ws.close(c, 1001, "simulator stopping") for c in conns))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.truth.close()

    async def _tick_loop(self, inst_id: str) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.settings.updates_per_second
        next_at = loop.time()
        while True:
            next_at += interval
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:
                next_at = loop.time()
            else:
                await asyncio.sleep(0)
            self.step(inst_id)

    async def _periodic(self) -> None:
        """Book heartbeats (§3.2 rule 4) and candle pushes every ``candle_interval`` s."""
        s = self.settings
        interval = min(s.candle_interval, 1.0)
        last_candles = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = self.now_ms()
            for feed in self.feeds.values():
                if now - feed.last_book_ms >= s.book_heartbeat * 1000:
                    self._push_books_heartbeat(feed, now)
            if time.monotonic() - last_candles >= s.candle_interval - 1e-3:
                last_candles = time.monotonic()
                self.push_candles()

    # ---- the market ----------------------------------------------------------------------------
    def step(self, inst_id: str) -> StepResult:
        """Advance ``inst_id``'s market by one update now and push what changed."""
        feed = self.feeds[inst_id]
        now = self.now_ms()
        result = feed.market.step(now)
        crc = self.settings.checksum == "crc32"
        update = feed.update(result, crc=crc)
        if update is not None:
            self._push_books(feed, update, now)
        c5, c1 = feed.top_changed()
        if c5:
            for conn in self.ws.subscribers("books5", inst_id):
                self.ws.push(conn, {"channel": "books5", "instId": inst_id}, [feed.books5(now)], ts_ms=now,
                             seq=feed.seq_id)  # fmt: skip
        if c1:
            for conn in self.ws.subscribers("bbo-tbt", inst_id):
                self.ws.push(conn, {"channel": "bbo-tbt", "instId": inst_id}, [feed.bbo(now)], ts_ms=now,
                             seq=feed.seq_id)  # fmt: skip
        if result.ticker_changed:
            subs = self.ws.subscribers("tickers", inst_id)
            if subs:
                ticker = feed.ticker(now)
                for conn in subs:
                    self.ws.push(conn, {"channel": "tickers", "instId": inst_id}, [ticker], ts_ms=now)
        if result.trades:
            subs = self.ws.subscribers("trades", inst_id)
            for item in feed.trade_items(result.trades) if subs else []:
                for conn in subs:
                    arg = {"channel": "trades", "instId": inst_id}
                    self.ws.push(conn, arg, [item], ts_ms=int(item["ts"]))
            for conn in self.ws.subscribers("trades-all", inst_id):
                for t in result.trades:
                    self.ws.push(conn, {"channel": "trades-all", "instId": inst_id}, [feed.trade_all_item(t)],
                                 ts_ms=t.ts_ms)  # fmt: skip
        return result

    def _book_channels(self) -> tuple[str, ...]:
        return ("books", "books-l2-tbt") if self.settings.tbt_allowed else ("books",)

    def _push_books(self, feed: InstFeed, update: dict[str, Any], now: int) -> None:
        for channel in self._book_channels():
            subs = self.ws.subscribers(channel, feed.inst_id)
            if not subs:
                continue
            book = feed.book_strings()
            gap = self._take(self._gaps, feed.inst_id)
            bad = self._take(self._bad_checksums, feed.inst_id)
            data = update
            if bad:
                data = dict(update, checksum=(update["checksum"] ^ 0x5A5A5A5) or 0x5A5A5A5)
            for conn in subs:
                self.ws.push(conn, {"channel": channel, "instId": feed.inst_id}, [data], action="update",
                             ts_ms=now, seq=feed.seq_id, book=book,
                             drop="sequence_gap" if gap else None)  # fmt: skip

    def _push_books_heartbeat(self, feed: InstFeed, now: int) -> None:
        data = feed.heartbeat(now, crc=self.settings.checksum == "crc32")
        book = None
        for channel in self._book_channels():
            for conn in self.ws.subscribers(channel, feed.inst_id):
                book = book or feed.book_strings()
                self.ws.push(conn, {"channel": channel, "instId": feed.inst_id}, [data], action="update",
                             ts_ms=now, seq=feed.seq_id, book=book)  # fmt: skip
        for conn in self.ws.subscribers("books5", feed.inst_id):
            self.ws.push(conn, {"channel": "books5", "instId": feed.inst_id}, [feed.books5(now)], ts_ms=now,
                         seq=feed.seq_id)  # fmt: skip
        for conn in self.ws.subscribers("bbo-tbt", feed.inst_id):
            self.ws.push(conn, {"channel": "bbo-tbt", "instId": feed.inst_id}, [feed.bbo(now)], ts_ms=now,
                         seq=feed.seq_id)  # fmt: skip

    def push_candles(self) -> None:
        """Push the forming candle of every candle subscription (and the closed one, ``confirm`` "1")."""
        now = self.now_ms()
        for conn in list(self.ws.connections.values()):
            for (channel, inst_id), arg in list(conn.subs.items()):
                if not channel.startswith("candle"):
                    continue
                self._push_candle(conn, arg, channel[6:], inst_id, now)

    def _push_candle(self, conn: Connection, arg: dict[str, str], bar: str, inst_id: str, now: int) -> None:
        feed = self.feeds[inst_id]
        start = period_start(now, BARS[bar])
        key = (arg["channel"], inst_id)
        previous = conn.candle_last.get(key)
        if previous is not None and previous != start:
            row = feed.candle_row(bar, previous, now)  # closed: pushed once more, confirm "1"
            if row is not None:
                self.ws.push(conn, arg, [row], ts_ms=previous)
        conn.candle_last[key] = start
        row = feed.candle_row(bar, start, now)  # None while the new bucket has no trade
        if row is not None:
            self.ws.push(conn, arg, [row], ts_ms=start)

    def initial_push(self, conn: Connection, arg: dict[str, str]) -> None:
        """What a new subscription gets first: book snapshots, the ticker, instruments, the balance."""
        channel, inst_id = arg["channel"], arg.get("instId", "")
        now = self.now_ms()
        feed = self.feeds.get(inst_id)
        if feed is not None and channel in ("books", "books-l2-tbt"):
            snap = feed.snapshot(now, crc=self.settings.checksum == "crc32")
            self.ws.push(conn, arg, [snap], action="snapshot", ts_ms=now, seq=feed.seq_id,
                         book=feed.book_strings())  # fmt: skip
        elif feed is not None and channel == "books5":
            self.ws.push(conn, arg, [feed.books5(now)], ts_ms=now, seq=feed.seq_id)
        elif feed is not None and channel == "bbo-tbt":
            self.ws.push(conn, arg, [feed.bbo(now)], ts_ms=now, seq=feed.seq_id)
        elif feed is not None and channel == "tickers":
            self.ws.push(conn, arg, [feed.ticker(now)], ts_ms=now)
        elif feed is not None and channel.startswith("candle"):
            self._push_candle(conn, arg, channel[6:], inst_id, now)
        elif channel == "instruments":
            self.ws.push(conn, arg, [f.instrument() for f in self.feeds.values()], ts_ms=now)
        elif channel == "account" and conn.account is not None:
            self.ws.push(conn, arg, [conn.account.balance(now, self.usd_price)], ts_ms=now)

    def usd_price(self, ccy: str) -> Decimal | None:
        """The USD(T) price of ``ccy`` from the ``<ccy>-USDT`` market's last price; None if unknown."""
        if ccy in ("USDT", "USD", "USDC"):
            return Decimal(1)
        feed = self.feeds.get(f"{ccy}-USDT")
        return feed.market.last if feed is not None else None

    # ---- faults and hooks ----------------------------------------------------------------------
    @staticmethod
    def _take(counter: dict[str, int], key: str) -> bool:
        n = counter.get(key, 0)
        if n <= 0:
            return False
        counter[key] = n - 1
        return True

    def inject_gap(self, inst_id: str, count: int = 1) -> None:
        """Fault: do not send the next ``count`` books updates of ``inst_id`` (every subscriber sees a
        ``prevSeqId`` that does not link); recorded in the truth as ``sequence_gap`` faults."""
        self._gaps[inst_id] = self._gaps.get(inst_id, 0) + count

    def inject_bad_checksum(self, inst_id: str, count: int = 1) -> None:
        """Fault: the next ``count`` books updates of ``inst_id`` carry a wrong non-zero checksum."""
        self._bad_checksums[inst_id] = self._bad_checksums.get(inst_id, 0) + count

    def reset_sequence(self, inst_id: str, seq_id: int = 3) -> None:
        """The next books update of ``inst_id`` restarts the sequence at ``seq_id`` (§3.2 rule 5)."""
        self.feeds[inst_id].pending_reset = seq_id

    def refuse_subscription(self, channel: str, inst_id: str = "", code: str = "60018", count: int = 1
                            ) -> None:  # fmt: skip
        """Fault: the next ``count`` subscribes of (``channel``, ``inst_id``) fail with error ``code``."""
        self._refusals[(channel, inst_id)] = [code, count]

    def take_refusal(self, channel: str, inst_id: str) -> str | None:
        entry = self._refusals.get((channel, inst_id))
        if not entry or entry[1] <= 0:
            return None
        entry[1] -= 1
        return str(entry[0])

    def rate_limit_storm(self, *, requests: int = 0, seconds: float = 0.0, http_status: int = 429) -> None:
        """Fault: answer the next ``requests`` REST requests (or all for ``seconds``) with code 50011:
        HTTP 429 ``{"msg":"Too Many Requests","code":"50011"}``, or with ``http_status=200`` the
        HTTP 200 form ``{"code":"50011","msg":"Rate limit reached...","data":[]}`` (§7.2)."""
        self._storm_requests += requests
        self._storm_status = http_status
        if seconds:
            self._storm_until = max(self._storm_until, time.monotonic() + seconds)

    def take_storm(self) -> int | None:
        """The HTTP status of a storm answer for this request, or None."""
        if time.monotonic() < self._storm_until:
            return self._storm_status
        if self._storm_requests > 0:
            self._storm_requests -= 1
            return self._storm_status
        return None

    def set_instrument_state(self, inst_id: str, state: str) -> None:
        """Change an instrument's ``state`` (``live``, ``suspend``, ``preopen``, ``test``, §4.5): REST
        shows it and ``instruments`` subscribers get the changed instrument. Books keep running."""
        feed = self.feeds[inst_id]
        feed.state = state
        now = self.now_ms()
        for conn in self.ws.subscribers("instruments"):
            self.ws.push(conn, conn.subs[("instruments", "")], [feed.instrument()], ts_ms=now)

    def notice(self, close_after: float | None = None) -> int:
        """Planned maintenance: send the 64008 notice (§2.6) now, list the upgrade as ``ongoing`` in
        ``/system/status``, and close those connections ``close_after`` s later (default
        ``notice_close_after``) with ``notice_close_code``. Returns how many connections were told."""
        after = self.settings.notice_close_after if close_after is None else close_after
        now = self.now_ms()
        self.status_items.append({
            "title": "WebSocket service upgrade", "state": "ongoing", "begin": str(now),
            "end": str(now + int(after * 1000) + 60_000), "preOpenBegin": "", "href": "", "serviceType": "0",
            "system": "unified", "scheDesc": "", "maintType": "1", "env": "1",
        })  # fmt: skip
        for conn in self.ws.subscribers("status"):
            self.ws.push(conn, conn.subs[("status", "")], [dict(self.status_items[-1])], ts_ms=now)
        return len(self.ws.notice(close_after=after, code=self.settings.notice_close_code))

    def stall(self, seconds: float | None = None) -> None:
        """Stop pushing and answering pings for ``seconds`` (None: until ``faults.resume()``)."""
        self.faults.stall(seconds)

    def drop_connections(self, *, abrupt: bool = True, kind: str | None = None) -> int:
        """Close every WebSocket connection (of ``kind`` public/business/private) now; returns how many."""
        conns = [c for c in self.ws.connections.values() if kind is None or c.kind == kind]
        for conn in conns:
            if abrupt:
                self.ws.abort(conn)
            else:
                self.ws.spawn(self.ws.close(conn, 4006, "abnormal disconnection"))
        return len(conns)

    async def advance(self, steps: int = 1, inst_id: str | None = None) -> list[StepResult]:
        """Step ``inst_id`` (default every instrument) ``steps`` times, then let the writers run."""
        out = [self.step(i) for _ in range(steps) for i in ([inst_id] if inst_id else self.feeds)]
        await asyncio.sleep(0)
        return out

    def reset_rate_limits(self) -> None:
        """Forget every REST rate-limit window."""
        self.rest.reset_limits()

    # ---- account hooks (push to logged-in private connections) ------------------------------
    def _account_changed(self, api_key: str, order: Order) -> None:
        account = self.accounts.get(api_key)
        now = self.now_ms()
        for conn in list(self.ws.connections.values()):
            if conn.account is not account or account is None:
                continue
            for (channel, _), arg in list(conn.subs.items()):
                if channel == "orders" and arg.get("instType") in ("SPOT", "ANY", None):
                    self.ws.push(conn, arg, [order.wire()], ts_ms=now)
                elif channel == "account":
                    self.ws.push(conn, arg, [account.balance(now, self.usd_price)], ts_ms=now)

    def place_order(self, inst_id: str, side: str, px: Decimal | str, sz: Decimal | str,
                    api_key: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Place a limit order for ``api_key`` (default: the demo account); returns its wire object."""
        account = self.accounts.get(api_key) if api_key else self.demo_account
        if account is None:
            raise KeyError(api_key)
        order = account.place(inst_id, side, Decimal(px), Decimal(sz), self.now_ms())
        self._account_changed(account.settings.api_key, order)
        return order.wire()

    def fill_order(self, ord_id: int | str, sz: Decimal | str, px: Decimal | str | None = None
                   ) -> dict[str, Any]:  # fmt: skip
        """Fill ``sz`` of an open order (at its price unless ``px``); returns the order's wire object."""
        account = self._owner(int(ord_id))
        order = account.fill(int(ord_id), Decimal(sz), self.now_ms(), None if px is None else Decimal(px))
        self._account_changed(account.settings.api_key, order)
        return order.wire()

    def cancel_order(self, ord_id: int | str) -> dict[str, Any]:
        """Cancel an open order; returns its wire object."""
        account = self._owner(int(ord_id))
        order = account.cancel(int(ord_id), self.now_ms())
        self._account_changed(account.settings.api_key, order)
        return order.wire()

    def _owner(self, ord_id: int) -> Any:
        for account in self.accounts:
            if ord_id in account.orders:
                return account
        raise KeyError(ord_id)

    # ---- truth helpers -------------------------------------------------------------------------
    def book_truth(self, inst_id: str, channel: str = "books", *, connection_id: int | None = None
                   ) -> list[DepthBook]:  # fmt: skip
        """For every books message sent for ``inst_id`` (snapshot, update, heartbeat), in send order:
        the exchange's full book after it (``(px, sz)`` strings; ``seq`` is the message's seqId)."""
        return [
            DepthBook(p.ts_ms, p.bids or (), p.asks or (), p.connection_id, p.seq)
            for p in self.truth.pushes(f"{channel}:{inst_id}", connection_id=connection_id)
        ]

    def kline_period(self, bar: str) -> KlinePeriod:
        """The model's period behind a v5 ``bar`` (``1m``, ``1H``, ``1Dutc``...). KeyError if not modelled."""
        return BARS[bar]

    @property
    def connection_count(self) -> int:
        return len(self.ws.connections)


class SimulatorThread(ThreadedSimulator[Simulator]):
    """A v5 :class:`Simulator` in a background thread with its own loop (sync context manager).

    For synchronous code (the demo, sync tests). Attributes are the simulator's (``rest_url``,
    ``public_url``, ``truth``, ...); :meth:`call` runs a hook inside the simulator's loop, e.g.
    ``thread.call(thread.sim.inject_gap, "BTC-USDT")``; :meth:`advance` steps the market. The
    thread shell is :class:`~recorder.simulator.thread.ThreadedSimulator`.
    """

    thread_name = "okx-v5-simulator"

    def __init__(self, settings: V5Settings | None = None, *, clock: Callable[[], datetime] | None = None
                 ) -> None:  # fmt: skip
        super().__init__()
        self.settings = settings or V5Settings()
        self._clock = clock

    def _make(self) -> Simulator:
        return Simulator(self.settings, clock=self._clock)

    def advance(self, steps: int = 1, inst_id: str | None = None) -> list[StepResult]:
        return self.run(self.sim.advance(steps, inst_id))
