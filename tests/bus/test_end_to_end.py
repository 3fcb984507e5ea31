"""End to end through NATS JetStream against the simulator's ground truth.

Two collectors record the same symbols and publish to the bus; writers consume into SQL
(SQLite, and PostgreSQL when ``OKEX_TEST_PG_URL`` is set) and Parquet. The stored rows must
equal what the simulator sent, each once: a writer killed between its store's commit and the
acknowledgement resumes without loss or doubles, and a NATS restart mid-run loses nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from recorder.app import open_storage
from recorder.collector.app import Recorder
from recorder.records import Record
from recorder.simulator import Simulator, SimulatorSettings
from recorder.simulator.truth import Truth
from recorder.storage import migrate
from recorder.storage.bus_config import BusConfig
from recorder.storage.consume import WorkerStats, consume, open_stores
from recorder.storage.writer import Store
from tests.bus.helpers import PrivateNats, stream_state, unique_bus, wait_drained
from tests.collector.conftest import sim_config
from tests.collector.helpers import snapshot_key, stored, ticker_from_push, ticker_key, wait_until

SYMBOLS = ("btc_usdt", "ltc_btc", "eth_btc")
DURABLES = ("w-sql", "w-parquet")


@pytest.fixture
def simulator_settings(simulator_settings: SimulatorSettings) -> SimulatorSettings:
    return dataclasses.replace(simulator_settings, updates_per_second=0.0)  # the test drives the market


# --------------------------------------------------------------------------- helpers


def collector(sim: Simulator, tmp_path: Path, bus: BusConfig, name: str, **settings: Any) -> Recorder:
    base = sim_config(tmp_path / name, sim.ws_url, id=name, status_file=str(tmp_path / name / "status.json"),
                      channels=["ticker", "depth", "deals"], **settings)
    config = dataclasses.replace(base, bus=bus)
    return Recorder(config, open_storage(config))


async def start(recorders: Sequence[Recorder], sim: Simulator) -> list[asyncio.Task[Any]]:
    tasks = [asyncio.create_task(r.run()) for r in recorders]
    for r in recorders:
        await wait_until(lambda r=r: all(c.counters.connects for c in r.connections), what="connected")
        await wait_until(lambda r=r: received_all(r, sim.truth), what="initial books")
    return tasks


def received_all(recorder: Recorder, truth: Truth) -> bool:
    """Every depth and ticker push sent to this recorder's connection has been received."""
    acc = recorder.pipeline.accounting()
    conn_ids = {p.connection_id for p in truth.pushes()}
    # each recorder has one connection; it has received as many pushes as some simulator connection got
    return any(all(acc.get(ch, {}).get("received", 0) == len(truth.pushes(ch, connection_id=cid))
                   for s in SYMBOLS for ch in (f"ok_sub_spot_{s}_depth", f"ok_sub_spot_{s}_ticker"))
               for cid in conn_ids)


async def drive(sim: Simulator, recorders: Sequence[Recorder], steps: int) -> None:
    for _ in range(steps):
        await sim.advance(1)
        await asyncio.sleep(0.002)
    for r in recorders:
        await wait_until(lambda r=r: received_all(r, sim.truth), what="every push")


async def stop(recorders: Sequence[Recorder], tasks: list[asyncio.Task[Any]]) -> None:
    for r in recorders:
        r.request_stop()
    for r, task in zip(recorders, tasks, strict=True):
        result = await asyncio.wait_for(task, 60)
        assert result.exit_code == 0
        status = r.status.snapshot("finished")
        assert status["rows"]["produced"] == status["rows"]["written"]  # all acknowledged by JetStream


def published_all(recorder: Recorder) -> bool:
    """The recorder's writer has nothing pending or journaled for the bus (read from the test's thread)."""
    try:
        bus = recorder.writer_thread.writer.stats()["bus"]
    except RuntimeError:  # the writer thread changed its counters meanwhile: ask again
        return False
    return bus.healthy and all(c.pending == 0 and c.spilled == 0 for c in bus.datasets.values())


def expected_snapshots(truth: Truth, symbol: str, depth: int = 20) -> set[tuple[int, Any]]:
    """Per simulator connection, the snapshots on change of the top levels; their union."""
    out = set()
    for cid in {b.connection_id for b in truth.depth_books(symbol)}:
        last = None
        for book in truth.depth_books(symbol, connection_id=cid):
            top = (tuple((Decimal(p), Decimal(a)) for p, a in book.bids[:depth]),
                   tuple((Decimal(p), Decimal(a)) for p, a in book.asks[:depth]))
            if top != last:
                out.add((book.ts_ms, top))
                last = top
    return out


def expected_tickers(truth: Truth, symbol: str) -> set[tuple[Any, ...]]:
    return {ticker_from_push(p.data) for p in truth.pushes(f"ok_sub_spot_{symbol}_ticker")}


def expected_deals(truth: Truth, symbol: str) -> set[int]:
    return {int(d[0]) for p in truth.pushes(f"ok_sub_spot_{symbol}_deals") for d in p.data}


