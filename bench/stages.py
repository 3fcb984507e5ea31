"""Where the CPU time goes: CPU seconds per 100,000 frames, by stage, on the ingest path.

The same stream and the same path as :mod:`bench.ingest` (``run_in_process`` ->
``StorageWriter(SqlStore on SQLite, ParquetStore)``). A few project functions are wrapped
with timers that take the calling thread's CPU time (``time.thread_time``) and subtract the
time of wrapped calls nested in them, so every stage is *exclusive* (the session's figure
does not hold the decoder's). ``other`` is the process's CPU time (every thread) minus the
stages: the pipeline around them, accounting, status, the writer's bookkeeping. A timer
costs about a microsecond a call, far below what it measures (no profiler hooks on every
call, unlike cProfile).

Stages:

* decode: ``okex_v1.parse.decode_frame`` (inflate, JSON, typed messages, exact decimals);
* session: ``V1Session.receive`` without decode (books kept from increments, snapshot cadence,
  snapshots built, feed events);
* screen + Arrow: ``Screen.screen`` (the records' Arrow tables are built here, once, and then
  shared by both stores; the storage rules checked column-wise);
* SQL: ``SqlStore.write_batch`` (SQLite ``executemany`` + commit);
* Parquet journal: ``ParquetStore.write_batch`` without rolls (Arrow IPC append + fsync);
* Parquet roll: ``ParquetStore._segment_to_parquet`` (journal segments into partitioned,
  zstd Parquet files; the recorder rolls at close here, as the floor writes its files at the end).
"""

from __future__ import annotations

import functools
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import streams
from bench.harness import BenchResult, run_process_gc

SIZES = {"tiny": (3_000, 20), "small": (30_000, 50), "full": (200_000, 100)}  # frames, symbols
PER = 100_000  # figures are CPU seconds per this many frames

STAGES: list[tuple[str, str, str]] = [  # label, module, attribute (Class.method or function)
    ("decode", "recorder.venues.okex_v1.parse", "decode_frame"),
    ("session (books, snapshots)", "recorder.venues.okex_v1.session", "V1Session.receive"),
    ("screen + Arrow tables", "recorder.storage.validate", "Screen.screen"),
    ("SQL (SQLite)", "recorder.storage.sql", "SqlStore.write_batch"),
    ("Parquet journal", "recorder.storage.parquet", "ParquetStore.write_batch"),
    ("Parquet roll", "recorder.storage.parquet", "ParquetStore._segment_to_parquet"),
]


class _Timers:
    """Exclusive thread CPU time per label; nested timed calls are subtracted from their caller."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._local = threading.local()

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.thread_time
        local = self._local
        seconds, calls = self.seconds, self.calls
        seconds.setdefault(label, 0.0)
        calls.setdefault(label, 0)

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack: list[float] = local.__dict__.setdefault("stack", [])
            stack.append(0.0)  # time of timed calls nested in this one
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = clock() - start
                nested = stack.pop()
                seconds[label] += elapsed - nested
                calls[label] += 1
                if stack:
                    stack[-1] += elapsed

        return timed


def _patch(timers: _Timers) -> Callable[[], None]:
    """Wrap every stage where it is defined and wherever a module imported it by name."""
    import importlib

    undo: list[tuple[Any, str, Any]] = []
    for label, module_name, attr in STAGES:
        module = importlib.import_module(module_name)
        owner: Any = module
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        timed = timers.wrap(label, original)
        undo.append((owner, name, original))
        setattr(owner, name, timed)
        if not path:  # a function: also where other modules hold it under its name
            for other in list(sys.modules.values()):
                if other is not module and getattr(other, "__name__", "").startswith("recorder.") \
                        and getattr(other, name, None) is original:
                    undo.append((other, name, original))
                    setattr(other, name, timed)

    def restore() -> None:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)

    return restore


def measure(n_frames: int, n_symbols: int) -> tuple[dict[str, float], float, bool, int]:
    """(exclusive CPU seconds per stage, process CPU seconds, stored == expected, expected rows)
    for one ingest run; the expected rows are the old floor's (:func:`bench.floor.run_floor`)."""
    from bench.floor import run_floor
    from bench.ingest import BATCH_FRAMES, open_writer, persisted, recorder_items, run_recorder
    from recorder.collector.pipeline import run_in_process

    stream = streams.generate(n_frames, n_symbols)
    frames = [f.decode() for f in stream.frames]
    timers = _Timers()
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'rec.sqlite'}"
        run_recorder(frames[:200], f"sqlite:///{root / 'warm.sqlite'}", root / "warm")  # imports, caches
        items = recorder_items(frames)
        writer = open_writer(url, root / "run")
        pipeline = streams.pipeline()
        restore = _patch(timers)
        try:
            with run_process_gc():  # as in an `okex-recorder run` process (recorder/gc_policy.py)
                cpu0 = time.process_time()
                run_in_process(items, writer, pipeline, batch_frames=BATCH_FRAMES)
                cpu = time.process_time() - cpu0
        finally:
            restore()
        sql_counts, pq_counts = persisted(url, root / "run" / "parquet")
        expected = run_floor(frames, root / "old-floor")
    same = sql_counts == pq_counts == expected
    return dict(timers.seconds), cpu, same, sum(expected.values())


def run(size: str) -> BenchResult:
    n_frames, n_symbols = SIZES[size]
    result = BenchResult("stages", size)
    seconds, cpu, same, expected = measure(n_frames, n_symbols)
    scale = PER / n_frames
    for label, _, _ in STAGES:
        result.add(f"CPU s per 100k frames: {label}", seconds.get(label, 0.0) * scale, "s")
    other = cpu - sum(seconds.values())
    result.add("CPU s per 100k frames: other (pipeline, accounting, writer)", other * scale, "s")
    result.add("CPU s per 100k frames: total (process)", cpu * scale, "s")
    result.add("rows stored in SQL and in Parquet", expected if same else 0, "rows", f"== {expected}", same)
    result.notes.append(f"{n_frames:,} frames, {n_symbols} symbols, SQLite + Parquet, in process "
                        f"(bench.ingest's path), flushes every 5,000 frames; exclusive thread CPU time")
    return result


if __name__ == "__main__":  # python -m bench.stages [size]
    from bench.harness import render

    r = run(sys.argv[1] if len(sys.argv) > 1 else "small")
    print(render([r]))
    for note in r.notes:
        print("note:", note)
