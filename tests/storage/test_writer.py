"""StorageWriter: one store down does not stop the other; pending, spill, replay; nothing lost or doubled."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow.dataset as pads
import pytest
import sqlalchemy as sa

from recorder.backoff import BackoffPolicy
from recorder.errors import StorageError, StoreUnavailableError
from recorder.records import Deal, QuarantinedFrame, Record
from recorder.storage.parquet import ParquetStore
from recorder.storage.schema import DATASETS
from recorder.storage.writer import DatasetCounts, StorageWriter
from tests.fixtures.storage import ManualClock, sample_deal

POLICY = BackoffPolicy(initial=1.0, factor=2.0, cap=8.0, jitter=0.0)


class FakeSql:
    """A SQL store keyed like the real one (symbol, tid), that can be taken down."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], Deal] = {}
        self.others: list[Record] = []  # store_outage spans, quarantine rows
        self.inserts = 0
        self.calls = 0
        self.down = False
        self.closed = False

    def write_batch(self, records: Sequence[Record]) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailableError("database postgresql://***@db/rec unreachable: connection refused")
        for r in records:
            if not isinstance(r, Deal):
                self.others.append(r)
                continue
            self.inserts += 1
            self.rows.setdefault((r.symbol, r.tid), r)

    def close(self) -> None:
        self.closed = True


class FakeParquet:
    """A Parquet store whose disk can fill up."""

    def __init__(self) -> None:
        self.rows: list[Record] = []  # deals
        self.others: list[Record] = []  # store_outage spans, quarantine rows
        self.full = False

    def write_batch(self, records: Sequence[Record]) -> None:
        if self.full:
            raise StoreUnavailableError("parquet root /x not writable: [Errno 28] No space left on device")
        self.rows.extend(r for r in records if isinstance(r, Deal))
        self.others.extend(r for r in records if not isinstance(r, Deal))

    def close(self) -> None:
        pass


def deals(first: int, n: int) -> list[Deal]:
    return [sample_deal(t) for t in range(first, first + n)]


def test_sql_outage_keeps_rows_pending_and_writes_them_when_it_returns(tmp_path: Path) -> None:
    sql, clock = FakeSql(), ManualClock()
    parquet = ParquetStore(tmp_path / "pq", fsync=False)
    writer = StorageWriter(sql, parquet, policy=POLICY, clock=clock, spill_dir=str(tmp_path / "spill"))
    writer.write(deals(1, 5))
    writer.flush()
    sql.down = True
    for k in range(3):
        writer.write(deals(6 + 5 * k, 5))
        writer.flush()  # Parquet keeps going; SQL is not retried before its delay (the clock stands)
    assert sql.calls == 2  # the first write, then one failing attempt
    status = writer.stats()
    assert status["sql"].healthy is False
    assert status["sql"].last_error == "database postgresql://***@db/rec unreachable: connection refused"
    assert status["sql"].datasets["deals"] == DatasetCounts(written=5, pending=15, spilled=0)
    assert status["parquet"].healthy is True
    assert status["parquet"].datasets["deals"] == DatasetCounts(written=20, pending=0, spilled=0)
    sql.down = False
    clock.advance(10)
    writer.flush()
    assert writer.stats()["sql"].datasets["deals"] == DatasetCounts(written=20, pending=0, spilled=0)
    assert writer.stats()["sql"].healthy is True
    writer.close()
    assert sorted(sql.rows) == [("btc_usdt", t) for t in range(1, 21)]
    assert sql.inserts == 20  # nothing written twice
    assert list(sql.rows.values()) == deals(1, 20)  # in order
    back = pads.dataset(tmp_path / "pq" / "deals", partitioning="hive").to_table().sort_by("tid").to_pylist()
    assert [DATASETS["deals"].from_row(r) for r in back] == deals(1, 20)


