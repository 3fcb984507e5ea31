"""Automatic compaction in the running store: few files, the same rows, and readers never see a mix."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analysis.load import load_deals
from recorder.app import open_storage, prepare_database
from recorder.collector.app import Recorder
from recorder.config import load_config
from recorder.errors import ConfigError
from recorder.records import Deal
from recorder.simulator import Simulator
from recorder.storage import compact as compact_mod
from recorder.storage.compact import COMPACT_DIR, CompactionPolicy, PartitionJob, exchange_supported
from recorder.storage.parquet import ParquetStore, open_dataset
from tests.collector.conftest import sim_config
from tests.collector.helpers import stored, stored_parquet, wait_until
from tests.fixtures.storage import sample_deal

pytestmark = pytest.mark.skipif(not exchange_supported("/tmp"),
                                reason="needs renameat2(RENAME_EXCHANGE): Linux and a local file system")

BTC = Path("deals") / "venue=okex_v1" / "date=2026-11-23" / "symbol=btc_usdt"
ETH = Path("deals") / "venue=okex_v1" / "date=2026-11-23" / "symbol=eth_btc"
OPEN_DAY = datetime(2026, 11, 23, 18, 0, tzinfo=UTC).timestamp()  # the deals' own day, not yet over


def parquet_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.suffix == ".parquet")


def tids_in_files(directory: Path) -> list[int]:
    """Every tid in the partition's files, in the files' written order (duplicates kept)."""
    return [t for name in compact_mod._parquet_names(str(directory))
            for t in pq.read_table(directory / name, columns=["tid"]).column("tid").to_pylist()]


def staging_left(root: Path) -> list[str]:
    return [e for e in os.listdir(root / COMPACT_DIR) if e != "lock"]


def settle(store: ParquetStore, timeout: float = 60.0) -> None:
    """Drive compaction steps (as the writer thread's flushes do) until nothing is left to do."""
    c = store.compactor
    assert c is not None
    idle = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = len(c.results)
        store.roll_due()
        assert store.wait_for_rolls(timeout=30)  # the roller's files first: compaction waits for them
        busy = c._job is not None or c._retired or c._unlisted or len(c.results) != before
        idle = 0 if busy else idle + 1
        if idle >= 3:
            return
    raise AssertionError("compaction did not settle")


def write_deals(store: ParquetStore, n: int, *, per_batch: int = 3) -> list[Deal]:
    written: list[Deal] = []
    for first in range(1, n + 1, per_batch):
        batch = [sample_deal(t) for t in range(first, min(first + per_batch, n + 1))]
        batch.append(sample_deal(first, symbol="eth_btc"))
        store.write_batch(batch)
        written.extend(batch)
    return written


def test_a_closed_days_partitions_become_one_file_each_with_exactly_the_same_rows(tmp_path: Path) -> None:
    # Rolling every 3 rows gives a file per batch; the deals' day (2026-11-23) is long over.
    store = ParquetStore(tmp_path, roll_rows=3, fsync=False, row_group_rows=7,
                         compaction=CompactionPolicy(step_bytes=1, grace=0.0))
    assert store.compactor is not None
    written = write_deals(store, 60)
    store.roll_all()
    settle(store)

    assert len(parquet_files(tmp_path / BTC)) == 1 and len(parquet_files(tmp_path / ETH)) == 1
    assert tids_in_files(tmp_path / BTC) == list(range(1, 61))  # every row once, in written order
    assert tids_in_files(tmp_path / ETH) == list(range(1, 61, 3))
    rows = open_dataset(str(tmp_path), "deals").to_table().to_pylist()
    from recorder.storage.schema import DATASETS

    stored = sorted((DATASETS["deals"].from_row(r) for r in rows), key=lambda d: (d.symbol, d.tid))
    assert stored == sorted(written, key=lambda d: (d.symbol, d.tid))  # exact values, not just counts
    assert sum(r.files_before for r in store.compactor.results) >= 20
    store.close()
    assert staging_left(tmp_path) == []  # staging and retired directories gone


def test_an_open_day_is_compacted_past_max_files_and_the_earlier_merge_is_kept(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path, roll_rows=3, fsync=False,
                         compaction=CompactionPolicy(max_files=5, step_bytes=1 << 20, grace=0.0))
    assert store.compactor is not None
    store.compactor.wall_clock = lambda: OPEN_DAY
    for first in range(1, 61, 3):  # 20 roll files into each partition, compacting as it goes
        store.write_batch([sample_deal(t) for t in range(first, first + 3)])
        settle(store)
        names = parquet_files(tmp_path / BTC)
        assert sum(not n.startswith("part-compact-") for n in names) < 5  # roll files merged past 5
    assert tids_in_files(tmp_path / BTC) == list(range(1, 61))
    # 20 rolls: merged 5 at a time into 4 files; earlier merges are not rewritten while the day is open
    assert sum(n.startswith("part-compact-") for n in names) == 4 and len(names) == 4
    store.close()


def test_a_reader_loop_during_compaction_never_sees_missing_or_doubled_rows(tmp_path: Path) -> None:
    """Each partition only grows by whole roll files (tids 1..k), so every read must show, per
    symbol, exactly 1..k for some k: a hole is a missing row, a repeat a doubled one."""
    store = ParquetStore(tmp_path, roll_rows=3, fsync=False, row_group_rows=4,
                         compaction=CompactionPolicy(step_bytes=1, grace=0.05))
    assert store.compactor is not None
    stop = threading.Event()
    reads: list[dict[str, list[int]]] = []
    vanished = 0
    problems: list[str] = []

    def reader() -> None:
        nonlocal vanished
        while not stop.is_set():
            try:
                table = open_dataset(str(tmp_path), "deals").to_table(columns=["symbol", "tid"])
            except FileNotFoundError:  # listed before a swap, opened after: retry (documented)
                vanished += 1
                continue
            seen: dict[str, list[int]] = {}
            for symbol, tid in zip(table.column("symbol").to_pylist(), table.column("tid").to_pylist(),
                                   strict=True):
                seen.setdefault(symbol, []).append(tid)
            reads.append(seen)

    def loader() -> None:  # the analysis loader, which retries by itself
        while not stop.is_set():
            try:
                frame = load_deals(tmp_path, "btc_usdt")
            except Exception as exc:
                problems.append(f"loader failed: {exc!r}")
                return
            tids = sorted(frame["tid"].tolist())
            if tids != list(range(1, len(tids) + 1)):
                problems.append(f"loader saw {tids}")

    threads = [threading.Thread(target=reader), threading.Thread(target=loader)]
    for t in threads:
        t.start()
    try:
        for first in range(1, 301, 3):
            store.write_batch([sample_deal(t) for t in range(first, first + 3)]
                              + [sample_deal(first, symbol="eth_btc")])
            # a feed slower than the roller: its pass ends with nothing pending, so it compacts
            # (a step waits while a roll is pending)
            assert store.wait_for_rolls(timeout=30)
        store.roll_all()
        settle(store)
        wanted = max(len(reads) + 3, 20)  # a few reads of the final state, and enough in all
        deadline = time.monotonic() + 60
        while len(reads) < wanted and all(t.is_alive() for t in threads) and time.monotonic() < deadline:
            threading.Event().wait(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not problems
    assert len(store.compactor.results) >= 5 and len(reads) >= 20
    last = {"btc_usdt": 0, "eth_btc": 0}
    for seen in reads:  # in the order they were made: rows are only ever added
        for symbol in last:
            n = len(seen.get(symbol, []))
            assert n >= last[symbol], f"{symbol}: {last[symbol]} rows seen, then only {n}"
            last[symbol] = n
        for symbol, tids in seen.items():
            counts = Counter(tids)
            doubled = [t for t, n in counts.items() if n > 1]
            assert not doubled, f"{symbol}: doubled rows {doubled}"
            step = 1 if symbol == "btc_usdt" else 3
            assert sorted(tids) == list(range(1, step * len(tids) + 1, step)), f"{symbol}: rows missing"
    assert sorted(reads[-1]["btc_usdt"]) == list(range(1, 301))
    print(f"{len(reads)} reads, {vanished} retried after a swap, {len(store.compactor.results)} compactions")
    store.close()


def test_no_compaction_while_a_failed_roll_is_pending(tmp_path: Path) -> None:
    """A retried roll rewrites the files of its segment that are missing: they must not have been merged."""
    store = ParquetStore(tmp_path, roll_rows=3, fsync=False, compaction=CompactionPolicy(grace=0.0))
    assert store.compactor is not None
    write_deals(store, 30)
    store.roll_all()
    store._state["deals"].sealed.append(object())  # type: ignore[arg-type]  # a roll pending
    c = store.compactor
    before = (len(c.results), c._job and c._job._next, parquet_files(tmp_path / BTC))
    for _ in range(50):
        store._compaction_step()
    assert (len(c.results), c._job and c._job._next, parquet_files(tmp_path / BTC)) == before
    store._state["deals"].sealed.clear()
    settle(store)
    assert len(parquet_files(tmp_path / BTC)) == 1


def test_a_file_written_by_another_process_at_the_last_moment_is_moved_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ParquetStore(tmp_path, roll_rows=3, fsync=False)
    write_deals(store, 12)
    store.close()
    btc = tmp_path / BTC
    job = PartitionJob(str(tmp_path), "deals", str(btc), compact_mod._parquet_names(str(btc)), fsync=False)
    job.advance(1 << 30)
    late = tmp_path / "late.parquet"
    other = ParquetStore(tmp_path / "other", roll_rows=1, fsync=False)
    other.write_batch([sample_deal(13)])
    other.close()
    (produced,) = (tmp_path / "other" / BTC).iterdir()
    real_exchange = compact_mod.exchange_paths

    def exchange_after_a_late_roll(a: str, b: str) -> None:
        os.rename(produced, late)
        os.rename(late, btc / "part-99999999999999999999-late.parquet")  # after publish listed
        real_exchange(a, b)

    monkeypatch.setattr(compact_mod, "exchange_paths", exchange_after_a_late_roll)
    result = job.publish()

    assert result.rescued == ["part-99999999999999999999-late.parquet"]
    assert tids_in_files(btc) == list(range(1, 14))


def test_start_up_cleans_what_a_crash_left_in_the_staging_area(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path, roll_rows=3, fsync=False)
    write_deals(store, 12)
    store.close()
    btc = tmp_path / BTC
    unpublished = PartitionJob(str(tmp_path), "deals", str(btc), compact_mod._parquet_names(str(btc)),
                               fsync=False)
    unpublished.advance(1 << 30)  # died before its swap: its handles go with the process
    unpublished._writer.close()  # type: ignore[union-attr]
    unpublished._sink.close()
    before = tids_in_files(btc)

    ParquetStore(tmp_path, fsync=False, compaction=CompactionPolicy()).close()

    assert staging_left(tmp_path) == []
    assert tids_in_files(btc) == before == list(range(1, 13))


def test_a_crashed_writers_recovery_does_not_write_again_rows_a_compaction_merged(tmp_path: Path) -> None:
    """Several processes may share a root: one's compaction may merge a file another wrote just
    before it crashed mid-roll. The crashed one's start-up must not write that file again."""
    store = ParquetStore(tmp_path, roll_rows=1000, fsync=False)
    store.write_batch([sample_deal(1), sample_deal(2), sample_deal(1, symbol="eth_btc")])
    store.roll_all()
    store.write_batch([sample_deal(3), sample_deal(4), sample_deal(4, symbol="eth_btc")])
    shutil.copytree(tmp_path / "_journal", tmp_path / "saved-journal")  # the segment, not yet rolled
    store.close()  # rolls it: one more file in each partition
    newest_eth = compact_mod._parquet_names(str(tmp_path / ETH))[-1]
    (tmp_path / ETH / newest_eth).unlink()  # the crash came before the eth file was written
    compact_mod.compact(str(tmp_path), dataset="deals")  # another process merges btc's two files
    assert len(parquet_files(tmp_path / BTC)) == 1
    shutil.rmtree(tmp_path / "_journal")
    shutil.move(tmp_path / "saved-journal", tmp_path / "_journal")

    ParquetStore(tmp_path, fsync=False).close()  # start-up recovers the segment

    assert tids_in_files(tmp_path / BTC) == [1, 2, 3, 4]  # not 1, 2, 3, 4, 3, 4
    assert tids_in_files(tmp_path / ETH) == [1, 4]


def parquet_store_of(writer: object) -> ParquetStore:
    (store,) = [s.store for s in writer._states if isinstance(s.store, ParquetStore)]  # type: ignore[attr-defined]
    return store


async def test_the_running_recorder_compacts_as_configured_and_keeps_every_row(
        simulator: Simulator, tmp_path: Path) -> None:
    """``[storage] compact_*`` reach the store through ``open_storage``; a real run against the
    simulator with a roll every 0.2 s ends with few files per partition and exactly the rows stored
    in SQL (deals: one row per trade id, in both stores)."""
    config = sim_config(tmp_path, simulator.ws_url, channels=["ticker", "deals"])
    config = dataclasses.replace(config, storage=dataclasses.replace(
        config.storage, parquet_roll_seconds=0.2, compact_max_files=3, compact_grace=0.0))
    await asyncio.to_thread(prepare_database, config)
    writer = await asyncio.to_thread(open_storage, config)
    recorder = Recorder(config, writer)
    parquet = parquet_store_of(writer)
    assert parquet.compactor is not None and parquet.compactor.policy.max_files == 3
    task = asyncio.create_task(recorder.run())
    compactor = parquet.compactor
    await wait_until(lambda: len(compactor.results) >= 6, timeout=60, what="compactions")
    recorder.request_stop()
    assert (await asyncio.wait_for(task, 60)).exit_code == 0

    root = tmp_path / "parquet"
    for table in ("deals", "tickers"):
        in_parquet = stored_parquet(root, table)
        assert sorted(in_parquet, key=repr) == sorted(stored(config.storage.sql_url, table), key=repr)
        assert len(in_parquet) == recorder.writer_thread.counters.rows_written[table]
    deals = stored_parquet(root, "deals")
    assert len({(d.symbol, d.tid) for d in deals}) == len(deals)  # nothing doubled by a merge
    for directory in [*root.glob("*/date=*/*=*"), *root.glob("*/venue=*/date=*/*=*")]:
        rolls = [p for p in directory.glob("part-*.parquet") if not p.name.startswith("part-compact-")]
        assert len(rolls) <= 3 + 2, directory  # merged past 3 (the last rolls may not be merged yet)


def test_open_storage_without_compaction(tmp_path: Path) -> None:
    config = sim_config(tmp_path, "ws://127.0.0.1:9/ws/v1")
    config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, compact=False))
    prepare_database(config)
    writer = open_storage(config)
    try:
        assert parquet_store_of(writer).compactor is None
    finally:
        writer.close()


