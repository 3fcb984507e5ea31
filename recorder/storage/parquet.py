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
Parquet files when the journal segment *rolls over* (sealed by rows, by bytes or by age, then
rolled by the store's background roller thread, which ``write_batch`` does not wait for; see
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
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


def _list_files(fs: pafs.FileSystem, top: str) -> list[pafs.FileInfo]:
    """Every file under ``top``, from one state of each partition.

    Arrow's recursive listing reads a directory's names, then looks each one up by path, and skips
    a name that is gone by then. A compaction's directory exchange (recorder.storage.compact)
    between the two makes it skip the replaced files while keeping the files hard-linked into
    the new directory: a listing of the newest files alone, rows missing with no error. On a
    local file system the listing is therefore repeated until two agree (a swap changes it).
    """
    selector = pafs.FileSelector(top, allow_not_found=True, recursive=True)
    infos = sorted(fs.get_file_info(selector), key=lambda i: i.path)
    if fs.type_name != "local":
        return infos
    for _ in range(20):
        again = sorted(fs.get_file_info(selector), key=lambda i: i.path)
        if [(i.path, i.type) for i in again] == [(i.path, i.type) for i in infos]:
            break
        infos = again
    return infos


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
    infos = _list_files(fs, top)
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

    ``write_batch(records)`` is durable when it returns. A journal segment is *sealed*
    when it holds ``roll_rows`` rows or ``roll_bytes`` bytes, or when its first row is
    ``roll_seconds`` old (checked on every ``write_batch`` and :meth:`roll_due` call;
    ``clock`` returns seconds, monotonic). Sealed segments are rolled into Parquet files
    by the store's own background thread (``parquet-roller``, started on the first seal):
    ``write_batch`` never waits for a roll, except when more than ``roll_backlog``
    sealed segments of one dataset wait for the roller (backpressure: it then waits until
    the roller is back within the bound; never while the roll is failing, see
    :meth:`stats`). ``roll_all()`` and ``close()`` roll everything in the caller's thread.
    A failing roll (root unwritable, disk full) keeps the rows in the journal, records the
    error (see :meth:`stats`) and is retried after a backoff delay (the retry is handed to
    the roller by the first ``write_batch``/``roll_due`` call after the delay).

    A roll streams the segment (one journal batch at a time) and holds about
    ``roll_buffer_bytes`` of rows in memory at most: partitions are written in groups of
    that size, one pass over the segment per group, and a partition larger than that is
    written in several row groups as it goes.

    ``root`` is a local path (or a URI pyarrow understands, with ``journal_dir`` given);
    ``filesystem`` overrides the file system (tests inject faults through it). The journal
    is always local. One owner calls ``write_batch``/``roll_due``/``roll_all``/``close``;
    :meth:`stats`, ``healthy`` and ``last_error`` may be read from any thread.

    ``compaction`` (a :class:`~recorder.storage.compact.CompactionPolicy`) turns on automatic
    compaction: after each roll check, the roller runs one bounded step of
    :class:`~recorder.storage.compact.AutoCompactor` once no roll is pending (in its thread).

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
        roll_backlog: int = 2,
    ) -> None:
        if roll_rows < 1 or roll_bytes < 1 or roll_seconds <= 0 or roll_backlog < 1:
            raise ValueError("roll_rows, roll_bytes, roll_seconds and roll_backlog must be positive")
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
        self.roll_backlog = roll_backlog
        # Shared with the roller thread, guarded by _lock: the sealed lists and file counters of
        # _state, last_error, _delays, _retry_at and the backpressure figures. _roll_lock is held
        # by whoever rolls (the roller, roll_all) and by a compaction step.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a roll finished or failed; work for the roller
        self._roll_lock = threading.Lock()
        self._roller: threading.Thread | None = None
        self._roll_wanted = False
        self._rolling = False  # the roller is in a pass
        self._stopping = False
        self._attempted: set[Path] = set()  # segments a roll has started on (roll lock)
        self._backpressure_waits = 0
        self._backpressure_seconds = 0.0
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
        """Journal ``records`` durably (one Arrow IPC message per dataset), then :meth:`roll_due`.

        Raises :class:`StoreUnavailableError` if the journal cannot be written (nothing
        of the failing dataset was kept: the caller retries it), :class:`StorageError`
        for a value the schema cannot hold, SymbolError for a malformed symbol. A failing
        roll does not raise: the rows are safe in the journal (see :meth:`stats`). If some
        datasets were journaled before the failure, :class:`PartialWriteError` lists the
        records that were not. Does not wait for rolls, except beyond ``roll_backlog``.
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
            with self._lock:
                self.last_error = str(exc)
            if done:  # the journaled datasets are acknowledged; tell the caller which were not
                unwritten = [r for d in tables if d not in done for r in batch.groups[d.name]]
                raise PartialWriteError(exc, unwritten) from exc
            raise
        self.roll_due()

    def roll_due(self) -> None:
        """Seal every journal segment that is full or old enough and hand sealed ones to the roller.

        Never rolls in the caller's thread: the background roller does (a failed roll is handed
        to it again once its backoff delay has passed; with compaction on, the roller also gets
        its compaction step). Waits only while a dataset has more than ``roll_backlog`` sealed
        segments and the roller is working through them without error (backpressure, counted
        in :meth:`stats`).
        """
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
        with self._lock:
            due = self._pending() and now >= self._retry_at
        if due or (self.compactor is not None and now >= self._compact_at):
            self._wake_roller()
        self._wait_for_backlog()

    def roll_all(self) -> None:
        """Seal every open segment and turn all journaled rows into Parquet files now.

        Rolls in the caller's thread (after a roll the roller is running, if any, finished)
        and ignores the backoff delay. Raises :class:`StoreUnavailableError` if that fails
        (the rows stay journaled).
        """
        for name in self._state:
            self._seal(name)
        with self._roll_lock:
            self._roll_sealed()
        with self._lock:
            error = self.last_error if self.last_error is not None and self._pending() else None
        if error is not None:
            raise StoreUnavailableError(error)

    def close(self) -> None:
        """Roll everything into Parquet files, stop the roller and close the journal.

        Raises :class:`StoreUnavailableError` if rows could not be written; they stay in
        the journal and the next start-up recovers them.
        """
        try:
            self.roll_all()
        finally:
            self._stop_roller()
            self._journal.close()
            if self.compactor is not None:
                self.compactor.close()

    def wait_for_rolls(self, timeout: float | None = None) -> bool:
        """Wait until the roller has done what it was asked (tests, benchmarks, the bus consumer).

        True if no journaled rows are left waiting for a roll then; False if a roll failed
        (the rows stay journaled, see :meth:`stats`) or ``timeout`` s passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while (self._roll_wanted or self._rolling) and not self._stopping:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(left)
            return not self._pending()

    @property
    def healthy(self) -> bool:
        """False while journaled rows wait for a failed roll to be retried."""
        with self._lock:
            return not self._pending() or self.last_error is None

    def stats(self) -> dict[str, Any]:
        """Counters: per dataset ``written`` (acknowledged), ``in_files``, ``files``, ``journaled_segments``;
        ``roller``: sealed segments waiting for the roller (``pending_segments``, ``pending_bytes``),
        ``backlog_bound`` (``roll_backlog``) and the backpressure so far (``backpressure_waits``:
        write_batch calls that waited for the roller, ``backpressure_seconds``: their total wait)."""
        with self._lock:
            datasets = {}
            pending: list[Segment] = []
            for name, s in self._state.items():
                pending.extend(s.sealed)
                if s.rows_written or s.files_written or s.sealed or self._journal.open_rows(name):
                    datasets[name] = {
                        "written": s.rows_written,
                        "in_files": s.rows_in_files,
                        "files": s.files_written,
                        "journaled_segments": len(s.sealed) + (1 if self._journal.open_rows(name) else 0),
                    }
            healthy = not pending or self.last_error is None
            roller = {"pending_segments": len(pending), "pending_bytes": sum(_size(seg) for seg in pending),
                      "backlog_bound": self.roll_backlog, "backpressure_waits": self._backpressure_waits,
                      "backpressure_seconds": round(self._backpressure_seconds, 3)}
            return {"healthy": healthy, "last_error": self.last_error, "datasets": datasets, "roller": roller}

    # -- internals ---------------------------------------------------------------------------------

    def _check_partition_values(self, dataset: Dataset, table: pa.Table) -> None:
        for column in dataset.partition_columns:
            for value in pc.unique(table[column]).to_pylist():
                partition_value(dataset, value, column)

    def _seal(self, name: str) -> None:
        seg = self._journal.seal(name)
        if seg is not None:
            state = self._state[name]
            with self._lock:
                state.sealed.append(seg)
            state.opened_at = None

    def _pending(self) -> bool:
        """True while a sealed segment waits to become Parquet files (hold ``_lock``)."""
        return any(s.sealed for s in self._state.values())

    # -- the roller thread ---------------------------------------------------------------------------

    def _wake_roller(self) -> None:
        """Ask the roller for a pass over the sealed segments (started here the first time)."""
        with self._changed:
            if self._stopping:
                return
            self._roll_wanted = True
            if self._roller is None:
                self._roller = threading.Thread(target=self._roller_loop, name="parquet-roller", daemon=True)
                self._roller.start()
            self._changed.notify_all()

    def _roller_loop(self) -> None:
        while True:
            with self._changed:
                while not self._roll_wanted and not self._stopping:
                    self._changed.wait()
                if self._stopping:
                    return
                self._roll_wanted = False
                self._rolling = True
            try:
                with self._roll_lock:
                    with self._lock:
                        due = self._clock() >= self._retry_at
                    if due:  # else: a failed roll waits for its backoff delay (compaction does too)
                        self._roll_sealed()
                    self._compaction_step()
            except Exception as exc:  # e.g. an unreadable segment: the rows stay journaled
                self._roll_failed(exc)
            finally:
                with self._changed:
                    self._rolling = False
                    self._changed.notify_all()  # backpressure waiters look again

    def _stop_roller(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
            roller = self._roller
        if roller is not None:
            roller.join()

    def _wait_for_backlog(self) -> None:
        """Backpressure: wait while a dataset has more than ``roll_backlog`` sealed segments and the
        roller works through them without error (a failing roll keeps rows journaled instead)."""
        with self._changed:
            if not self._must_wait():
                return
            started = time.monotonic()
            self._backpressure_waits += 1
            if self._backpressure_waits == 1 or self._backpressure_waits % 100 == 0:
                log.warning("parquet root %s: more than %d sealed journal segments of a dataset wait for "
                            "the roller; writes wait for it (%d times so far)", self.root, self.roll_backlog,
                            self._backpressure_waits)
            while self._must_wait():
                self._changed.wait(1.0)
            self._backpressure_seconds += time.monotonic() - started

    def _must_wait(self) -> bool:
        return (self.last_error is None and self._roller is not None and not self._stopping
                and self._over_backlog())

    def _over_backlog(self) -> bool:
        return any(len(s.sealed) > self.roll_backlog for s in self._state.values())

    def _roll_sealed(self) -> None:
        """Roll every sealed segment, oldest first per dataset; stop at the first failure.

        Called with ``_roll_lock`` held (by the roller, roll_all or the start-up recovery).
        """
        for name, state in self._state.items():
            while True:
                with self._lock:
                    if not state.sealed:
                        break
                    seg = state.sealed[0]
                try:
                    rows, files = self._segment_to_parquet(DATASETS[name], seg)
                    self._journal.remove(seg)
                except (OSError, StoreUnavailableError) as exc:
                    self._roll_failed(exc)
                    return
                self._attempted.discard(seg.path)
                with self._changed:
                    state.sealed.pop(0)
                    state.rows_in_files += rows
                    state.files_written += files
                    self._changed.notify_all()
                # A roll is the one moment Arrow allocates a lot: hand the freed pages back to the OS
                # (Arrow's pool and glibc's heaps, at most every 10 s: recorder/storage/memory.py).
                memory.release()
        with self._lock:
            recovered = self._delays is not None
            self._delays = None
            self._retry_at = 0.0
            self.last_error = None
        if recovered:
            log.warning("parquet root %s writable again: journaled rows rolled into files", self.root)

    def _roll_failed(self, exc: BaseException) -> None:
        if isinstance(exc, StoreUnavailableError):
            error = str(exc)
        elif isinstance(exc, OSError):
            error = f"parquet root {self.root} not writable: {exc}"
        else:
            error = f"parquet roll failed: {type(exc).__name__}: {exc}"
        with self._changed:
            self.last_error = error
            first = self._delays is None
            if first:
                self._delays = backoff(self._retry_policy)
            assert self._delays is not None
            self._retry_at = self._clock() + next(self._delays)
            self._changed.notify_all()
        if first:  # first failure: one line; rows stay journaled, retried with backoff
            log.error("%s; rows stay in the journal and the roll is retried", error)

    def _segment_to_parquet(self, dataset: Dataset, segment: Segment) -> tuple[int, int]:
        """Write one file per partition of ``segment``; skip files a previous attempt finished.

        Streams: the segment is read one journal batch at a time, never whole. A first
        pass counts rows and bytes per partition; the partitions are then written in
        groups of about ``roll_buffer_bytes`` each, one more pass over the segment per
        group, so memory stays bounded whatever the segment's size.
        """
        part_name = f"part-{segment.path.name.removesuffix('.arrows')}.parquet"
        # A segment's file names are its own (time + uuid): files of it can only exist if an earlier
        # attempt (a failed roll, a run that crashed) wrote them, so only then is each one looked up.
        again = self._recovering or segment.path in self._attempted
        self._attempted.add(segment.path)
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
            if not again or (self._fs.get_file_info(final).type == pafs.FileType.NotFound
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
        before its journal segment is gone: a retried roll would write them again).

        Runs in the roller's pass, after its rolls: the roller is the only writer of roll files,
        so a segment sealed while the step runs has no files the step could merge."""
        if self.compactor is None or self._clock() < self._compact_at:
            return
        with self._lock:
            if self._pending():
                return
        try:
            self.compactor.step()
        except (OSError, StorageError, pa.ArrowException) as exc:
            log.warning("automatic compaction failed (the partition is unchanged; retried in 60 s): %s", exc)
            self._compact_at = self._clock() + 60.0

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
            with self._roll_lock:  # in the constructor's thread: start-up waits for its recovery
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


def _size(segment: Segment) -> int:
    try:
        return segment.path.stat().st_size
    except OSError:
        return 0  # rolled and removed meanwhile
