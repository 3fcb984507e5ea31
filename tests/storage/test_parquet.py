"""The Parquet store: layout, exact round-trips through three readers, roll-over, crash recovery."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from recorder.errors import SymbolError
from recorder.records import BookSnapshot, Deal
from recorder.storage.journal import iter_segment
from recorder.storage.parquet import ParquetStore, file_schema, open_dataset
from recorder.storage.schema import DATASETS, levels_from_json
from tests.fixtures.storage import ManualClock, sample_book, sample_deal


def parquet_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and "_journal" not in p.parts)


def abandon(store: ParquetStore) -> None:
    """Drop a store as a killed process would: its journal files are closed, nothing else.

    Its roller finishes what it was given first (a roll the next store would race otherwise)."""
    store.wait_for_rolls()
    store._stop_roller()
    for seg in store._journal._open.values():
        seg.file.close()
    store._journal._open.clear()


def read_books(root: Path) -> list[BookSnapshot]:
    table = open_dataset(str(root), "book_snapshots").to_table()
    rows = table.to_pylist()
    books = [DATASETS["book_snapshots"].from_row(r) for r in rows]
    return sorted(books, key=lambda b: (b.symbol, b.ts_recv))


def test_round_trip_through_pyarrow_pandas_and_duckdb_is_exact(tmp_path: Path) -> None:
    # 1500 snapshots 50 ms apart from 23:59: they cross midnight
    books = [sample_book(i, symbol=s) for s in ("btc_usdt", "eth_btc") for i in range(1500)]
    deals = [sample_deal(t) for t in (1, 2, 3)]
    store = ParquetStore(tmp_path, fsync=False)
    store.write_batch(books[:1000])
    store.write_batch([*books[1000:], *deals])
    store.close()

    files = [p.relative_to(tmp_path).as_posix() for p in parquet_files(tmp_path)]
    assert all(f.rsplit("/", 1)[1].startswith("part-") and f.endswith(".parquet") for f in files)
    assert sorted(f.rsplit("/", 1)[0] for f in files) == [
        "book_snapshots/venue=okex_v1/date=2026-11-23/symbol=btc_usdt",
        "book_snapshots/venue=okex_v1/date=2026-11-23/symbol=eth_btc",
        "book_snapshots/venue=okex_v1/date=2026-11-24/symbol=btc_usdt",
        "book_snapshots/venue=okex_v1/date=2026-11-24/symbol=eth_btc",
        "deals/venue=okex_v1/date=2026-11-23/symbol=btc_usdt",
    ]
    # inside a file: the explicit schema minus the partition column, zstd
    meta = pq.ParquetFile(tmp_path / files[0]).metadata
    assert pq.read_schema(tmp_path / files[0]).remove_metadata() == file_schema(DATASETS["book_snapshots"])
    assert meta.row_group(0).column(0).compression == "ZSTD"

    # pyarrow.dataset, typed partitions
    assert read_books(tmp_path) == sorted(books, key=lambda b: (b.symbol, b.ts_recv))
    table = open_dataset(str(tmp_path), "book_snapshots").to_table()
    assert table.schema.field("date").type == pa.date32()
    assert table.schema.field("best_bid").type == pa.decimal128(38, 18)
    assert table.schema.field("ts_event").type == pa.timestamp("us", tz="UTC")
    assert sorted(set(table["date"].to_pylist())) == [date(2026, 11, 23), date(2026, 11, 24)]
    # plain pyarrow.dataset with hive discovery sees the same rows
    plain = pads.dataset(tmp_path / "deals", partitioning="hive").to_table().sort_by("tid").to_pylist()
    assert [(r["symbol"], r["date"], r["tid"], r["price"], r["amount"]) for r in plain] == [
        ("btc_usdt", "2026-11-23", t, Decimal("10532696.39199642"), Decimal("0.00000001") * t)
        for t in (1, 2, 3)
    ]

    # pandas on the dataset directory
    frame = pd.read_parquet(tmp_path / "deals").sort_values("tid")
    assert list(frame["tid"]) == [1, 2, 3]
    assert list(frame["price"]) == [Decimal("10532696.39199642")] * 3
    assert [str(s) for s in frame["symbol"]] == ["btc_usdt"] * 3
    assert list(frame["ts_event"]) == [pd.Timestamp(d.ts_event) for d in deals]
    assert str(frame["ts_event"].dt.tz) == "UTC"

    # DuckDB with hive partitioning
    with duckdb.connect() as con:
        got = con.execute(
            "select symbol, date, count(*), min(best_bid), max(ts_recv)"
            " from read_parquet(?, hive_partitioning=true) group by all order by 1, 2",
            [f"{tmp_path}/book_snapshots/*/*/*/*.parquet"],
        ).fetchall()
        one = con.execute(
            "select bids, best_ask_amount, typeof(best_ask) from read_parquet(?, hive_partitioning=true)"
            " where symbol = 'eth_btc' and ts_recv = ?",
            [f"{tmp_path}/book_snapshots/*/*/*/*.parquet", books[1500 + 7].ts_recv],
        ).fetchone()
    per_part: dict[tuple[str, date], list[BookSnapshot]] = {}
    for b in books:
        key = (b.symbol, b.ts_event.date())
        per_part.setdefault(key, []).append(b)
    assert [(s, d, n) for s, d, n, _, _ in got] == [(s, d, len(v)) for (s, d), v in sorted(per_part.items())]
    assert [lo for *_, lo, _ in got] == [min(b.bids[0][0] for b in v) for _, v in sorted(per_part.items())]
    assert one is not None
    assert levels_from_json(one[0]) == books[1507].bids
    assert one[1] == books[1507].asks[0][1]
    assert one[2] == "DECIMAL(38,18)"


def test_files_roll_over_by_row_count(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path, roll_rows=4, fsync=False)
    books = [sample_book(i) for i in range(10)]  # all on 2026-11-23
    for i in range(0, 10, 2):
        store.write_batch(books[i:i + 2])  # seals; the roller rolls in the background
        assert store.wait_for_rolls(timeout=30)
        assert len(parquet_files(tmp_path)) == (i + 2) // 4
    store.close()
    files = parquet_files(tmp_path)
    assert [pq.read_metadata(f).num_rows for f in sorted(files, key=lambda f: f.name)] == [4, 4, 2]
    assert read_books(tmp_path) == books


def test_files_roll_over_by_time_with_an_injected_clock(tmp_path: Path) -> None:
    clock = ManualClock()
    store = ParquetStore(tmp_path, roll_rows=10**6, roll_seconds=60, clock=clock, fsync=False)
    store.write_batch([sample_book(0)])
    clock.advance(59)
    store.write_batch([sample_book(1)])
    assert parquet_files(tmp_path) == []
    clock.advance(1)
    store.roll_due()  # also what every write_batch does
    assert store.wait_for_rolls(timeout=30)
    assert [pq.read_metadata(f).num_rows for f in parquet_files(tmp_path)] == [2]
    store.write_batch([sample_book(2)])  # a new segment starts its own minute
    clock.advance(30)
    store.roll_due()
    assert store.wait_for_rolls(timeout=30)
    assert len(parquet_files(tmp_path)) == 1
    clock.advance(30)
    store.write_batch([])
    assert store.wait_for_rolls(timeout=30)
    assert sorted(pq.read_metadata(f).num_rows for f in parquet_files(tmp_path)) == [1, 2]
    store.close()
    assert read_books(tmp_path) == [sample_book(i) for i in range(3)]


def test_a_symbol_that_could_escape_its_directory_is_refused(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path, fsync=False)
    bad = sample_deal(1, symbol="../../etc")
    with pytest.raises(SymbolError):
        store.write_batch([sample_deal(2), bad])
    store.close()
    assert parquet_files(tmp_path) == []
    assert not (tmp_path.parent / "etc").exists()


def test_abandoned_store_with_a_torn_journal_recovers_every_flushed_row(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path, fsync=False)
    flushed = [sample_book(i) for i in range(30)]
    for i in range(0, 30, 10):
        store.write_batch(flushed[i:i + 10])
    store.write_batch([sample_book(99)])  # this flush is torn below, as if killed mid-write
    # the process "dies": no close(), no end-of-stream marker; the last IPC message is cut short
    abandon(store)
    (segment,) = (tmp_path / "_journal" / "book_snapshots").iterdir()
    os.truncate(segment, segment.stat().st_size - 20)
    # and a roll of an earlier life died between writing a temporary file and renaming it
    junk_dir = tmp_path / "book_snapshots" / "venue=okex_v1" / "date=2026-11-23" / "symbol=btc_usdt"
    junk_dir.mkdir(parents=True)
    (junk_dir / ".part-0-dead.parquet.tmp").write_bytes(b"PAR1 half a file")

    ParquetStore(tmp_path, fsync=False).close()
    assert read_books(tmp_path) == flushed
    (only,) = parquet_files(tmp_path)  # the junk temporary file is gone
    assert only.name.startswith("part-") and only.name.endswith(".parquet")
    assert list((tmp_path / "_journal" / "book_snapshots").iterdir()) == []


def test_crash_between_partition_files_of_one_roll_writes_nothing_twice(tmp_path: Path) -> None:
    rows = [sample_deal(t, symbol=s) for s in ("btc_usdt", "ltc_btc") for t in range(1, 6)]
    store = ParquetStore(tmp_path, fsync=False)
    store.write_batch(rows)
    abandon(store)
    (segment,) = (tmp_path / "_journal" / "deals").iterdir()
    # simulate: the roll wrote the btc_usdt file, then the process died
    from recorder.storage.parquet import _split_partitions, write_parquet_atomically

    table = pa.ipc.open_stream(segment.read_bytes()).read_all()
    directory, part = next(_split_partitions(DATASETS["deals"], table))
    name = f"part-{segment.name.removesuffix('.arrows')}.parquet"
    write_parquet_atomically(pafs.LocalFileSystem(), f"{tmp_path}/deals/{directory}/{name}", part)

    ParquetStore(tmp_path, fsync=False).close()
    back = pads.dataset(tmp_path / "deals", partitioning="hive").to_table().to_pylist()
    assert sorted((r["symbol"], r["tid"]) for r in back) == sorted((r.symbol, r.tid) for r in rows)


_KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from recorder.storage.parquet import ParquetStore
    from tests.fixtures.storage import sample_deal
    store = ParquetStore(sys.argv[1], roll_rows=250)
    tid = 0
    while True:
        batch = [sample_deal(tid + k) for k in range(1, 51)]
        store.write_batch(batch)
        tid += 50
        print(tid, flush=True)  # acknowledged
    """
)


