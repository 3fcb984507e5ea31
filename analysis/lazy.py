"""Polars: a dataset of the Parquet store as a :class:`polars.LazyFrame`, local or on S3.

    >>> from analysis.lazy import scan
    >>> scan("data/parquet", "deals").filter(pl.col("symbol") == "btc_usdt").collect()

:func:`scan` goes through :func:`recorder.storage.parquet.open_dataset` (pyarrow datasets on
the recorder's own file system: a local directory, or ``s3://bucket/prefix`` with the
endpoint and credentials from ``AWS_*`` variables / ``~/.aws``, see
:mod:`recorder.storage.fs`), so Polars sees the exact schema: prices and amounts as
``Decimal(38, 18)``, timestamps ``Datetime("us", "UTC")``, plus the ``date`` (Date) and key
(``symbol``, ``currency``, ``connection``) partition columns; filters on them skip files.
Needs the ``analysis`` extra (``pip install 'okex-recorder[analysis]'``).

Rows are those of the :mod:`analysis.load` loaders: copies written twice are reduced as the
SQL store does (the first copy; the latest state for klines, orders and feed events), sorted
by the loader's index column, then the dataset's key.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from analysis.load import _SPECS
from recorder.storage.fs import is_dir, is_object_store_uri, resolve
from recorder.storage.parquet import dataset_partitioning, file_schema, open_dataset
from recorder.storage.schema import DATASETS

if TYPE_CHECKING:
    import polars as pl

__all__ = ["scan"]


def scan(parquet_root: str | Path, name: str, *, dedupe: bool = True) -> pl.LazyFrame:
    """The rows of dataset ``name`` under ``parquet_root`` (local directory or ``s3://bucket/prefix``).

    Columns: those inside the dataset's Parquet files (its schema minus the partition columns), then
    the partitions (``venue``, ``date``, the key column ``symbol``...; roots written before schema
    revision 0003 read as venue ``okex_v1``), then for market data ``base`` / ``quote`` (upper-case
    currency codes from the symbol, as :func:`analysis.load.pair_of`); one row per record.
    ``dedupe=False`` gives every stored copy, in file order. An absent dataset is an empty
    frame with those columns. Raises KeyError for an unknown dataset, ImportError without
    polars.
    """
    import polars as pl

    dataset = DATASETS[name]
    root = str(parquet_root) if is_object_store_uri(parquet_root) else str(Path(parquet_root))
    fs, base = resolve(root)
    if not is_dir(fs, f"{base}/{name}"):
        empty = pa.unify_schemas([file_schema(dataset), dataset_partitioning(dataset).schema]).empty_table()
        frame = pl.from_arrow(empty)
        assert isinstance(frame, pl.DataFrame)
        return frame.lazy()
    lazy = pl.scan_pyarrow_dataset(open_dataset(base, name, filesystem=fs))
    if "symbol" in dataset.arrow_schema.names:  # normalized currency codes, as analysis.load.pair_of
        symbol = pl.col("symbol")
        base = r"^([A-Za-z0-9]+)[-_/][A-Za-z0-9]+(?:[-_].*)?$"
        quote = r"^[A-Za-z0-9]+[-_/]([A-Za-z0-9]+)(?:[-_].*)?$"
        lazy = lazy.with_columns(
            symbol.str.extract(base, 1).str.to_uppercase().alias("base"),
            symbol.str.extract(quote, 1).str.to_uppercase().alias("quote"),
        )
    spec = _SPECS.get(name)
    if not dedupe or spec is None:
        return lazy
    key = list(spec.key)
    if spec.latest is None:
        lazy = lazy.unique(subset=key, keep="first", maintain_order=True)
    else:  # nulls first: a closed span (ts_end set) wins over its open copy, as in the loaders
        lazy = lazy.sort([*key, spec.latest], nulls_last=False, maintain_order=True)
        lazy = lazy.unique(subset=key, keep="last", maintain_order=True)
    return lazy.sort([spec.index, *[k for k in key if k != spec.index]], maintain_order=True)
