"""Ingest: a pre-generated stream through the project's decode -> book -> snapshot -> SQLite + Parquet.

The same frames go through :func:`bench.floor.run_floor` (typed msgspec decode, a float
book, column buffers, one zstd Parquet write; no SQL, no exact decimals) in the same
run; the figure that matters is the ratio project / floor. The rows the project
persisted are counted back from SQLite and from the Parquet datasets and must equal
what the floor produced from the same stream (same snapshot-on-change rule), so the
benchmark cannot pass by doing less work.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pyarrow.dataset as pads
import sqlalchemy as sa

from bench import streams
from bench.floor import run_floor
from bench.harness import BenchResult, Timer
from recorder.collector.pipeline import run_in_process
from recorder.okex.frames import ms_to_datetime
from recorder.storage.migrate import upgrade
from recorder.storage.parquet import ParquetStore
from recorder.storage.sql import SqlStore
from recorder.storage.writer import StorageWriter

SIZES = {"tiny": (3_000, 20), "small": (30_000, 50), "full": (200_000, 100)}  # frames, symbols
TARGET_RATIO = 0.5
BATCH_FRAMES = 5_000  # frames per write + flush (the collector's default batch is 5,000 rows)


def _persisted(sql_url: str, parquet_root: Path) -> tuple[dict[str, int], dict[str, int]]:
    engine = sa.create_engine(sql_url)
    sql_counts: dict[str, int] = {}
    with engine.connect() as conn:
        for table in ("book_snapshots", "tickers", "deals", "feed_events"):
            query = sa.select(sa.func.count()).select_from(sa.table(table))
            sql_counts[table] = conn.execute(query).scalar_one()
    engine.dispose()
    pq_counts: dict[str, int] = {}
    for table in ("book_snapshots", "tickers", "deals"):
        path = parquet_root / table
        pq_counts[table] = pads.dataset(path, format="parquet").count_rows() if path.exists() else 0
    return sql_counts, pq_counts


def run(size: str, profile: bool = False) -> BenchResult:
    n_frames, n_symbols = SIZES[size]
    result = BenchResult("ingest", size)
    stream = streams.generate(n_frames, n_symbols)
    frames = [f.decode() for f in stream.frames]  # text frames, as the WebSocket client hands them over
    # One receive time per frame, strictly increasing (as the collector stamps them).
    t0 = ms_to_datetime(streams.BASE_TS_MS)
    items = [("bench", t0 + timedelta(microseconds=10 * i), f) for i, f in enumerate(frames)]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        with Timer() as floor_t:
            expected = run_floor(frames, root / "floor")
        sql_url = f"sqlite:///{root / 'rec.sqlite'}"
        upgrade(sql_url)
        writer = StorageWriter(SqlStore(sql_url), ParquetStore(root / "parquet"),
                               spill_dir=str(root / "spill"))
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        with Timer() as project_t:
            pipeline = run_in_process(items, writer, batch_frames=BATCH_FRAMES)
        if prof is not None:
            prof.disable()
            import pstats

            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        sql_counts, pq_counts = _persisted(sql_url, root / "parquet")
        sql_bytes = os.path.getsize(root / "rec.sqlite")
    floor_rate = n_frames / floor_t.seconds
    project_rate = n_frames / project_t.seconds
    ratio = project_rate / floor_rate
    result.add("project msg/s (SQLite + Parquet)", project_rate, "msg/s")
    result.add("floor msg/s (msgspec, float book, Parquet)", floor_rate, "msg/s")
    result.add("ratio project / floor", ratio, "", ">= 0.5", ratio >= TARGET_RATIO)
    mismatches = []
    for table, n in expected.items():
        if sql_counts[table] != n or pq_counts[table] != n:
            mismatches.append(f"{table}: expected {n}, SQL {sql_counts[table]}, Parquet {pq_counts[table]}")
    rows = sum(expected.values())
    result.add("rows persisted (each store)", sum(sql_counts[t] for t in expected), "rows",
               f"== {rows}", not mismatches)
    result.notes.append(
        f"{n_frames:,} frames, {n_symbols} symbols "
        f"({', '.join(f'{k} {v:,}' for k, v in stream.counts.items())}); "
        f"rows per table {expected}; writes + flushes every {BATCH_FRAMES:,} frames; SQLite {sql_bytes:,} B"
    )
    if pipeline.counters.frames != n_frames:
        mismatches.append(f"pipeline saw {pipeline.counters.frames} frames of {n_frames}")
    result.notes.extend(mismatches)
    return result


if __name__ == "__main__":  # python -m bench.ingest [size] [--profile]
    import sys

    from bench.harness import render

    t = time.perf_counter()
    r = run(sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "small",
            profile="--profile" in sys.argv)
    print(render([r]))
    print("\n".join(r.notes), f"\n({time.perf_counter() - t:.1f} s)")
