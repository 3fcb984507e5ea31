"""The journal: what was appended reads back exactly; a torn tail is dropped; a failed append is undone."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from recorder.errors import StorageError, StoreUnavailableError
from recorder.storage.journal import Journal, read_segment

SCHEMA = pa.schema([("tid", pa.int64()), ("price", pa.decimal128(38, 18))])


def batch(first: int, n: int) -> pa.RecordBatch:
    tids = list(range(first, first + n))
    return pa.record_batch({"tid": tids, "price": [Decimal("0.00000001") * t for t in tids]}, schema=SCHEMA)


def test_appended_batches_read_back_exactly_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("deals", batch(1, 3))
    journal.append("deals", batch(4, 2))
    assert journal.open_rows("deals") == 5
    seg = journal.seal("deals")
    assert seg is not None
    table, torn = read_segment(seg.path)
    assert not torn
    assert table is not None
    assert table.to_pydict() == {"tid": [1, 2, 3, 4, 5],
                                 "price": [Decimal("0.00000001") * t for t in range(1, 6)]}
    journal.append("deals", batch(6, 1))  # a new segment, listed after the first
    second = journal.open_segment("deals")
    assert second is not None
    assert [s.path for s in journal.segments(include_open=True)] == [seg.path, second.path]
    assert [s.path for s in journal.segments()] == [seg.path]
    journal.remove(seg)
    journal.close()
    assert [len(read_segment(s.path)[0] or []) for s in journal.segments()] == [1]


@pytest.mark.parametrize("cut", [1, 30, 100])
def test_a_torn_last_message_is_dropped_and_the_rest_kept(tmp_path: Path, cut: int) -> None:
    journal = Journal(tmp_path, fsync=False)
    journal.append("s", batch(1, 2))
    journal.append("s", batch(3, 2))
    seg = journal.seal("s")
    assert seg is not None
    data = seg.path.read_bytes()
    os.truncate(seg.path, len(data) - 8 - cut)  # cut into the second message (and its end marker)
    table, torn = read_segment(seg.path)
    assert torn
    assert table is not None
    assert table["tid"].to_pylist() == [1, 2]


def test_a_segment_without_even_its_schema_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "x.arrows"
    path.write_bytes(b"\xff\xff\xff\xff\x10")
    assert read_segment(path) == (None, True)


def test_a_failed_append_is_cut_off_and_the_same_batch_can_be_appended_again(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync=False)
    journal.append("s", batch(1, 2))
    first = journal.open_segment("s")
    assert first is not None

    class Broken:
        def write_batch(self, b: pa.RecordBatch) -> None:
            os.write(open_file.fileno(), b"\xff\xff\xff\xff partial message")  # bytes hit the disk...
            raise OSError(28, "No space left on device")  # ...then the disk is full

    open_file = journal._open["s"].file
    journal._open["s"].writer = Broken()
    with pytest.raises(StoreUnavailableError, match=r"journal .* not writable: \[Errno 28\] No space left"):
        journal.append("s", batch(3, 2))
    journal.append("s", batch(3, 2))  # the retry goes to a fresh segment
    journal.close()
    tables = [read_segment(s.path) for s in journal.segments()]
    assert [(t[0]["tid"].to_pylist() if t[0] is not None else None, t[1]) for t in tables] == [
        ([1, 2], False), ([3, 4], False)]


def test_stream_names_cannot_leave_the_directory(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    with pytest.raises(StorageError):
        journal.append("../x", batch(1, 1))
    assert not (tmp_path / "x").exists()
