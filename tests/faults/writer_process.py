"""Helpers of the writer-process fault tests: a picklable factory of the real storage writer."""

from __future__ import annotations

from recorder.storage.parquet import ParquetStore
from recorder.storage.sql import SqlStore
from recorder.storage.writer import StorageWriter


def make_writer(sql_url: str, parquet_root: str, spill_dir: str) -> StorageWriter:
    """``StorageWriter(SqlStore, ParquetStore)`` as ``okex-recorder run`` opens it (fsync off: tests)."""
    return StorageWriter(SqlStore(sql_url), ParquetStore(parquet_root, fsync=False), spill_dir=spill_dir,
                         fsync=False)
