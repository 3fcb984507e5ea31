"""Storage cost: bytes on disk per book snapshot (top 20 levels a side) in Parquet and in SQL.

The snapshots are the project's own: the benchmark stream (:mod:`bench.streams`)
through :class:`~recorder.collector.pipeline.FramePipeline` (snapshot on change, depth
20), keeping the :class:`BookSnapshot` records. They are written with the project's
stores: ``ParquetStore`` (zstd; bytes = the ``book_snapshots`` Parquet files after
``close()``), ``SqlStore`` on SQLite (bytes = file size after a WAL checkpoint minus the
size of the freshly migrated empty database) and, when reachable, on PostgreSQL
(``pg_total_relation_size('book_snapshots')`` in a throwaway database: table, TOAST
and indexes).
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from bench import streams
from bench.harness import BenchResult
from recorder.records import BookSnapshot
from recorder.storage.migrate import upgrade
from recorder.storage.parquet import ParquetStore
from recorder.storage.sql import SqlStore
from recorder.venues.okex_v1.parse import ms_to_datetime

SIZES = {"tiny": 3_000, "small": 40_000, "full": 200_000}  # frames (about 2/3 become snapshots)
TARGET_PARQUET = 150.0
# Either URL form is accepted (libpq or SQLAlchemy's); SQLAlchemy wants the psycopg driver named.
PG_ADMIN_URL = os.environ.get("OKEX_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
if PG_ADMIN_URL.startswith("postgresql://"):
    PG_ADMIN_URL = "postgresql+psycopg://" + PG_ADMIN_URL.removeprefix("postgresql://")
BATCH = 5_000


def snapshots(n_frames: int, n_symbols: int = 50) -> list[BookSnapshot]:
    stream = streams.generate(n_frames, n_symbols)
    pipeline = streams.pipeline(snapshot_depth=20)
    t0 = ms_to_datetime(streams.BASE_TS_MS)
    for i, frame in enumerate(stream.frames):
        pipeline.process_frame("bench", t0 + timedelta(microseconds=10 * i), frame.decode())
    return [r for r in pipeline.take() if isinstance(r, BookSnapshot)]


def _write_sql(url: str, records: list[BookSnapshot]) -> None:
    store = SqlStore(url)
    try:
        for i in range(0, len(records), BATCH):
            store.write_batch(records[i:i + BATCH])
    finally:
        store.close()


def _sqlite_bytes(path: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path.stat().st_size


def _postgres(records: list[BookSnapshot]) -> tuple[int, int] | None:
    """(bytes, rows) from a throwaway PostgreSQL database, or None if there is no server."""
    name = f"bench_storage_{os.getpid()}"
    try:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT",
                                 connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception:  # no server: the figure is left out
        return None
    url = sa.make_url(PG_ADMIN_URL).set(database=name)
    try:
        upgrade(url)
        _write_sql(url.render_as_string(hide_password=False), records)
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            size = conn.execute(sa.text("SELECT pg_total_relation_size('book_snapshots')")).scalar_one()
            rows = conn.execute(sa.text("SELECT count(*) FROM book_snapshots")).scalar_one()
        engine.dispose()
        return int(size), int(rows)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def run(size: str) -> BenchResult:
    result = BenchResult("storage_cost", size)
    records = snapshots(SIZES[size])
    n = len(records)
    levels = sum(len(r.bids) + len(r.asks) for r in records) / n
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        root = Path(tmp)
        store = ParquetStore(root / "parquet")
        for i in range(0, n, BATCH):
            store.write_batch(records[i:i + BATCH])
        store.close()
        pq_bytes = sum(f.stat().st_size for f in (root / "parquet" / "book_snapshots").rglob("*.parquet"))
        db = root / "rec.sqlite"
        upgrade(f"sqlite:///{db}")
        empty = _sqlite_bytes(db)
        _write_sql(f"sqlite:///{db}", records)
        sqlite_bytes = _sqlite_bytes(db) - empty
    per_pq = pq_bytes / n
    result.add("snapshots", n, "rows")
    result.add("levels per snapshot (both sides)", levels, "levels")
    result.add("Parquet (zstd) bytes / snapshot", per_pq, "B", "<= 150", per_pq <= TARGET_PARQUET)
    result.add("SQLite bytes / snapshot", sqlite_bytes / n, "B")
    pg = _postgres(records)
    if pg is not None:
        result.add("PostgreSQL bytes / snapshot (table+TOAST+indexes)", pg[0] / pg[1], "B")
    else:
        result.notes.append(f"PostgreSQL not reachable at {sa.make_url(PG_ADMIN_URL)!r}: figure left out")
    result.notes.append(f"{n:,} top-20 snapshots of 50 symbols from the benchmark stream; "
                        f"Parquet {pq_bytes:,} B, "
                        f"SQLite {sqlite_bytes:,} B")
    return result


if __name__ == "__main__":
    import sys

    from bench.harness import render

    r = run(sys.argv[1] if len(sys.argv) > 1 else "small")
    print(render([r]))
    print("\n".join(r.notes))
