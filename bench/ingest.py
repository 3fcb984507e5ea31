"""Ingest: a pre-generated stream through the project's decode -> book -> snapshot -> SQL + Parquet.

Measured in the same run, on the same frames (text, as the WebSocket client hands them over):

* **old floor** (:func:`bench.floor.run_floor`): msgspec decode, a float book, four of the nine
  ticker fields, one Parquet write, no SQL. Kept for continuity with earlier figures; it
  does less than the job.
* **honest floor** (:mod:`bench.honest_floor`): the same job as the recorder (every field,
  exact values, both stores, a fsync'd journal and a committed transaction per flush)
  done the fastest way the same libraries allow (msgspec Structs, an integer-tick book,
  Arrow columns, ADBC bulk SQL, ``write_dataset``), once with SQLite + Parquet and once
  with PostgreSQL + Parquet.
* **recorder** (``run_in_process`` -> ``StorageWriter(SqlStore, ParquetStore)``), SQLite +
  Parquet and PostgreSQL + Parquet with ``[storage] sql_bulk = false`` (``SqlStore``,
  executemany), and PostgreSQL once more as configured by default (``sql_bulk``:
  ``BulkSqlStore``, ADBC COPY into a staging table, the floor's own SQL path).

PostgreSQL runs use throwaway databases on ``OKEX_BENCH_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``); they are skipped (noted) if it cannot be
reached. The rows each run stored are counted back from its SQL database and its Parquet
datasets and must all equal what the old floor produced from the same stream.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.dataset as pads
import sqlalchemy as sa

from bench import streams
from bench.floor import run_floor
from bench.harness import BenchResult, Timer, run_process_gc
from bench.honest_floor import run_honest_floor
from recorder.collector.pipeline import run_in_process
from recorder.storage.migrate import upgrade
from recorder.storage.parquet import ParquetStore
from recorder.storage.sql_bulk import open_sql_store
from recorder.storage.writer import StorageWriter
from recorder.venues.okex_v1.parse import ms_to_datetime

SIZES = {"tiny": (3_000, 20), "small": (30_000, 50), "full": (200_000, 100)}  # frames, symbols
TARGET_RATIO = 0.7  # recorder / honest floor (issue 16)
BATCH_FRAMES = 5_000  # frames per write + flush (the collector's default batch is 5,000 rows)
TABLES = ("book_snapshots", "tickers", "deals")
# Either URL form is accepted (libpq or SQLAlchemy's postgresql+psycopg://); psycopg wants libpq's.
PG_ADMIN_URL = os.environ.get("OKEX_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres").replace(
    "postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def throwaway_pg() -> Iterator[str | None]:
    """A fresh PostgreSQL database (libpq URL), dropped afterwards; None if the server is unreachable."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error:
        yield None
        return
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        try:
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


def sa_url(url: str) -> str:
    """SQLAlchemy form of a libpq or SQLite URL."""
    if url.startswith("postgresql://"):
        return url.replace("postgresql://", "postgresql+psycopg://", 1)
    return url


