"""Error paths driven by the simulator's limits and faults, asserted on records and feed events;
restart resumes from the SQL database; the secret appears nowhere."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import pytest

from recorder.credentials import Credentials
from recorder.poller.ratelimit import RateLimiter
from recorder.poller.service import PollerOutcome
from recorder.poller.state import load_order_states
from recorder.records import Balance, FeedEvent, FeedEventKind, OrderStatus
from recorder.simulator import FaultSettings, RateLimits, Simulator
from recorder.storage.sql import SqlStore
from tests.poller.conftest import (
    API_KEY,
    SECRET,
    SYMBOLS,
    RecordingSink,
    balance_view,
    balances_of,
    latest_orders,
    make_poller,
    order_view,
    poller_settings,
    servable_orders,
    sim_settings,
    status_paths,
    wait_until,
)

_OPEN = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


def _assert_all_orders_exact(sim: Simulator, sink: RecordingSink, symbols: tuple[str, ...] = SYMBOLS) -> None:
    truth = servable_orders(sim, symbols)
    assert {k: order_view(v) for k, v in latest_orders(sink.records).items()} == {
        k: order_view(v) for k, v in truth.items()
    }
    assert status_paths(sink.records) == {oid: [(None, o.status)] for oid, o in truth.items()}


# --- rate limits --------------------------------------------------------------------------------


@pytest.mark.faults
async def test_the_client_limiter_keeps_a_sync_under_the_documented_limits() -> None:
    """Many pages at the documented limits: never a 10001, and no slower than the limit requires."""
    async with Simulator(sim_settings()) as sim:
        for i in range(300):
            sim.place_order("btc_usdt", "buy", f"{500 + i}", "0.01", api_key=API_KEY)
        sink = RecordingSink()
        settings = poller_settings(symbols=("btc_usdt",), page_length=10)
        async with make_poller(sim, sink, settings) as poller:
            start = time.monotonic()
            await poller.sync_orders()
            elapsed = time.monotonic() - start
        _assert_all_orders_exact(sim, sink, ("btc_usdt",))
        truth = servable_orders(sim, ("btc_usdt",))
        open_n = sum(1 for o in truth.values() if o.status in _OPEN)
        history_calls = -(-open_n // 10) + max(-(-(len(truth) - open_n) // 10), 1)
        calls = 1 + history_calls
        bound = ((history_calls - 1) // 20) * 2.0  # order_history.do: 20 per 2 s
        assert sink.events(FeedEventKind.RATE_LIMITED) == []
        assert elapsed >= bound - 0.1
        assert elapsed < bound + 5.0
        print(f"\nsynced {len(servable_orders(sim, ('btc_usdt',)))} orders in {calls} calls: "
              f"{elapsed:.2f} s (rate-limit bound {bound:.1f} s)")


@pytest.mark.faults
async def test_10001_storm_backs_off_and_still_records_everything(caplog: pytest.LogCaptureFixture) -> None:
    tiny = RateLimits(endpoint_requests=1, account_requests=1, endpoint_window=0.3)
    async with Simulator(sim_settings(rate_limits=tiny)) as sim:
        sink = RecordingSink()
        # the poller's own limiter believes the documented limits: the simulator answers 10001
        async with make_poller(sim, sink, poller_settings(page_length=3)) as poller:
            with caplog.at_level(logging.WARNING, "recorder.poller"):
                await poller.sync_orders()
                await poller.poll_balances()
        _assert_all_orders_exact(sim, sink)
        assert balance_view(sink.of(Balance)) == balances_of(sim)
        limited = sink.events(FeedEventKind.RATE_LIMITED)
        assert limited and all(e.ts_end == e.ts_start and e.connection == "rest" for e in limited)
        assert all("error 10001" in e.detail for e in limited)
        assert "OKEx error 10001" in caplog.text


# --- bans ---------------------------------------------------------------------------------------


@pytest.mark.faults
async def test_http_403_stops_every_call_for_the_ban_then_resumes_by_itself() -> None:
    low = RateLimits(ip_requests=3, ip_window=300.0, ban_seconds=3600.0)
    async with Simulator(sim_settings(rate_limits=low)) as sim:
        seen_at: dict[str, int] = {}

        def on_batch(records: object) -> None:
            for r in records:  # type: ignore[attr-defined]
                if isinstance(r, FeedEvent) and r.kind is FeedEventKind.BAN:
                    seen_at["open" if r.ts_end is None else "closed"] = sim.rest.requests
                    if r.ts_end is None:
                        sim.unban()  # the exchange forgives; the poller must still wait ban_seconds

        sink = RecordingSink(on_batch)
        settings = poller_settings(ban_seconds=0.5)
        limiter = RateLimiter.from_settings(settings)
        async with make_poller(sim, sink, settings, limiter=limiter) as poller:
            await poller.sync_orders()
        _assert_all_orders_exact(sim, sink)
        bans = sink.events(FeedEventKind.BAN)
        opened, closed = bans[0], bans[1]
        assert opened.event_id == closed.event_id and opened.ts_end is None
        assert closed.ts_end is not None and closed.ts_end - closed.ts_start >= timedelta(seconds=0.5)
        assert "403" in closed.detail
        # nothing was sent during the ban but the resumed calls: order_info.do and the first
        # order_history.do page are in flight together, so one or both resume
        assert seen_at["closed"] - seen_at["open"] in (1, 2)


@pytest.mark.faults
async def test_a_ban_blocks_other_users_of_the_shared_limiter() -> None:
    limiter = RateLimiter()
    limiter.ban(0.3)
    start = time.monotonic()
    await limiter.acquire("ticker.do")
    assert time.monotonic() - start >= 0.29


# --- server trouble -----------------------------------------------------------------------------


@pytest.mark.faults
@pytest.mark.parametrize("fault", [{"rest_error_rate": 0.5}, {"rest_5xx_rate": 0.5}])
async def test_10002_and_5xx_bursts_are_retried_until_the_data_is_exact(
    fault: dict[str, float], caplog: pytest.LogCaptureFixture
) -> None:
    async with Simulator(sim_settings(faults=FaultSettings(**fault))) as sim:  # type: ignore[arg-type]
        sink = RecordingSink()
        async with make_poller(sim, sink, poller_settings(page_length=4)) as poller:
            with caplog.at_level(logging.WARNING, "recorder.poller"):
                await poller.sync_orders()
                await poller.poll_balances()
        _assert_all_orders_exact(sim, sink)
        assert balance_view(sink.of(Balance)) == balances_of(sim)
        if "rest_error_rate" in fault:
            assert "OKEx error 10002: System error" in caplog.text or "OKEx error 10002" in caplog.text
        else:
            assert "HTTP 50" in caplog.text


@pytest.mark.faults
async def test_timeouts_are_retried_and_recover_when_the_latency_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Simulator(sim_settings(faults=FaultSettings(rest_latency=0.5))) as sim:
        sink = RecordingSink()
        async with make_poller(sim, sink, poller_settings(request_timeout=0.1)) as poller:
            with caplog.at_level(logging.WARNING, "recorder.poller"):
                task = asyncio.create_task(poller.sync_orders())
                await wait_until(lambda: caplog.text.count("timed out") >= 2)
                sim.faults.update(rest_latency=0.0)
                await asyncio.wait_for(task, 20)
        _assert_all_orders_exact(sim, sink)


# --- credentials --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("creds", "code", "cause"),
    [
        (Credentials(API_KEY, "WRONG-" + SECRET[6:]), 10007, "the secret key is wrong"),
        (Credentials("unknown-key-0000-0000-000000000000", SECRET), 10006, "api key is not known"),
    ],
)
async def test_rejected_credentials_stop_polling_with_one_clear_message(
    simulator: Simulator, caplog: pytest.LogCaptureFixture, creds: Credentials, code: int, cause: str
) -> None:
    sink = RecordingSink()
    poller = make_poller(simulator, sink, credentials=creds)
    beside = asyncio.create_task(asyncio.sleep(3600))  # stands for the collector
    with caplog.at_level(logging.DEBUG):
        outcome = await asyncio.wait_for(poller.run(asyncio.Event()), 10)
    assert outcome is PollerOutcome.AUTH_FAILED
    assert poller.auth_error is not None and poller.auth_error.code == code
    errors = [
        r for r in caplog.records if r.name.startswith("recorder.poller") and r.levelno >= logging.ERROR
    ]
    assert len(errors) == 1
    assert f"error {code}" in errors[0].getMessage() and cause in errors[0].getMessage()
    (event,) = sink.events(FeedEventKind.AUTH_FAILURE)
    assert event.ts_end == event.ts_start and str(code) in event.detail
    assert sink.of(Balance) == [] and latest_orders(sink.records) == {}
    requests = simulator.rest.requests
    await asyncio.sleep(0.3)  # longer than every interval: nothing more is sent
    assert simulator.rest.requests == requests
    assert not beside.done()
    beside.cancel()
    assert SECRET not in caplog.text


# --- restart ------------------------------------------------------------------------------------


class _Crash(Exception):
    """Stands for the process dying mid-history."""


async def test_a_restart_mid_history_resumes_without_gaps_or_duplicates(
    simulator: Simulator, migrated_sqlite_url: str
) -> None:
    store = SqlStore(migrated_sqlite_url)
    try:
        batches = {"n": 0}

        def crash_after_three_pages(records: object) -> None:
            batches["n"] += 1
            if batches["n"] > 3:
                raise _Crash

        first = RecordingSink(lambda rs: (crash_after_three_pages(rs), store.write_batch(rs)))
        settings = poller_settings(page_length=2)
        async with make_poller(simulator, first, settings) as poller:
            with pytest.raises(_Crash):
                await poller.sync_orders()
        stored_before = load_order_states(store.engine)
        assert 0 < len(stored_before) < len(servable_orders(simulator))

        # while the poller is down, one stored open order fills and one new order appears
        account = simulator.accounts[API_KEY]
        was_open = next(oid for oid, s in stored_before.items() if s.status is OrderStatus.OPEN)
        simulator.fill_order(was_open, account.orders[was_open].amount)
        simulator.place_order("ltc_btc", "sell", "0.9", "1", api_key=API_KEY)

        second = RecordingSink(store.write_batch)
        async with make_poller(simulator, second, settings, state_url=migrated_sqlite_url) as poller:
            await poller.load_known_orders(migrated_sqlite_url)
            await poller.sync_orders()

        # nothing handed over twice: the second run emits only what the database did not hold
        first_ids = {r.order_id for r in first.records if hasattr(r, "order_id")}
        second_new = {oid for oid, path in status_paths(second.records).items() if path[0][0] is None}
        assert not (first_ids & second_new)
        assert status_paths(second.records)[was_open] == [(OrderStatus.OPEN, OrderStatus.FILLED)]

        truth = servable_orders(simulator)
        rows = _stored_orders(store)
        assert rows == {oid: order_view(o)[:-1] for oid, o in truth.items()}
        changes = _stored_changes(store)
        expected = {(oid, o.status.value) for oid, o in truth.items()}
        expected |= {(was_open, OrderStatus.OPEN.value)}
        assert set(changes) == expected and len(changes) == len(expected)
    finally:
        store.close()


def _stored_orders(store: SqlStore) -> dict[int, tuple[object, ...]]:
    import sqlalchemy as sa

    from recorder.records import OrderType
    from recorder.storage import schema

    t = schema.orders
    with store.engine.connect() as conn:
        return {
            r.order_id: (r.order_id, r.symbol, OrderType(r.type), r.price, r.amount, r.deal_amount,
                         r.avg_price, OrderStatus(r.status))
            for r in conn.execute(sa.select(t))
        }


def _stored_changes(store: SqlStore) -> list[tuple[int, int]]:
    import sqlalchemy as sa

    from recorder.storage import schema

    t = schema.order_status_changes
    with store.engine.connect() as conn:
        return [(r.order_id, r.status) for r in conn.execute(sa.select(t.c.order_id, t.c.status))]

