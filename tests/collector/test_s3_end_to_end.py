"""End to end with the Parquet root on S3 (a local moto server): the real collector against the
v1 simulator; stored rows read back from the bucket (loaders, DuckDB, Polars, pandas + s3fs)
equal the simulator's ground truth and the SQL store; compaction on S3; an S3 outage mid-run."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis.duck import connect
from analysis.load import load_book_top, load_feed_events, load_tickers
from recorder.app import open_storage, prepare_database
from recorder.collector.app import Recorder
from recorder.config import Config
from recorder.simulator import Simulator, SimulatorSettings
from recorder.storage.compact import compact
from tests.collector.conftest import sim_config
from tests.collector.helpers import (
    all_received,
    expected_snapshots,
    sent_data,
    snapshot_key,
    stored,
    stored_parquet,
    ticker_from_push,
    ticker_key,
    wait_until,
)
from tests.fixtures.s3 import FAKE_ACCESS_KEY, FAKE_SECRET, S3Server

SYMBOLS = ("btc_usdt", "ltc_btc", "eth_btc")


@pytest.fixture
def simulator_settings(simulator_settings: SimulatorSettings) -> SimulatorSettings:
    return dataclasses.replace(simulator_settings, updates_per_second=0.0)  # the test drives the market


def s3_config(sim: Simulator, tmp_path: Path, root: str) -> Config:
    config = sim_config(tmp_path, sim.ws_url, symbols_per_connection=2)
    return dataclasses.replace(config, storage=dataclasses.replace(
        config.storage, parquet_root=root, parquet_roll_seconds=0.3))


async def start(config: Config, sim: Simulator) -> tuple[Recorder, asyncio.Task[Any]]:
    await asyncio.to_thread(prepare_database, config)
    recorder = Recorder(config, await asyncio.to_thread(open_storage, config))
    task = asyncio.create_task(recorder.run())
    await wait_until(lambda: all(c.counters.connects for c in recorder.connections), what="connected")
    await wait_until(lambda: all_received(recorder, sim.truth, SYMBOLS), what="initial books")
    return recorder, task


async def steps(sim: Simulator, recorder: Recorder, n: int) -> None:
    for _ in range(n):
        await sim.advance(1)
        await asyncio.sleep(0.002)
    await wait_until(lambda: all_received(recorder, sim.truth, SYMBOLS), what="every push")


async def stop(recorder: Recorder, task: asyncio.Task[Any]) -> None:
    recorder.request_stop()
    result = await asyncio.wait_for(task, 60)
    assert result.exit_code == 0


def assert_equals_truth_and_sql(sim: Simulator, root: str, sql_url: str) -> None:
    for symbol in SYMBOLS:
        snaps = [s for s in stored_parquet(root, "book_snapshots") if s.symbol == symbol]  # type: ignore[arg-type]
        assert [snapshot_key(s) for s in snaps] == expected_snapshots(sim.truth, symbol, 20)
        tickers = [t for t in stored_parquet(root, "tickers") if t.symbol == symbol]  # type: ignore[arg-type]
        assert [ticker_key(t) for t in tickers] == [
            ticker_from_push(d) for d in sent_data(sim.truth, f"ok_sub_spot_{symbol}_ticker")
        ]
    for table in ("book_snapshots", "tickers"):
        assert stored_parquet(root, table) == sorted(  # type: ignore[arg-type]
            stored(sql_url, table), key=lambda r: (r.ts_recv, r.symbol))


def markers(keys: list[str]) -> list[str]:
    return [k for k in keys if k.endswith("/")]


async def test_recording_to_s3_equals_ground_truth_and_sql_through_every_reader(
    simulator: Simulator, s3: S3Server, tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    root = f"s3://{s3.bucket}/okex"
    config = s3_config(simulator, tmp_path, root)
    config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, sql_url=sqlite_url))
    recorder, task = await start(config, simulator)
    await steps(simulator, recorder, 60)
    await wait_until(lambda: any("/book_snapshots/" in k for k in s3.list_keys()), what="a roll to S3")
    await steps(simulator, recorder, 60)
    await stop(recorder, task)

    assert_equals_truth_and_sql(simulator, root, sqlite_url)
    keys = s3.list_keys()
    assert markers(keys) == []
    assert all(k.startswith("okex/") and k.endswith(".parquet") for k in keys)
    # the loaders give the same frames from the bucket as from SQL
    pd.testing.assert_frame_equal(load_tickers(root), load_tickers(sqlite_url))
    pd.testing.assert_frame_equal(load_book_top(root), load_book_top(sqlite_url))
    pd.testing.assert_frame_equal(load_feed_events(root), load_feed_events(sqlite_url))
    # DuckDB (views over Arrow datasets on the bucket) and Polars
    con = connect(root)
    assert con.sql("SELECT symbol, count(*) FROM book_snapshots GROUP BY symbol ORDER BY symbol").fetchall() \
        == sorted((s, len(expected_snapshots(simulator.truth, s, 20))) for s in SYMBOLS)
    import polars as pl

    from analysis.lazy import scan

    lazy = scan(root, "tickers").filter(pl.col("symbol") == "ltc_btc").select("ts_event", "last")
    expected = load_tickers(sqlite_url, "ltc_btc", exact=True)
    assert lazy.collect().to_pandas()["last"].tolist() == expected["last"].tolist()
    # an s3fs-based reader takes a whole dataset
    frame = pd.read_parquet(f"s3://{s3.bucket}/okex/tickers", storage_options=s3.storage_options())
    assert len(frame) == len(load_tickers(sqlite_url))
    assert sorted(set(frame["symbol"].astype(str))) == sorted(SYMBOLS)

    # compaction on S3: same rows, one object per partition, still no markers
    results = await asyncio.to_thread(compact, root)
    assert results and all(r.files_before >= 2 for r in results)
    assert markers(s3.list_keys()) == []
    assert_equals_truth_and_sql(simulator, root, sqlite_url)
    pd.testing.assert_frame_equal(load_book_top(root), load_book_top(sqlite_url))

    # The secret appears nowhere (every logger at DEBUG, botocore's included); neither it nor the
    # access key id in the recorder's logs, status.json, SQLite, the Parquet objects, local journals.
    assert FAKE_SECRET not in caplog.text
    ours = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                     if r.name.startswith("recorder"))
    blobs = [ours.encode(), (tmp_path / "status.json").read_bytes(), repr(config).encode(),
             repr(recorder.status.snapshot("finished")).encode()]
    blobs += [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    client = s3.client()
    blobs += [client.get_object(Bucket=s3.bucket, Key=k)["Body"].read() for k in s3.list_keys()]
    for blob in blobs:
        assert FAKE_SECRET.encode() not in blob
        assert FAKE_ACCESS_KEY.encode() not in blob


async def test_an_s3_outage_mid_run_loses_nothing(
    simulator: Simulator, s3: S3Server, tmp_path: Path, sqlite_url: str
) -> None:
    root = f"s3://{s3.bucket}/okex"
    config = s3_config(simulator, tmp_path, root)
    config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, sql_url=sqlite_url))
    recorder, task = await start(config, simulator)
    await steps(simulator, recorder, 40)
    await wait_until(lambda: any("/book_snapshots/" in k for k in s3.list_keys()), what="a roll to S3")

    await asyncio.to_thread(s3.stop)
    try:
        await steps(simulator, recorder, 60)
        await wait_until(lambda: not recorder.writer_thread.writer.stats()["parquet"].healthy, timeout=30,
                         what="the Parquet store to notice the outage")
        status = recorder.status.snapshot("running")
        assert FAKE_SECRET not in repr(status)
    finally:
        await asyncio.to_thread(s3.start)
    await steps(simulator, recorder, 40)
    await wait_until(lambda: recorder.writer_thread.writer.stats()["parquet"].healthy, timeout=60,
                     what="the Parquet store to recover")
    await stop(recorder, task)

    assert_equals_truth_and_sql(simulator, root, sqlite_url)
    assert markers(s3.list_keys()) == []
    assert not list((tmp_path / "pq-journal").rglob("*.arrows"))  # everything rolled in the end
