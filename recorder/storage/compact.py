"""``okex-recorder compact``: merge a day's small Parquet files of a partition into one.

For each ``<root>/<dataset>/date=D/<key>=V/`` with more than one ``part-*.parquet``
file, the rows of all of them (in file-name order, i.e. the order they were written)
go into one new file, written under a hidden temporary name and renamed to
``part-compact-<uuid>.parquet``; only then are the old files deleted.

What a concurrent reader sees: before the rename, the old files; between the rename
and the deletions, old and new files together (rows counted twice for a moment, never
missing); afterwards, the new file. A crash in between leaves that doubled state;
running the command again fixes it, because a compacted file records in its metadata
which files it replaced and those are deleted first. Compact past days, not the day
the recorder is writing (its new files would simply stay beside the compacted one).

On S3 (``--parquet-root s3://bucket/prefix``) the merged object is uploaded under its final
key (it appears complete, at once) and the old objects are then deleted through s3fs, which
leaves no directory marker; readers see the same three states (docs/storage.md).
"""

from __future__ import annotations

import argparse
import json
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recorder.errors import ConfigError, StorageError, StoreUnavailableError
from recorder.storage.fs import delete_file
from recorder.storage.parquet import TMP_PREFIX, TMP_SUFFIX, _resolve, file_schema, write_parquet_atomically
from recorder.storage.schema import DATASETS

__all__ = ["CompactionResult", "add_arguments", "compact", "run"]

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
    results = []
    try:
        for name in names:
            date_glob = f"date={day.isoformat()}" if day is not None else None
            for date_dir in _subdirs(fs, f"{base}/{name}"):
                if date_glob is not None and date_dir.rsplit("/", 1)[1] != date_glob:
                    continue
                for part_dir in _subdirs(fs, date_dir):
                    result = _compact_directory(fs, name, part_dir)
                    if result is not None:
                        results.append(result)
    except OSError as exc:
        raise StoreUnavailableError(f"cannot compact parquet root {base}: {exc}") from exc
    return results


def _subdirs(fs: pafs.FileSystem, path: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.Directory and i.base_name[:1] not in "._")


def _compact_directory(fs: pafs.FileSystem, name: str, directory: str) -> CompactionResult | None:
    infos = fs.get_file_info(pafs.FileSelector(directory))
    for info in infos:  # a compaction of ours that died before its rename
        if info.base_name.startswith(f"{TMP_PREFIX}part-compact-") and info.base_name.endswith(TMP_SUFFIX):
            delete_file(fs, info.path)
    files = sorted(i.path for i in infos if i.type == pafs.FileType.File
                   and i.base_name.startswith("part-") and i.base_name.endswith(".parquet"))
    # A compacted file that died before deleting what it replaced: finish the job first.
    present = {f.rsplit("/", 1)[1] for f in files}
    for f in list(files):
        replaced = _replaces(fs, f)
        leftovers = replaced & present
        for old in leftovers:
            delete_file(fs, f"{directory}/{old}")
            files.remove(f"{directory}/{old}")
    if len(files) < 2:
        return None
    schema = file_schema(DATASETS[name])
    tables = []
    for f in files:
        with fs.open_input_file(f) as source:
            tables.append(pq.read_table(source).cast(schema))
    merged = pa.concat_tables(tables)
    replaces = json.dumps([f.rsplit("/", 1)[1] for f in files]).encode()
    merged = merged.replace_schema_metadata({_REPLACES_KEY: replaces})
    final = f"{directory}/part-compact-{uuid.uuid4().hex}.parquet"
    write_parquet_atomically(fs, final, merged)
    for f in files:
        delete_file(fs, f)
    return CompactionResult(directory, len(files), merged.num_rows)


def _replaces(fs: pafs.FileSystem, path: str) -> set[str]:
    if not path.rsplit("/", 1)[1].startswith("part-compact-"):
        return set()
    with fs.open_input_file(path) as source:
        meta = pq.read_schema(source).metadata or {}
    return set(json.loads(meta.get(_REPLACES_KEY, b"[]")))
