"""End to end against the simulator: real SQLite (and PostgreSQL) + Parquet, compared with ground truth."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from recorder.app import open_storage, prepare_database
from recorder.collector.app import Recorder
from recorder.errors import SchemaNotAtHeadError
from recorder.records import FeedEventKind
from recorder.simulator import Simulator, SimulatorSettings
from recorder.storage import migrate
from tests.collector.conftest import sim_config
from tests.collector.helpers import (
    all_received,
    expected_snapshots,
    sent_data,
    snapshot_key,
    stored,
    stored_parquet,
    ticker_from_push,
    ticker_key,
    wait_until,
)

SYMBOLS = ("btc_usdt", "ltc_btc", "eth_btc")


@pytest.fixture
def simulator_settings(simulator_settings: SimulatorSettings) -> SimulatorSettings:
    return dataclasses.replace(simulator_settings, updates_per_second=0.0)  # the test drives the market


async def record_steps(
    sim: Simulator, tmp_path: Path, sql_url: str, steps: int, **collector: object
) -> Recorder:
    config = dataclasses.replace(sim_config(tmp_path, sim.ws_url, **collector))
    config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, sql_url=sql_url))
    if sql_url.startswith("postgresql"):
        await asyncio.to_thread(migrate.upgrade, sql_url)  # `okex-recorder db upgrade` first
    await asyncio.to_thread(prepare_database, config)
    recorder = Recorder(config, await asyncio.to_thread(open_storage, config))
    task = asyncio.create_task(recorder.run())
    await wait_until(lambda: all(c.counters.connects for c in recorder.connections), what="connected")
    await wait_until(lambda: all_received(recorder, sim.truth, SYMBOLS), what="initial books")
    for _ in range(steps):
        await sim.advance(1)
        await asyncio.sleep(0.002)
    await wait_until(lambda: all_received(recorder, sim.truth, SYMBOLS), what="every push")
    recorder.request_stop()
    result = await asyncio.wait_for(task, 30)
    assert result.exit_code == 0
    return recorder


async def test_stored_snapshots_and_tickers_equal_what_the_simulator_sent(
    simulator: Simulator, tmp_path: Path, sqlite_url: str
) -> None:
    recorder = await record_steps(simulator, tmp_path, sqlite_url, 150, symbols_per_connection=2)
    truth = simulator.truth
    for symbol in SYMBOLS:
        snaps = stored(sqlite_url, "book_snapshots", symbol=symbol)
        expected = expected_snapshots(truth, symbol, 20)
        assert len(expected) > 50
        assert [snapshot_key(s) for s in snaps] == expected
        tickers = stored(sqlite_url, "tickers", symbol=symbol)
        assert [ticker_key(t) for t in tickers] == [
            ticker_from_push(d) for d in sent_data(truth, f"ok_sub_spot_{symbol}_ticker")
        ]
    # Parquet holds exactly the same rows as SQL.
    for table in ("book_snapshots", "tickers"):
        assert stored_parquet(tmp_path / "parquet", table) == sorted(
            stored(sqlite_url, table), key=lambda r: (r.ts_recv, r.symbol)
        )
    events = stored(sqlite_url, "feed_events", order_by="ts_start")
    assert sorted(e.kind.value for e in events) == ["connected", "connected", "shutdown"]
    status = recorder.status.snapshot("finished")
    assert status["rows"]["produced"] == status["rows"]["written"]
    assert all(ch["received"] == ch["accepted"] for ch in status["channels"].values())
    assert not any(e.kind is FeedEventKind.DISCONNECTED for e in events)


async def test_postgres_without_schema_is_refused_naming_the_upgrade_command(
    tmp_path: Path, pg_url: str
) -> None:
    config = sim_config(tmp_path, "ws://127.0.0.1:1/ws/v1")
    config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, sql_url=pg_url))
    with pytest.raises(SchemaNotAtHeadError, match="okex-recorder db upgrade"):
        prepare_database(config)


@pytest.mark.postgres
async def test_postgres_recording_equals_ground_truth(
    simulator: Simulator, tmp_path: Path, pg_url: str
) -> None:
    await record_steps(simulator, tmp_path, pg_url, 60, compress=True)
    for symbol in SYMBOLS:
        snaps = stored(pg_url, "book_snapshots", symbol=symbol)
        assert [snapshot_key(s) for s in snaps] == expected_snapshots(simulator.truth, symbol, 20)
        tickers = stored(pg_url, "tickers", symbol=symbol)
        assert [ticker_key(t) for t in tickers] == [
            ticker_from_push(d) for d in sent_data(simulator.truth, f"ok_sub_spot_{symbol}_ticker")
        ]
