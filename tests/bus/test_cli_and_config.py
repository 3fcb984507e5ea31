"""``[bus]`` configuration, ``store`` / ``run --bus`` arguments, and a real SIGKILL of a writer process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from recorder.cli import main
from recorder.config import load_config
from recorder.errors import ConfigError
from recorder.simulator import SimulatorThread
from recorder.storage import migrate
from recorder.storage.bus import BusStore
from recorder.storage.bus_config import BusConfig
from tests.bus.helpers import stream_state, wait_drained
from tests.bus.test_bus_store import tickers
from tests.collector.helpers import stored


def test_bus_section_is_read_and_checked() -> None:
    config = load_config(env={"OKEX_RECORDER__BUS__URL": "nats://10.0.0.5:4222",
                              "OKEX_RECORDER__BUS__DUPLICATE_WINDOW": "120"},
                         overrides={"bus": {"stream": "REC", "max_bytes": 10_000_000},
                                    "collector": {"id": "tokyo-1"}})
    assert config.bus == BusConfig(url="nats://10.0.0.5:4222", stream="REC", max_bytes=10_000_000,
                                   duplicate_window=120.0)
    assert config.collector.id == "tokyo-1"
    assert load_config(env={}).bus.url == ""  # no bus by default: the embedded setup is unchanged
    for bad, match in (({"url": "http://x:4222"}, "bus.url"), ({"stream": "a.b"}, "bus.stream"),
                       ({"retention": "workqueue"}, "bus.retention"), ({"max_age": 60.0}, "duplicate_window"),
                       ({"duplicate_window": 0}, "duplicate_window"), ({"subject_prefix": "a.>"}, "prefix")):
        with pytest.raises(ConfigError, match=match):
            load_config(env={}, overrides={"bus": bad})


def test_store_command_refuses_missing_arguments_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["store", "--sql-url", "sqlite:///x.sqlite"]) == 2
    assert "--bus nats://HOST:PORT" in capsys.readouterr().err
    assert main(["store", "--bus", "nats://127.0.0.1:4222"]) == 2
    assert "--sql-url and/or --parquet-root" in capsys.readouterr().err


async def test_writer_process_killed_mid_run_resumes_without_loss_or_doubles(
        bus: BusConfig, tmp_path: Path, sqlite_url: str) -> None:
    rows = [t for s in ("btc_usdt", "ltc_btc", "eth_btc") for t in tickers(600, symbol=s)]
    store = BusStore(bus, collector_id="c")
    try:
        await asyncio.to_thread(store.write_batch, rows)
    finally:
        store.close()
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    env = {**os.environ, "OKEX_RECORDER__BUS__STREAM": bus.stream,
           "OKEX_RECORDER__BUS__SUBJECT_PREFIX": bus.subject_prefix}
    cmd = [sys.executable, "-m", "recorder.cli", "store", "--bus", bus.url, "--sql-url", sqlite_url,
           "--durable", "w", "--batch", "25", "--ack-wait", "2"]
    engine = sa.create_engine(sqlite_url, poolclass=sa.pool.NullPool)

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM tickers")).scalar_one())

    log = tmp_path / "writer.log"

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as err:
            return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)

    writer = start()
    try:
        deadline = time.monotonic() + 60
        while count() == 0:
            assert writer.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the writer stored nothing"
            await asyncio.sleep(0.01)
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        assert 0 < count() < len(rows)  # killed mid-run
        writer = start()
        await wait_drained(bus, ("w-sql",))
        writer.send_signal(signal.SIGTERM)
        assert writer.wait(30) == 0, log.read_text()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(10)
        engine.dispose()
    got = stored(sqlite_url, "tickers")
    assert len(got) == len(rows)
    key = lambda t: (t.symbol, t.ts_event, t.buy)  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, rows))


def test_run_with_bus_publishes_and_touches_no_database(
        simulator_thread: SimulatorThread, bus: BusConfig, tmp_path: Path) -> None:
    config = tmp_path / "recorder.toml"
    config.write_text(
        f'[exchange]\nws_url = "{simulator_thread.ws_url}"\n'
        f'[collector]\nsymbols = ["btc_usdt"]\nchannels = ["ticker", "depth"]\nid = "cli-test"\n'
        f'status_file = "{tmp_path / "status.json"}"\n'
        f'[storage]\nsql_url = "sqlite:///{tmp_path / "never.sqlite"}"\nspill_dir = "{tmp_path / "spill"}"\n'
        f'parquet_root = "{tmp_path / "pq"}"\nparquet_journal_dir = "{tmp_path / "pqj"}"\n'
        f'[bus]\nstream = "{bus.stream}"\nsubject_prefix = "{bus.subject_prefix}"\n')
    assert main(["run", "--config", str(config), "--bus", bus.url, "--duration", "2"]) == 0
    count, _ = asyncio.run(stream_state(bus))
    assert count > 0
    assert not (tmp_path / "never.sqlite").exists() and not (tmp_path / "pq").exists()


def test_store_refuses_a_database_below_head(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    assert main(["store", "--bus", "nats://127.0.0.1:4222", "--sql-url", sqlite_url]) == 2
    assert "okex-recorder db upgrade" in capsys.readouterr().err


async def test_an_undecodable_message_is_terminated_and_the_rest_written(
        bus: BusConfig, tmp_path: Path, sqlite_url: str) -> None:
    import nats

    from recorder.storage.bus import HEADER_DATASET
    from recorder.storage.consume import WorkerStats, consume, open_stores

    store = BusStore(bus, collector_id="c")
    try:
        await asyncio.to_thread(store.write_batch, tickers(5))
        nc = await nats.connect(bus.url)
        try:
            await nc.jetstream().publish(f"{bus.subject_prefix}.okex_v1.tickers.btc_usdt", b"not arrow",
                                         headers={HEADER_DATASET: "tickers", "Nats-Msg-Id": "garbage"})
            await nc.jetstream().publish(f"{bus.subject_prefix}.okex_v1.x.y", b"{}")  # not ours at all
        finally:
            await nc.close()
        await asyncio.to_thread(store.write_batch, tickers(8)[5:])
    finally:
        store.close()
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    stop = asyncio.Event()
    stats: dict[str, WorkerStats] = {}
    task = asyncio.create_task(consume(bus, open_stores(sqlite_url, None), stop, durable="w", stats=stats))
    try:
        await wait_drained(bus, ("w-sql",))
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert [t.ts_event for t in stored(sqlite_url, "tickers")] == [t.ts_event for t in tickers(8)]
    assert (stats["sql"].refused, stats["sql"].messages, stats["sql"].rows) == (2, 8, 8)