@pytest.mark.faults
def test_sigkill_mid_write_leaves_readable_files_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(root)], stdout=subprocess.PIPE,
                          text=True, cwd=Path(__file__).parents[2]) as proc:
        assert proc.stdout is not None
        acknowledged = 0
        for line in proc.stdout:  # kill it in the middle of its writing, whatever it is doing
            acknowledged = int(line)
            if acknowledged >= 2000:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for line in proc.stdout:  # acknowledgements printed before it died
            acknowledged = int(line)
    assert proc.returncode == -signal.SIGKILL

    for f in parquet_files(root):  # whatever was there, every visible file is readable
        if not f.name.startswith("."):
            pq.read_table(f)
    ParquetStore(root).close()
    tids = pads.dataset(root / "deals", partitioning="hive").to_table()["tid"].to_pylist()
    assert len(tids) == len(set(tids))  # nothing twice
    assert set(range(1, acknowledged + 1)) <= set(tids)  # nothing acknowledged lost
    assert set(tids) <= set(range(1, acknowledged + 51))  # at most the one unacknowledged batch more
    assert [f for f in parquet_files(root) if f.name.startswith(".")] == []


class _FullDisk(pafs.FileSystemHandler):
    """A local file system that can be made to answer ENOSPC to every write."""

    def __init__(self) -> None:
        self.local = pafs.LocalFileSystem()
        self.full = False

    def _check(self) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def get_type_name(self) -> str:
        return "fulldisk"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self._check()
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise NotImplementedError

    def delete_file(self, path: str) -> None:
        self.local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self._check()
        self.local.copy_file(src, dest)

    def open_input_stream(self, path: str) -> Any:
        return self.local.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        return self.local.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        self._check()
        return self.local.open_output_stream(path)

    def open_append_stream(self, path: str, metadata: Any) -> Any:
        self._check()
        return self.local.open_append_stream(path)


