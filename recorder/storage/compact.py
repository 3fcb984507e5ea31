"""Compaction: merge a partition's small Parquet files into one, atomically for readers.

Two users: ``okex-recorder compact`` (by hand, :func:`compact`) and the running recorder
(:class:`AutoCompactor`, driven by :class:`~recorder.storage.parquet.ParquetStore` from the
writer thread in bounded steps). docs/storage.md "Compaction" states the guarantees.

How a partition ``<root>/<dataset>/venue=X/date=D/<key>=V/`` (or, written before schema
revision 0003, ``<root>/<dataset>/date=D/<key>=V/``) is compacted (local file systems
on Linux): the rows of its files (in the order they were written) are streamed into
``part-compact-<ns>-<uuid>.parquet`` inside a staging directory
``<root>/_compact/<id>/p/`` (outside every dataset); files that arrived meanwhile are
hard-linked beside it; then one ``renameat2(RENAME_EXCHANGE)`` swaps the staging
directory and the partition directory. Any lookup of the partition's path resolves to
the old directory or to the new one: a reader lists either all the old files or the
merged file, never both and never neither. A reader that listed the old files and opens
one after the swap gets ``FileNotFoundError`` (a retry sees the new file; the analysis
loaders retry by themselves); files already open stay readable. The old directory is
deleted ``grace`` seconds later. A crash leaves only ``_compact/`` debris, cleaned at the
next start (:func:`recover_compactions`).

Where the exchange is not available (other systems, remote file systems) :func:`compact`
falls back to rename-then-delete: a reader may then see old and new files together for
a moment (rows doubled, never missing; the loaders drop duplicates by key), and a crash
in between is repaired on the next run because a compacted file records in its
metadata which files it replaced. The recorder does not compact by itself there.

On S3 (``--parquet-root s3://bucket/prefix``) the merged object is uploaded under its final
key (it appears complete, at once) and the old objects are then deleted through s3fs, which
leaves no directory marker; readers see the same three states (docs/storage.md).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recorder.errors import ConfigError, StorageError, StoreUnavailableError
from recorder.storage.fs import delete_file
from recorder.storage.parquet import (
    _LONG_TEXT,
    TMP_PREFIX,
    TMP_SUFFIX,
    _is_local,
    _resolve,
    file_schema,
    write_parquet_atomically,
)
from recorder.storage.schema import DATASETS, conform

__all__ = [
    "COMPACT_DIR",
    "AutoCompactor",
    "CompactionPolicy",
    "CompactionResult",
    "PartitionJob",
    "PublishResult",
    "add_arguments",
    "compact",
    "exchange_paths",
    "exchange_supported",
    "merged_into_compacted",
    "recover_compactions",
    "run",
]

log = logging.getLogger("recorder.storage")

COMPACT_DIR = "_compact"  # under the Parquet root: staging and retired directories, the lock
_REPLACES_KEY = b"okex_recorder.replaces"


@dataclass(frozen=True, slots=True)
class CompactionResult:
    """One partition directory that was compacted."""

    directory: str
    files_before: int
    rows: int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--parquet-root R [--date YYYY-MM-DD] [--dataset NAME]``."""
    parser.add_argument("--parquet-root", required=True,
                        help="root directory of the Parquet datasets, or s3://bucket/prefix")
    parser.add_argument("--date", help="only this UTC date (YYYY-MM-DD); default: every date")
    parser.add_argument("--dataset", choices=sorted(DATASETS), help="only this dataset; default: all")


def run(args: argparse.Namespace) -> int:
    """Compact as asked and print one line per partition compacted; returns the exit code."""
    day = None
    if args.date is not None:
        try:
            day = date.fromisoformat(args.date)
        except ValueError:
            raise ConfigError(f"--date must be YYYY-MM-DD, got {args.date!r}") from None
    if "://" not in str(args.parquet_root) and not Path(args.parquet_root).is_dir():
        raise ConfigError(f"no Parquet root at {args.parquet_root} (see --parquet-root)")
    results = compact(args.parquet_root, day=day, dataset=args.dataset)
    for r in results:
        print(f"compacted {r.directory}: {r.files_before} files -> 1 ({r.rows} rows)")
    if not results:
        print("nothing to compact")
    return 0


