"""The Parquet store: one Hive-partitioned dataset per kind of record, on :mod:`pyarrow.fs`.

Layout (``schema.Dataset`` gives the partition columns)::

    <root>/<dataset>/date=YYYY-MM-DD/<key>=<value>/part-<segment>.parquet
    <root>/_journal/<dataset>/<ns>-<uuid>.arrows        rows flushed, not yet in a Parquet file

``date`` is the UTC date of the dataset's ``date_column``; ``<key>`` is its
``key_column`` (``symbol`` for market data and orders, ``currency`` for balances,
``connection`` for feed events and quarantined frames). The partition column is not
repeated inside the files: readers (``pyarrow.dataset``, pandas, DuckDB with
``hive_partitioning=true``) take it from the path. :func:`open_dataset` gives a
``pyarrow.dataset`` with the exact types (``date`` as ``date32``).

Durability: :meth:`ParquetStore.write_batch` appends the rows to the journal (an Arrow
IPC stream, fsync'd) and returns only then; that is the acknowledgement. Rows become
Parquet files when the journal segment *rolls over* (by rows, by bytes or by age, see
:class:`ParquetStore`): every partition present in the segment gets one file
``part-<segment>.parquet``, written under a hidden temporary name
(``.part-<segment>.parquet.tmp``: ignored by pyarrow, pandas and DuckDB's
``*.parquet`` globs), fsync'd and renamed; then the segment is deleted. After a crash
(SIGKILL) the store's start-up turns leftover segments into Parquet files, skipping
partitions whose file already exists (so a crash mid-roll writes nothing twice), and
deletes leftover temporary files. Loss bound: rows whose ``write_batch`` had not
returned, i.e. at most the rows of one flush interval.
"""

from __future__ import annotations

import logging
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recorder.backoff import BackoffPolicy, backoff
from recorder.errors import StorageError, StoreUnavailableError
from recorder.okex.channels import validate_symbol
from recorder.records import Record
from recorder.storage.journal import Journal, Segment, read_segment
from recorder.storage.schema import DATASETS, Batch, Dataset

__all__ = [
    "JOURNAL_DIR",
    "TMP_PREFIX",
    "ParquetStore",
    "PartialWriteError",
    "batch_to_table",
    "file_schema",
    "open_dataset",
    "partition_value",
    "records_to_table",
    "write_parquet_atomically",
]

log = logging.getLogger("recorder.storage")

JOURNAL_DIR = "_journal"
TMP_PREFIX = "."  # hidden while being written
TMP_SUFFIX = ".tmp"  # and not matching "*.parquet"
_LONG_TEXT = frozenset({"bids", "asks", "detail", "reason"})
_SAFE_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}")


# --------------------------------------------------------------------------- schemas and conversion


def file_schema(dataset: Dataset) -> pa.Schema:
    """The schema inside a Parquet file of ``dataset``: its Arrow schema minus the partition column."""
    return _FILE_SCHEMAS[dataset.name]


_FILE_SCHEMAS = {
    d.name: d.arrow_schema.remove(d.arrow_schema.get_field_index(d.key_column)) for d in DATASETS.values()
}


def dataset_partitioning(dataset: Dataset) -> pads.Partitioning:
    """The Hive partitioning of ``dataset``: ``date`` (date32) then its key column (string)."""
    return pads.partitioning(
        pa.schema([pa.field("date", pa.date32()), pa.field(dataset.key_column, pa.string())]),
        flavor="hive",
    )


def open_dataset(root: str, name: str, *, filesystem: pafs.FileSystem | None = None) -> pads.Dataset:
    """``pyarrow.dataset`` of one dataset under ``root`` with the exact schema and typed partitions."""
    dataset = _dataset(name)
    fs, base = _resolve(root, filesystem)
    return pads.dataset(
        f"{base}/{name}",
        schema=pa.unify_schemas([file_schema(dataset), dataset_partitioning(dataset).schema]),
        format="parquet",
        partitioning=dataset_partitioning(dataset),
        filesystem=fs,
    )


def records_to_table(dataset: Dataset, records: Sequence[Record]) -> pa.Table:
    """Convert records of one dataset to an Arrow table of its full schema (column by column).

    A :class:`~recorder.storage.schema.Batch` of that one dataset reuses the table it
    already built. Raises :class:`StorageError` for a value the schema cannot hold.
    """
    try:
        if isinstance(records, Batch) and list(records.groups) == [dataset.name]:
            return records.table(dataset.name)
        return dataset.to_table(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, TypeError) as exc:
        raise StorageError(f"{dataset.name}: value does not fit the Parquet schema: {exc}") from exc


