"""Compaction merges a day's small files into one and keeps every row exactly."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recorder.errors import ConfigError
from recorder.records import Deal
from recorder.storage import compact as compact_cmd
from recorder.storage.compact import compact
from recorder.storage.parquet import ParquetStore, open_dataset
from recorder.storage.schema import DATASETS
from tests.fixtures.storage import sample_book, sample_deal


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def write_small_files(root: Path) -> list[Deal]:
    store = ParquetStore(root, roll_rows=3, fsync=False)
    records: list[Deal] = []
    for i in range(0, 12, 2):
        batch = [sample_deal(i + 1), sample_deal(i + 2), sample_deal(i + 1, symbol="eth_btc")]
        store.write_batch(batch)
        records.extend(batch)
    store.write_batch([sample_deal(1, day=24)])
    store.close()
    return [*records, sample_deal(1, day=24)]


def all_deals(root: Path) -> list[Deal]:
    rows = open_dataset(str(root), "deals").to_table().to_pylist()
    return sorted((DATASETS["deals"].from_row(r) for r in rows), key=lambda d: (d.symbol, d.ts_event, d.tid))


def test_compaction_merges_a_days_files_and_preserves_every_row(tmp_path: Path) -> None:
    records = write_small_files(tmp_path)
    before = all_deals(tmp_path)
    btc = tmp_path / "deals" / "venue=okex_v1" / "date=2026-11-23" / "symbol=btc_usdt"
    assert len(files_in(btc)) == 6

    results = compact(str(tmp_path), day=sample_deal(1).ts_event.date(), dataset="deals")

    assert sorted((Path(r.directory).name, r.files_before, r.rows) for r in results) == [
        ("symbol=btc_usdt", 6, 12), ("symbol=eth_btc", 6, 6)]
    (merged,) = files_in(btc)
    assert merged.startswith("part-compact-") and merged.endswith(".parquet")
    assert [r["tid"] for r in pq.read_table(btc / merged).to_pylist()] == list(range(1, 13))  # written order
    assert all_deals(tmp_path) == before
    assert before == sorted(records, key=lambda d: (d.symbol, d.ts_event, d.tid))
    other_day = tmp_path / "deals" / "venue=okex_v1" / "date=2026-11-24" / "symbol=btc_usdt"
    assert len(files_in(other_day)) == 1  # untouched
    assert compact(str(tmp_path), dataset="deals") == []  # idempotent


def test_a_compaction_that_died_before_deleting_the_old_files_is_finished_without_doubles(
        tmp_path: Path) -> None:
    write_small_files(tmp_path)
    btc = tmp_path / "deals" / "venue=okex_v1" / "date=2026-11-23" / "symbol=btc_usdt"
    saved = tmp_path / "saved"
    shutil.copytree(btc, saved)
    compact(str(tmp_path), dataset="deals")
    for f in saved.iterdir():  # the old files are back: as if it died after its rename
        shutil.copy(f, btc / f.name)
    (btc / ".part-compact-dead.parquet.tmp").write_bytes(b"junk")
    assert len(files_in(btc)) == 8

    compact(str(tmp_path), dataset="deals")

    (only,) = files_in(btc)
    assert [r["tid"] for r in pq.read_table(btc / only).to_pylist()] == list(range(1, 13))


def test_compact_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ParquetStore(tmp_path, roll_rows=1, fsync=False)
    books = [sample_book(i) for i in range(3)]
    for b in books:
        store.write_batch([b])
    store.close()
    parser = argparse.ArgumentParser()
    compact_cmd.add_arguments(parser)
    assert compact_cmd.run(parser.parse_args(["--parquet-root", str(tmp_path), "--date", "2026-11-23"])) == 0
    assert capsys.readouterr().out.endswith("3 files -> 1 (3 rows)\n")
    rows = open_dataset(str(tmp_path), "book_snapshots").to_table().to_pylist()
    assert [DATASETS["book_snapshots"].from_row(r) for r in rows] == books
    with pytest.raises(ConfigError, match="--date must be YYYY-MM-DD"):
        compact_cmd.run(parser.parse_args(["--parquet-root", str(tmp_path), "--date", "23/11/2026"]))
