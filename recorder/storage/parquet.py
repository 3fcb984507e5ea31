"""The Parquet store: one Hive-partitioned dataset per kind of record, on :mod:`pyarrow.fs`.

Layout (the dataset spec, :mod:`recorder.storage.datasets`, gives the partition columns)::

    <root>/<dataset>/venue=<venue>/date=YYYY-MM-DD/<key>=<value>/part-<segment>.parquet
    <root>/feed_events/date=YYYY-MM-DD/connection=<connection>/part-<segment>.parquet   (and quarantine)
    <root>/_journal/<dataset>/<ns>-<uuid>.arrows        rows flushed, not yet in a Parquet file

``venue`` is the record's venue (``okex_v1``, ``okx_v5``); ``date`` the UTC date of the
dataset's ``date_column``; ``<key>`` its ``key_column`` (``symbol`` for market data, orders,
instruments and fills, ``currency`` for balances, ``connection`` for feed events and
quarantined frames, whose venue is a plain column). Partition columns are not repeated
inside the files: readers (``pyarrow.dataset``, pandas, DuckDB with
``hive_partitioning=true``) take them from the path. :func:`open_dataset` gives a
``pyarrow.dataset`` with the exact types (``date`` as ``date32``).

Roots written before schema revision 0003 have no ``venue=`` level
(``<dataset>/date=.../symbol=.../``): :func:`open_dataset` reads both layouts, side by side in
one root too, and gives the old files the venue ``okex_v1``.

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

On S3 (``root`` ``s3://bucket/prefix``, see :mod:`recorder.storage.fs`) a file is uploaded
under its final key once complete (no temporary, no rename, no directory markers); the
journal stays local.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recorder.backoff import BackoffPolicy, backoff
from recorder.errors import StorageError, StoreUnavailableError
from recorder.records import Record
from recorder.storage import memory
from recorder.storage.arrow import PartialWriteError, batch_to_table
from recorder.storage.fs import (
    TMP_PREFIX,
    TMP_SUFFIX,
    StagedFile,
    create_dir,
    delete_file,
    is_local,
    resolve,
    writes_in_place,
)
from recorder.storage.journal import Journal, Segment, iter_segment
from recorder.storage.keys import check_symbol, check_venue
from recorder.storage.schema import DATASETS, Batch, Dataset, conform

if TYPE_CHECKING:
    from recorder.storage.compact import AutoCompactor, CompactionPolicy

__all__ = [
    "JOURNAL_DIR",
    "TMP_PREFIX",
    "ParquetStore",
    "PartialWriteError",
    "batch_to_table",
    "file_schema",
    "open_dataset",
    "partition_directory",
    "partition_fields",
    "partition_value",
    "records_to_table",
    "write_parquet_atomically",
]

log = logging.getLogger("recorder.storage")

JOURNAL_DIR = "_journal"
_LONG_TEXT = frozenset({"bids", "asks", "detail", "reason"})
_SAFE_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}")


# --------------------------------------------------------------------------- schemas and conversion


def file_schema(dataset: Dataset) -> pa.Schema:
    """The schema inside a Parquet file of ``dataset``: its Arrow schema minus the partition columns."""
    return _FILE_SCHEMAS[dataset.name]


def _without(schema: pa.Schema, names: Sequence[str]) -> pa.Schema:
    for name in names:
        schema = schema.remove(schema.get_field_index(name))
    return schema


_FILE_SCHEMAS = {d.name: _without(d.arrow_schema, d.partition_columns) for d in DATASETS.values()}


def partition_fields(dataset: Dataset) -> list[str]:
    """The partition levels of ``dataset`` in path order: ``venue``?, ``date``, its key column."""
    assert dataset.spec is not None
    return list(dataset.spec.partition)


def dataset_partitioning(dataset: Dataset) -> pads.Partitioning:
    """The Hive partitioning of ``dataset``: (``venue``,) ``date`` (date32), its key column (string)."""
    return pads.partitioning(
        pa.schema([pa.field(p, pa.date32() if p == "date" else pa.string())
                   for p in partition_fields(dataset)]),
        flavor="hive",
    )


def open_dataset(root: str, name: str, *, filesystem: pafs.FileSystem | None = None) -> pads.Dataset:
    """``pyarrow.dataset`` of one dataset under ``root`` with the exact schema and typed partitions.

    Reads both layouts: ``venue=<v>/date=<d>/<key>=<k>/`` and the layout written before schema
    revision 0003 (``date=<d>/<key>=<k>/``, venue ``okex_v1``). Files and directories whose
    name starts with ``.`` or ``_`` are skipped (temporaries, the journal). Partition values
    are URI-decoded; filters on partition columns prune whole files.
    """
    dataset = _dataset(name)
    fs, base = _resolve(root, filesystem)
    top = f"{base}/{name}"
    schema = pa.unify_schemas([file_schema(dataset), dataset_partitioning(dataset).schema])
    types = {f.name: f.type for f in dataset_partitioning(dataset).schema}
    legacy = {c.name: c.legacy for c in dataset.spec.columns if c.legacy is not None} if dataset.spec else {}
    fmt = pads.ParquetFileFormat()
    fragments = []
    infos = fs.get_file_info(pafs.FileSelector(top, allow_not_found=True, recursive=True))
    for info in sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path):
        rel = info.path[len(top) + 1:].split("/")
        if any(part.startswith((".", "_")) for part in rel):
            continue
        values: dict[str, Any] = {}
        for part in rel[:-1]:
            key, eq, value = part.partition("=")
            if eq and key in types:
                values[key] = urllib.parse.unquote(value)
        for key, default in legacy.items():
            if key in types and key not in values:
                values[key] = default  # the layout before the venue level: okex_v1
        expression = None
        for key, value in values.items():
            scalar = pa.scalar(value).cast(types[key])
            term = pc.field(key) == scalar
            expression = term if expression is None else expression & term
        fragments.append(fmt.make_fragment(info.path, filesystem=fs, partition_expression=expression))
    return pads.FileSystemDataset(fragments, schema, fmt, fs)


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


def partition_value(dataset: Dataset, value: object, column: str | None = None) -> str:
    """A partition directory value of ``column`` (default: the key column) that cannot escape its directory.

    Venues and symbols must pass storage's own rule :func:`~recorder.storage.keys.check_path_value`
    (raises :class:`~recorder.errors.SymbolError`); other values (currency, connection) are kept if
    they are plain names, else percent-encoded (pyarrow decodes them on read).
    """
    column = dataset.key_column if column is None else column
    if column == "venue":
        return check_venue(value)
    if column in dataset.path_checked:
        return check_symbol(value)
    text = str(value)
    if _SAFE_VALUE.fullmatch(text) and ".." not in text:
        return text
    return urllib.parse.quote(text, safe="").replace(".", "%2E") or "%00"


# --------------------------------------------------------------------------- file system helpers


_resolve = resolve  # local path, s3://bucket/prefix or another pyarrow URI (recorder.storage.fs)
_is_local = is_local


def _parquet_writer(sink: Any, schema: pa.Schema, compression: str,
                    compression_level: int | None) -> pq.ParquetWriter:
    # Dictionary-encode the short repeated strings only; book levels are long JSON strings
    # that repeat from row to row: a dictionary only grows them, zstd finds the repetition.
    dictionary = [f.name for f in schema if f.type == pa.string() and f.name not in _LONG_TEXT]
    return pq.ParquetWriter(sink, schema, compression=compression, compression_level=compression_level,
                            use_dictionary=dictionary, write_statistics=True)


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

    Local: written as ``.<name>.tmp`` in the same directory, fsync'd, renamed over
    ``final_path`` and the directory fsync'd. S3: uploaded under the final key once
    complete (:class:`~recorder.storage.fs.StagedFile`). Raises OSError / pyarrow errors
    untranslated: callers translate them once.
    """
    staged = StagedFile(fs, final_path, fsync=fsync)
    with staged.sink as sink, _parquet_writer(
        sink, table.schema, compression, compression_level,
    ) as writer:
        writer.write_table(table, row_group_size=row_group_rows)
    staged.publish()


