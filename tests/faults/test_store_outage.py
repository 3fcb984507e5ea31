"""A store outage is on the record: a ``store_outage`` span (store name, start, end) in both stores.

1. A real PostgreSQL (a private instance: never the shared server) is stopped with
   ``pg_ctl stop -m immediate`` in the middle of a recording and started again ~8 s later.
   Nothing is lost or doubled, and both stores hold the span; PostgreSQL gets it once it is back.
2. The Parquet root fills up (ENOSPC from an injected file system) and frees again: the same.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
import sqlalchemy as sa

from recorder.app import open_storage
from recorder.backoff import BackoffPolicy
from recorder.collector.app import Recorder
from recorder.records import FeedEvent, FeedEventKind, utc_now
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
from tests.faults.private_pg import private_postgres
from tests.storage.test_parquet import _FullDisk

pytestmark = pytest.mark.faults

OUTAGE_SECONDS = 8.0


@pytest.fixture
def simulator_settings(simulator_settings: SimulatorSettings) -> SimulatorSettings:
    return dataclasses.replace(simulator_settings, updates_per_second=0.0)


def _outages(events: list[FeedEvent]) -> list[FeedEvent]:
    return [e for e in events if e.kind is FeedEventKind.STORE_OUTAGE]


def _final_spans(rows: list[FeedEvent]) -> dict[str, FeedEvent]:
    """Parquet is append-only: the last row per event_id (a closed span is never reopened)."""
    out: dict[str, FeedEvent] = {}
    for r in rows:
        if r.event_id not in out or out[r.event_id].ts_end is None:
            out[r.event_id] = r
    return out


def _assert_same_data(url: str, root: Path, truth: Any) -> None:
    assert_tickers_exact(truth, url)
    assert_snapshots_exact(truth, url)
    for table, key in (("tickers", ticker_key), ("book_snapshots", snapshot_key)):
        in_sql = Counter((r.symbol, key(r)) for r in stored(url, table))
        in_parquet = Counter((r.symbol, key(r)) for r in parquet_rows(root, table))
        assert max(in_sql.values()) == 1 and in_sql == in_parquet, table


async def test_postgres_stopped_mid_recording_is_a_store_outage_span_in_both_stores(
    simulator: Simulator, tmp_path: Path
) -> None:
    with private_postgres() as pg:
        admin = sa.create_engine(pg.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as conn:
            conn.execute(sa.text('CREATE DATABASE "rec"'))
        admin.dispose()
        url = sa.make_url(pg.url).set(database="rec").render_as_string(hide_password=False)
        await asyncio.to_thread(migrate.upgrade, url)
        config = sim_config(tmp_path, simulator.ws_url)
        config = dataclasses.replace(
            config,
            storage=dataclasses.replace(config.storage, sql_url=url, max_pending_rows=50, flush_interval=0.2),
        )
        recorder = Recorder(config, await asyncio.to_thread(open_storage, config))
        writer = recorder.writer_thread.writer
        assert isinstance(writer, StorageWriter)
        writer._policy = BackoffPolicy(initial=0.2, cap=1.0)  # recovered within a second of the restart
        task = asyncio.create_task(recorder.run())
        try:
            await wait_until(
                lambda: bool(simulator.truth.pushes()) and all_received(recorder, simulator.truth, SYMBOLS),
                what="the initial books",
            )
            await advance_for(simulator, 1.0)
            await wait_until(
                lambda: writer.stats()["sql"].datasets["tickers"].written > 0, what="rows in SQL"
            )

            stopped_at = utc_now()
            await asyncio.to_thread(pg.stop, "immediate")
            await advance_for(simulator, OUTAGE_SECONDS)
            during = writer.stats()
            assert during["sql"].healthy is False and during["sql"].outage_since is not None
            assert during["parquet"].healthy is True
            # status lists the outage among the open gaps ("open gaps: 0" while SQL was down)
            gaps = recorder.status.snapshot()["open_gaps"]
            assert [g for g in gaps if g["kind"] == "store_outage"] == [
                {"kind": "store_outage", "since": during["sql"].outage_since, "connection": "sql",
                 "symbols": [], "channel": None}]
            started_at = utc_now()
            await asyncio.to_thread(pg.start)
            await advance_for(simulator, 1.0)

            def caught_up() -> bool:
                sql = writer.stats()["sql"]
                return (
                    sql.healthy
                    and sql.outage_since is None
                    and all(c.pending == 0 and c.spilled == 0 for c in sql.datasets.values())
                )

            await wait_until(caught_up, timeout=60, what="SQL to catch up after the restart")
            await wait_until(
                lambda: all_received(recorder, simulator.truth, SYMBOLS), timeout=30, what="every push"
            )
        finally:
            recorder.request_stop()
            result = await asyncio.wait_for(task, 60)
        assert result.exit_code == 0

        # one span, in SQL ...
        (span,) = _outages(stored(url, "feed_events", order_by="ts_start"))
        assert span.connection == "sql" and span.detail.startswith("sql store: database ")
        assert stopped_at <= span.ts_start <= stopped_at + timedelta(seconds=5)
        assert span.ts_end is not None and started_at <= span.ts_end <= started_at + timedelta(seconds=30)
        # ... and in Parquet (open, then closed: the same span)
        root = tmp_path / "parquet"
        rows = _outages(parquet_rows(root, "feed_events"))
        assert [r.event_id for r in rows] == [span.event_id] * 2
        assert _final_spans(rows)[span.event_id] == span
        # nothing lost, nothing doubled
        _assert_same_data(url, root, simulator.truth)
        stores = result.status["storage"]["stores"]
        assert stores["sql"]["outages"] == 1 and stores["sql"]["healthy"] is True
        assert stores["parquet"]["outages"] == 0
        rows_status = result.status["rows"]
        for dataset, produced in rows_status["produced"].items():
            for store in ("sql", "parquet"):
                assert rows_status["written_by_store"][store].get(dataset, 0) == produced, (dataset, store)


async def test_full_parquet_root_is_a_store_outage_span_in_both_stores(
    simulator: Simulator, tmp_path: Path, sqlite_url: str
) -> None:
    config = sim_config(tmp_path, simulator.ws_url)
    migrate.upgrade(sqlite_url)
    disk = _FullDisk()
    root = tmp_path / "parquet"
    parquet = ParquetStore(
        root,
        roll_rows=40,
        filesystem=pafs.PyFileSystem(disk),
        journal_dir=tmp_path / "pqj",
        retry_policy=BackoffPolicy(initial=0.2, cap=0.5),
    )
    writer = StorageWriter(SqlStore(sqlite_url), parquet, spill_dir=str(tmp_path / "spill"))
    recorder = Recorder(config, writer)
    task = asyncio.create_task(recorder.run())
    try:
        await wait_until(
            lambda: bool(simulator.truth.pushes()) and all_received(recorder, simulator.truth, SYMBOLS),
            what="the initial books",
        )
        await advance_for(simulator, 1.0)
        await wait_until(
            lambda: parquet.stats()["datasets"].get("tickers", {}).get("in_files", 0) > 0,
            what="the first Parquet files",
        )
        full_at = utc_now()
        disk.full = True
        await wait_until(
            lambda: writer.stats()["parquet"].outage_since is not None,
            timeout=30,
            what="the outage to be noticed",
        )
        await advance_for(simulator, 1.0)
        freed_at = utc_now()
        disk.full = False
        await advance_for(simulator, 0.5)
        await wait_until(
            lambda: writer.stats()["parquet"].outage_since is None, timeout=30, what="the outage to end"
        )
        await wait_until(
            lambda: all_received(recorder, simulator.truth, SYMBOLS), timeout=30, what="every push"
        )
    finally:
        disk.full = False
        recorder.request_stop()
        result = await asyncio.wait_for(task, 60)
    assert result.exit_code == 0
    (span,) = _outages(stored(sqlite_url, "feed_events", order_by="ts_start"))
    assert span.connection == "parquet"
    assert (
        span.detail == f"parquet store: parquet root {root} not writable: [Errno 28] No space left on device"
    )
    assert full_at <= span.ts_start and span.ts_end is not None and freed_at <= span.ts_end
    rows = _outages(parquet_rows(root, "feed_events"))
    assert {r.event_id for r in rows} == {span.event_id} and _final_spans(rows)[span.event_id] == span
    _assert_same_data(sqlite_url, root, simulator.truth)
    assert result.status["storage"]["stores"]["parquet"]["outages"] == 1