def compact(root: str, *, day: date | None = None, dataset: str | None = None,
            filesystem: pafs.FileSystem | None = None) -> list[CompactionResult]:
    """Merge the files of every matching partition directory into one; return what was done.

    Raises :class:`StoreUnavailableError` when the root cannot be read or written,
    :class:`StorageError` for an unknown dataset.
    """
    if dataset is not None and dataset not in DATASETS:
        raise StorageError(f"unknown dataset {dataset!r}: one of {', '.join(sorted(DATASETS))}")
    fs, base = _resolve(root, filesystem)
    names = [dataset] if dataset is not None else sorted(DATASETS)
    results: list[CompactionResult] = []
    atomic = _is_local(fs) and os.path.isdir(base) and exchange_supported(base)
    if atomic:
        os.makedirs(f"{base}/{COMPACT_DIR}", exist_ok=True)
        recover_compactions(base)
    try:
        for name in names:
            date_glob = f"date={day.isoformat()}" if day is not None else None
            for date_dir in _date_dirs(fs, f"{base}/{name}"):
                if date_glob is not None and date_dir.rsplit("/", 1)[1] != date_glob:
                    continue
                for part_dir in _subdirs(fs, date_dir):
                    if atomic:
                        result = _compact_directory_atomically(base, name, part_dir)
                    else:
                        result = _compact_directory(fs, name, part_dir)
                    if result is not None:
                        results.append(result)
    except OSError as exc:
        raise StoreUnavailableError(f"cannot compact parquet root {base}: {exc}") from exc
    return results


def _date_dirs(fs: pafs.FileSystem, path: str) -> list[str]:
    """The ``date=`` directories of a dataset: below its ``venue=`` directories, or directly below it
    (the layout written before schema revision 0003)."""
    out = []
    for sub in _subdirs(fs, path):
        if sub.rsplit("/", 1)[1].startswith("venue="):
            out.extend(_subdirs(fs, sub))
        else:
            out.append(sub)
    return out


def _subdirs(fs: pafs.FileSystem, path: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.Directory and i.base_name[:1] not in "._")


def _compact_directory(fs: pafs.FileSystem, name: str, directory: str) -> CompactionResult | None:
    infos = fs.get_file_info(pafs.FileSelector(directory))
    for info in infos:  # a compaction of ours that died before its rename
        if info.base_name.startswith(f"{TMP_PREFIX}part-compact-") and info.base_name.endswith(TMP_SUFFIX):
            delete_file(fs, info.path)
    files = sorted((i.path for i in infos if i.type == pafs.FileType.File
                    and i.base_name.startswith("part-") and i.base_name.endswith(".parquet")),
                   key=lambda path: _written_order(path.rsplit("/", 1)[1]))
    files = _finish_fallback_leftovers(fs, directory, files)
    if len(files) < 2:
        return None
    schema = file_schema(DATASETS[name])
    tables = []
    for f in files:
        with fs.open_input_file(f) as source:
            tables.append(conform(pq.read_table(source), schema))
    merged = pa.concat_tables(tables)
    replaces = json.dumps([f.rsplit("/", 1)[1] for f in files]).encode()
    merged = merged.replace_schema_metadata({_REPLACES_KEY: replaces})
    final = f"{directory}/part-compact-{uuid.uuid4().hex}.parquet"
    write_parquet_atomically(fs, final, merged)
    for f in files:
        delete_file(fs, f)
    return CompactionResult(directory, len(files), merged.num_rows)