def batch_to_table(batch: Batch, dataset: Dataset) -> pa.Table:
    """The Arrow table of ``dataset``'s records in ``batch`` (built once per batch, then shared).

    Raises :class:`StorageError` for a value the schema cannot hold.
    """
    try:
        return batch.table(dataset.name)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, TypeError) as exc:
        raise StorageError(f"{dataset.name}: value does not fit the Parquet schema: {exc}") from exc


def partition_value(dataset: Dataset, value: object) -> str:
    """A partition directory value that cannot escape its directory.

    Symbols must pass :func:`~recorder.okex.channels.validate_symbol` (raises
    :class:`~recorder.errors.SymbolError`); other values (currency, connection) are kept if
    they are plain names, else percent-encoded (pyarrow decodes them on read).
    """
    if dataset.key_column == "symbol":
        return validate_symbol(value)
    text = str(value)
    if _SAFE_VALUE.fullmatch(text) and ".." not in text:
        return text
    return urllib.parse.quote(text, safe="").replace(".", "%2E") or "%00"


# --------------------------------------------------------------------------- file system helpers


def _resolve(root: str | os.PathLike[str], filesystem: pafs.FileSystem | None) -> tuple[pafs.FileSystem, str]:
    text = os.fspath(root)
    if filesystem is not None:
        return filesystem, text.rstrip("/")
    if "://" in text:
        fs, path = pafs.FileSystem.from_uri(text)
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(text)


def _is_local(fs: pafs.FileSystem) -> bool:
    return isinstance(fs, pafs.LocalFileSystem)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet_atomically(
    fs: pafs.FileSystem,
    final_path: str,
    table: pa.Table,
    *,
    compression: str = "zstd",
    compression_level: int | None = None,
    row_group_rows: int = 65_536,
    fsync: bool = True,
) -> None:
    """Write ``table`` to ``final_path`` so that the file appears complete or not at all.

    The file is written as ``.<name>.tmp`` in the same directory, fsync'd (local file
    systems), renamed over ``final_path`` and the directory fsync'd. Raises OSError /
    pyarrow errors untranslated: callers translate them once.
    """
    directory, name = final_path.rsplit("/", 1)
    tmp_path = f"{directory}/{TMP_PREFIX}{name}{TMP_SUFFIX}"
    fs.create_dir(directory, recursive=True)
    # Dictionary-encode the short repeated strings only; book levels are long JSON strings
    # that repeat from row to row: a dictionary only grows them, zstd finds the repetition.
    dictionary = [f.name for f in table.schema if f.type == pa.string() and f.name not in _LONG_TEXT]
    with fs.open_output_stream(tmp_path) as sink, pq.ParquetWriter(
        sink, table.schema, compression=compression, compression_level=compression_level,
        use_dictionary=dictionary, write_statistics=True,
    ) as writer:
        writer.write_table(table, row_group_size=row_group_rows)
    if fsync and _is_local(fs):
        _fsync_path(tmp_path)
    fs.move(tmp_path, final_path)
    if fsync and _is_local(fs):
        _fsync_path(directory)


# --------------------------------------------------------------------------- the store


@dataclass(slots=True)
class _DatasetState:
    opened_at: float | None = None  # clock() when the open journal segment got its first row
    rows_written: int = 0  # rows acknowledged (journaled) since start
    rows_in_files: int = 0  # rows turned into Parquet files since start
    files_written: int = 0
    sealed: list[Segment] = field(default_factory=list)  # waiting to become Parquet files