def test_full_parquet_root_keeps_rows_journaled_and_resumes_when_space_returns(tmp_path: Path) -> None:
    disk = _FullDisk()
    clock = ManualClock()
    store = ParquetStore(tmp_path / "root", roll_rows=5, clock=clock, filesystem=pafs.PyFileSystem(disk),
                         journal_dir=tmp_path / "journal", fsync=False)
    disk.full = True
    deals = [sample_deal(t) for t in range(1, 13)]
    store.write_batch(deals[:6])  # acknowledged: journaled; the roll fails (in the background)
    assert store.wait_for_rolls(timeout=30) is False
    stats = store.stats()
    assert stats["healthy"] is False
    root = tmp_path / "root"
    assert stats["last_error"] == f"parquet root {root} not writable: [Errno 28] No space left on device"
    assert stats["datasets"]["deals"]["written"] == 6
    assert stats["datasets"]["deals"]["in_files"] == 0
    store.write_batch(deals[6:])  # still fine, still journaled
    disk.full = False
    store.roll_due()  # not retried before the backoff delay has passed
    assert store.wait_for_rolls(timeout=30) is False
    assert store.stats()["datasets"]["deals"]["in_files"] == 0
    clock.advance(120)
    store.roll_due()
    assert store.wait_for_rolls(timeout=30)
    assert store.stats()["healthy"] is True
    assert store.stats()["last_error"] is None
    store.close()
    back = pads.dataset(root / "deals", partitioning="hive").to_table().sort_by("tid").to_pylist()
    assert [DATASETS["deals"].from_row(r) for r in back] == deals
    assert list((tmp_path / "journal" / "deals").iterdir()) == []


