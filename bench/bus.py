"""Bus: records per second through NATS JetStream to both stores, against the direct path, same run.

The same records (``bench.streams`` frames through the project's pipeline, captured once) are
stored twice, on the same machine, in the same run:

* **direct**: ``StorageWriter(SqlStore, ParquetStore)`` (SQLite + local Parquet), write + flush
  every ``BATCH_FRAMES`` frames' records; timed until the last flush returned (durable: SQL
  committed, Parquet journal fsync'd; closing, which rolls the journal into files, is not timed);
* **bus**: ``StorageWriter(bus=BusStore)`` publishes the same batches to JetStream (a unique
  stream on ``OKEX_BENCH_NATS_URL``, default ``nats://127.0.0.1:4222``, deleted afterwards)
  while ``okex-recorder store``'s :func:`~recorder.storage.consume.consume` (one durable
  consumer per store) writes SQLite + Parquet; the time runs from the first publish until
  both consumers acknowledged everything (a writer acknowledges once its store made the rows
  durable, as above; includes connecting and creating the consumers). The collector-side
  publish rate (acknowledged by JetStream) is reported too.

Rows are counted back from each path's SQLite database and Parquet datasets and must equal the
distinct rows produced (by the stores' unique keys). Skipped, with a note, if NATS is not
reachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import streams
from bench.harness import BenchResult, Timer
from bench.ingest import TABLES, persisted
from recorder.collector.pipeline import run_in_process
from recorder.records import BookSnapshot, Deal, Record, Ticker
from recorder.storage.bus import BusStore
from recorder.storage.bus_config import BusConfig
from recorder.storage.consume import consume, open_stores
from recorder.storage.migrate import upgrade
from recorder.storage.parquet import ParquetStore
from recorder.storage.sql import SqlStore
from recorder.storage.writer import StorageWriter
from recorder.venues.okex_v1.parse import ms_to_datetime

SIZES = {"tiny": (3_000, 20), "small": (30_000, 50), "full": (200_000, 100)}  # frames, symbols
BATCH_FRAMES = 5_000
NATS_URL = os.environ.get("OKEX_BENCH_NATS_URL", "nats://127.0.0.1:4222")
DURABLE = "bench"


class _Capture:
    """A record writer that keeps the batches handed to it."""

    def __init__(self) -> None:
        self.batches: list[list[Record]] = []

    def write(self, records: Sequence[Record]) -> None:
        self.batches.append(list(records))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def produce(n_frames: int, n_symbols: int) -> list[list[Record]]:
    """The pipeline's record batches for the stream (one per ``BATCH_FRAMES`` frames)."""
    stream = streams.generate(n_frames, n_symbols)
    t0 = ms_to_datetime(streams.BASE_TS_MS)
    items = [("bench", t0 + timedelta(microseconds=10 * i), f.decode()) for i, f in enumerate(stream.frames)]
    capture = _Capture()
    run_in_process(items, capture, streams.pipeline(), batch_frames=BATCH_FRAMES)
    return [b for b in capture.batches if b]


def distinct_rows(batches: list[list[Record]]) -> dict[str, int]:
    """Rows per table the stores keep: distinct by their unique keys."""
    keys: dict[str, set[tuple[Any, ...]]] = {t: set() for t in TABLES}
    for batch in batches:
        for r in batch:
            if isinstance(r, Ticker):
                keys["tickers"].add((r.symbol, r.ts_recv))
            elif isinstance(r, BookSnapshot):
                keys["book_snapshots"].add((r.symbol, r.ts_recv, r.source))
            elif isinstance(r, Deal):
                keys["deals"].add((r.symbol, r.tid))
    return {t: len(k) for t, k in keys.items()}


def run_direct(batches: list[list[Record]], work: Path) -> float:
    url = f"sqlite:///{work / 'rec.sqlite'}"
    upgrade(url)
    writer = StorageWriter(SqlStore(url), ParquetStore(str(work / "parquet")), spill_dir=str(work / "spill"))
    with Timer() as t:  # until durable: every flush returned (SQL committed, Parquet journal fsync'd)
        for batch in batches:
            writer.write(batch)
            writer.flush()
    writer.close()
    return t.seconds


async def _drained(bus: BusConfig, messages: int) -> None:
    import nats

    nc = await nats.connect(bus.url, connect_timeout=2)
    try:
        js = nc.jetstream()
        while True:
            try:
                info = await js.stream_info(bus.stream)
                states = [await js.consumer_info(bus.stream, f"{DURABLE}-{s}") for s in ("sql", "parquet")]
            except Exception:
                await asyncio.sleep(0.05)
                continue
            if info.state.messages >= messages and all(
                    c.num_pending == 0 and c.num_ack_pending == 0 for c in states):
                return
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


