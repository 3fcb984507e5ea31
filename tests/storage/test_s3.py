"""Parquet on S3-compatible storage (a local moto server): final keys, no markers, compaction, readers."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
import pytest

from analysis.load import load_deals, load_feed_events, load_tickers, open_source
from recorder.config import load_config
from recorder.errors import ConfigError, StoreUnavailableError
from recorder.records import Deal, Record
from recorder.storage import fs as fsx
from recorder.storage.compact import compact
from recorder.storage.parquet import ParquetStore, open_dataset
from recorder.storage.schema import DATASETS
from tests.fixtures.s3 import FAKE_SECRET, S3Server
from tests.fixtures.storage import sample_deal


def stored(root: str, name: str) -> list[Any]:
    rows = open_dataset(root, name).to_table().to_pylist()
    return sorted((DATASETS[name].from_row(r) for r in rows), key=repr)


def markers(keys: Sequence[str]) -> list[str]:
    return [k for k in keys if k.endswith("/")]


def write_small_files(root: str, journal: Path) -> list[Deal]:
    store = ParquetStore(root, roll_rows=3, fsync=False, journal_dir=journal)
    records: list[Deal] = []
    for i in range(0, 12, 2):
        batch = [sample_deal(i + 1), sample_deal(i + 2), sample_deal(i + 1, symbol="eth_btc")]
        store.write_batch(batch)
        records.extend(batch)
    store.close()
    return records


def test_an_s3_root_gets_every_row_under_final_keys_without_directory_markers(
    s3: S3Server, tmp_path: Path, records: list[Record]
) -> None:
    root = f"s3://{s3.bucket}/rec"
    store = ParquetStore(root, fsync=False, journal_dir=tmp_path / "journal")
    store.write_batch(records)
    store.close()

    keys = s3.list_keys()
    assert keys and all(k.startswith("rec/") for k in keys)
    assert markers(keys) == []
    assert not [k for k in keys if not k.endswith(".parquet")]  # no temporaries, no journal
    assert not [k for k in keys if k.rsplit("/", 1)[1].startswith(".")]
    by_name: dict[str, list[Record]] = {}
    for r in records:
        by_name.setdefault(next(n for n, d in DATASETS.items() if isinstance(r, d.record_type)), []).append(r)
    for name, expected in by_name.items():
        assert stored(root, name) == sorted(expected, key=repr), name
    assert list((tmp_path / "journal").rglob("*.arrows")) == []  # everything rolled


def test_readers_see_an_s3_root_as_a_local_one(s3: S3Server, tmp_path: Path) -> None:
    root = f"s3://{s3.bucket}/rec"
    local = tmp_path / "local"
    write_small_files(root, tmp_path / "j1")
    write_small_files(str(local), tmp_path / "j2")

    pd.testing.assert_frame_equal(load_deals(root), load_deals(local))
    pd.testing.assert_frame_equal(load_deals(root, "eth_btc", exact=True),
                                  load_deals(local, "eth_btc", exact=True))
    pd.testing.assert_frame_equal(load_tickers(root), load_tickers(local))  # absent dataset: empty
    assert len(load_deals(root)) == 18
    assert type(open_source(root)).__name__ == "ParquetSource"

    # s3fs-based readers: pandas straight from the bucket
    frame = pd.read_parquet(f"s3://{s3.bucket}/rec/deals", storage_options=s3.storage_options())
    assert sorted(frame["tid"].tolist()) == sorted(load_deals(local)["tid"].tolist())
    assert set(frame["symbol"].astype(str)) == {"btc_usdt", "eth_btc"}


def test_duckdb_views_on_s3_equal_the_local_views(s3: S3Server, tmp_path: Path) -> None:
    from analysis.duck import connect

    root = f"s3://{s3.bucket}/rec"
    write_small_files(root, tmp_path / "j1")
    write_small_files(str(tmp_path / "local"), tmp_path / "j2")
    query = "SELECT * FROM deals ORDER BY symbol, tid"
    remote, here = connect(root), connect(tmp_path / "local")
    assert remote.sql("SELECT count(*) FROM deals WHERE symbol = 'eth_btc'").fetchall() == [(6,)]
    assert remote.sql(query).fetchall() == here.sql(query).fetchall()
    assert remote.sql(f"DESCRIBE {query}").fetchall() == here.sql(f"DESCRIBE {query}").fetchall()


def test_polars_scan_equals_the_pandas_loader(s3: S3Server, tmp_path: Path) -> None:
    import polars as pl

    from analysis.lazy import scan

    root = f"s3://{s3.bucket}/rec"
    write_small_files(root, tmp_path / "j1")
    write_small_files(root, tmp_path / "j2")  # every row twice: both must de-duplicate
    expected = load_deals(root, exact=True).reset_index()
    got = scan(root, "deals").collect()
    assert got.height == len(expected) == 18
    assert got.schema["price"] == pl.Decimal(38, 18)
    frame = got.select(expected.columns.tolist()).to_pandas()
    def values(series: pd.Series) -> list[object]:  # NaN == NaN for the optional columns (deals.count)
        return [None if not isinstance(v, tuple) and pd.isna(v) else v for v in series.tolist()]

    for column in expected.columns:  # Decimal('1.5') == Decimal('1.500…'); equal UTC timestamps
        assert values(frame[column]) == values(expected[column]), column
    assert scan(root, "tickers").collect().height == 0
    assert scan(root, "deals", dedupe=False).collect().height == 36


def test_compact_on_s3_keeps_every_row_and_deletes_without_markers(s3: S3Server, tmp_path: Path) -> None:
    root = f"s3://{s3.bucket}/rec"
    write_small_files(root, tmp_path / "j")
    before = stored(root, "deals")
    prefix = "rec/deals/venue=okex_v1/date=2026-11-23/symbol=btc_usdt/"
    assert len(s3.list_keys(prefix)) == 6

    results = compact(root, dataset="deals")

    assert sorted((r.directory.rsplit("/", 1)[1], r.files_before, r.rows) for r in results) == [
        ("symbol=btc_usdt", 6, 12), ("symbol=eth_btc", 6, 6)]
    (merged,) = s3.list_keys(prefix)
    assert merged.rsplit("/", 1)[1].startswith("part-compact-")
    assert markers(s3.list_keys()) == []
    assert stored(root, "deals") == before
    pd.testing.assert_frame_equal(load_deals(root), load_deals(root).sort_index(kind="stable"))
    assert compact(root, dataset="deals") == []


def test_a_compaction_that_died_before_its_deletions_is_finished_on_s3(s3: S3Server, tmp_path: Path) -> None:
    root = f"s3://{s3.bucket}/rec"
    write_small_files(root, tmp_path / "j")
    before = load_deals(root)
    real_delete = fsx.delete_file
    calls = 0

    def dying(fs: pafs.FileSystem, path: str) -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError("killed")
        real_delete(fs, path)

    import recorder.storage.compact as compact_module

    compact_module.delete_file = dying  # type: ignore[assignment]
    try:
        with pytest.raises(Exception, match="killed"):
            compact(root, dataset="deals")
    finally:
        compact_module.delete_file = real_delete  # type: ignore[assignment]
    # in between: old and new objects together; the loaders still give each row once
    prefix = "rec/deals/venue=okex_v1/date=2026-11-23/symbol=btc_usdt/"
    assert len(s3.list_keys(prefix)) == 6  # one old deleted: five old + the compacted one
    assert len(open_dataset(root, "deals").to_table()) > len(before)
    pd.testing.assert_frame_equal(load_deals(root), before)
    compact(root, dataset="deals")
    assert len(s3.list_keys(prefix)) == 1
    assert markers(s3.list_keys()) == []
    pd.testing.assert_frame_equal(load_deals(root), before)


def test_a_failed_upload_leaves_nothing_and_the_roll_is_retried(s3: S3Server, tmp_path: Path) -> None:
    root = f"s3://{s3.bucket}/rec"
    store = ParquetStore(root, fsync=False, journal_dir=tmp_path / "journal")
    store.write_batch([sample_deal(1), sample_deal(2)])
    s3.stop()
    try:
        store.roll_due()
        with pytest.raises(Exception):  # noqa: B017 - the roll fails; the rows stay journaled
            store.roll_all()
        assert not store.healthy
        assert FAKE_SECRET not in str(store.stats())
        assert list((tmp_path / "journal").rglob("*.arrows"))
    finally:
        s3.start()
    store.roll_all()
    store.close()
    assert stored(root, "deals") == [sample_deal(1), sample_deal(2)]
    assert markers(s3.list_keys()) == []


def test_the_store_never_publishes_a_partial_object_when_writing_fails(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure in the middle of a partition file leaves no object (local: a temporary)."""
    import recorder.storage.parquet as parquet_module

    root = f"s3://{s3.bucket}/rec"
    store = ParquetStore(root, fsync=False, journal_dir=tmp_path / "journal", roll_buffer_bytes=1,
                         row_group_rows=2)
    store.write_batch([sample_deal(i) for i in range(1, 8)])
    real = parquet_module._PartitionFile.finish
    boom = threading.Event()

    def failing_finish(self: Any, owner: Any) -> None:
        boom.set()
        raise OSError("disk read error in the middle of a roll")

    monkeypatch.setattr(parquet_module._PartitionFile, "finish", failing_finish)
    store.roll_due()
    with pytest.raises(Exception, match="disk read error"):
        store.roll_all()
    assert boom.is_set()
    assert s3.list_keys() == []  # no partial Parquet file under a final key
    monkeypatch.setattr(parquet_module._PartitionFile, "finish", real)
    store.close()
    assert stored(root, "deals") == [sample_deal(i) for i in range(1, 8)]


