"""SqlStore on SQLite and PostgreSQL: exact round trips, idempotent writes, upserts, errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from recorder import records as rec
from recorder.errors import SchemaNotAtHeadError, StorageError, StoreUnavailableError, is_retryable
from recorder.records import Record
from recorder.storage import migrate, schema
from recorder.storage.schema import DATASETS
from recorder.storage.sql import SqlStore
from tests.fixtures.storage import T0, sample_records, v5_records


@pytest.fixture
def store(migrated_db_url: str) -> Iterator[SqlStore]:
    with SqlStore(migrated_db_url) as s:
        yield s


def read_all(store: SqlStore, name: str) -> list[Any]:
    ds = DATASETS[name]
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(ds.table)).mappings().all()
    return [ds.from_row(row) for row in rows]


def count(store: SqlStore, name: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(DATASETS[name].table)).scalar_one())


def ticker(i: int, **changes: Any) -> rec.Ticker:
    t = T0 + timedelta(milliseconds=i)
    base = rec.Ticker(venue="okex_v1", symbol="btc_usdt", ts_event=t - timedelta(milliseconds=3), ts_recv=t,
                      buy=Decimal("6500.1"), sell=Decimal("6500.2"), last=Decimal("6500.15"),
                      high=Decimal("6600"), low=Decimal("6400"), vol=Decimal(i).scaleb(-8))
    return replace(base, **changes)


def order(status: rec.OrderStatus, deal_amount: str, seen: datetime) -> rec.Order:
    return rec.Order(venue="okex_v1",
                     order_id=42, symbol="eth_btc", type=rec.OrderType.SELL, price=Decimal("0.03125"),
                     amount=Decimal("2"), deal_amount=Decimal(deal_amount), avg_price=Decimal("0.03125"),
                     status=status, ts_event=T0, ts_recv=seen)


def test_every_table_round_trips_exact_values(store: SqlStore) -> None:
    originals = [*sample_records(), *v5_records()]  # both venues: same symbols' keys never collide
    store.write_batch(originals)
    for name in DATASETS:
        expected = [r for r in originals if isinstance(r, DATASETS[name].record_type)]
        got = read_all(store, name)
        key = repr
        assert sorted(got, key=key) == sorted(expected, key=key), name


def test_decimals_and_times_read_back_exactly_as_python_types(store: SqlStore) -> None:
    store.write_batch(sample_records())
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(schema.tickers)).mappings().one()
    assert row["buy"] == Decimal("10532696.39199642") and isinstance(row["buy"], Decimal)
    assert row["low"] == Decimal("0.00000001")
    assert row["last"] == Decimal("123456789.123456789")
    assert row["vol"] == Decimal("1E-8")
    assert row["day_high"] is None
    assert row["ts_recv"] == T0
    assert row["ts_recv"].utcoffset() == timedelta(0)
    assert row["ts_event"] == T0 - timedelta(milliseconds=250)


def test_top_of_book_is_queryable_with_plain_sql(store: SqlStore) -> None:
    store.write_batch(sample_records())
    with store.engine.connect() as conn:
        got = conn.execute(
            sa.select(schema.book_snapshots.c.symbol, schema.book_snapshots.c.best_bid,
                      schema.book_snapshots.c.best_ask_amount)
            .where(schema.book_snapshots.c.best_bid.is_not(None))
        ).all()
    assert [tuple(r) for r in got] == [("btc_usdt", Decimal("10532696.39199642"), Decimal("1.5"))]


def test_non_utc_datetimes_are_stored_as_the_same_utc_instant(store: SqlStore) -> None:
    plus8 = timezone(timedelta(hours=8))
    local = datetime(2026, 11, 24, 8, 0, 0, 123456, tzinfo=plus8)
    store.write_batch([ticker(0, ts_event=local, ts_recv=local)])
    (back,) = read_all(store, "tickers")
    assert back.ts_event == datetime(2026, 11, 24, 0, 0, 0, 123456, tzinfo=UTC)
    assert back.ts_event.tzinfo is not None and back.ts_event.utcoffset() == timedelta(0)


def test_writing_the_same_records_twice_leaves_one_row_each(store: SqlStore) -> None:
    batch = sample_records()
    store.write_batch(batch)
    store.write_batch(batch)
    store.write_batch(batch[:4])
    counts = {name: count(store, name) for name in DATASETS}
    assert counts == {
        "tickers": 1, "book_snapshots": 2, "deals": 1, "klines": 1, "balances": 1, "orders": 1,
        "order_status_changes": 1, "feed_events": 2, "instruments": 0, "fills": 0,
        "quarantine": 2,  # no identity: every quarantined frame is kept
    }
    # The same keys on another venue are other rows (venue is part of every natural key).
    v5 = v5_records()
    store.write_batch(v5)
    store.write_batch(v5)
    counts = {name: count(store, name) for name in DATASETS}
    assert counts == {
        "tickers": 2, "book_snapshots": 3, "deals": 2, "klines": 2, "balances": 2, "orders": 2,
        "order_status_changes": 2, "feed_events": 3, "instruments": 1, "fills": 1, "quarantine": 2,
    }


def test_duplicates_inside_one_batch_are_written_once(store: SqlStore) -> None:
    deal = next(r for r in sample_records() if isinstance(r, rec.Deal))
    store.write_batch([ticker(1), ticker(1), deal, deal, ticker(2)])
    assert [t.ts_recv for t in sorted(read_all(store, "tickers"), key=lambda t: t.ts_recv)] == [
        T0 + timedelta(milliseconds=1), T0 + timedelta(milliseconds=2)]
    assert read_all(store, "deals") == [deal]


def test_open_kline_is_upserted_last_seen_wins(store: SqlStore) -> None:
    start = datetime(2026, 11, 23, 12, 1, tzinfo=UTC)
    first = rec.Kline(venue="okex_v1", symbol="btc_usdt", period=rec.KlinePeriod.MIN_1, ts_event=start,
                      ts_recv=start + timedelta(seconds=1), open=Decimal("1"), high=Decimal("1"),
                      low=Decimal("1"), close=Decimal("1"), volume=Decimal("0.1"))
    second = replace(first, ts_recv=start + timedelta(seconds=2), high=Decimal("2"), close=Decimal("2"),
                     volume=Decimal("0.3"))
    third = replace(second, ts_recv=start + timedelta(seconds=3), low=Decimal("0.5"), close=Decimal("0.7"))
    store.write_batch([first, second])  # the same candle twice in one batch
    assert read_all(store, "klines") == [second]
    store.write_batch([third])
    assert read_all(store, "klines") == [third]
    store.write_batch([first, second])  # an older state replayed (e.g. from the journal) loses
    assert read_all(store, "klines") == [third]


def test_changed_order_updates_its_row_and_adds_a_status_change(store: SqlStore) -> None:
    placed = order(rec.OrderStatus.OPEN, "0", T0)
    store.write_batch([placed, rec.OrderStatusChange(venue="okex_v1", order_id=42, symbol="eth_btc",
                                                     status=rec.OrderStatus.OPEN, previous_status=None,
                                                     deal_amount=Decimal(0), ts_recv=T0)])
    later = T0 + timedelta(seconds=5)
    partial = order(rec.OrderStatus.PARTIALLY_FILLED, "0.5", later)
    change = rec.OrderStatusChange(venue="okex_v1",
                                   order_id=42, symbol="eth_btc", status=rec.OrderStatus.PARTIALLY_FILLED,
                                   previous_status=rec.OrderStatus.OPEN, deal_amount=Decimal("0.5"),
                                   ts_recv=later)
    store.write_batch([partial, change])
    store.write_batch([partial, change])  # seen again unchanged: nothing new
    assert read_all(store, "orders") == [partial]
    changes = sorted(read_all(store, "order_status_changes"), key=lambda c: c.ts_recv)
    assert [(c.status, c.previous_status, c.deal_amount) for c in changes] == [
        (rec.OrderStatus.OPEN, None, Decimal(0)),
        (rec.OrderStatus.PARTIALLY_FILLED, rec.OrderStatus.OPEN, Decimal("0.5")),
    ]
    store.write_batch([placed])  # a stale state replayed does not roll the order back
    assert read_all(store, "orders") == [partial]


def test_feed_event_span_is_written_open_then_closed_and_never_reopened(store: SqlStore) -> None:
    opened = rec.FeedEvent(kind=rec.FeedEventKind.DISCONNECTED, ts_start=T0, ts_end=None,
                           connection="ws-0", symbols=("btc_usdt",), event_id="span-1")
    closed = replace(opened, ts_end=T0 + timedelta(seconds=7), detail="reconnected")
    store.write_batch([opened])
    assert read_all(store, "feed_events") == [opened]
    store.write_batch([closed])
    assert read_all(store, "feed_events") == [closed]
    store.write_batch([opened])  # replayed open record
    assert read_all(store, "feed_events")[0].ts_end == T0 + timedelta(seconds=7)
    store.write_batch([opened, replace(closed, event_id="span-2"), replace(opened, event_id="span-2")])
    by_id = {e.event_id: e for e in read_all(store, "feed_events")}
    assert by_id["span-2"].ts_end == T0 + timedelta(seconds=7)
    with store.engine.connect() as conn:  # gaps are findable with plain SQL
        gaps = conn.execute(
            sa.select(schema.feed_events.c.event_id)
            .where(schema.feed_events.c.kind == "disconnected", schema.feed_events.c.ts_end > T0)
            .order_by(schema.feed_events.c.event_id)
        ).scalars().all()
    assert gaps == ["span-1", "span-2"]


def test_a_batch_is_one_transaction_with_one_statement_per_table(store: SqlStore) -> None:
    statements: list[tuple[str, bool]] = []

    def spy(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            statements.append((statement.split("(")[0].split()[-1], executemany))

    sa.event.listen(store.engine, "before_cursor_execute", spy)
    try:
        store.write_batch([ticker(i) for i in range(200)] + [rec.BookSnapshot(venue="okex_v1",
            symbol="btc_usdt", ts_event=T0, ts_recv=T0 + timedelta(microseconds=i), bids=(), asks=())
            for i in range(200)])
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", spy)
    assert sorted({name for name, _ in statements}) == ["book_snapshots", "tickers"]
    assert len(statements) <= 2 * 2  # bulk: at most a page or two per table, never 400
    assert count(store, "tickers") == 200 and count(store, "book_snapshots") == 200


def test_a_failing_batch_writes_nothing(store: SqlStore) -> None:
    naive = datetime(2026, 11, 23, 12, 0)  # noqa: DTZ001 - the point of the test
    bad = rec.Deal(venue="okex_v1",
                   symbol="btc_usdt", tid=1, price=Decimal(1), amount=Decimal(1), side=rec.Side.BUY,
                   ts_event=naive, ts_recv=naive)
    with pytest.raises(StorageError, match="timezone-aware") as info:
        store.write_batch([ticker(1), bad])
    assert not isinstance(info.value, StoreUnavailableError)
    assert count(store, "tickers") == 0 and count(store, "deals") == 0


def test_a_non_record_is_refused(store: SqlStore) -> None:
    with pytest.raises(StorageError, match="not a storable record"):
        store.write_batch(["hello"])  # type: ignore[list-item]


def test_empty_database_is_refused_with_the_command_that_fixes_it(sqlite_url: str) -> None:
    with pytest.raises(SchemaNotAtHeadError, match="run: okex-recorder db upgrade --sql-url sqlite:///"):
        SqlStore(sqlite_url)


@pytest.mark.postgres
def test_old_schema_is_refused_on_postgres(pg_url: str) -> None:
    migrate.upgrade(pg_url)
    migrate.downgrade(pg_url, "base")
    with pytest.raises(SchemaNotAtHeadError, match=r"empty database.*okex-recorder db upgrade"):
        SqlStore(pg_url)


def test_unreachable_database_is_unavailable_retryable_and_password_masked(caplog: Any) -> None:
    url = "postgresql+psycopg://recorder:s3cr3t-pw@127.0.0.1:1/nowhere"
    store = SqlStore(url)  # opening does not fail: the schema check waits for the first write
    try:
        assert repr(store) == "SqlStore('postgresql+psycopg://recorder:***@127.0.0.1:1/nowhere')"
        with pytest.raises(StoreUnavailableError) as info:
            store.write_batch([ticker(1)])
        assert is_retryable(info.value)
        message = str(info.value)
        assert "recorder:***@127.0.0.1:1/nowhere" in message
        assert "s3cr3t" not in message and "s3cr3t" not in caplog.text
    finally:
        store.close()


def test_locked_sqlite_file_is_unavailable(migrated_sqlite_url: str) -> None:
    with SqlStore(migrated_sqlite_url) as store:
        blocker = sa.create_engine(migrated_sqlite_url, poolclass=sa.pool.NullPool)
        try:
            with blocker.connect() as conn:
                conn.exec_driver_sql("PRAGMA busy_timeout=0")
                conn.exec_driver_sql("BEGIN EXCLUSIVE")
                with store.engine.connect() as mine:  # don't wait 10 s for the lock
                    mine.exec_driver_sql("PRAGMA busy_timeout=0")
                with pytest.raises(StoreUnavailableError, match="locked"):
                    store.write_batch([ticker(1)])
                conn.exec_driver_sql("ROLLBACK")
        finally:
            blocker.dispose()
        store.write_batch([ticker(1)])  # the lock is gone: the same batch goes through
        assert read_all(store, "tickers") == [ticker(1)]


@pytest.mark.postgres
def test_postgres_connections_killed_under_the_store_are_recovered(migrated_pg_url: str) -> None:
    with SqlStore(migrated_pg_url) as store:
        store.write_batch([ticker(1)])
        database = sa.make_url(migrated_pg_url).database
        admin = sa.create_engine(migrated_pg_url, poolclass=sa.pool.NullPool)
        try:
            with admin.begin() as conn:
                killed = conn.execute(
                    sa.select(sa.func.pg_terminate_backend(sa.column("pid")))
                    .select_from(sa.table("pg_stat_activity"))
                    .where(sa.column("datname") == database, sa.column("pid") != sa.func.pg_backend_pid())
                ).scalars().all()
        finally:
            admin.dispose()
        assert killed and all(killed)
        store.write_batch([ticker(2)])  # pool_pre_ping replaces the dead connection
        assert sorted(t.ts_recv for t in read_all(store, "tickers")) == [
            T0 + timedelta(milliseconds=1), T0 + timedelta(milliseconds=2)]


@pytest.mark.postgres
def test_several_writers_on_one_postgres_database_do_not_conflict(migrated_pg_url: str) -> None:
    batches = [[ticker(i) for i in range(300)], [ticker(i) for i in reversed(range(300))]]
    klines = [rec.Kline(venue="okex_v1", symbol="btc_usdt", period=rec.KlinePeriod.MIN_1,
                        ts_event=T0 + timedelta(minutes=i), ts_recv=T0 + timedelta(minutes=i, seconds=1),
                        open=Decimal(1), high=Decimal(1), low=Decimal(1), close=Decimal(1), volume=Decimal(i))
              for i in range(100)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def write(batch: list[Record], store: SqlStore) -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(5):
                store.write_batch(batch)
        except BaseException as exc:
            errors.append(exc)

    stores = [SqlStore(migrated_pg_url), SqlStore(migrated_pg_url)]
    try:
        threads = [
            threading.Thread(target=write, args=([*batches[0], *klines], stores[0])),
            threading.Thread(target=write, args=([*batches[1], *reversed(klines)], stores[1])),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert count(stores[0], "tickers") == 300
        assert sorted(read_all(stores[0], "klines"), key=lambda k: k.ts_event) == klines
    finally:
        for s in stores:
            s.close()


def test_closed_store_refuses_writes(migrated_sqlite_url: str) -> None:
    store = SqlStore(migrated_sqlite_url)
    store.close()
    store.close()
    with pytest.raises(StorageError, match="closed"):
        store.write_batch([ticker(1)])


def test_sqlite_runs_in_wal_mode(migrated_sqlite_url: str) -> None:
    with SqlStore(migrated_sqlite_url) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


WRITER_SCRIPT = """
import sys
from datetime import timedelta
from decimal import Decimal
from recorder.records import Ticker
from recorder.storage.sql import SqlStore
from tests.fixtures.storage import T0