class _GatedDisk(_FullDisk):
    """A local file system whose file creation waits at a gate (a roll hanging on slow storage)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()  # set: writes pass
        self.waiting = threading.Event()  # a writer is held at the gate

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        if not self.gate.is_set():
            self.waiting.set()
            assert self.gate.wait(60), "the gate was never opened"
        return super().open_output_stream(path, metadata)


def wait_until(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_write_batch_returns_while_a_roll_hangs_and_waits_only_beyond_the_backlog(tmp_path: Path) -> None:
    disk = _GatedDisk()
    root = tmp_path / "root"
    store = ParquetStore(root, roll_rows=5, roll_backlog=2, filesystem=pafs.PyFileSystem(disk),
                         journal_dir=tmp_path / "journal", fsync=False)
    deals = [sample_deal(t) for t in range(1, 25)]
    store.write_batch(deals[:6])  # seals a segment: the roller takes it and hangs at the gate
    assert disk.waiting.wait(30)
    store.write_batch(deals[6:9])  # journaled (durable), returns although the roll hangs
    store.write_batch(deals[9:12])  # seals a second segment: within the backlog bound, no wait
    stats = store.stats()  # readable from another thread while the roller is busy
    assert stats["healthy"] is True and stats["last_error"] is None
    assert stats["datasets"]["deals"] == {"written": 12, "in_files": 0, "files": 0, "journaled_segments": 2}
    assert stats["roller"]["pending_segments"] == 2 and stats["roller"]["backpressure_waits"] == 0
    assert not list(root.rglob("*.parquet"))
    journaled = sorted(t for seg in (tmp_path / "journal" / "deals").iterdir()
                       for batch in iter_segment(seg) for t in batch.column("tid").to_pylist())
    assert journaled == list(range(1, 13))  # acknowledged rows are in the journal

    # a third sealed segment is beyond the bound: write_batch waits for the roller (backpressure)
    returned = threading.Event()

    def write_third() -> None:
        store.write_batch(deals[12:18])
        returned.set()

    writer = threading.Thread(target=write_third)
    writer.start()
    wait_until(lambda: store.stats()["roller"]["backpressure_waits"] == 1, "the write to wait")
    assert not returned.is_set()  # it is waiting for the roller, not done
    disk.gate.set()  # the storage answers again
    writer.join(30)
    assert returned.is_set()
    store.write_batch(deals[18:])
    assert store.wait_for_rolls(timeout=30)
    stats = store.stats()
    assert stats["datasets"]["deals"]["in_files"] == 24 and stats["roller"]["pending_segments"] == 0
    assert stats["roller"]["backpressure_seconds"] > 0
    store.close()
    back = pads.dataset(root / "deals", partitioning="hive").to_table().sort_by("tid").to_pylist()
    assert [DATASETS["deals"].from_row(r) for r in back] == deals
    assert list((tmp_path / "journal" / "deals").iterdir()) == []


def test_a_failing_background_roll_is_reported_once_retried_and_never_blocks_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = _FullDisk()
    clock = ManualClock()
    root = tmp_path / "root"
    store = ParquetStore(root, roll_rows=3, roll_backlog=1, clock=clock, filesystem=pafs.PyFileSystem(disk),
                         journal_dir=tmp_path / "journal", fsync=False)
    disk.full = True
    deals = [sample_deal(t) for t in range(1, 31)]
    with caplog.at_level("WARNING", logger="recorder.storage"):
        for i in range(0, 24, 3):  # 8 sealed segments, far beyond the bound: no wait while failing
            store.write_batch(deals[i:i + 3])
            store.wait_for_rolls(timeout=30)
            clock.advance(120)  # every write hands the roller a retry; each one fails
        stats = store.stats()
        assert stats["healthy"] is False
        assert stats["last_error"] == f"parquet root {root} not writable: [Errno 28] No space left on device"
        assert stats["datasets"]["deals"]["written"] == 24 and stats["datasets"]["deals"]["in_files"] == 0
        assert stats["roller"]["pending_segments"] == 8 and stats["roller"]["backpressure_waits"] == 0
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "rows stay in the journal" in errors[0].getMessage()
        disk.full = False
        store.write_batch(deals[24:])  # the backoff delay has passed: the roller retries
        assert store.wait_for_rolls(timeout=30)
    stats = store.stats()
    assert stats["healthy"] is True and stats["last_error"] is None
    assert stats["datasets"]["deals"]["in_files"] == 30
    assert sum("writable again" in r.getMessage() for r in caplog.records) == 1
    store.close()
    back = pads.dataset(root / "deals", partitioning="hive").to_table().sort_by("tid").to_pylist()
    assert [DATASETS["deals"].from_row(r) for r in back] == deals


def test_non_symbol_partitions_use_their_own_key_and_cannot_escape(tmp_path: Path) -> None:
    from recorder.records import FeedEvent, FeedEventKind

    ts = sample_deal(1).ts_event
    events = [
        FeedEvent(kind=FeedEventKind.CONNECTED, ts_start=ts, ts_end=ts, connection="ws-0", event_id="a"),
        FeedEvent(kind=FeedEventKind.STALL, ts_start=ts, ts_end=None, connection="../up", event_id="b"),
    ]
    store = ParquetStore(tmp_path, fsync=False)
    store.write_batch(events)
    store.close()
    dirs = sorted(p.parent.relative_to(tmp_path).as_posix() for p in parquet_files(tmp_path))
    assert dirs == ["feed_events/date=2026-11-23/connection=%2E%2E%2Fup",
                    "feed_events/date=2026-11-23/connection=ws-0"]
    back = open_dataset(str(tmp_path), "feed_events").to_table().sort_by("event_id").to_pylist()
    assert [DATASETS["feed_events"].from_row(r) for r in back] == events


def test_deals_and_books_are_exact_after_reading(tmp_path: Path) -> None:
    deal = Deal(**{**{f: getattr(sample_deal(5), f) for f in Deal.__slots__},
                   "price": Decimal("123456789012345678.123456789012345678")})
    store = ParquetStore(tmp_path, fsync=False)
    store.write_batch([deal])
    store.close()
    (row,) = open_dataset(str(tmp_path), "deals").to_table().to_pylist()
    assert row["price"] == Decimal("123456789012345678.123456789012345678")
    assert DATASETS["deals"].from_row(row) == deal


def test_a_roll_streams_in_bounded_pieces_and_keeps_every_row_in_order(tmp_path: Path) -> None:
    # 3 symbols x 2 days over many journal batches; a roll buffer far smaller than the segment
    # forces one pass per partition group and row groups cut by bytes for the big partition.
    books = [sample_book(i, symbol=s) for i in range(1800) for s in ("btc_usdt", "eth_btc", "ltc_btc")
             if s == "btc_usdt" or i % 3 == 0]
    store = ParquetStore(tmp_path, fsync=False, roll_buffer_bytes=64 * 1024, row_group_rows=500)
    for i in range(0, len(books), 97):
        store.write_batch(books[i:i + 97])
    store.close()
    assert read_books(tmp_path) == sorted(books, key=lambda b: (b.symbol, b.ts_recv))
    for f in parquet_files(tmp_path):  # each file holds its partition's rows in written order
        symbol = f.parent.name.removeprefix("symbol=")
        day = f.parent.parent.name.removeprefix("date=")
        got = pq.read_table(f).column("ts_recv").to_pylist()
        want = [b.ts_recv for b in books if b.symbol == symbol and b.ts_event.date().isoformat() == day]
        assert got == want
        meta = pq.read_metadata(f)
        assert all(meta.row_group(g).num_rows <= 500 for g in range(meta.num_row_groups))
    big = max(parquet_files(tmp_path), key=lambda f: pq.read_metadata(f).num_rows)
    assert pq.read_metadata(big).num_row_groups > pq.read_metadata(big).num_rows // 500  # cut by bytes too
    assert list((tmp_path / "_journal" / "book_snapshots").iterdir()) == []


def test_a_roll_writes_full_row_groups_like_a_single_write(tmp_path: Path) -> None:
    deals = [sample_deal(t) for t in range(1, 2501)]  # one partition
    store = ParquetStore(tmp_path, fsync=False, row_group_rows=1000)
    for i in range(0, len(deals), 300):
        store.write_batch(deals[i:i + 300])
    store.close()
    (f,) = parquet_files(tmp_path)
    meta = pq.read_metadata(f)
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [1000, 1000, 500]
    assert pq.read_table(f).column("tid").to_pylist() == list(range(1, 2501))