async def _delete_stream(bus: BusConfig) -> None:
    import nats

    with contextlib.suppress(Exception):
        nc = await nats.connect(bus.url, connect_timeout=2, allow_reconnect=False)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(bus.stream)
        await nc.close()


def _publish(batches: list[list[Record]], bus: BusConfig, work: Path) -> tuple[float, int]:
    store = BusStore(bus, collector_id="bench")
    writer = StorageWriter(None, None, bus=store, spill_dir=str(work / "spill"))
    with Timer() as t:
        for batch in batches:
            writer.write(batch)
            writer.flush()
        writer.close()
    return t.seconds, store.published_messages


async def _run_bus(batches: list[list[Record]], work: Path, bus: BusConfig) -> tuple[float, float, int]:
    url = f"sqlite:///{work / 'rec.sqlite'}"
    upgrade(url)
    stores = open_stores(url, str(work / "parquet"))
    halt = asyncio.Event()
    start = time.perf_counter()
    task = asyncio.create_task(consume(bus, stores, halt, durable=DURABLE, batch=1000))
    try:
        publish_seconds, messages = await asyncio.to_thread(_publish, batches, bus, work)
        await asyncio.wait_for(_drained(bus, messages), 600)
        total = time.perf_counter() - start  # every message acknowledged = durable in both stores
    finally:
        halt.set()
        await asyncio.wait_for(task, 600)
    return total, publish_seconds, messages


def _nats_reachable(url: str) -> bool:
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((parsed.hostname or "127.0.0.1", parsed.port or 4222)) == 0


def run(size: str) -> BenchResult:
    n_frames, n_symbols = SIZES[size]
    result = BenchResult("bus", size)
    batches = produce(n_frames, n_symbols)
    records = sum(len(b) for b in batches)
    expected = distinct_rows(batches)
    mismatches: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-bus-") as tmp:
        root = Path(tmp)
        (root / "direct").mkdir()
        direct_seconds = run_direct(batches, root / "direct")
        direct = root / "direct"
        counted = {"direct": persisted(f"sqlite:///{direct / 'rec.sqlite'}", direct / "parquet")}
        result.add("direct records/s (StorageWriter -> SQLite + Parquet)", records / direct_seconds, "rec/s")
        if _nats_reachable(NATS_URL):
            for path, dedupe in (("bus", True), ("bus_batched", False)):
                tag = uuid.uuid4().hex[:10]
                bus = BusConfig(url=NATS_URL, stream=f"BENCH{tag}", subject_prefix=f"bench{tag}",
                                max_age=3600.0, duplicate_window=600.0, dedupe_across_collectors=dedupe)
                (root / path).mkdir()
                try:
                    total, publish, messages = asyncio.run(_run_bus(batches, root / path, bus))
                finally:
                    asyncio.run(_delete_stream(bus))
                counted[path] = persisted(f"sqlite:///{root / path / 'rec.sqlite'}", root / path / "parquet")
                how = "" if dedupe else ", dedupe_across_collectors = false"
                result.add(f"bus records/s (publish -> JetStream -> 2 writers -> SQLite + Parquet{how})",
                           records / total, "rec/s")
                result.add(f"bus publish records/s (collector side, acked by JetStream{how})",
                           records / publish, "rec/s")
                result.add(f"ratio bus / direct{how}", direct_seconds / total, "")
                result.add(f"messages published{how}", messages, "msgs")
        else:
            result.notes.append(f"NATS at {NATS_URL} not reachable: the bus path was skipped")
    for path, (sql_counts, pq_counts) in counted.items():
        for table, n in expected.items():
            if sql_counts[table] != n or pq_counts[table] != n:
                mismatches.append(f"{path} {table}: expected {n}, SQL {sql_counts[table]}, "
                                  f"Parquet {pq_counts[table]}")
    rows = sum(expected.values())
    result.add("rows stored (each path, each store)", rows if not mismatches else 0, "rows", f"== {rows}",
               not mismatches)
    result.notes.append(f"{n_frames:,} frames, {n_symbols} symbols -> {records:,} records in {len(batches)} "
                        f"batches; distinct rows per table {expected}")
    result.notes.extend(mismatches)
    return result


if __name__ == "__main__":  # python -m bench.bus [size]
    import sys

    from bench.harness import render

    r = run(sys.argv[1] if len(sys.argv) > 1 else "small")
    print(render([r]))
    print("\n".join(r.notes))