store = SqlStore(sys.argv[1])
for n in range(10_000):
    base = T0 + timedelta(seconds=n)
    store.write_batch([Ticker(venue="okex_v1",
                              symbol="btc_usdt", ts_event=base, ts_recv=base + timedelta(microseconds=i),
                              buy=Decimal(n), sell=Decimal(i), last=Decimal(1), high=Decimal(1),
                              low=Decimal(1), vol=Decimal(1)) for i in range(500)])
    print(n + 1, flush=True)
"""


def test_a_writer_killed_mid_batch_leaves_only_whole_batches(migrated_db_url: str) -> None:
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, migrated_db_url], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        acknowledged = [int(proc.stdout.readline()) for _ in range(3)]  # three batches committed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    assert acknowledged == [1, 2, 3]
    with SqlStore(migrated_db_url) as store:
        with store.engine.connect() as conn:
            per_batch = conn.execute(
                sa.select(schema.tickers.c.buy, sa.func.count()).group_by(schema.tickers.c.buy)
            ).all()
            if conn.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
        batches = sorted(int(buy) for buy, _ in per_batch)
        assert batches == list(range(len(batches))) and len(batches) >= 3  # nothing acknowledged lost
        assert {n for _, n in per_batch} == {500}  # no half batch
        store.write_batch([ticker(1)])  # and recording resumes


def test_sqlite_stores_the_same_text_on_the_bulk_path_and_the_per_row_path(tmp_path: Path) -> None:
    # Bulk tables go through Arrow; a decimal beyond decimal128(38, 18) sends its dataset the
    # per-row SQLAlchemy way. Both must store the canonical text (``0.00000001``, ``1.5``, ``0``).
    urls = [f"sqlite:///{tmp_path / name}.sqlite" for name in ("bulk", "per_row")]
    wide = Decimal("0.0000000000000000001")  # 19 fractional digits: no Arrow decimal128(38, 18)
    awkward = [Decimal("0"), Decimal("1E-8"), Decimal("1.50"), Decimal("1E+7"), Decimal("-12.5"),
               Decimal("0.0000005"), Decimal("123456789.123456789"), Decimal("10532696.39199642")]
    tickers = [ticker(i, buy=v, sell=v, change=None if i % 2 else v) for i, v in enumerate(awkward)]
    texts = []
    for url, extra in zip(urls, ([], [ticker(99, low=wide)]), strict=True):
        migrate.upgrade(url)
        with SqlStore(url) as s:
            s.write_batch(tickers + extra)
            with s.engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT ts_event, ts_recv, buy, change, vol, low FROM tickers ORDER BY ts_recv").all()
            texts.append(rows[: len(tickers)])  # ticker 99 (the wide one) is the last
    assert texts[0] == texts[1]
    assert [row[2] for row in texts[0]] == ["0", "0.00000001", "1.5", "10000000", "-12.5", "0.0000005",
                                            "123456789.123456789", "10532696.39199642"]
    assert texts[0][0][1] == "2026-11-23 23:59:59.999999"
    assert rows[-1][5] == "0.0000000000000000001"  # stored exactly by the per-row path


@pytest.mark.postgres
def test_a_table_batch_stores_canonical_decimals_on_postgres(migrated_pg_url: str) -> None:
    """Rows that reach SQL as an Arrow table (spill replay, the writer process) keep the value and
    no trailing zeros: NUMERIC holds 1.5, not the decimal128 column's 1.500000000000000000."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from recorder.records import Deal, Side
    from recorder.storage.schema import DATASETS, Batch

    ts = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    values = [("9000.5", "0.00000001"), ("1E+3", "2")]
    deals = [Deal(venue="okx_v5", symbol="BTC-USDT", tid=i, price=Decimal(p), amount=Decimal(a),
                  side=Side.BUY, ts_event=ts, ts_recv=ts) for i, (p, a) in enumerate(values)]
    table = DATASETS["deals"].to_table(deals)
    with SqlStore(migrated_pg_url) as store:
        store.write_batch(Batch.from_table("deals", table))
        with store.engine.connect() as conn:
            query = "SELECT tid, price::text, amount::text FROM deals ORDER BY tid"
            rows = conn.execute(sa.text(query)).all()
    assert [tuple(r) for r in rows] == [(0, "9000.5", "0.00000001"), (1, "1000", "2")]