def merged_into_compacted(directory: str, name: str) -> bool:
    """True if a ``part-compact-*`` file in ``directory`` records that it holds the rows of ``name``."""
    fs = pafs.LocalFileSystem()
    return any(name in _replaces(fs, f"{directory}/{c}")
               for c in _parquet_names(directory) if c.startswith("part-compact-"))


def _compact_directory_atomically(root: str, name: str, directory: str) -> CompactionResult | None:
    """One partition, with the directory exchange, holding the root's compaction lock."""
    for entry in os.listdir(directory):  # a fallback compaction of ours that died before its rename
        if entry.startswith(f"{TMP_PREFIX}part-compact-") and entry.endswith(TMP_SUFFIX):
            os.remove(f"{directory}/{entry}")
    fs = pafs.LocalFileSystem()
    _finish_fallback_leftovers(fs, directory, [f"{directory}/{n}" for n in _parquet_names(directory)])
    files = _parquet_names(directory)
    if len(files) < 2:
        return None
    fd = os.open(f"{root}/{COMPACT_DIR}/lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a running recorder compacting the same root: wait for it
        files = _parquet_names(directory)  # again, under the lock
        if len(files) < 2:
            return None
        job = PartitionJob(root, name, directory, files)
        try:
            while not job.done_reading:
                job.advance(64 * 1024 * 1024)
            result = job.publish()
        finally:
            shutil.rmtree(job.work, ignore_errors=True)  # the staging, or the retired directory
        return CompactionResult(directory, result.files_before, result.rows)
    finally:
        os.close(fd)


def _finish_fallback_leftovers(fs: pafs.FileSystem, directory: str, files: list[str]) -> list[str]:
    """A fallback compaction that died before deleting what it replaced: delete those now."""
    present = {f.rsplit("/", 1)[1] for f in files}
    for f in list(files):
        for old in _replaces(fs, f) & present:
            delete_file(fs, f"{directory}/{old}")
            files.remove(f"{directory}/{old}")
    return files


def _replaces(fs: pafs.FileSystem, path: str) -> set[str]:
    if not path.rsplit("/", 1)[1].startswith("part-compact-"):
        return set()
    with fs.open_input_file(path) as source:
        meta = pq.read_schema(source).metadata or {}
    return set(json.loads(meta.get(_REPLACES_KEY, b"[]")))


# --------------------------------------------------------------------------- atomic exchange (Linux)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_renameat2: Any = None


def _load_renameat2() -> Any:
    global _renameat2
    if _renameat2 is None:
        func: Any = False
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                func = ctypes.CDLL(None, use_errno=True).renameat2
                func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
                func.restype = ctypes.c_int
        _renameat2 = func
    return _renameat2 or None


def exchange_paths(a: str, b: str) -> None:
    """Swap two directories atomically (Linux ``renameat2(RENAME_EXCHANGE)``).

    A path lookup of ``a`` or ``b`` resolves to the old directory or to the new one,
    never to neither. Raises OSError (``ENOSYS``/``EINVAL`` where the system or the file
    system cannot do it; see :func:`exchange_supported`).
    """
    func = _load_renameat2()
    if func is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available", a)
    if func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), a)