_MAX_PIECES = 256  # small tables kept apart cost C++ objects per column: concatenate beyond this


def _compact(pieces: list[pa.Table], most: int = _MAX_PIECES) -> list[pa.Table]:
    """``pieces`` as one contiguous table once there are ``most`` or more of them."""
    if len(pieces) < most or (len(pieces) == 1 and all(c.num_chunks <= 1 for c in pieces[0].columns)):
        return pieces
    return [pa.concat_tables(pieces).combine_chunks()]


class _PartitionFile:
    """One partition file of a roll, fed in pieces: row groups are written as they fill up.

    Rows are buffered until ``row_group_rows`` rows (written as full row groups, as
    ``write_parquet_atomically`` would) or ``max_bytes`` bytes (written as one smaller row
    group), so one partition never holds more than about ``max_bytes`` in memory.
    """

    __slots__ = ("_buffer", "_bytes", "_rows", "_sink", "_staged", "_writer", "final", "rows")

    def __init__(self, final_path: str) -> None:
        self.final = final_path
        self._staged: StagedFile | None = None
        self._buffer: list[pa.Table] = []
        self._rows = self._bytes = 0
        self._sink: Any = None
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def add(self, part: pa.Table, store: ParquetStore) -> None:
        self._buffer.append(part)
        if len(self._buffer) >= _MAX_PIECES:
            self._buffer = _compact(self._buffer)
        self._rows += part.num_rows
        self._bytes += part.nbytes
        if self._rows >= store._row_group_rows or self._bytes >= store._roll_buffer_bytes:
            self._write(store, final=False)

    def finish(self, store: ParquetStore) -> None:
        """Write what is buffered, close, and publish the file under its final path."""
        self._write(store, final=True)
        assert self._writer is not None and self._staged is not None
        self._writer.close()
        self._sink.close()
        self._writer = self._sink = None
        self._staged.publish()

    def abort(self) -> None:
        """Close the temporary file after a failure (start-up deletes leftover temporaries)."""
        self._buffer = []
        for closer in (self._writer, self._sink):
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer.close()
        self._writer = self._sink = None

    def _write(self, store: ParquetStore, *, final: bool) -> None:
        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer) if len(self._buffer) != 1 else self._buffer[0]
        self._buffer = []
        if self._writer is None:
            self._staged = StagedFile(store._fs, self.final, fsync=store._fsync)
            self._sink = self._staged.sink
            self._writer = _parquet_writer(self._sink, table.schema, store._compression,
                                           store._compression_level)
        group = store._row_group_rows
        full = table.num_rows - table.num_rows % group
        if final or table.num_rows < group:  # everything (the end, or the byte bound was reached)
            full = table.num_rows
        if full:
            self._writer.write_table(table.slice(0, full), row_group_size=group)
            self.rows += full
        rest = table.slice(full)
        self._buffer = [rest] if rest.num_rows else []
        self._rows = rest.num_rows
        self._bytes = rest.nbytes if rest.num_rows else 0


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

    A roll streams the segment (one journal batch at a time) and holds about
    ``roll_buffer_bytes`` of rows in memory at most: partitions are written in groups of
    that size, one pass over the segment per group, and a partition larger than that is
    written in several row groups as it goes.

    ``root`` is a local path (or a URI pyarrow understands, with ``journal_dir`` given);
    ``filesystem`` overrides the file system (tests inject faults through it). The journal
    is always local. Not thread-safe: one owner calls it.

    ``compaction`` (a :class:`~recorder.storage.compact.CompactionPolicy`) turns on automatic
    compaction: after each roll check, while no roll is pending, one bounded step of
    :class:`~recorder.storage.compact.AutoCompactor` runs in the caller's thread.

    Raises :class:`StoreUnavailableError` from the constructor if the root or the journal
    cannot be created, and from :meth:`write_batch` if the journal cannot be written.
    """

    name = "parquet"  # the Store seam (recorder.storage.store): its name in the writer's stats

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
        roll_buffer_bytes: int = 8 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
        filesystem: pafs.FileSystem | None = None,
        journal_dir: str | os.PathLike[str] | None = None,
        fsync: bool = True,
        retry_policy: BackoffPolicy = BackoffPolicy(initial=1.0, cap=60.0),
        compaction: CompactionPolicy | None = None,
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
        self._roll_buffer_bytes = max(1, roll_buffer_bytes)
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
            create_dir(self._fs, self.root)
        except OSError as exc:
            raise StoreUnavailableError(f"parquet root {self.root} not writable: {exc}") from exc
        self._journal = Journal(journal_dir, fsync=fsync)
        self.compactor: AutoCompactor | None = None
        self._compact_at = 0.0
        self._recovering = False
        self._recover()
        self.compactor = self._start_compaction(compaction)

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
        self._compaction_step()

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
            if self.compactor is not None:
                self.compactor.close()

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
        for column in dataset.partition_columns:
            for value in pc.unique(table[column]).to_pylist():
                partition_value(dataset, value, column)

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
                # A roll is the one moment Arrow allocates a lot: hand the freed pages back to the OS
                # (Arrow's pool and glibc's heaps: recorder/storage/memory.py).
                memory.release()
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
        """Write one file per partition of ``segment``; skip files a previous attempt finished.

        Streams: the segment is read one journal batch at a time, never whole. A first
        pass counts rows and bytes per partition; the partitions are then written in
        groups of about ``roll_buffer_bytes`` each, one more pass over the segment per
        group, so memory stays bounded whatever the segment's size.
        """
        part_name = f"part-{segment.path.name.removesuffix('.arrows')}.parquet"
        sizes: dict[str, list[int]] = {}  # partition label -> [rows, bytes], first seen first
        for table in _segment_tables(dataset, segment):
            labels = _partition_labels(dataset, table)
            per_row = table.nbytes / table.num_rows
            counts = pc.value_counts(labels)
            for label, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(),
                                strict=True):
                entry = sizes.setdefault(label, [0, 0])
                entry[0] += n
                entry[1] += int(n * per_row)
        todo: dict[str, str] = {}  # label -> final path
        for label in sizes:
            directory = f"{self.root}/{dataset.name}/{partition_directory(dataset, label)}"
            final = f"{directory}/{part_name}"
            if (self._fs.get_file_info(final).type == pafs.FileType.NotFound
                    and not (self._recovering and self._merged_by_compaction(directory, part_name))):
                todo[label] = final  # else: written before a crash (and maybe compacted since)
        groups: list[list[str]] = []
        budget = 0
        for label in todo:
            if not groups or budget + sizes[label][1] > self._roll_buffer_bytes:
                groups.append([])
                budget = 0
            groups[-1].append(label)
            budget += sizes[label][1]
        rows = files = 0
        for group in groups:
            n = self._write_partitions(dataset, segment, {label: todo[label] for label in group},
                                       every=len(group) == len(sizes), size=sum(sizes[g][1] for g in group))
            rows += n
            files += len(group)
            if self.compactor is not None:
                for label in group:
                    self.compactor.note_file(dataset.name, todo[label])
        return rows, files

    def _write_partitions(self, dataset: Dataset, segment: Segment, finals: dict[str, str], *,
                          every: bool, size: int) -> int:
        """One pass over ``segment`` writing the partitions ``finals`` (label -> final path).

        A group within the budget is gathered (its rows only), then split into one file per
        partition, each written at once; a single partition beyond the budget (``size``
        bytes) is written row group by row group as the pass goes.
        """
        wanted = None if every else pa.array(list(finals), pa.string())
        if size > self._roll_buffer_bytes and len(finals) == 1:
            ((label, final),) = finals.items()
            out = _PartitionFile(final)
            try:
                for table in _segment_tables(dataset, segment):
                    for _label, part in _split_table(dataset, table, wanted):
                        out.add(part, self)
                out.finish(self)
            except BaseException:
                out.abort()
                raise
            return out.rows
        pieces: list[pa.Table] = []
        for table in _segment_tables(dataset, segment):
            if wanted is not None:
                table = table.filter(pc.is_in(_partition_labels(dataset, table), value_set=wanted))
            if table.num_rows:
                pieces.append(table)
                pieces = _compact(pieces)
        if not pieces:
            return 0
        gathered = _compact(pieces, 1)[0]
        del pieces
        rows = 0
        for label, part in _split_table(dataset, gathered):
            out = _PartitionFile(finals[label])
            try:
                out.add(part, self)
                out.finish(self)
            except BaseException:
                out.abort()
                raise
            rows += out.rows
        return rows

    # -- automatic compaction (recorder/storage/compact.py; docs/storage.md "Compaction") ------------

    def _start_compaction(self, policy: CompactionPolicy | None) -> AutoCompactor | None:
        if policy is None:
            return None
        from recorder.storage.compact import AutoCompactor, exchange_supported  # compact imports us

        if not (_is_local(self._fs) and exchange_supported(self.root)):
            log.warning("parquet root %s: no atomic directory exchange here (needs Linux and a local "
                        "file system): automatic compaction is off; use okex-recorder compact", self.root)
            return None
        return AutoCompactor(self.root, policy, fsync=self._fsync, row_group_rows=self._row_group_rows)

    def _compaction_step(self) -> None:
        """One bounded compaction step, only while no roll is pending (its files must not be merged
        before its journal segment is gone: a retried roll would write them again)."""
        if self.compactor is None or any(s.sealed for s in self._state.values()):
            return
        now = self._clock()
        if now < self._compact_at:
            return
        try:
            self.compactor.step()
        except (OSError, StorageError, pa.ArrowException) as exc:
            log.warning("automatic compaction failed (the partition is unchanged; retried in 60 s): %s", exc)
            self._compact_at = now + 60.0

    def _merged_by_compaction(self, directory: str, part_name: str) -> bool:
        """True if a compacted file in ``directory`` holds ``part_name``'s rows (start-up only: a file
        this store wrote before a crash that another process's compaction merged since)."""
        from recorder.storage.compact import merged_into_compacted

        return _is_local(self._fs) and merged_into_compacted(directory, part_name)

    def _recover(self) -> None:
        """Turn segments left by an earlier run into Parquet files; delete leftover temporaries."""
        for name in DATASETS:
            if writes_in_place(self._fs):  # object storage: no temporaries; may be down now (rows wait)
                break
            try:
                infos = self._fs.get_file_info(pafs.FileSelector(f"{self.root}/{name}", allow_not_found=True,
                                                                 recursive=True))
            except OSError as exc:
                raise StoreUnavailableError(f"parquet root {self.root} not readable: {exc}") from exc
            for info in infos:
                if (info.type == pafs.FileType.File and info.base_name.startswith(TMP_PREFIX + "part-")
                        and info.base_name.endswith(TMP_SUFFIX)):
                    delete_file(self._fs, info.path)
        for seg in self._journal.segments():
            if seg.stream in self._state:
                self._state[seg.stream].sealed.append(seg)
        self._recovering = True
        try:
            self._roll_sealed()
        finally:
            self._recovering = False