def persisted(sql_url: str, parquet_root: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Rows per table counted back from the SQL database and from the Parquet datasets."""
    engine = sa.create_engine(sa_url(sql_url))
    sql_counts: dict[str, int] = {}
    with engine.connect() as conn:
        for table in TABLES:
            query = sa.select(sa.func.count()).select_from(sa.table(table))
            sql_counts[table] = conn.execute(query).scalar_one()
    engine.dispose()
    pq_counts: dict[str, int] = {}
    for table in TABLES:
        path = parquet_root / table
        pq_counts[table] = pads.dataset(path, format="parquet").count_rows() if path.exists() else 0
    return sql_counts, pq_counts


def recorder_items(frames: list[str]) -> list[tuple[str, datetime, str]]:
    """``(connection, ts_recv, frame)`` items: one receive time per frame, strictly increasing
    (as the collector stamps them)."""
    t0 = ms_to_datetime(streams.BASE_TS_MS)
    return [("bench", t0 + timedelta(microseconds=10 * i), f) for i, f in enumerate(frames)]


def open_writer(sql_url: str, root: Path, *, bulk: bool = False) -> StorageWriter:
    """The recorder's storage writer on ``sql_url`` (migrated to head) + Parquet under ``root``."""
    upgrade(sa_url(sql_url))
    return StorageWriter(open_sql_store(sa_url(sql_url), bulk=bulk), ParquetStore(root / "parquet"),
                         spill_dir=str(root / "spill"))


def run_recorder(frames: list[str], sql_url: str, root: Path, *, bulk: bool = False) -> float:
    """The project's path over ``frames``; returns seconds. ``bulk``: ``[storage] sql_bulk``
    (:class:`~recorder.storage.sql_bulk.BulkSqlStore`, PostgreSQL only)."""
    items = recorder_items(frames)
    writer = open_writer(sql_url, root, bulk=bulk)
    with run_process_gc(), Timer() as t:
        run_in_process(items, writer, streams.pipeline(), batch_frames=BATCH_FRAMES)
    return t.seconds


def run_recorder_bulk(frames: list[str], sql_url: str, root: Path) -> float:
    """:func:`run_recorder` with ``[storage] sql_bulk = true`` (ADBC COPY into a staging table)."""
    return run_recorder(frames, sql_url, root, bulk=True)


def run_floor_job(frames: list[str], sql_url: str, root: Path) -> float:
    """The honest floor over ``frames`` (same receive times as :func:`run_recorder`); returns seconds."""
    base = streams.BASE_TS_MS * 1000
    items = [(base + 10 * i, f) for i, f in enumerate(frames)]
    upgrade(sa_url(sql_url))  # the schema comes from the project's migrations, outside the timing
    with run_process_gc(), Timer() as t:
        run_honest_floor(items, sql_url, root / "parquet", root, batch_frames=BATCH_FRAMES)
    return t.seconds


def run(size: str, profile: bool = False) -> BenchResult:
    n_frames, n_symbols = SIZES[size]
    result = BenchResult("ingest", size)
    stream = streams.generate(n_frames, n_symbols)
    frames = [f.decode() for f in stream.frames]
    rates: dict[str, float] = {}
    mismatches: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        with Timer() as old_t:
            expected = run_floor(frames, root / "old-floor")
        rates["old"] = n_frames / old_t.seconds
        runs = [("floor", "sqlite", run_floor_job), ("recorder", "sqlite", run_recorder),
                ("floor", "pg", run_floor_job), ("recorder", "pg", run_recorder),
                ("recorder", "pg-bulk", run_recorder_bulk)]
        for who, db, fn in runs:
            work = root / f"{who}-{db}"
            work.mkdir()
            with (throwaway_pg() if db.startswith("pg") else _sqlite(work)) as url:
                if url is None:
                    result.notes.append(f"PostgreSQL at {PG_ADMIN_URL} not reachable: {who} (PG) skipped")
                    continue
                prof = None
                if profile and who == "recorder":
                    import cProfile

                    prof = cProfile.Profile()
                    prof.enable()
                seconds = fn(frames, url, work)
                if prof is not None:
                    import pstats

                    prof.disable()
                    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
                rates[f"{who}-{db}"] = n_frames / seconds
                sql_counts, pq_counts = persisted(url, work / "parquet")
            for table, n in expected.items():
                if sql_counts[table] != n or pq_counts[table] != n:
                    mismatches.append(f"{who} ({db}) {table}: expected {n}, SQL {sql_counts[table]}, "
                                      f"Parquet {pq_counts[table]}")
    result.add("old floor msg/s (msgspec, float book, Parquet only)", rates["old"], "msg/s")
    for db, label in (("sqlite", "SQLite"), ("pg", "PG")):
        if f"floor-{db}" in rates:
            result.add(f"honest floor msg/s ({label} + Parquet)", rates[f"floor-{db}"], "msg/s")
    recorders = (("sqlite", "sqlite", "SQLite"), ("pg", "pg", "PG, sql_bulk = false"),
                 ("pg-bulk", "pg", "PG, default: sql_bulk"))  # run, its floor, label
    for db, _, label in recorders:
        if f"recorder-{db}" in rates:
            result.add(f"recorder msg/s ({label} + Parquet)", rates[f"recorder-{db}"], "msg/s")
    for db, floor, label in recorders:
        if f"recorder-{db}" in rates and f"floor-{floor}" in rates:
            ratio = rates[f"recorder-{db}"] / rates[f"floor-{floor}"]
            result.add(f"ratio recorder / honest floor ({label})", ratio, "", f">= {TARGET_RATIO}",
                       ratio >= TARGET_RATIO)
    if "recorder-sqlite" in rates:
        result.add("ratio recorder (SQLite) / old floor", rates["recorder-sqlite"] / rates["old"], "")
    rows = sum(expected.values())
    result.add("rows persisted (each run, each store)", rows if not mismatches else 0, "rows",
               f"== {rows}", not mismatches)
    result.notes.append(
        f"{n_frames:,} frames, {n_symbols} symbols "
        f"({', '.join(f'{k} {v:,}' for k, v in stream.counts.items())}); "
        f"rows per table {expected}; writes + flushes every {BATCH_FRAMES:,} frames")
    result.notes.extend(mismatches)
    return result


@contextmanager
def _sqlite(work: Path) -> Iterator[str]:
    yield f"sqlite:///{work / 'rec.sqlite'}"


if __name__ == "__main__":  # python -m bench.ingest [size] [--profile]
    import sys

    from bench.harness import render

    t = time.perf_counter()
    r = run(sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "small",
            profile="--profile" in sys.argv)
    print(render([r]))
    print("\n".join(r.notes), f"\n({time.perf_counter() - t:.1f} s)")