def exchange_supported(directory: str) -> bool:
    """True if :func:`exchange_paths` works inside ``directory`` (tried on two scratch directories)."""
    probe = os.path.join(directory, f".exchange-probe-{uuid.uuid4().hex}")
    try:
        os.makedirs(f"{probe}/a")
        os.makedirs(f"{probe}/b")
        exchange_paths(f"{probe}/a", f"{probe}/b")
        return True
    except OSError:
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parquet_names(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted((n for n in names if n.startswith("part-") and n.endswith(".parquet")), key=_written_order)


def _written_order(name: str) -> tuple[int, str]:
    """Sort key putting a partition's files in the order their rows were written.

    Roll files are ``part-<ns>-<uuid>.parquet`` (``ns``: when their journal segment opened);
    a compacted file is ``part-compact-<ns>-<uuid>.parquet`` with the ``ns`` of its first
    input; older compacted files (``part-compact-<uuid>``) come first.
    """
    stem = name.removeprefix("part-").removeprefix("compact-")
    head = stem.split("-", 1)[0]
    return (int(head), name) if head.isdigit() and len(head) > 12 else (-1, name)


# --------------------------------------------------------------------------- one partition, in steps


class PartitionJob:
    """The compaction of one partition directory, done in bounded steps (local file systems).

    ``<root>/<dataset>/date=D/<key>=V/`` holding ``files`` becomes a directory holding one
    file, ``part-compact-<ns>-<uuid>.parquet``, with the rows of ``files`` in the order they
    were written (see :func:`_written_order`), plus any file that arrived meanwhile. The
    merged file is built under ``<root>/_compact/<id>/p/`` (outside every dataset: no
    reader's path or glob reaches it), :meth:`advance` reading about ``budget`` bytes of
    row groups per call. Then :meth:`publish` hard-links the files that arrived meanwhile
    into the new directory and swaps the two directories with one
    ``renameat2(RENAME_EXCHANGE)``: a reader resolving the partition's path gets the old
    directory or the new one, never a mix. The old directory
    is left at ``_compact/<id>/p`` (the *retired* directory) until it is purged.
    """

    def __init__(self, root: str, dataset: str, directory: str, files: list[str], *,
                 row_group_rows: int = 65_536, fsync: bool = True) -> None:
        self.root = root
        self.dataset = dataset
        self.directory = directory
        self.files = files  # base names, in order
        self.id = uuid.uuid4().hex
        self.work = f"{root}/{COMPACT_DIR}/{self.id}"
        self.staged = f"{self.work}/p"
        first = _written_order(files[0])[0] if files else -1
        self.name = f"part-compact-{max(first, 0):020d}-{self.id}.parquet"
        self.rows = 0
        # As in the fallback, the merged file names every roll file it holds, through earlier merges too:
        # old files back beside it are dropped, and a crashed writer's recovery does not write them twice.
        held = list(files)
        for name in files:
            if name.startswith("part-compact-"):
                held.extend(sorted(_replaces(pafs.LocalFileSystem(), f"{directory}/{name}")))
        replaces = {_REPLACES_KEY: json.dumps(held).encode()}
        self._schema = file_schema(DATASETS[dataset]).with_metadata(replaces)
        self._row_group_rows = row_group_rows
        self._fsync = fsync
        self._next = (0, 0)  # (file index, row group index)
        self._swapped = False
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._sink: Any = None
        self._writer: pq.ParquetWriter | None = None
        os.makedirs(self.staged)
        with open(f"{self.work}/job.json", "w", encoding="utf-8") as f:
            json.dump({"directory": directory, "files": files, "merged": self.name}, f)

    @property
    def done_reading(self) -> bool:
        return self._next[0] >= len(self.files)

    def advance(self, budget: int) -> None:
        """Read and write row groups until about ``budget`` (uncompressed) bytes were read."""
        read = 0
        while not self.done_reading and read < budget:
            index, group = self._next
            with pq.ParquetFile(f"{self.directory}/{self.files[index]}") as source:
                count = source.metadata.num_row_groups
                while group < count and read < budget:
                    table = conform(source.read_row_group(group), self._schema)
                    read += max(source.metadata.row_group(group).total_byte_size, 1)
                    self._add(table)
                    group += 1
            self._next = (index + 1, 0) if group >= count else (index, group)
        if self.done_reading:
            self._flush(final=True)

    def publish(self) -> PublishResult:
        """Swap the merged directory in; return what happened. Raises OSError (then :meth:`abort`)."""
        assert self.done_reading
        tmp = f"{self.staged}/{TMP_PREFIX}{self.name}{TMP_SUFFIX}"
        if self._writer is None:  # no rows at all: an empty file of the schema
            self._open(tmp)
        assert self._writer is not None
        self._writer.close()
        self._sink.close()
        self._writer = self._sink = None
        if self._fsync:
            _fsync_dir(tmp)  # works on a file too
        os.rename(tmp, f"{self.staged}/{self.name}")
        live = _parquet_names(self.directory)
        missing = [f for f in self.files if f not in live]
        if missing:  # someone else compacted or deleted them: ours is stale
            raise OSError(errno.ESTALE, f"files vanished during compaction: {missing[:3]}", self.directory)
        arrived = [f for f in live if f not in self.files]
        for name in arrived:  # rolled in meanwhile: the same inode in both directories
            os.link(f"{self.directory}/{name}", f"{self.staged}/{name}")
        if self._fsync:
            _fsync_dir(self.staged)
        exchange_paths(self.staged, self.directory)
        self._swapped = True
        if self._fsync:
            _fsync_dir(os.path.dirname(self.directory))
            _fsync_dir(self.work)
        # A file another process rolled in between the listing and the swap is in the retired
        # directory now: move it back (it reappears as a roll would).
        rescued = _rescue(self.staged, self.directory, {*self.files, *arrived})
        return PublishResult(self.directory, len(self.files), self.rows, arrived, rescued)

    def abort(self) -> None:
        """Forget the job: close and delete its staging (or, after the swap, retired) directory."""
        for closer in (self._writer, self._sink):
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer.close()
        self._writer = self._sink = None
        if self._swapped:  # failed after the swap: keep every file that is not part of the merge
            with contextlib.suppress(OSError):
                _rescue(self.staged, self.directory, set(self.files))
        shutil.rmtree(self.work, ignore_errors=True)

    def _add(self, table: pa.Table) -> None:
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= self._row_group_rows:
            self._flush(final=False)

    def _open(self, tmp: str) -> None:
        self._sink = open(tmp, "wb")  # noqa: SIM115 - closed in publish/abort
        self._writer = pq.ParquetWriter(self._sink, self._schema, compression="zstd",
                                        use_dictionary=[f.name for f in self._schema if f.type == pa.string()
                                                        and f.name not in _LONG_TEXT],
                                        write_statistics=True)

    def _flush(self, *, final: bool) -> None:
        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer)
        self._buffer = []
        group = self._row_group_rows
        full = table.num_rows if final else table.num_rows - table.num_rows % group
        if self._writer is None:
            self._open(f"{self.staged}/{TMP_PREFIX}{self.name}{TMP_SUFFIX}")
        assert self._writer is not None
        if full:
            self._writer.write_table(table.slice(0, full), row_group_size=group)
            self.rows += full
        rest = table.slice(full)
        self._buffer = [rest] if rest.num_rows else []
        self._buffered = rest.num_rows