def test_compaction_keys_of_the_config(tmp_path: Path) -> None:
    s = load_config(env={}).storage
    assert (s.compact, s.compact_max_files, s.compact_closed_after, s.compact_grace) == (
        True, 48, 600.0, 60.0)
    example = load_config(Path(__file__).parents[2] / "config.example.toml", env={}).storage
    assert example == s
    env = load_config(env={"OKEX_RECORDER__STORAGE__COMPACT": "false",
                           "OKEX_RECORDER__STORAGE__COMPACT_MAX_FILES": "7"}).storage
    assert (env.compact, env.compact_max_files) == (False, 7)
    for bad in ({"compact_max_files": 1}, {"compact_step_bytes": 0}, {"compact_grace": -1}):
        with pytest.raises(ConfigError, match=rf"storage\.{next(iter(bad))} must be"):
            load_config(env={}, overrides={"storage": bad})


def test_more_new_partitions_than_one_step_counts_are_never_forgotten_before_they_are_counted(
        tmp_path: Path) -> None:
    """A step counts 64 new partition directories; the rest wait for the next step. A closed
    day's partition not counted yet must not be judged (and dropped) meanwhile: it raised a
    KeyError in a roll (a spurious store outage) when a roll brought 100+ new symbols at once."""
    from recorder.storage.compact import AutoCompactor

    root = tmp_path / "pq"
    day = root / "deals" / "venue=okex_v1" / "date=2026-11-18"
    compactor = AutoCompactor(str(root), CompactionPolicy(grace=0.0), fsync=False,
                              wall_clock=lambda: OPEN_DAY)  # 2026-11-18 is closed by then
    directories = []
    for i in range(150):
        directory = day / f"symbol=s{i:03d}"
        directory.mkdir(parents=True)
        (directory / "part-1.parquet").write_bytes(b"")
        directories.append(str(directory))
        compactor.note_file("deals", f"{directory}/part-1.parquet")
    for _ in range(4):  # 150 directories: counted over three steps, then judged
        compactor.step()
    # every partition was counted (one file each) before the closed day's one-file ones were dropped
    assert compactor._unlisted == [] and compactor._parts == {}
    compactor.close()