def _segment_tables(dataset: Dataset, segment: Segment) -> Iterator[pa.Table]:
    """The complete batches of a journal segment, one at a time, in ``dataset``'s Arrow schema."""
    for batch in iter_segment(segment.path):
        if batch.num_rows == 0:
            continue
        table = pa.Table.from_batches([batch])
        table = conform(table, dataset.arrow_schema)  # a segment from an older schema version
        yield table


def _partition_labels(dataset: Dataset, table: pa.Table) -> pa.ChunkedArray:
    """Per row its partition values in path order joined by ``/`` (``okex_v1/2026-11-23/btc_usdt``).

    Only the last value (the key) may contain a slash: venues are checked path-safe, dates have none.
    """
    parts = []
    for p in partition_fields(dataset):
        if p == "date":
            parts.append(pc.fill_null(pc.strftime(table[dataset.date_column], format="%Y-%m-%d"), "None"))
        else:
            parts.append(pc.fill_null(pc.cast(table[p], pa.string()), "None"))
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, "/")


def partition_directory(dataset: Dataset, label: str) -> str:
    """The directory (relative to the dataset's) of a partition label: ``venue=V/date=D/symbol=S``."""
    fields = partition_fields(dataset)
    values = label.split("/", len(fields) - 1)
    return "/".join(f"{p}={v}" if p == "date" else f"{p}={partition_value(dataset, v, p)}"
                    for p, v in zip(fields, values, strict=True))