class ParquetStore:
    """Partitioned Parquet datasets under ``root`` with a durable journal in front.

    ``write_batch(records)`` is durable when it returns. A journal segment rolls over
    into Parquet files when it holds ``roll_rows`` rows or ``roll_bytes`` bytes, or
    when its first row is ``roll_seconds`` old (checked on every ``write_batch`` and
    :meth:`roll_due` call; ``clock`` returns seconds, monotonic). ``close()`` rolls
    everything. A failing roll (root unwritable, disk full) keeps the rows in the journal,
    records the error (see :meth:`stats`) and is retried after a backoff delay.

    ``root`` is a local path (or a URI pyarrow understands, with ``journal_dir`` given);
    ``filesystem`` overrides the file system (tests inject faults through it). The journal
    is always local. Not thread-safe: one owner calls it.

    Raises :class:`StoreUnavailableError` from the constructor if the root or the journal
    cannot be created, and from :meth:`write_batch` if the journal cannot be written.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        roll_rows: int = 1_000_000,
        roll_bytes: int = 128 * 1024 * 1024,
        roll_seconds: float = 900.0,
        compression: str = "zstd",
        compression_level: int | None = None,
        row_group_rows: int = 65_536,
        clock: Callable[[], float] = time.monotonic,
        filesystem: pafs.FileSystem | None = None,
        journal_dir: str | os.PathLike[str] | None = None,
        fsync: bool = True,
        retry_policy: BackoffPolicy = BackoffPolicy(initial=1.0, cap=60.0),
    ) -> None:
        if roll_rows < 1 or roll_bytes < 1 or roll_seconds <= 0:
            raise ValueError("roll_rows, roll_bytes and roll_seconds must be positive")
        self._fs, self.root = _resolve(root, filesystem)
        self.roll_rows = roll_rows
        self.roll_bytes = roll_bytes
        self.roll_seconds = roll_seconds
        self._compression = compression
        self._compression_level = compression_level
        self._row_group_rows = row_group_rows
        self._clock = clock
        self._fsync = fsync
        self._retry_policy = retry_policy
        self._delays: Iterator[float] | None = None
        self._retry_at = 0.0
        self.last_error: str | None = None
        self._state = {name: _DatasetState() for name in DATASETS}
        if journal_dir is None:
            if not _is_local(self._fs):
                raise StorageError("a Parquet root that is not a local path needs a local journal_dir")
            journal_dir = os.path.join(self.root, JOURNAL_DIR)
        try:
            self._fs.create_dir(self.root, recursive=True)
        except OSError as exc:
            raise StoreUnavailableError(f"parquet root {self.root} not writable: {exc}") from exc
        self._journal = Journal(journal_dir, fsync=fsync)
        self._recover()

    # -- public ------------------------------------------------------------------------------------

    def write_batch(self, records: Sequence[Record]) -> None:
        """Journal ``records`` durably (one Arrow IPC message per dataset), then roll what is due.

        Raises :class:`StoreUnavailableError` if the journal cannot be written (nothing
        of the failing dataset was kept: the caller retries it), :class:`StorageError`
        for a value the schema cannot hold, SymbolError for a malformed symbol. A failing
        roll does not raise: the rows are safe in the journal (see :meth:`stats`). If some
        datasets were journaled before the failure, :class:`PartialWriteError` lists the
        records that were not.
        """
        batch = Batch.of(records)  # converted once: the SQL store shares the same tables
        tables = {DATASETS[name]: batch_to_table(batch, DATASETS[name]) for name in batch.groups}
        for dataset in tables:  # refuse bad partition values before anything is written
            self._check_partition_values(dataset, tables[dataset])
        done: list[Dataset] = []
        try:
            for dataset, table in tables.items():
                self._journal.append(dataset.name, table)
                state = self._state[dataset.name]
                state.rows_written += table.num_rows
                if state.opened_at is None:
                    state.opened_at = self._clock()
                done.append(dataset)
        except StoreUnavailableError as exc:
            self.last_error = str(exc)
            if done:  # the journaled datasets are acknowledged; tell the caller which were not
                unwritten = [r for d in tables if d not in done for r in batch.groups[d.name]]
                raise PartialWriteError(exc, unwritten) from exc
            raise
        self.roll_due()

    def roll_due(self) -> None:
        """Roll every journal segment that is full or old enough; retry earlier failed rolls."""
        now = self._clock()
        for name, state in self._state.items():
            rows = self._journal.open_rows(name)
            if rows == 0:
                continue
            seg = self._journal.open_segment(name)
            size = seg.path.stat().st_size if seg is not None else 0
            if (rows >= self.roll_rows or size >= self.roll_bytes
                    or (state.opened_at is not None and now - state.opened_at >= self.roll_seconds)):
                self._seal(name)
        if any(s.sealed for s in self._state.values()) and now >= self._retry_at:
            self._roll_sealed()

    def roll_all(self) -> None:
        """Seal every open segment and turn all journaled rows into Parquet files now.

        Raises :class:`StoreUnavailableError` if that fails (the rows stay journaled).
        """
        for name in self._state:
            self._seal(name)
        self._roll_sealed()
        if self.last_error is not None and any(s.sealed for s in self._state.values()):
            raise StoreUnavailableError(self.last_error)

    def close(self) -> None:
        """Roll everything into Parquet files and close the journal.

        Raises :class:`StoreUnavailableError` if rows could not be written; they stay in
        the journal and the next start-up recovers them.
        """
        try:
            self.roll_all()
        finally:
            self._journal.close()

    @property
    def healthy(self) -> bool:
        """False while journaled rows wait for a failed roll to be retried."""
        return not any(s.sealed for s in self._state.values()) or self.last_error is None

    def stats(self) -> dict[str, Any]:
        """Counters: per dataset ``written`` (acknowledged), ``in_files``, ``files``, ``journaled``."""
        datasets = {}
        for name, s in self._state.items():
            if s.rows_written or s.files_written or s.sealed or self._journal.open_rows(name):
                datasets[name] = {
                    "written": s.rows_written,
                    "in_files": s.rows_in_files,
                    "files": s.files_written,
                    "journaled_segments": len(s.sealed) + (1 if self._journal.open_rows(name) else 0),
                }
        return {"healthy": self.healthy, "last_error": self.last_error, "datasets": datasets}

    # -- internals ---------------------------------------------------------------------------------

    def _check_partition_values(self, dataset: Dataset, table: pa.Table) -> None:
        for value in pc.unique(table[dataset.key_column]).to_pylist():
            partition_value(dataset, value)

    def _seal(self, name: str) -> None:
        seg = self._journal.seal(name)
        if seg is not None:
            state = self._state[name]
            state.sealed.append(seg)
            state.opened_at = None

    def _roll_sealed(self) -> None:
        for name, state in self._state.items():
            while state.sealed:
                seg = state.sealed[0]
                try:
                    rows, files = self._segment_to_parquet(DATASETS[name], seg)
                    self._journal.remove(seg)
                except (OSError, StoreUnavailableError) as exc:
                    self._roll_failed(exc)
                    return
                state.sealed.pop(0)
                state.rows_in_files += rows
                state.files_written += files
        if self._delays is not None:
            log.warning("parquet root %s writable again: journaled rows rolled into files", self.root)
        self._delays = None
        self.last_error = None

    def _roll_failed(self, exc: BaseException) -> None:
        if isinstance(exc, StoreUnavailableError):
            self.last_error = str(exc)
        else:
            self.last_error = f"parquet root {self.root} not writable: {exc}"
        if self._delays is None:  # first failure: one line; rows stay journaled, retried with backoff
            log.error("%s; rows stay in the journal and the roll is retried", self.last_error)
            self._delays = backoff(self._retry_policy)
        self._retry_at = self._clock() + next(self._delays)

    def _segment_to_parquet(self, dataset: Dataset, segment: Segment) -> tuple[int, int]:
        """Write one file per partition of ``segment``; skip files a previous attempt finished."""
        table, _torn = read_segment(segment.path)
        if table is None or table.num_rows == 0:
            return 0, 0
        if not table.schema.equals(dataset.arrow_schema):
            table = table.cast(dataset.arrow_schema)  # a segment from an older schema version
        part_name = f"part-{segment.path.name.removesuffix('.arrows')}.parquet"
        rows = files = 0
        for date_text, key, part in _split_partitions(dataset, table):
            directory = f"{self.root}/{dataset.name}/date={date_text}/{dataset.key_column}={key}"
            final = f"{directory}/{part_name}"
            if self._fs.get_file_info(final).type != pafs.FileType.NotFound:
                continue  # written before a crash
            write_parquet_atomically(
                self._fs, final, part, compression=self._compression,
                compression_level=self._compression_level, row_group_rows=self._row_group_rows,
                fsync=self._fsync,
            )
            rows += part.num_rows
            files += 1
        return rows, files

    def _recover(self) -> None:
        """Turn segments left by an earlier run into Parquet files; delete leftover temporaries."""
        for name in DATASETS:
            try:
                infos = self._fs.get_file_info(pafs.FileSelector(f"{self.root}/{name}", allow_not_found=True,
                                                                 recursive=True))
            except OSError as exc:
                raise StoreUnavailableError(f"parquet root {self.root} not readable: {exc}") from exc
            for info in infos:
                if (info.type == pafs.FileType.File and info.base_name.startswith(TMP_PREFIX + "part-")
                        and info.base_name.endswith(TMP_SUFFIX)):
                    self._fs.delete_file(info.path)
        for seg in self._journal.segments():
            if seg.stream in self._state:
                self._state[seg.stream].sealed.append(seg)
        self._roll_sealed()


class PartialWriteError(StoreUnavailableError):
    """Some datasets of a batch were journaled (acknowledged); ``unwritten`` were not."""

    def __init__(self, cause: StoreUnavailableError, unwritten: list[Record]) -> None:
        super().__init__(str(cause))
        self.unwritten = unwritten


def _split_partitions(dataset: Dataset, table: pa.Table) -> Iterator[tuple[str, str, pa.Table]]:
    """Yield ``(date, key value, rows without the key column)`` per partition, arrival order kept."""
    dates = pc.strftime(table[dataset.date_column], format="%Y-%m-%d")
    keys = table[dataset.key_column]
    body = table.drop_columns([dataset.key_column])
    combos = pa.table({"d": dates, "k": keys}).group_by(["d", "k"], use_threads=False).aggregate([])
    if combos.num_rows == 1:
        yield str(combos["d"][0]), partition_value(dataset, combos["k"][0].as_py()), body
        return
    for date_text, key in zip(combos["d"].to_pylist(), combos["k"].to_pylist(), strict=True):
        mask = pc.and_(pc.equal(dates, date_text), pc.equal(keys, key))
        yield date_text, partition_value(dataset, key), body.filter(mask)


def _dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise StorageError(f"unknown dataset {name!r}: one of {', '.join(sorted(DATASETS))}") from None
