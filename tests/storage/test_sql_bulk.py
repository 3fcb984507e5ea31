"""BulkSqlStore (ADBC bulk ingest + INSERT ... SELECT ... ON CONFLICT) against SqlStore.

Every dataset written through the bulk store must read back equal, value for value (and on SQLite
byte for byte: the stored text), to the same records written through SqlStore; the merge rules,
idempotence and errors are SqlStore's (its tests are re-run here against the bulk store).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from recorder import records as rec
from recorder.errors import ConfigError, StorageError, StoreUnavailableError, is_retryable
from recorder.records import Record
from recorder.storage import migrate
from recorder.storage.datasets import Merge
from recorder.storage.schema import DATASETS
from recorder.storage.sql import SqlStore
from recorder.storage.sql_bulk import BulkSqlStore, open_sql_store
from tests.fixtures.storage import sample_records, v5_records
from tests.storage.test_sql import (  # noqa: F401 - SqlStore's behaviour tests, re-run on the bulk store
    test_a_failing_batch_writes_nothing,
    test_a_non_record_is_refused,
    test_changed_order_updates_its_row_and_adds_a_status_change,
    test_decimals_and_times_read_back_exactly_as_python_types,
    test_duplicates_inside_one_batch_are_written_once,
    test_every_table_round_trips_exact_values,
    test_feed_event_span_is_written_open_then_closed_and_never_reopened,
    test_non_utc_datetimes_are_stored_as_the_same_utc_instant,
    test_open_kline_is_upserted_last_seen_wins,
    test_top_of_book_is_queryable_with_plain_sql,
    test_writing_the_same_records_twice_leaves_one_row_each,
    ticker,
)

BULK = [n for n, ds in DATASETS.items() if ds.merge in (Merge.KEEP_FIRST, Merge.LAST_SEEN_WINS)]


@pytest.fixture
def store(migrated_db_url: str) -> Iterator[SqlStore]:
    with BulkSqlStore(migrated_db_url, sqlite_alone=True) as s:
        yield s


def bulk_records() -> list[Record]:
    """Both venues' sample records of every dataset the bulk path writes (edge decimals, NULLs)."""
    return [r for r in [*sample_records(), *v5_records()]
            if any(isinstance(r, DATASETS[n].record_type) for n in BULK)]


def raw_rows(engine: sa.Engine, name: str) -> list[tuple[Any, ...]]:
    """Every row as the driver returns it (SQLite: the stored text itself), in key order."""
    table = DATASETS[name].table
    with engine.connect() as conn:
        cols = ", ".join(f'"{c.name}"' for c in table.columns)
        keys = ", ".join(f'"{k}"' for k in DATASETS[name].key)
        return [tuple(r) for r in conn.exec_driver_sql(f"SELECT {cols} FROM {name} ORDER BY {keys}")]


