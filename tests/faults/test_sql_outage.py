"""Gap 2: the SQL database goes away mid-run, longer than many flush intervals, with the full collector.

PostgreSQL refuses new connections and its open ones are terminated (``ALLOW_CONNECTIONS false``
+ ``pg_terminate_backend``) for a few seconds while the market moves. The in-memory bound is
tiny, so rows spill to the journal. Afterwards: the rows were written when the database came
back, the journal is empty, Parquet was written all along, and SQL, Parquet and the
simulator's ground truth hold exactly the same rows, none twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from recorder.app import open_storage
from recorder.collector.app import Recorder
from recorder.simulator import Simulator, SimulatorSettings
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

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

OUTAGE_SECONDS = 3.0  # 15 flush intervals of 0.2 s


@pytest.fixture
def simulator_settings(simulator_settings: SimulatorSettings) -> SimulatorSettings:
    return dataclasses.replace(simulator_settings, updates_per_second=0.0)


def _admin() -> sa.Engine:
    return sa.create_engine(os.environ["OKEX_TEST_PG_URL"], isolation_level="AUTOCOMMIT",
                            poolclass=sa.pool.NullPool)


def _allow_connections(admin: sa.Engine, database: str, allow: bool) -> None:
    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allow).lower()}'))
        if not allow:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": database})


async def test_postgres_outage_spills_replays_and_ends_with_sql_equal_to_parquet_and_truth(
    simulator: Simulator, tmp_path: Path, migrated_pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="recorder.storage")
    config = sim_config(tmp_path, simulator.ws_url)
    config = dataclasses.replace(config, storage=dataclasses.replace(
        config.storage, sql_url=migrated_pg_url, max_pending_rows=30, flush_interval=0.2))
    recorder = Recorder(config, await asyncio.to_thread(open_storage, config))
    writer = recorder.writer_thread.writer
    assert isinstance(writer, StorageWriter)
    task = asyncio.create_task(recorder.run())
    database = sa.make_url(migrated_pg_url).database
    assert database is not None
    admin = _admin()
    try:
        await wait_until(lambda: bool(simulator.truth.pushes())
                     and all_received(recorder, simulator.truth, SYMBOLS),
                         what="the initial books")
        await advance_for(simulator, 1.0)
        await wait_until(lambda: writer.stats()["sql"].datasets["tickers"].written > 0, what="rows in SQL")

        await asyncio.to_thread(_allow_connections, admin, database, False)
        parquet_before = writer.stats()["parquet"].datasets["tickers"].written
        await advance_for(simulator, OUTAGE_SECONDS)
        during = writer.stats()
        assert during["sql"].healthy is False and during["sql"].last_error
        assert sum(c.spilled for c in during["sql"].datasets.values()) > 0  # beyond the bound: journal
        assert sum(c.pending for c in during["sql"].datasets.values()) <= 30 + 200  # bound + one batch
        assert during["parquet"].healthy is True
        assert during["parquet"].datasets["tickers"].written > parquet_before  # Parquet kept going
        assert any(Path(tmp_path / "spill").rglob("*.arrows"))

        await asyncio.to_thread(_allow_connections, admin, database, True)
        await advance_for(simulator, 1.0)

        def sql_caught_up() -> bool:
            sql = writer.stats()["sql"]
            return sql.healthy and all(c.pending == 0 and c.spilled == 0 for c in sql.datasets.values())

        await wait_until(sql_caught_up, timeout=60, what="SQL to catch up after the outage")
        assert not task.done()  # written while running, not only at close
        await wait_until(lambda: all_received(recorder, simulator.truth, SYMBOLS), timeout=30,
                         what="every push")
    finally:
        await asyncio.to_thread(_allow_connections, admin, database, True)
        admin.dispose()
        recorder.request_stop()
        result = await asyncio.wait_for(task, 60)
    assert result.exit_code == 0
    assert not list((tmp_path / "spill").rglob("*.arrows"))  # every spilled row replayed

    # SQL equals the ground truth exactly (no gap: the feed never broke) ...
    assert_tickers_exact(simulator.truth, migrated_pg_url)
    assert_snapshots_exact(simulator.truth, migrated_pg_url)
    # ... and Parquet holds the same rows, each once
    root = tmp_path / "parquet"
    for table, key in (("tickers", ticker_key), ("book_snapshots", snapshot_key)):
        in_sql = Counter((r.symbol, key(r)) for r in stored(migrated_pg_url, table))
        in_parquet = Counter((r.symbol, key(r)) for r in parquet_rows(root, table))
        assert max(in_parquet.values()) == 1 and max(in_sql.values()) == 1, table
        assert in_sql == in_parquet, table
    written = result.status["rows"]["written"]
    assert result.status["rows"]["produced"] == written
    assert written["tickers"] == len(stored(migrated_pg_url, "tickers"))

    # one clear line when SQL went away (URL masked), one when it came back
    down = [r for r in caplog.records if r.levelno == logging.ERROR and "sql store unavailable" in r.message]
    back = [r for r in caplog.records if "sql store is back" in r.message]
    assert len(down) == 1 and len(back) >= 1, [r.message for r in caplog.records]
