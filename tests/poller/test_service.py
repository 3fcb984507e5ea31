"""The poller against the simulator, with real signing: balances and orders recorded exactly."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from recorder.records import Balance, Order, OrderStatus, OrderStatusChange, OrderType
from recorder.simulator import Simulator
from tests.poller.conftest import (
    API_KEY,
    RecordingSink,
    Trader,
    balance_view,
    balances_of,
    latest_orders,
    make_poller,
    order_view,
    poller_settings,
    servable_orders,
    status_paths,
)

OPEN, P = OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED
F, C = OrderStatus.FILLED, OrderStatus.CANCELLED


async def test_balances_are_recorded_exactly_with_the_poll_time(simulator: Simulator) -> None:
    sink = RecordingSink()
    async with make_poller(simulator, sink, poller_settings(include_wallet=True)) as poller:
        await poller.poll_balances()
        balances = sink.of(Balance)
        spot = [b for b in balances if b.account == "spot"]
        wallet = [b for b in balances if b.account == "wallet"]
        assert balance_view(spot) == balances_of(simulator)
        account = simulator.accounts[API_KEY]
        assert balance_view(wallet) == {c: (account.wallet_free[c], Decimal(0)) for c in account.currencies()}
        assert len({b.ts_recv for b in spot}) == 1  # one poll, one stamp
        assert all(b.ts_recv.utcoffset() is not None for b in balances)


async def test_the_seeded_history_is_recorded_exactly_once(simulator: Simulator) -> None:
    sink = RecordingSink()
    async with make_poller(simulator, sink) as poller:
        await poller.sync_orders()
        truth = servable_orders(simulator)
        assert len(truth) > 10
        got = latest_orders(sink.records)
        assert {k: order_view(v) for k, v in got.items()} == {k: order_view(v) for k, v in truth.items()}
        # one status change per order, first seen, no previous status
        assert status_paths(sink.records) == {oid: [(None, o.status)] for oid, o in truth.items()}
        # a second sweep with nothing changed hands over nothing
        before = len(sink.records)
        await poller.sync_orders()
        assert len(sink.records) == before


async def test_partial_fills_and_cancels_made_through_trade_do_are_followed(
    simulator: Simulator, trader: Trader
) -> None:
    sink = RecordingSink()
    async with make_poller(simulator, sink) as poller:
        await poller.sync_orders()
        seeded = len(sink.records)

        a = await trader.place("btc_usdt", "buy", "1000.5", "0.4")  # will fill in two steps
        b = await trader.place("ltc_btc", "sell", "0.5", "3")  # partially filled, then cancelled
        c = await trader.place("eth_btc", "buy", "0.001", "1")  # cancelled untouched
        await poller.sync_orders()

        simulator.fill_order(a, "0.1")
        simulator.fill_order(b, "1")
        await poller.sync_orders()

        filled = simulator.fill_order(a, "0.2", price="1000.25")
        avg_after_second_fill = filled.avg_price  # (0.1 * 1000.5 + 0.2 * 1000.25) / 0.3, rounded
        assert abs(avg_after_second_fill - Decimal("1000.3333")) < Decimal("0.001")
        await trader.cancel("ltc_btc", b)
        await trader.cancel("eth_btc", c)
        await poller.sync_orders()

        simulator.fill_order(a, "0.1")
        await poller.sync_orders()

        new = sink.records[seeded:]
        assert status_paths(new) == {
            a: [(None, OPEN), (OPEN, P), (P, F)],
            b: [(None, OPEN), (OPEN, P), (P, C)],
            c: [(None, OPEN), (OPEN, C)],
        }
        # every state of ``a`` was recorded as it was seen, values exact
        a_states = [
            (r.status, r.deal_amount, r.avg_price) for r in new if isinstance(r, Order) and r.order_id == a
        ]
        assert a_states == [
            (OPEN, Decimal("0"), Decimal("0")),
            (P, Decimal("0.1"), Decimal("1000.5")),
            (P, Decimal("0.3"), avg_after_second_fill),
            (F, Decimal("0.4"), simulator.accounts[API_KEY].orders[a].avg_price),
        ]
        truth = servable_orders(simulator)
        final = latest_orders(sink.records)
        for oid in (a, b, c):
            assert order_view(final[oid]) == order_view(truth[oid])
        assert final[a].type is OrderType.BUY and final[b].type is OrderType.SELL
        changes = [r for r in new if isinstance(r, OrderStatusChange) and r.order_id == b]
        assert [ch.deal_amount for ch in changes] == [Decimal("0"), Decimal("1"), Decimal("1")]


@pytest.mark.parametrize("page_length", [1, 4])
async def test_history_is_read_over_every_page(
    simulator: Simulator, trader: Trader, page_length: int
) -> None:
    for i in range(6):
        await trader.place("btc_usdt", "buy", f"{900 + i}", "0.01")
    requests_before = simulator.rest.requests
    sink = RecordingSink()
    settings = poller_settings(page_length=page_length, symbols=("btc_usdt",))
    async with make_poller(simulator, sink, settings) as poller:
        await poller.sync_orders()
        truth = servable_orders(simulator, ("btc_usdt",))
        open_n = sum(1 for o in truth.values() if o.status in (OPEN, P))
        closed_n = len(truth) - open_n
        assert open_n > page_length
        got = latest_orders(sink.records)
        assert {k: order_view(v) for k, v in got.items()} == {k: order_view(v) for k, v in truth.items()}
        assert sorted(r.order_id for r in sink.of(OrderStatusChange)) == sorted(truth)
        pages = -(-open_n // page_length) + max(-(-closed_n // page_length), 1)
        assert simulator.rest.requests - requests_before == 1 + pages  # order_info + every history page


async def test_run_polls_until_stopped(simulator: Simulator) -> None:
    sink = RecordingSink()
    async with make_poller(simulator, sink) as poller:
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        await sink.wait_for(lambda: poller.rounds >= 2 and poller.balance_polls >= 2)
        stop.set()
        outcome = await asyncio.wait_for(task, 10)
        assert outcome.value == "stopped"
        assert {k: order_view(v) for k, v in latest_orders(sink.records).items()} == {
            k: order_view(v) for k, v in servable_orders(simulator).items()
        }
        polls = sorted({b.ts_recv for b in sink.of(Balance)})
        assert len(polls) >= 2
