"""Fault tests with the simulator's fault modes: recovery, gaps recorded, data exact around them."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from recorder.app import open_storage, prepare_database
from recorder.collector.app import Recorder
from recorder.records import FeedEventKind
from recorder.simulator import Simulator, SimulatorSettings
from recorder.simulator.settings import FaultSettings, FrameFault
from tests.collector.conftest import sim_config
from tests.collector.helpers import (
    all_received,
    expected_snapshots,
    sent_data,
    snapshot_key,
    stored,
    ticker_from_push,
    ticker_key,
    wait_until,
)

pytestmark = pytest.mark.faults
SYMBOLS = ("btc_usdt", "ltc_btc", "eth_btc")


async def drive(
    sim: Simulator, tmp_path: Path, sqlite_url: str, steps: int, during: object = None, **collector: object
) -> Recorder:
    config = sim_config(tmp_path, sim.ws_url, **collector)
    config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, sql_url=sqlite_url))
    await asyncio.to_thread(prepare_database, config)
    recorder = Recorder(config, await asyncio.to_thread(open_storage, config))
    task = asyncio.create_task(recorder.run())
    await wait_until(
        lambda: all_received(recorder, sim.truth, SYMBOLS) and bool(sim.truth.pushes()), what="initial books"
    )
    for i in range(steps):
        if callable(during):
            await during(i)
        await sim.advance(1)
        await asyncio.sleep(0.01)
    await wait_until(lambda: all_received(recorder, sim.truth, SYMBOLS), timeout=30, what="every push")
    recorder.request_stop()
    assert (await asyncio.wait_for(task, 30)).exit_code == 0
    return recorder


def assert_exact(sim: Simulator, url: str) -> None:
    """Every stored snapshot and ticker equals what the simulator sent, nothing missing or doubled."""
    for symbol in SYMBOLS:
        snaps = stored(url, "book_snapshots", symbol=symbol)
        assert [snapshot_key(s) for s in snaps] == expected_snapshots(sim.truth, symbol, 20)
        assert [ticker_key(t) for t in stored(url, "tickers", symbol=symbol)] == [
            ticker_from_push(d) for d in sent_data(sim.truth, f"ok_sub_spot_{symbol}_ticker")
        ]


GAP_KINDS = (
    FeedEventKind.DISCONNECTED,
    FeedEventKind.STALL,
    FeedEventKind.BOOK_RESET,
    FeedEventKind.RESUBSCRIBED,
)


def assert_exact_outside_gaps(sim: Simulator, url: str) -> None:
    """Every stored snapshot is a book the simulator sent; every one missing lies inside a recorded gap."""
    events = stored(url, "feed_events", order_by="ts_start")
    margin = timedelta(milliseconds=100)
    for symbol in SYMBOLS:
        spans = [
            (e.ts_start - margin, (e.ts_end or datetime.max.replace(tzinfo=UTC)) + margin)
            for e in events
            if e.kind in GAP_KINDS and symbol in e.symbols
        ]
        sent: dict[int, set[object]] = {}
        for book in sim.truth.depth_books(symbol):
            top = (
                tuple((Decimal(p), Decimal(a)) for p, a in book.bids[:20]),
                tuple((Decimal(p), Decimal(a)) for p, a in book.asks[:20]),
            )
            sent.setdefault(book.ts_ms, set()).add(top)
        snaps = [snapshot_key(s) for s in stored(url, "book_snapshots", symbol=symbol)]
        assert all(top in sent.get(ms, ()) for ms, top in snaps)
        have = set(snaps)
        missing = [ms for ms, top in expected_snapshots(sim.truth, symbol, 20) if (ms, top) not in have]
        for ms in missing:
            at = datetime.fromtimestamp(ms / 1000, UTC)
            assert any(a <= at <= b for a, b in spans), f"{symbol}: snapshot at {at} missing outside any gap"
        assert [ticker_key(t) for t in stored(url, "tickers", symbol=symbol)] == [
            ticker_from_push(d) for d in sent_data(sim.truth, f"ok_sub_spot_{symbol}_ticker")
        ]


@pytest.fixture
def simulator_settings(
    simulator_settings: SimulatorSettings, request: pytest.FixtureRequest
) -> SimulatorSettings:
    changes = getattr(request, "param", {})
    return dataclasses.replace(simulator_settings, updates_per_second=0.0, **changes)


@pytest.mark.parametrize(
    "simulator_settings", [{"faults": FaultSettings(close_every_seconds=0.6)}], indirect=True
)
async def test_connections_closed_every_few_hundred_ms_recover_with_gaps_and_exact_data(
    simulator: Simulator, tmp_path: Path, sqlite_url: str
) -> None:
    await drive(simulator, tmp_path, sqlite_url, 250)
    assert_exact(simulator, sqlite_url)
    events = stored(sqlite_url, "feed_events", order_by="ts_start")
    gaps = [e for e in events if e.kind is FeedEventKind.DISCONNECTED]
    assert len(gaps) >= 3
    assert all(e.ts_end is not None and e.ts_end >= e.ts_start and e.symbols == SYMBOLS for e in gaps)
    resets = [e for e in events if e.kind is FeedEventKind.BOOK_RESET]
    assert len(resets) == 3 * len(gaps)  # one per book per loss, each closed by the fresh full push
    assert all(e.ts_end is not None for e in resets)
    connections = {p.connection_id for p in simulator.truth.pushes()}
    assert len([e for e in events if e.kind is FeedEventKind.CONNECTED]) == len(connections)


@pytest.mark.parametrize(
    "simulator_settings",
    [
        {"faults": FaultSettings(frame_fault=FrameFault.MALFORMED_JSON, frame_fault_rate=0.1)},
        {"faults": FaultSettings(frame_fault=FrameFault.TRUNCATED, frame_fault_rate=0.1)},
        {
            "faults": FaultSettings(
                frame_fault=FrameFault.OVERSIZED, frame_fault_rate=0.02, oversized_bytes=300_000
            )
        },
        {
            "faults": FaultSettings(frame_fault=FrameFault.BAD_DEFLATE, frame_fault_rate=0.1),
            "compress_always": True,
        },
        {
            "faults": FaultSettings(frame_fault=FrameFault.TRUNCATED, frame_fault_rate=0.1),
            "compress_always": True,
        },
    ],
    ids=["malformed-json", "truncated", "oversized", "bad-deflate", "truncated-deflate"],
    indirect=True,
)
async def test_bad_frames_are_quarantined_and_everything_else_is_exact(
    simulator: Simulator, tmp_path: Path, sqlite_url: str
) -> None:
    recorder = await drive(simulator, tmp_path, sqlite_url, 120)
    assert_exact(simulator, sqlite_url)
    faults = simulator.truth.faults()
    assert len(faults) > 0
    quarantined = stored(sqlite_url, "quarantine")
    assert len(quarantined) == len(faults)
    assert not [
        e
        for e in stored(sqlite_url, "feed_events", order_by="ts_start")
        if e.kind is FeedEventKind.DISCONNECTED
    ]  # one bad frame never kills the connection
    status = recorder.status.snapshot("finished")
    assert status["frames"]["malformed"] + sum(
        sum(c["rejected"].values()) for c in status["channels"].values()
    ) == len(faults)


@pytest.mark.parametrize("simulator_settings", [{}], indirect=True)
async def test_a_stall_is_detected_recorded_with_start_and_end_and_recovered(
    simulator: Simulator, tmp_path: Path, sqlite_url: str
) -> None:
    async def stall_once(i: int) -> None:
        if i == 40:
            simulator.stall(2.0)  # no data, no pongs; stall_timeout is 1 s here

    await drive(simulator, tmp_path, sqlite_url, 300, during=stall_once, stall_timeout=1.0)
    assert_exact_outside_gaps(simulator, sqlite_url)
    stalls = [
        e for e in stored(sqlite_url, "feed_events", order_by="ts_start") if e.kind is FeedEventKind.STALL
    ]
    assert len(stalls) >= 1
    first = stalls[0]
    assert first.ts_end is not None and (first.ts_end - first.ts_start).total_seconds() >= 1.0
    assert first.symbols == SYMBOLS