def _clear(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for name in DATASETS:
            conn.execute(DATASETS[name].table.delete())


def _spy(store: BulkSqlStore) -> list[int]:
    calls: list[int] = []
    real = store._write

    def write(tables: Any, count: int) -> None:
        calls.append(count)
        real(tables, count)

    store._write = write  # type: ignore[method-assign]
    return calls


def test_every_bulk_dataset_is_stored_exactly_as_sqlstore_stores_it(migrated_db_url: str) -> None:
    records = bulk_records()
    more = [replace(r, ts_recv=r.ts_recv + timedelta(microseconds=1)) for r in records]  # type: ignore[union-attr,arg-type]  # a second batch
    with SqlStore(migrated_db_url) as plain:
        plain.write_batch(records)
        plain.write_batch(more)
        expected = {name: raw_rows(plain.engine, name) for name in BULK}
        _clear(plain.engine)
    with BulkSqlStore(migrated_db_url, sqlite_alone=True) as bulk:
        calls = _spy(bulk)  # type: ignore[arg-type]
        bulk.write_batch(records)
        bulk.write_batch(more)
        assert calls == [len(records), len(more)]  # both went the bulk path
        for name in BULK:
            got = raw_rows(bulk.engine, name)
            assert got and got == expected[name], name
            assert [type(v) for v in got[0]] == [type(v) for v in expected[name][0]], name


def test_sqlite_text_is_byte_for_byte_sqlstores(migrated_sqlite_url: str) -> None:
    records = bulk_records()
    with SqlStore(migrated_sqlite_url) as plain:
        plain.write_batch(records)
        expected = {n: raw_rows(plain.engine, n) for n in BULK}
        _clear(plain.engine)
    with BulkSqlStore(migrated_sqlite_url, sqlite_alone=True) as bulk:
        bulk.write_batch(records)
        for name in BULK:
            assert raw_rows(bulk.engine, name) == expected[name], name
        with bulk.engine.connect() as conn:
            low, ts = conn.exec_driver_sql("SELECT low, ts_recv FROM tickers WHERE venue='okex_v1'").one()
            types = conn.exec_driver_sql("SELECT typeof(low), typeof(ts_recv), typeof(day_high) FROM tickers "
                                         "WHERE venue='okex_v1'").one()
    assert (low, ts) == ("0.00000001", "2026-11-23 23:59:59.999999")
    assert tuple(types) == ("text", "text", "null")


def test_same_batch_twice_and_duplicates_inside_go_the_bulk_path(store: BulkSqlStore) -> None:
    calls = _spy(store)
    deal = next(r for r in sample_records() if isinstance(r, rec.Deal))
    batch: list[Record] = [ticker(1), ticker(1), deal, deal, ticker(2)]
    store.write_batch(batch)
    store.write_batch(batch)
    assert len(calls) == 2
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM tickers").scalar_one() == 2
        assert conn.exec_driver_sql("SELECT count(*) FROM deals").scalar_one() == 1


def test_keep_first_inside_one_batch_keeps_the_first(store: BulkSqlStore) -> None:
    first = ticker(1)
    second = replace(first, buy=Decimal("1"))
    store.write_batch([first, second])
    store.write_batch([second])
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT buy FROM tickers").scalars().all()
    assert stored in (["6500.1"], [Decimal("6500.1")])


def test_last_seen_wins_ties_go_to_the_later_row(store: BulkSqlStore) -> None:
    k = next(r for r in sample_records() if isinstance(r, rec.Kline))
    a, b = replace(k, close=Decimal("1")), replace(k, close=Decimal("2"))
    older = replace(k, ts_recv=k.ts_recv - timedelta(seconds=1), close=Decimal("3"))
    store.write_batch([a, b, older])
    with store.engine.connect() as conn:
        assert Decimal(conn.exec_driver_sql("SELECT close FROM klines").scalar_one()) == Decimal("2")


@pytest.mark.postgres
def test_a_refused_row_is_a_non_retryable_storage_error(migrated_pg_url: str) -> None:
    with BulkSqlStore(migrated_pg_url) as store:
        with pytest.raises(StorageError, match="null value in column \"symbol\"") as info:
            store.write_batch([ticker(1), ticker(2, symbol=None)])  # NOT NULL symbol
        assert not isinstance(info.value, StoreUnavailableError) and not is_retryable(info.value)
        message = str(info.value)
        assert "INSERT INTO" not in message and "6500" not in message  # neither the statement nor values
        with pytest.raises(StorageError, match="too long"):  # refused, as by SqlStore: never truncated
            store.write_batch([ticker(1, symbol="x" * 33)])
        store.write_batch([ticker(1)])  # the store goes on
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM tickers").scalar_one() == 1


def test_unreachable_postgres_is_unavailable_and_password_masked(caplog: Any) -> None:
    store = BulkSqlStore("postgresql+psycopg://recorder:s3cr3t-pw@127.0.0.1:1/nowhere")
    try:
        with pytest.raises(StoreUnavailableError) as info:
            store.write_batch([ticker(1)])
        assert is_retryable(info.value)
        assert "s3cr3t" not in str(info.value) and "s3cr3t" not in caplog.text
    finally:
        store.close()


def test_sqlite_locked_by_another_process_is_waited_for(migrated_sqlite_url: str) -> None:
    path = sa.make_url(migrated_sqlite_url).database
    script = ("import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
              "c.execute('BEGIN EXCLUSIVE'); c.execute('DELETE FROM tickers'); print('locked', flush=True); "
              "time.sleep(1); c.execute('ROLLBACK')")
    with BulkSqlStore(migrated_sqlite_url, sqlite_alone=True) as store:
        store.write_batch([ticker(0)])
        blocker = subprocess.Popen([sys.executable, "-c", script, str(path)],
                                   stdout=subprocess.PIPE, text=True)
        try:
            assert blocker.stdout is not None and blocker.stdout.readline().strip() == "locked"
            store.write_batch([ticker(1)])  # waits (busy_timeout) for the other process, then writes
        finally:
            assert blocker.wait(timeout=30) == 0
            assert blocker.stdout is not None
            blocker.stdout.close()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM tickers").scalar_one() == 2


def test_two_sqlite_copies_in_one_process_do_not_exclude_each_other(migrated_sqlite_url: str) -> None:
    # (and after a refused batch, the two copies even disagree about which rows the file holds)
    # Why the recorder never uses BulkSqlStore on SQLite: a pysqlite write lock held in this
    # process does not stop the ADBC driver's own SQLite (sqlite.org/howtocorrupt.html 2.2.1).
    with BulkSqlStore(migrated_sqlite_url, sqlite_alone=True) as store:
        store.write_batch([ticker(0)])
        blocker = sa.create_engine(migrated_sqlite_url, poolclass=sa.pool.NullPool)
        try:
            with blocker.connect() as conn:
                conn.exec_driver_sql("BEGIN EXCLUSIVE")
                conn.exec_driver_sql("DELETE FROM tickers WHERE 0")
                store.write_batch([ticker(1)])  # not excluded: written under the other's "exclusive" lock
                conn.exec_driver_sql("ROLLBACK")
        finally:
            blocker.dispose()


def test_sqlite_is_refused_and_the_switch_picks_the_store(migrated_sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match="sql_bulk is for PostgreSQL"):
        BulkSqlStore(migrated_sqlite_url)
    with open_sql_store(migrated_sqlite_url, bulk=True) as store:
        assert type(store) is SqlStore


@pytest.mark.postgres
def test_the_switch_picks_the_bulk_store_on_postgres(migrated_pg_url: str) -> None:
    with open_sql_store(migrated_pg_url, bulk=True) as store:
        assert type(store) is BulkSqlStore
    with open_sql_store(migrated_pg_url) as store:
        assert type(store) is SqlStore


@pytest.mark.postgres
def test_postgres_connection_killed_under_the_store_is_recovered(migrated_pg_url: str) -> None:
    with BulkSqlStore(migrated_pg_url) as store:
        store.write_batch([ticker(1)])
        database = sa.make_url(migrated_pg_url).database
        admin = sa.create_engine(migrated_pg_url, poolclass=sa.pool.NullPool)
        try:
            with admin.begin() as conn:
                conn.execute(sa.select(sa.func.pg_terminate_backend(sa.column("pid")))
                             .select_from(sa.table("pg_stat_activity"))
                             .where(sa.column("datname") == database,
                                    sa.column("pid") != sa.func.pg_backend_pid())).all()
        finally:
            admin.dispose()
        with pytest.raises(StoreUnavailableError):
            store.write_batch([ticker(2)])  # the dead connection: retry later
        store.write_batch([ticker(2)])  # reconnected
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM tickers").scalar_one() == 2


def test_schema_check_is_sqlstores(sqlite_url: str) -> None:
    from recorder.errors import SchemaNotAtHeadError

    with pytest.raises(SchemaNotAtHeadError):
        BulkSqlStore(sqlite_url, sqlite_alone=True)
    migrate.upgrade(sqlite_url)
    BulkSqlStore(sqlite_url, sqlite_alone=True).close()


# The writer-level tests run on PostgreSQL only: after a refused batch on SQLite the ADBC driver's
# SQLite copy and SQLAlchemy's disagree about the file (the hazard the recorder avoids).
@pytest.mark.postgres
@pytest.mark.parametrize("poisoned", sorted(DATASETS))
def test_poisoned_batches_are_isolated_as_with_sqlstore(
    poisoned: str, migrated_pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.faults import test_poisoned_batch as poisoned_batch

    monkeypatch.setattr(poisoned_batch, "SqlStore", lambda url: BulkSqlStore(url, sqlite_alone=True))
    poisoned_batch.test_one_bad_record_of_each_kind_costs_only_itself(poisoned, migrated_pg_url, tmp_path)


@pytest.mark.postgres
@pytest.mark.parametrize("kind", [SqlStore, BulkSqlStore])
def test_a_row_the_database_refuses_is_isolated_alone_by_the_writer(
    kind: type[SqlStore], migrated_pg_url: str, tmp_path: Path
) -> None:
    from recorder.storage.writer import StorageWriter

    store = kind(migrated_pg_url)
    writer = StorageWriter(store, spill_dir=str(tmp_path / "spill"), fsync=False)
    good = [ticker(i) for i in range(50)]
    writer.write([*good[:25], ticker(999, symbol=None), *good[25:]])  # NOT NULL: refused by the database
    writer.flush()
    counts = writer.stats()["sql"].datasets["tickers"]
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT count(*) FROM tickers").scalar_one()
    writer.close()
    assert (stored, counts.written, counts.refused, counts.pending) == (50, 50, 1, 0)


def test_the_bench_compares_both_stores_on_the_same_batches() -> None:
    from bench.sql_bulk import run

    rates = run(None, rows=30, count=2)
    assert set(rates) == {"sqlite executemany", "sqlite bulk"} and all(r > 0 for r in rates.values())


@pytest.mark.postgres
def test_the_config_switch_opens_the_bulk_store(migrated_pg_url: str, migrated_sqlite_url: str,
                                                tmp_path: Path) -> None:
    from recorder.config import load_config
    from recorder.storage.consume import open_stores

    assert load_config(None, env={}).storage.sql_bulk is True  # on by default (PostgreSQL only)
    for url, kind in ((migrated_pg_url, BulkSqlStore), (migrated_sqlite_url, SqlStore)):
        stores = open_stores(url, None, sql_bulk=load_config(None, env={}).storage.sql_bulk)
        try:
            assert type(stores["sql"]) is kind
        finally:
            stores["sql"].close()
    path = tmp_path / "recorder.toml"
    path.write_text("[storage]\nsql_bulk = false\n")
    config = load_config(path, env={})
    assert config.storage.sql_bulk is False
    for url in (migrated_pg_url, migrated_sqlite_url):
        stores = open_stores(url, None, sql_bulk=config.storage.sql_bulk)
        try:
            assert type(stores["sql"]) is SqlStore
        finally:
            stores["sql"].close()


@pytest.mark.postgres
def test_several_bulk_writers_on_one_postgres_database_do_not_conflict(
    migrated_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.storage import test_sql

    monkeypatch.setattr(test_sql, "SqlStore", BulkSqlStore)
    test_sql.test_several_writers_on_one_postgres_database_do_not_conflict(migrated_pg_url)


@pytest.mark.postgres
def test_the_url_query_reaches_libpq(migrated_pg_url: str) -> None:
    """The bulk connection dropped the URL's query: `?host=/var/run/postgresql` (a Unix socket) failed
    to connect where SqlStore did, and `sslmode`, `application_name` ... were silently not applied."""
    url = sa.make_url(migrated_pg_url)
    tagged = url.update_query_dict({"application_name": "okex-bulk-query", "connect_timeout": "5"})
    store = BulkSqlStore(tagged)
    try:
        store.write_batch(sample_records())
        with store._connect().cursor() as cur:
            cur.execute("SELECT current_setting('application_name')")
            assert cur.fetchall() == [("okex-bulk-query",)]
    finally:
        store.close()
    # SqlStore's connect timeout applies unless the URL sets one (a silent host is not waited for minutes)
    for given, timeout in ((tagged, "connect_timeout=5"), (url, "connect_timeout=10")):
        with BulkSqlStore(given) as store:
            assert timeout in store._adbc_uri
    socket_dir = Path("/var/run/postgresql")
    if not any(socket_dir.glob(f".s.PGSQL.{url.port or 5432}")):
        return  # no local socket here: the TCP case above shows the query is passed on
    socket_query = {"host": str(socket_dir), "port": str(url.port or 5432)}
    over_socket = url.set(host=None, port=None).update_query_dict(socket_query)
    store = BulkSqlStore(over_socket)
    try:
        store.write_batch(sample_records())
        with store._connect().cursor() as cur:
            cur.execute("SELECT inet_server_addr() IS NULL")  # NULL over a Unix socket
            assert cur.fetchall() == [(True,)]
    finally:
        store.close()


@pytest.mark.postgres
def test_a_role_without_temporary_privilege_falls_back_to_executemany(
    migrated_pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With sql_bulk on by default, a role that may not create TEMP tables (a hardened database) had
    every batch refused as a StorageError, so the writer quarantined every row. Now the store says
    so once and writes with executemany: the same rows SqlStore stores."""
    import uuid

    records = bulk_records()
    with SqlStore(migrated_pg_url) as plain:
        plain.write_batch(records)
        expected = {name: raw_rows(plain.engine, name) for name in BULK}
        _clear(plain.engine)
    url = sa.make_url(migrated_pg_url)
    role = f"okex_notemp_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
        conn.exec_driver_sql(f'REVOKE TEMPORARY ON DATABASE "{url.database}" FROM PUBLIC')
        conn.exec_driver_sql(f'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO "{role}"')
    try:
        with caplog.at_level("WARNING", logger="recorder.storage.sql_bulk"), \
                BulkSqlStore(url.set(username=role)) as bulk:
            bulk.write_batch(records)
            bulk.write_batch(records)  # no second attempt, no second warning
            assert bulk.bulk_refused is not None and "no TEMPORARY privilege" in bulk.bulk_refused
            for name in BULK:
                assert raw_rows(bulk.engine, name) == expected[name], name
        warnings = [r.getMessage() for r in caplog.records if "TEMPORARY" in r.getMessage()]
        assert len(warnings) == 1 and "writing with executemany from now on" in warnings[0]
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'GRANT TEMPORARY ON DATABASE "{url.database}" TO PUBLIC')
            conn.exec_driver_sql(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER')
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')
        admin.dispose()


@pytest.mark.postgres
def test_an_install_without_the_adbc_driver_falls_back_to_executemany(
    migrated_pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A plain `pip install -e .` lacked the ADBC driver (it was in the bench extra): with sql_bulk on
    by default the writer thread died of ModuleNotFoundError and the batch's rows were lost. Now it is
    a base dependency, and a missing driver is one warning and executemany: the rows SqlStore stores."""
    records = bulk_records()
    with SqlStore(migrated_pg_url) as plain:
        plain.write_batch(records)
        expected = {name: raw_rows(plain.engine, name) for name in BULK}
        _clear(plain.engine)
    for missing in ("adbc_driver_manager.dbapi", "adbc_driver_postgresql.dbapi"):
        monkeypatch.setitem(sys.modules, missing, None)  # import raises ModuleNotFoundError
        caplog.clear()
        with caplog.at_level("WARNING", logger="recorder.storage.sql_bulk"), \
                BulkSqlStore(migrated_pg_url) as bulk:
            bulk.write_batch(records)
            bulk.write_batch(records)
            assert bulk.bulk_refused is not None and "ADBC driver is not installed" in bulk.bulk_refused
            for name in BULK:
                assert raw_rows(bulk.engine, name) == expected[name], (missing, name)
            _clear(bulk.engine)
        assert len(caplog.records) == 1
        monkeypatch.undo()  # the real module back in sys.modules