def test_a_failing_store_is_retried_only_after_its_backoff_delay() -> None:
    sql, clock = FakeSql(), ManualClock()
    writer = StorageWriter(sql, FakeParquet(), policy=POLICY, clock=clock)
    sql.down = True
    attempts = []
    for _ in range(40):  # 40 flushes, 0.5 s apart = 20 s
        writer.write(deals(1, 1))
        writer.flush()
        attempts.append(sql.calls)
        clock.advance(0.5)
    # delays (no jitter): first in [0, 1], then 1, 2, 4, 8, 8 ...: far fewer calls than flushes
    assert 5 <= sql.calls <= 7
    assert attempts[0] == 1


def test_outage_beyond_the_memory_bound_spills_and_replays_exactly_once(tmp_path: Path) -> None:
    sql, parquet, clock = FakeSql(), FakeParquet(), ManualClock()
    writer = StorageWriter(sql, parquet, max_pending_rows=10, policy=POLICY, clock=clock,
                           spill_dir=str(tmp_path / "spill"), fsync=False)
    sql.down = True
    for k in range(7):
        writer.write(deals(1 + 4 * k, 4))
        writer.flush()
        clock.advance(0.2)
    counts = writer.stats()["sql"].datasets["deals"]
    assert counts.pending <= 10
    assert counts.pending + counts.spilled == 28
    assert counts.spilled >= 18
    assert list((tmp_path / "spill").rglob("*.arrows")) != []
    sql.down = False
    clock.advance(60)
    writer.flush()
    assert writer.stats()["sql"].datasets["deals"] == DatasetCounts(written=28, pending=0, spilled=0)
    assert list(sql.rows.values()) == deals(1, 28)  # replayed oldest first, then the pending ones
    assert sql.inserts == 28
    assert list((tmp_path / "spill").rglob("*.arrows")) == []
    assert parquet.rows == deals(1, 28)
    writer.close()


def test_rows_spilled_by_a_previous_run_are_replayed_at_the_next_start(tmp_path: Path) -> None:
    sql, clock = FakeSql(), ManualClock()
    sql.down = True
    writer = StorageWriter(sql, FakeParquet(), policy=POLICY, clock=clock, spill_dir=str(tmp_path / "spill"),
                           fsync=False)
    writer.write(deals(1, 6))
    writer.flush()
    writer.close()  # the database is still down: pending rows go to the spill journal
    assert sql.rows == {}

    sql2 = FakeSql()
    writer2 = StorageWriter(sql2, None, clock=clock, spill_dir=str(tmp_path / "spill"), fsync=False)
    assert writer2.stats()["sql"].datasets["deals"] == DatasetCounts(written=0, pending=0, spilled=6)
    writer2.write(deals(7, 2))
    writer2.flush()
    writer2.close()
    assert list(sql2.rows.values()) == deals(1, 8)
    assert sql2.closed


def test_rows_no_store_could_write_are_spilled_at_once(tmp_path: Path) -> None:
    sql, clock = FakeSql(), ManualClock()
    sql.down = True
    writer = StorageWriter(sql, None, max_pending_rows=10**6, policy=POLICY, clock=clock,
                           spill_dir=str(tmp_path / "spill"), fsync=False)
    writer.write(deals(1, 3))
    writer.flush()  # acknowledged: durable in the spill journal, not merely in memory
    assert writer.stats()["sql"].datasets["deals"] == DatasetCounts(written=0, pending=0, spilled=3)
    writer.close()
    assert len(list((tmp_path / "spill" / "sql.deals").rglob("*.arrows"))) == 1


def test_without_spill_directory_a_flush_nobody_could_write_is_not_acknowledged() -> None:
    sql = FakeSql()
    sql.down = True
    writer = StorageWriter(sql, None, policy=POLICY, clock=ManualClock())
    writer.write(deals(1, 2))
    with pytest.raises(StoreUnavailableError, match="2 rows not written by any store and not spilled"):
        writer.flush()
    assert writer.stats()["sql"].datasets["deals"].pending == 2  # kept, retried later


