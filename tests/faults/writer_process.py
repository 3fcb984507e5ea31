"""Helpers of the writer-process fault tests: a picklable factory of the real storage writer."""

from __future__ import annotations

import os

from recorder.errors import StoreUnavailableError
from recorder.storage.parquet import ParquetStore
from recorder.storage.sql import SqlStore
from recorder.storage.writer import StorageWriter


def make_writer(sql_url: str, parquet_root: str, spill_dir: str) -> StorageWriter:
    """``StorageWriter(SqlStore, ParquetStore)`` as ``okex-recorder run`` opens it (fsync off: tests)."""
    return StorageWriter(SqlStore(sql_url), ParquetStore(parquet_root, fsync=False), spill_dir=spill_dir,
                         fsync=False)


def flaky_writer(marker: str, sql_url: str, parquet_root: str, spill_dir: str) -> StorageWriter:
    """:func:`make_writer`, refusing to start (StoreUnavailableError) while the file ``marker`` exists."""
    if os.path.exists(marker):
        raise StoreUnavailableError(f"refusing to start: {marker} exists")
    return make_writer(sql_url, parquet_root, spill_dir)
