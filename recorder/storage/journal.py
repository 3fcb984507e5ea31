"""A small durable append-only journal of Arrow record batches.

A :class:`Journal` is a local directory of *segments*: Arrow IPC stream files
(``<directory>/<stream>/<ns>-<uuid>.arrows``), one open segment per stream name.
:meth:`Journal.append` writes one IPC message and ``fsync``\\ s it before it returns,
so a batch that was appended survives SIGKILL (and, with ``fsync=True``, power loss).

A crash can only cut the *last* message of a segment short; :func:`read_segment`
returns every complete message and drops the torn tail; :func:`iter_segment` yields
them one batch at a time (a reader that must not hold a whole segment in memory). A failed append (disk full)
truncates the segment back to its previous length and seals it, so a segment never
holds garbage in its middle and the caller may retry the same batch.

Users: the Parquet store journals every flushed batch until it becomes a Parquet file;
the storage writer spills SQL-pending rows here while the database is down.

The journal is local on purpose: it needs ``fsync``, which :mod:`pyarrow.fs` does not
offer, so it uses the ``os`` module directly.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from recorder.errors import StorageError, StoreUnavailableError

__all__ = ["Journal", "Segment", "iter_segment", "read_segment", "segment_rows"]

SEGMENT_SUFFIX = ".arrows"
_STREAM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]{0,127}")


@dataclass(frozen=True, slots=True, order=True)
class Segment:
    """One journal file. Ordered by creation (``seq`` is a nanosecond counter)."""

    seq: int
    stream: str
    path: Path


class _OpenSegment:
    __slots__ = ("file", "path", "rows", "schema", "segment", "size", "writer")

    def __init__(self, segment: Segment, schema: pa.Schema) -> None:
        self.segment = segment
        self.path = segment.path
        self.schema = schema
        self.file: BinaryIO = open(segment.path, "xb", buffering=0)  # noqa: SIM115 - kept open
        self.writer = pa.ipc.new_stream(self.file, schema)
        self.size = self.file.tell()
        self.rows = 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """A directory of append-only Arrow IPC segments, one open segment per stream name.

    ``directory`` is created if missing. ``fsync=False`` skips the ``fsync`` calls
    (still safe against SIGKILL, not against power loss); tests and benchmarks use it.
    Not thread-safe: one owner calls it.
    """

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self._fsync = fsync
        self._open: dict[str, _OpenSegment] = {}
        self._last_seq = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(f"journal directory {self.directory} not writable: {exc}") from exc

    # -- writing -----------------------------------------------------------------------------------

    def append(self, stream: str, batch: pa.RecordBatch | pa.Table) -> None:
        """Append ``batch`` to the open segment of ``stream``; durable when this returns.

        A new segment is started if none is open or the schema changed. Raises
        :class:`StoreUnavailableError` if the disk refuses (the segment is then cut back
        to its last complete message and sealed, so the same batch may be appended again).
        """
        if batch.num_rows == 0:
            return
        seg = self._open.get(stream)
        if seg is not None and not seg.schema.equals(batch.schema):
            self.seal(stream)
            seg = None
        try:
            if seg is None:
                seg = self._start(stream, batch.schema)
            if isinstance(batch, pa.Table):
                seg.writer.write_table(batch)
            else:
                seg.writer.write_batch(batch)
            if self._fsync:
                os.fsync(seg.file.fileno())
        except (OSError, pa.ArrowException) as exc:
            if seg is not None:
                self._abandon(stream, seg)
            raise StoreUnavailableError(f"journal {self.directory} not writable: {exc}") from exc
        seg.size = seg.file.tell()
        seg.rows += batch.num_rows

    def open_rows(self, stream: str) -> int:
        """Rows appended to the open segment of ``stream`` (0 if none is open)."""
        seg = self._open.get(stream)
        return seg.rows if seg is not None else 0

    def open_segment(self, stream: str) -> Segment | None:
        """The open segment of ``stream``, if any."""
        seg = self._open.get(stream)
        return seg.segment if seg is not None else None

    def seal(self, stream: str) -> Segment | None:
        """Close the open segment of ``stream`` (later appends start a new one) and return it."""
        seg = self._open.pop(stream, None)
        if seg is None:
            return None
        try:
            seg.writer.close()  # writes the end-of-stream marker
            if self._fsync:
                os.fsync(seg.file.fileno())
        except (OSError, pa.ArrowException):
            pass  # the marker is optional: readers stop at a clean end of file too
        finally:
            seg.file.close()
        return seg.segment

    def close(self) -> None:
        """Seal every open segment."""
        for stream in list(self._open):
            self.seal(stream)

    def _start(self, stream: str, schema: pa.Schema) -> _OpenSegment:
        if not _STREAM_RE.fullmatch(stream) or ".." in stream:
            raise StorageError(f"invalid journal stream name {stream!r}")
        seq = max(time.time_ns(), self._last_seq + 1)
        self._last_seq = seq
        folder = self.directory / stream
        new_dir = not folder.is_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{seq:020d}-{uuid.uuid4().hex}{SEGMENT_SUFFIX}"
        seg = _OpenSegment(Segment(seq, stream, path), schema)
        if self._fsync:
            os.fsync(seg.file.fileno())
            _fsync_dir(folder)
            if new_dir:
                _fsync_dir(self.directory)
        self._open[stream] = seg
        return seg

    def _abandon(self, stream: str, seg: _OpenSegment) -> None:
        # Cut a torn message off so the segment ends at its last complete batch.
        self._open.pop(stream, None)
        with contextlib.suppress(OSError):  # if this fails, a reader drops the torn tail anyway
            os.ftruncate(seg.file.fileno(), seg.size)
        with contextlib.suppress(OSError):
            seg.file.close()

    # -- reading -----------------------------------------------------------------------------------

    def segments(self, stream: str | None = None, *, include_open: bool = False) -> list[Segment]:
        """Segments on disk (of one stream or all), oldest first; open ones only if asked."""
        open_paths = {s.path for s in self._open.values()}
        found: list[Segment] = []
        if not self.directory.is_dir():
            return found
        folders = [self.directory / stream] if stream is not None else [
            p for p in self.directory.iterdir() if p.is_dir()
        ]
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if not path.name.endswith(SEGMENT_SUFFIX) or (path in open_paths and not include_open):
                    continue
                try:
                    seq = int(path.name.split("-", 1)[0])
                except ValueError:
                    continue
                found.append(Segment(seq, folder.name, path))
        found.sort()
        return found

    def remove(self, segment: Segment) -> None:
        """Delete a (sealed) segment once its rows are safely elsewhere."""
        try:
            segment.path.unlink(missing_ok=True)
            if self._fsync:
                _fsync_dir(segment.path.parent)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot remove journal segment {segment.path}: {exc}") from exc


def iter_segment(path: str | os.PathLike[str]) -> Iterator[pa.RecordBatch]:
    """Yield the complete batches of a segment one at a time, in order (the torn tail dropped).

    Only the batch being yielded is held in memory. Nothing is yielded when not even
    the schema was written.
    """
    with pa.OSFile(os.fspath(path), "rb") as source:
        try:
            reader = pa.ipc.open_stream(source)
        except (OSError, pa.ArrowInvalid):
            return
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (OSError, pa.ArrowInvalid):
                return  # a torn last message
            yield batch


def segment_rows(path: str | os.PathLike[str]) -> int:
    """Rows in the complete batches of a segment (read batch by batch)."""
    return sum(batch.num_rows for batch in iter_segment(path))


def read_segment(path: str | os.PathLike[str]) -> tuple[pa.Table | None, bool]:
    """Read every complete batch of a segment: ``(table, torn)``.

    ``table`` is None when not even the schema was written (a crash right after the
    file was created). ``torn`` is True when a truncated last message was dropped.
    This holds the whole segment in memory: prefer :func:`iter_segment` for large ones.
    """
    with pa.OSFile(os.fspath(path), "rb") as source:
        try:
            reader = pa.ipc.open_stream(source)
        except (OSError, pa.ArrowInvalid):
            return None, os.path.getsize(path) > 0
        batches: list[pa.RecordBatch] = []
        torn = False
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                break
            except (OSError, pa.ArrowInvalid):
                torn = True
                break
        return pa.Table.from_batches(batches, schema=reader.schema), torn