def assert_recording_equals_truth(truth: Truth, url: str, parquet: Path) -> None:
    from analysis.load import load_book_top, load_deals, load_tickers  # what users read

    for symbol in SYMBOLS:
        snaps = [snapshot_key(s) for s in stored(url, "book_snapshots", symbol=symbol)]
        assert len(snaps) == len(set(snaps)), f"{symbol}: duplicate book snapshots"
        assert set(snaps) == expected_snapshots(truth, symbol)
        ticks = [ticker_key(t) for t in stored(url, "tickers", symbol=symbol)]
        assert len(ticks) == len(set(ticks)), f"{symbol}: duplicate tickers"
        assert set(ticks) == expected_tickers(truth, symbol)
        tids = [d.tid for d in stored(url, "deals", symbol=symbol)]
        assert len(tids) == len(set(tids)) and set(tids) == expected_deals(truth, symbol)
        assert len(load_tickers(parquet, symbol)) == len(ticks)
        assert len(load_book_top(parquet, symbol)) == len(snaps)
        assert sorted(load_deals(parquet, symbol)["tid"]) == sorted(tids)
    assert sum(len(expected_tickers(truth, s)) for s in SYMBOLS) > 50
    assert sum(len(expected_deals(truth, s)) for s in SYMBOLS) > 20
    assert sum(len(expected_snapshots(truth, s)) for s in SYMBOLS) > 50


async def write_stores(bus: BusConfig, url: str, parquet: Path, **kw: Any) -> dict[str, WorkerStats]:
    stores = open_stores(url, str(parquet))
    halt = asyncio.Event()
    stats: dict[str, WorkerStats] = {}
    task = asyncio.create_task(consume(bus, stores, halt, durable="w", batch=50, ack_wait=3, stats=stats,
                                       **kw))
    try:
        await wait_drained(bus, DURABLES)
    finally:
        halt.set()
        await asyncio.wait_for(task, 60)
    return stats


# --------------------------------------------------------------------------- tests


async def test_two_collectors_through_nats_store_the_truth_once(
        simulator: Simulator, tmp_path: Path, bus: BusConfig, db_url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, db_url)
    recorders = [collector(simulator, tmp_path, bus, name) for name in ("east", "west")]
    tasks = await start(recorders, simulator)
    await drive(simulator, recorders, 120)
    await stop(recorders, tasks)
    stats = await write_stores(bus, db_url, tmp_path / "parquet")
    assert stats["sql"].collectors == {"east", "west"}
    assert_recording_equals_truth(simulator.truth, db_url, tmp_path / "parquet")


class _Killed(BaseException):
    """Stands for SIGKILL between a store's commit and the acknowledgement."""


class KillAfterWrite:
    """A store that dies right after its ``n``-th write became durable (before anything is acked)."""

    def __init__(self, store: Store, n: int) -> None:
        self.store, self.n, self.writes = store, n, 0

    def write_batch(self, records: Sequence[Record]) -> None:
        self.store.write_batch(records)
        self.writes += 1
        if self.writes == self.n:
            raise _Killed

    def close(self) -> None:
        self.store.close()


async def test_writer_killed_between_commit_and_ack_resumes_without_loss_or_doubles(
        simulator: Simulator, tmp_path: Path, bus: BusConfig, sqlite_url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    recorders = [collector(simulator, tmp_path, bus, name) for name in ("east", "west")]
    tasks = await start(recorders, simulator)
    await drive(simulator, recorders, 80)
    await stop(recorders, tasks)
    parquet = tmp_path / "parquet"
    first = open_stores(sqlite_url, str(parquet))
    for name, store in first.items():  # each writer dies after its third durable batch
        killing: dict[str, Store] = {name: KillAfterWrite(store, 3)}
        with pytest.raises(_Killed):
            await asyncio.wait_for(consume(bus, killing, asyncio.Event(), durable="w", batch=20, ack_wait=2,
                                           close_stores=False), 60)
    total, state = await stream_state(bus, DURABLES)
    for durable in DURABLES:  # 2 batches acknowledged; the third one durable in the store but not acked
        pending, unacked = state[durable]
        assert unacked == 20 and pending < total - 40
    assert len(stored(sqlite_url, "tickers")) + len(stored(sqlite_url, "book_snapshots")) > 0
    first["sql"].close()
    for seg in first["parquet"]._journal._open.values():  # type: ignore[attr-defined]
        seg.file.close()  # abandoned as a killed process leaves it: journal segments, no Parquet files
    await write_stores(bus, sqlite_url, parquet)
    assert_recording_equals_truth(simulator.truth, sqlite_url, parquet)


async def test_nats_restart_mid_run_loses_nothing(
        simulator: Simulator, tmp_path: Path, private_nats: PrivateNats, sqlite_url: str) -> None:
    bus = unique_bus(private_nats.url, publish_timeout=2.0, connect_timeout=0.5)
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    recorders = [collector(simulator, tmp_path, bus, name) for name in ("east", "west")]
    tasks = await start(recorders, simulator)
    await drive(simulator, recorders, 40)
    await asyncio.to_thread(private_nats.stop)
    await drive(simulator, recorders, 40)  # published nowhere: kept pending / journaled by the writers
    await wait_until(lambda: all(not r.writer_thread.writer.stats()["bus"].healthy for r in recorders),
                     timeout=30, what="writers noticing the outage")
    await asyncio.to_thread(private_nats.start)
    await drive(simulator, recorders, 40)
    await wait_until(lambda: all(published_all(r) for r in recorders), timeout=90,
                     what="the writers publishing what they kept during the outage")
    await stop(recorders, tasks)
    await write_stores(bus, sqlite_url, tmp_path / "parquet")
    assert_recording_equals_truth(simulator.truth, sqlite_url, tmp_path / "parquet")
