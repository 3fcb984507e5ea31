"""Analysis: a large book-snapshot recording loaded through ``analysis.load`` vs a bare pyarrow read.

The recording is written directly as the project's Parquet layout (the declared
``book_snapshots`` Arrow schema, ``venue=``/``date=``/``symbol=`` Hive partitions, zstd),
built column-wise with pyarrow so that writing 10 million rows takes seconds, not
the recorder's hours. Each row is a top-of-book snapshot (one level a side).

Measured: ``load_book_top(root)`` (all symbols, all time; float prices, sorted,
de-duplicated, indexed) against ``pyarrow.dataset(...).to_table(columns=<the same stored
columns>)`` over the same files (the read alone, no pandas). Ratio = bare time / loader
time; target >= 0.5. For reference, the bare read + ``to_pandas()`` (decimals become
Python ``Decimal`` objects, slower than the loader's float cast) is reported too.
"""

from __future__ import annotations

import tempfile
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from analysis.load import load_book_top
from bench.harness import BenchResult
from recorder.storage.parquet import dataset_partitioning
from recorder.storage.schema import DATASETS

SIZES = {"tiny": 10_000, "small": 1_000_000, "full": 10_000_000}
N_SYMBOLS = 20
TARGET = 0.5
COLUMNS = ["ts_event", "symbol", "ts_recv", "source", "depth", "best_bid", "best_bid_amount", "best_ask",
           "best_ask_amount"]


def _decimal(units: np.ndarray, scale: int) -> pa.Array:
    """int64 ``units`` * 10**-scale as the schema's decimal128(38, 18), exactly."""
    raw = pa.array(units, pa.int64()).cast(pa.decimal128(20, 0))
    step = pa.scalar(Decimal(1).scaleb(-scale), pa.decimal128(scale + 1, scale))
    return pc.multiply(raw, step).cast(pa.decimal128(38, 18))


def write_recording(root: Path, n_rows: int, seed: int = 3) -> int:
    """Write ``n_rows`` top-of-book snapshots under ``root/book_snapshots``; return the bytes written."""
    dataset = DATASETS["book_snapshots"]
    rng = np.random.default_rng(seed)
    chunk = 2_000_000
    written = 0
    for start in range(0, n_rows, chunk):
        n = min(chunk, n_rows - start)
        idx = np.arange(start, start + n, dtype=np.int64)
        ts = 1_795_000_000_000_000 + idx * 2_000  # 2 ms apart: 10 M rows span about 5.6 hours
        mid = 10_000_000 + (idx % N_SYMBOLS) * 100_000 + rng.integers(-500, 500, n)  # cents
        bid, ask = mid - 1, mid + 1
        bid_amt = rng.integers(1, 50_000, n)  # 1e-4 units
        ask_amt = rng.integers(1, 50_000, n)
        symbols = pa.array([f"c{i:03d}_usdt" for i in range(N_SYMBOLS)])
        sym = pc.take(symbols, pa.array(idx % N_SYMBOLS))
        ts_event = pa.array(ts, pa.timestamp("us", tz="UTC"))
        bid_txt = pc.binary_join_element_wise(
            '[["', pc.cast(pa.array(bid // 100), pa.string()), ".", pc.utf8_lpad(
                pc.cast(pa.array(bid % 100), pa.string()), 2, "0"), '","1"]]', "")
        ask_txt = pc.binary_join_element_wise(
            '[["', pc.cast(pa.array(ask // 100), pa.string()), ".", pc.utf8_lpad(
                pc.cast(pa.array(ask % 100), pa.string()), 2, "0"), '","1"]]', "")
        cols = {
            "venue": pa.array(np.full(n, "okex_v1", dtype=object), pa.string()),
            "symbol": sym,
            "ts_event": ts_event,
            "ts_recv": pa.array(ts + 1_500, pa.timestamp("us", tz="UTC")),
            "source": pa.array(np.full(n, "depth", dtype=object), pa.string()),
            "depth": pa.array(np.ones(n, dtype=np.int32)),
            "best_bid": _decimal(bid, 2),
            "best_bid_amount": _decimal(bid_amt, 4),
            "best_ask": _decimal(ask, 2),
            "best_ask_amount": _decimal(ask_amt, 4),
            "bids": bid_txt,
            "asks": ask_txt,
        }
        schema = dataset.arrow_schema
        table = pa.table(
            {f.name: cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in schema}
        ).cast(schema)
        table = table.append_column("date", pc.cast(ts_event, pa.date32()))
        pads.write_dataset(
            table, root / "book_snapshots", format="parquet", partitioning=dataset_partitioning(dataset),
            basename_template=f"part-{start // chunk:04d}-{{i}}.parquet",
            existing_data_behavior="overwrite_or_ignore",
            file_options=pads.ParquetFileFormat().make_write_options(compression="zstd"),
        )
    for f in (root / "book_snapshots").rglob("*.parquet"):
        written += f.stat().st_size
    return written


def run(size: str) -> BenchResult:
    n_rows = SIZES[size]
    result = BenchResult("analysis_load", size)
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        size_bytes = write_recording(root, n_rows)
        write_s = time.perf_counter() - t
        best_bare = best_bare_pd = best_load = float("inf")
        rows_loaded = rows_bare = 0
        for _ in range(2 if n_rows > 1_000_000 else 3):  # best of: the figures are noisy here
            t = time.perf_counter()
            bare = pads.dataset(root / "book_snapshots", format="parquet", partitioning="hive").to_table(
                columns=COLUMNS)
            best_bare = min(best_bare, time.perf_counter() - t)
            rows_bare = bare.num_rows
            t = time.perf_counter()
            bare.to_pandas()
            best_bare_pd = min(best_bare_pd, best_bare + time.perf_counter() - t)
            del bare
            t = time.perf_counter()
            frame = load_book_top(root)
            best_load = min(best_load, time.perf_counter() - t)
            rows_loaded = len(frame)
            del frame
    ratio = best_bare / best_load
    result.add("rows", n_rows, "rows", f"loaded {rows_loaded:,}", rows_loaded == rows_bare == n_rows)
    result.add("bare pyarrow.dataset to_table (the floor)", n_rows / best_bare, "rows/s")
    result.add("bare to_table + to_pandas (Decimal objects)", n_rows / best_bare_pd, "rows/s")
    result.add("analysis.load_book_top", n_rows / best_load, "rows/s")
    result.add("ratio analysis / bare", ratio, "", ">= 0.5", ratio >= TARGET)
    result.notes.append(f"{n_rows:,} rows, {N_SYMBOLS} symbols, {size_bytes / 1e6:.1f} MB of Parquet "
                        "written in "
                        f"{write_s:.1f} s; best of repeated reads: bare {best_bare:.2f} s, "
                        f"loader {best_load:.2f} s")
    return result


if __name__ == "__main__":
    import sys

    from bench.harness import render

    r = run(sys.argv[1] if len(sys.argv) > 1 else "small")
    print(render([r]))
    print("\n".join(r.notes))