def _split_table(dataset: Dataset, table: pa.Table,
                 wanted: pa.Array | None = None) -> Iterator[tuple[str, pa.Table]]:
    """Yield ``(partition label, rows without the partition columns)``, arrival order kept per partition.

    ``wanted`` (labels) keeps only those partitions. One stable sort by label, then slices.
    """
    labels = _partition_labels(dataset, table)
    if wanted is not None:
        mask = pc.is_in(labels, value_set=wanted)
        table, labels = table.filter(mask), labels.filter(mask)
        if table.num_rows == 0:
            return
    body = table.drop_columns(list(dataset.partition_columns))
    counts = pc.value_counts(labels)
    if len(counts) != 1:
        order = pc.sort_indices(labels)  # stable: rows of one partition keep their order
        body, labels = body.take(order), labels.take(order)
        counts = pc.value_counts(labels)  # in order of first appearance = sorted order
    offset = 0
    for label, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True):
        yield label, body.slice(offset, n)
        offset += n


def _split_partitions(dataset: Dataset, table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """Yield ``(partition directory relative to the dataset's, rows without the partition columns)``."""
    for label, part in _split_table(dataset, table):
        yield partition_directory(dataset, label), part


def _dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise StorageError(f"unknown dataset {name!r}: one of {', '.join(sorted(DATASETS))}") from None