def test_config_accepts_s3_roots_and_refuses_other_uris(tmp_path: Path) -> None:
    config = load_config(env={}, overrides={"storage": {"parquet_root": "s3://bucket/some/prefix"}})
    assert config.storage.parquet_root == "s3://bucket/some/prefix"
    assert load_config(env={}, overrides={"storage": {"parquet_root": str(tmp_path)}}).storage.parquet_root \
        == tmp_path
    for bad in ("gs://bucket/x", "s3://", ""):
        with pytest.raises(ConfigError, match="parquet_root"):
            load_config(env={}, overrides={"storage": {"parquet_root": bad}})


def test_s3_endpoint_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://minio.example:9443")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert fsx.s3_endpoint() == ("minio.example:9443", "https", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://user:pw@host:1")
    with pytest.raises(ConfigError) as info:
        fsx.s3_endpoint()
    assert "pw" not in str(info.value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    fs, base = fsx.resolve("s3://bucket/pre/fix/")
    assert base == "bucket/pre/fix"
    assert isinstance(fs, pafs.S3FileSystem)
    with pytest.raises(ConfigError, match="bucket"):
        fsx.resolve("s3:///")
    with pytest.raises(ConfigError, match="AWS_ENDPOINT_URL"):
        fsx.resolve("s3://bucket/p?endpoint_override=127.0.0.1:9000")


def test_the_store_starts_while_s3_is_down_and_keeps_rows_journaled_until_it_is_back(
    s3: S3Server, tmp_path: Path
) -> None:
    root = f"s3://{s3.bucket}/rec"
    s3.stop()
    try:
        store = ParquetStore(root, fsync=False, journal_dir=tmp_path / "journal")
        store.write_batch([sample_deal(1), sample_deal(2)])  # acknowledged: journaled locally
        store.roll_due()
        with pytest.raises(StoreUnavailableError, match="not writable"):
            store.roll_all()
        assert not store.healthy
    finally:
        s3.start()
    store.close()
    assert stored(root, "deals") == [sample_deal(1), sample_deal(2)]


def test_stopping_while_s3_is_down_leaves_the_rows_to_the_next_start(s3: S3Server, tmp_path: Path) -> None:
    root = f"s3://{s3.bucket}/rec"
    store = ParquetStore(root, fsync=False, journal_dir=tmp_path / "journal")
    store.write_batch([sample_deal(1), sample_deal(2)])
    s3.stop()
    try:
        with pytest.raises(StoreUnavailableError):
            store.close()
    finally:
        s3.start()
    ParquetStore(root, fsync=False, journal_dir=tmp_path / "journal").close()  # start-up rolls them
    assert stored(root, "deals") == [sample_deal(1), sample_deal(2)]
    assert markers(s3.list_keys()) == []


def test_compact_command_takes_an_s3_root(
    s3: S3Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from recorder.storage import compact as compact_cmd

    root = f"s3://{s3.bucket}/rec"
    write_small_files(root, tmp_path / "j")
    before = load_deals(root)
    assert compact_cmd.run(argparse.Namespace(parquet_root=root, date="2026-11-23", dataset="deals")) == 0
    out = capsys.readouterr().out
    partition = "rec/deals/venue=okex_v1/date=2026-11-23/symbol=btc_usdt"
    assert f"compacted {s3.bucket}/{partition}: 6 files -> 1 (12 rows)" in out
    assert FAKE_SECRET not in out
    pd.testing.assert_frame_equal(load_deals(root), before)


def test_odd_partition_values_round_trip_through_s3_keys(s3: S3Server, tmp_path: Path) -> None:
    """Percent-encoded partition values (``../up`` -> ``%2E%2E%2Fup``) and spaces survive S3 keys."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from analysis.load import load_balances
    from recorder.records import Balance

    at = datetime(2026, 11, 23, 12, tzinfo=UTC)
    rows = [Balance(venue="okex_v1",
                    ts_recv=at, account="spot", currency=c, free=Decimal("1.5"), frozen=Decimal(0))
            for c in ("../up", "a b", "x%y", "usdt")]
    root = f"s3://{s3.bucket}/rec"
    for where, journal in ((root, "j1"), (str(tmp_path / "local"), "j2")):
        store = ParquetStore(where, fsync=False, journal_dir=tmp_path / journal)
        store.write_batch(rows)
        store.close()
    assert not [k for k in s3.list_keys() if "/../" in k or k.endswith("/")]
    pd.testing.assert_frame_equal(load_balances(root), load_balances(tmp_path / "local"))
    assert sorted(load_balances(root)["currency"]) == sorted(r.currency for r in rows)


def test_polars_scan_keeps_the_latest_state_like_the_loaders(s3: S3Server, tmp_path: Path) -> None:
    """Feed-event spans written open, then closed (in another file): one row, the closed one."""
    import dataclasses
    from datetime import UTC, datetime, timedelta

    from analysis.lazy import scan
    from recorder.records import FeedEvent, FeedEventKind

    t0 = datetime(2026, 11, 23, 12, tzinfo=UTC)
    spans = [FeedEvent(kind=FeedEventKind.DISCONNECTED, ts_start=t0 + timedelta(seconds=i), ts_end=None,
                       connection="ws-0", symbols=("btc_usdt",)) for i in range(3)]
    root = f"s3://{s3.bucket}/rec"
    store = ParquetStore(root, fsync=False, journal_dir=tmp_path / "j", roll_rows=3)
    store.write_batch(spans)  # open: rolled into one file
    store.write_batch([dataclasses.replace(s, ts_end=s.ts_start + timedelta(seconds=2)) for s in spans[:2]])
    store.close()
    expected = load_feed_events(root).reset_index()
    got = scan(root, "feed_events").collect().to_pandas()
    assert len(open_dataset(root, "feed_events").to_table()) == 5
    assert got["event_id"].tolist() == expected["event_id"].tolist() == [s.event_id for s in spans]
    assert got["ts_end"].tolist() == expected["ts_end"].tolist()
    assert expected["ts_end"].notna().tolist() == [True, True, False]