def test_full_parquet_disk_gives_a_clear_error_while_sql_keeps_going() -> None:
    sql, parquet, clock = FakeSql(), FakeParquet(), ManualClock()
    writer = StorageWriter(sql, parquet, policy=POLICY, clock=clock)
    parquet.full = True
    writer.write(deals(1, 4))
    writer.flush()
    status = writer.stats()
    assert status["parquet"].healthy is False
    assert status["parquet"].last_error == "parquet root /x not writable: [Errno 28] No space left on device"
    assert status["sql"].datasets["deals"].written == 4
    parquet.full = False
    clock.advance(5)
    writer.write(deals(5, 1))
    writer.flush()
    assert parquet.rows == deals(1, 5)
    assert writer.stats()["parquet"].healthy is True
    writer.close()


def test_a_malformed_symbol_is_quarantined_and_its_neighbours_are_written() -> None:
    sql = FakeSql()
    writer = StorageWriter(sql, None)
    writer.write([sample_deal(1), sample_deal(2, symbol="../x"), sample_deal(3)])
    writer.flush()
    assert sorted(sql.rows) == [("btc_usdt", 1), ("btc_usdt", 3)]
    (q,) = sql.others
    assert isinstance(q, QuarantinedFrame) and q.channel == "deals" and q.connection == "storage"
    assert q.reason.startswith("deals.symbol: not a symbol: malformed symbol '../x'")
    assert json.loads(q.payload)["values"]["symbol"] == "../x"
    assert writer.quarantine_stats()["by_reason"] == {"deals.symbol: not a symbol": 1}
    writer.close()
    with pytest.raises(StorageError):
        writer.flush()


@pytest.mark.postgres
def test_real_postgres_refusing_connections_then_back(migrated_pg_url: str, tmp_path: Path) -> None:
    from recorder.storage.sql import SqlStore

    clock = ManualClock()
    sql = SqlStore(migrated_pg_url)
    parquet = ParquetStore(tmp_path / "pq", fsync=False)
    writer = StorageWriter(sql, parquet, policy=POLICY, clock=clock, spill_dir=str(tmp_path / "spill"),
                           max_pending_rows=5, fsync=False)
    name = sa.make_url(migrated_pg_url).database
    admin = sa.create_engine(os.environ["OKEX_TEST_PG_URL"], isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)

    def allow(flag: bool) -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(flag).lower()}'))
            if not flag:
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": name})

    try:
        writer.write(deals(1, 3))
        writer.flush()
        allow(False)
        for k in range(4):
            writer.write(deals(4 + 3 * k, 3))
            writer.flush()
            clock.advance(0.3)
        status = writer.stats()["sql"]
        assert status.healthy is False
        assert status.datasets["deals"].written == 3
        assert status.datasets["deals"].pending + status.datasets["deals"].spilled == 12
        allow(True)
        clock.advance(60)
        writer.flush()
        assert writer.stats()["sql"].datasets["deals"] == DatasetCounts(written=15, pending=0, spilled=0)
        writer.close()
    finally:
        allow(True)
        admin.dispose()
    check = sa.create_engine(migrated_pg_url, poolclass=sa.pool.NullPool)
    with check.connect() as conn:
        got = conn.execute(sa.text("SELECT tid, price, amount FROM deals ORDER BY tid")).all()
    check.dispose()
    assert [tuple(r) for r in got] == [(d.tid, d.price, d.amount) for d in deals(1, 15)]
    back = pads.dataset(tmp_path / "pq" / "deals", partitioning="hive").to_table()
    assert sorted(back["tid"].to_pylist()) == list(range(1, 16))


class ArrowStore:
    """A third store, plugged in through the Store seam only (``stores=[...]``); keeps Arrow tables."""

    name = "memory"

    def __init__(self) -> None:
        self.batches: list[object] = []
        self.down = False

    def write_batch(self, records: Sequence[Record]) -> None:
        if self.down:
            raise StoreUnavailableError("memory store down")
        self.batches.append(records)

    def close(self) -> None:
        pass

    def deals(self) -> list[Deal]:
        from recorder.storage.schema import Batch

        out: list[Deal] = []
        for b in self.batches:
            assert isinstance(b, Batch)
            if "deals" in b.groups:
                out.extend(DATASETS["deals"].from_row(r) for r in b.rows("deals"))
        return out