def test_a_listing_torn_by_a_directory_exchange_is_listed_again() -> None:
    """Arrow's recursive listing looks each name up after reading the directory and skips names gone
    by then: a compaction's exchange in between gave only the files hard-linked into the new
    directory (CI: the loader saw deals 13..21 of 1..21, no error). Listings repeat until two agree."""
    import pyarrow.fs as pafs

    from recorder.storage.parquet import _list_files

    def info(name: str) -> pafs.FileInfo:
        return pafs.FileInfo(f"/r/deals/symbol=btc_usdt/{name}", pafs.FileType.File)

    torn = [info("part-5.parquet"), info("part-6.parquet")]  # part-1..4 skipped: merged away meanwhile
    after = [info("part-5.parquet"), info("part-compact-1.parquet"), info("part-6.parquet")]

    class Swapping:
        type_name = "local"

        def __init__(self, answers: list[list[pafs.FileInfo]]) -> None:
            self.answers = answers

        def get_file_info(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    got = _list_files(Swapping([torn, after, list(reversed(after))]), "/r/deals")  # type: ignore[arg-type]
    assert [i.path.rsplit("/", 1)[1] for i in got] == ["part-5.parquet", "part-6.parquet",
                                                        "part-compact-1.parquet"]
    remote = Swapping([torn, after])
    remote.type_name = "s3"  # no directory exchange there (readers may see doubles, never holes)
    assert [i.path for i in _list_files(remote, "/r/deals")] == [i.path for i in torn]  # type: ignore[arg-type]