@dataclass(frozen=True, slots=True)
class PublishResult:
    """A published compaction: ``files_before`` files became one of ``rows`` rows."""

    directory: str
    files_before: int
    rows: int
    linked: list[str]  # files rolled in during the job, kept beside the merged file
    rescued: list[str]  # files another process wrote at the last moment, moved back


def _rescue(retired: str, live: str, known: set[str]) -> list[str]:
    rescued = []
    for name in _parquet_names(retired):
        if name not in known and not name.startswith("part-compact-"):
            os.rename(f"{retired}/{name}", f"{live}/{name}")
            rescued.append(name)
    return rescued


def recover_compactions(root: str) -> None:
    """Clean ``<root>/_compact`` after a crash: unpublished staging is deleted; a retired
    directory is deleted after any file in it that is not part of the merge is moved back."""
    base = f"{root}/{COMPACT_DIR}"
    for entry in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        work = f"{base}/{entry}"
        with contextlib.suppress(OSError, ValueError, KeyError):
            with open(f"{work}/job.json", encoding="utf-8") as f:
                job = json.load(f)
            staged = f"{work}/p"
            swapped = (os.path.isdir(staged) and not os.path.exists(f"{staged}/{job['merged']}")
                       and os.path.exists(f"{job['directory']}/{job['merged']}"))
            if swapped:  # this is the retired directory: move back what the merge does not hold
                _rescue(staged, job["directory"], set(job["files"]))
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- in the running recorder


