"""Gap 4: the Parquet root fills up (ENOSPC) during a collector run, then space returns.

The Parquet store sits on a file system that answers ENOSPC on demand (the same fault a full
disk gives; chmod would not stop root). While it is full: one clear ERROR line, SQL keeps
being written, rows wait in the local journal. When space returns the journal is rolled into
files, and at the end SQL, Parquet and the simulator's ground truth hold the same rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from recorder.backoff import BackoffPolicy
from recorder.collector.app import Recorder
from recorder.simulator import Simulator, SimulatorSettings
from recorder.storage import migrate
from recorder.storage.parquet import ParquetStore
from recorder.storage.sql import SqlStore
from recorder.storage.writer import StorageWriter
from tests.collector.conftest import sim_config
from tests.collector.helpers import all_received, snapshot_key, stored, ticker_key, wait_until
from tests.faults.helpers import (
    SYMBOLS,
    advance_for,
    assert_snapshots_exact,
    assert_tickers_exact,
    parquet_rows,
)
from tests.storage.test_parquet import _FullDisk

pytestmark = pytest.mark.faults


@pytest.fixture
def simulator_settings(simulator_settings: SimulatorSettings) -> SimulatorSettings:
    return dataclasses.replace(simulator_settings, updates_per_second=0.0)


async def test_full_parquet_disk_is_one_error_line_sql_keeps_going_and_files_resume(
    simulator: Simulator, tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="recorder.storage")
    config = sim_config(tmp_path, simulator.ws_url)
    migrate.upgrade(sqlite_url)
    disk = _FullDisk()
    root = tmp_path / "parquet"
    parquet = ParquetStore(root, roll_rows=40, filesystem=pafs.PyFileSystem(disk),
                           journal_dir=tmp_path / "pqj", retry_policy=BackoffPolicy(initial=0.2, cap=0.5))
    writer = StorageWriter(SqlStore(sqlite_url), parquet, spill_dir=str(tmp_path / "spill"))
    recorder = Recorder(config, writer)
    task = asyncio.create_task(recorder.run())
    try:
        await wait_until(lambda: bool(simulator.truth.pushes())
                         and all_received(recorder, simulator.truth, SYMBOLS), what="the initial books")
        await advance_for(simulator, 1.0)
        await wait_until(lambda: parquet.stats()["datasets"].get("tickers", {}).get("in_files", 0) > 0,
                         what="the first Parquet files")

        disk.full = True
        sql_before = writer.stats()["sql"].datasets["tickers"].written
        files_before = parquet.stats()["datasets"]["tickers"]["in_files"]
        await advance_for(simulator, 2.0)
        stats = writer.stats()
        assert stats["parquet"].healthy is False
        full = f"parquet root {root} not writable: [Errno 28] No space left on device"
        assert stats["parquet"].last_error == full
        assert stats["sql"].healthy is True and stats["sql"].datasets["tickers"].written > sql_before
        assert parquet.stats()["datasets"]["tickers"]["in_files"] == files_before  # nothing rolled
        assert list((tmp_path / "pqj").rglob("*.arrows"))  # the rows wait in the journal

        disk.full = False
        await advance_for(simulator, 0.5)
        await wait_until(lambda: parquet.healthy
                         and parquet.stats()["datasets"]["tickers"]["in_files"] > files_before,
                         timeout=30, what="Parquet files again")
        await wait_until(lambda: all_received(recorder, simulator.truth, SYMBOLS), timeout=30,
                         what="every push")
    finally:
        disk.full = False
        recorder.request_stop()
        result = await asyncio.wait_for(task, 60)
    assert result.exit_code == 0

    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"parquet root {root} not writable: [Errno 28] No space left on device; "
                      "rows stay in the journal and the roll is retried"]
    assert any("writable again" in r.getMessage() for r in caplog.records)

    assert_tickers_exact(simulator.truth, sqlite_url)
    assert_snapshots_exact(simulator.truth, sqlite_url)
    assert not list((tmp_path / "pqj").rglob("*.arrows"))
    for table, key in (("tickers", ticker_key), ("book_snapshots", snapshot_key)):
        in_sql = Counter((r.symbol, key(r)) for r in stored(sqlite_url, table))
        assert Counter((r.symbol, key(r)) for r in parquet_rows(root, table)) == in_sql, table