def test_a_store_is_plugged_in_through_the_seam_with_accounting_and_arrow_replay(tmp_path: Path) -> None:
    from recorder.storage.schema import _TableRecords

    sql, extra, clock = FakeSql(), ArrowStore(), ManualClock()
    writer = StorageWriter(sql, stores=[extra], policy=POLICY, clock=clock, spill_dir=str(tmp_path / "spill"),
                           max_pending_rows=5, fsync=False)
    extra.down = True
    writer.write(deals(1, 20))
    writer.flush()  # sql writes; the memory store is down: its rows spill beyond 5 pending
    stats = writer.stats()
    assert set(stats) == {"sql", "memory"}
    assert stats["memory"].healthy is False
    counts = stats["memory"].datasets["deals"]
    assert counts.written == 0 and counts.pending + counts.spilled == 20
    extra.down = False
    clock.advance(60)
    writer.flush()
    assert sorted(d.tid for d in extra.deals()) == list(range(1, 21))
    # the spilled rows came back as Arrow, never rebuilt into records on the way
    replayed = [b for b in extra.batches if isinstance(b.groups.get("deals"), _TableRecords)]  # type: ignore[attr-defined]
    assert replayed and all(b.groups["deals"]._records is None for b in replayed)  # type: ignore[attr-defined]
    assert writer.stats()["memory"].datasets["deals"].written == 20
    assert writer.stats()["sql"].datasets["deals"].written == 20
    writer.close()


def test_two_stores_may_not_share_a_name() -> None:
    with pytest.raises(StorageError, match="share a name"):
        StorageWriter(stores=[ArrowStore(), ArrowStore()])


class BrokenSql(FakeSql):
    """A store that raises what no store should (a broken install: ModuleNotFoundError), for a while;
    ``refuse`` makes it refuse every batch of more than one row first (the isolating path)."""

    def __init__(self, fail: int, *, refuse: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.refuse = refuse

    def write_batch(self, records: Sequence[Record]) -> None:
        if self.refuse and len(records) > 1:
            raise StorageError("value too long for type character varying(32)")
        if self.fail > 0:
            self.fail -= 1
            raise ModuleNotFoundError("No module named 'adbc_driver_manager'")
        super().write_batch(records)


@pytest.mark.parametrize("refuse", [False, True], ids=["whole batch", "while isolating"])
def test_an_unexpected_exception_of_a_store_is_an_outage_and_loses_nothing(
    refuse: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A store raising something unexpected (here the missing ADBC driver of a plain install) used to
    end the writer thread with the batch's rows lost while status said `sql ok`. It is an outage of that
    store now: the rows are kept and written once it works, the other store goes on, a span says so."""
    sql, parquet, clock = BrokenSql(fail=2, refuse=refuse), FakeParquet(), ManualClock()
    writer = StorageWriter(sql, parquet, policy=POLICY, clock=clock)
    writer.write(deals(1, 6))
    writer.flush()
    down = writer.stats()["sql"]
    assert down.healthy is False and "failed unexpectedly: ModuleNotFoundError" in (down.last_error or "")
    assert down.datasets["deals"] == DatasetCounts(written=0, pending=6, spilled=0)
    assert writer.stats()["parquet"].datasets["deals"].written == 6
    assert sum("failed unexpectedly" in r.getMessage() for r in caplog.records) == 1  # once, with traceback
    for _ in range(3):
        clock.advance(10)
        writer.write(deals(7 + _, 1))
        writer.flush()
    assert writer.stats()["sql"].healthy is True
    writer.close()
    assert list(sql.rows.values()) == deals(1, 9) and sql.inserts == 9  # each once, in order
    assert [r.tid for r in parquet.rows] == list(range(1, 10))
    spans = [r for r in sql.others + parquet.others if getattr(r, "kind", None) is not None]
    assert spans and all(s.connection == "sql" for s in spans)