@dataclass(frozen=True, slots=True)
class CompactionPolicy:
    """When the running recorder compacts (``[storage]`` ``compact_*`` keys, docs/storage.md).

    A partition is compacted (all its files into one) once its UTC day has been over for
    ``closed_after`` seconds and it holds two files or more, and earlier, while its day is
    still open, whenever ``max_files`` roll files (``part-<segment>.parquet``) have piled
    up since its last compaction (those are merged; earlier compacted files stay). Each
    step reads about ``step_bytes`` (uncompressed) of row groups; retired directories are
    deleted ``grace`` seconds after the swap.
    """

    max_files: int = 48
    closed_after: float = 600.0
    step_bytes: int = 8 * 1024 * 1024
    grace: float = 60.0
    lookback_days: int = 2

    def __post_init__(self) -> None:
        if self.max_files < 2 or self.step_bytes < 1 or self.closed_after < 0 or self.grace < 0:
            raise ValueError("compaction: max_files >= 2, step_bytes >= 1, closed_after, grace >= 0")


@dataclass(slots=True)
class _Partition:
    dataset: str
    day: date
    rolls: int = 0  # roll files (not compacted) present
    files: int = 0  # all Parquet files present


class AutoCompactor:
    """Compacts the partitions of a local Parquet root in bounded steps, from the writer thread.

    The owner (:class:`~recorder.storage.parquet.ParquetStore`) calls :meth:`note_file` for
    every file it publishes and :meth:`step` between rolls (never while a roll is pending,
    so a journal segment's files are never merged before the segment is gone). One step
    does a bounded amount of work: when no job is running, purge at most one retired
    directory, list at most 64 partitions and pick the next partition due; then read about
    ``policy.step_bytes`` of the job's row groups and, once all are read, publish it.
    Partitions of the last ``lookback_days`` UTC days found at start are considered too.
    Not thread-safe: one owner calls it. Raises OSError from :meth:`step` (the job in
    progress is abandoned; the caller logs and carries on).
    """

    def __init__(self, root: str, policy: CompactionPolicy, *, fsync: bool = True,
                 row_group_rows: int = 65_536, wall_clock: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.policy = policy
        self.fsync = fsync
        self.row_group_rows = row_group_rows
        self.wall_clock = wall_clock
        self.clock = clock
        self.results: list[PublishResult] = []  # every publish since start
        self._parts: dict[str, _Partition] = {}
        self._unlisted: list[str] = []
        self._job: PartitionJob | None = None
        self._retired: list[tuple[float, str]] = []
        self._lock_fd: int | None = None
        self._dirty = True  # something changed since the last look for work
        self._next_look = 0.0  # clock(): look anyway (a day may have closed) at least once a minute
        os.makedirs(f"{root}/{COMPACT_DIR}", exist_ok=True)
        recover_compactions(root)
        self._seed()

    def note_file(self, dataset: str, path: str) -> None:
        """The store published ``path`` (a roll file) into its partition directory."""
        directory = path.rsplit("/", 1)[0]
        part = self._parts.get(directory)
        if part is None:
            day = _day_of(directory)
            if day is None:
                return
            part = self._parts[directory] = _Partition(dataset, day)
            self._unlisted.append(directory)  # count what is already there once
            return
        part.rolls += 1
        part.files += 1
        self._dirty = True

    def step(self) -> None:
        """Do one bounded piece of compaction work (see the class docstring)."""
        if self._job is None:
            now = self.clock()
            if self._retired and now - self._retired[0][0] >= self.policy.grace:
                shutil.rmtree(self._retired.pop(0)[1], ignore_errors=True)
            if self._unlisted:
                for directory in self._unlisted[:64]:
                    names = _parquet_names(directory)
                    part = self._parts.get(directory)
                    if part is None:  # pragma: no cover - _start_next keeps unlisted partitions
                        continue
                    part.files = len(names)
                    part.rolls = sum(not n.startswith("part-compact-") for n in names)
                del self._unlisted[:64]
                self._dirty = True
            if self._dirty or now >= self._next_look:
                self._dirty = False
                self._next_look = now + 60.0
                self._start_next()
        job = self._job
        if job is None:
            return
        try:
            if not job.done_reading:
                job.advance(self.policy.step_bytes)
            if not job.done_reading:
                return
            result = job.publish()
        except BaseException:
            self._job = None
            job.abort()
            self._unlock()
            raise
        self._job = None
        self._unlock()
        self._dirty = True
        self._retired.append((self.clock(), job.work))
        self.results.append(result)
        names = _parquet_names(job.directory)
        part = self._parts[job.directory]
        part.files = len(names)
        part.rolls = sum(not n.startswith("part-compact-") for n in names)
        log.info("compacted %s: %d files -> 1 (%d rows)", job.directory, result.files_before, result.rows)

    def close(self) -> None:
        """Abandon the job in progress and delete the retired directories."""
        if self._job is not None:
            self._job.abort()
            self._job = None
        self._unlock()
        for _, work in self._retired:
            shutil.rmtree(work, ignore_errors=True)
        self._retired = []

    def _start_next(self) -> None:
        today = datetime.fromtimestamp(self.wall_clock(), UTC)
        closed_before = (today - timedelta(seconds=self.policy.closed_after)).date()
        done = []  # closed partitions with one file: forgotten until a late roll brings another
        unlisted = set(self._unlisted)  # not counted yet (64 a step): nothing to decide on them
        try:
            for directory, part in self._parts.items():
                if directory in unlisted:
                    continue
                closed = part.day < closed_before
                if closed and part.files >= 2:
                    files = _parquet_names(directory)
                elif part.rolls >= self.policy.max_files:
                    files = [n for n in _parquet_names(directory) if not n.startswith("part-compact-")]
                else:
                    if closed:
                        done.append(directory)
                    continue
                if len(files) < 2:
                    part.files, part.rolls = len(_parquet_names(directory)), len(files)
                    continue
                self._start(part, directory, files)
                return
        finally:
            for directory in done:
                del self._parts[directory]

    def _start(self, part: _Partition, directory: str, files: list[str]) -> None:
        if not self._lock():
            self._dirty = True
            return  # another process is compacting this root: try again on a later step
        try:
            self._job = PartitionJob(self.root, part.dataset, directory, files,
                                     row_group_rows=self.row_group_rows, fsync=self.fsync)
        except BaseException:
            self._unlock()
            raise

    def _seed(self) -> None:
        today = datetime.fromtimestamp(self.wall_clock(), UTC).date()
        first = today - timedelta(days=self.policy.lookback_days)
        for name in sorted(DATASETS):
            for date_path in _date_dirs(pafs.LocalFileSystem(), f"{self.root}/{name}"):
                day = _day_of(f"{date_path}/x")
                if day is None or day < first:
                    continue
                for key_dir in sorted(os.listdir(date_path)):
                    directory = f"{date_path}/{key_dir}"
                    if key_dir[:1] not in "._" and os.path.isdir(directory):
                        self._parts[directory] = _Partition(name, day)
                        self._unlisted.append(directory)

    def _lock(self) -> bool:
        if self._lock_fd is None:
            fd = os.open(f"{self.root}/{COMPACT_DIR}/lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            self._lock_fd = fd
        return True

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def _day_of(directory: str) -> date | None:
    """The ``date=`` of a partition directory path, or None."""
    parts = directory.rsplit("/", 2)
    if len(parts) < 3 or not parts[1].startswith("date="):
        return None
    try:
        return date.fromisoformat(parts[1].removeprefix("date="))
    except ValueError:
        return None
