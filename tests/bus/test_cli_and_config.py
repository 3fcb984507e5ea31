"""``[bus]`` configuration, ``store`` / ``run --bus`` arguments, and a real SIGKILL of a writer process."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
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
        simulator_thread: SimulatorThread, bus: BusConfig, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A collector on the bus writes no database, says so in its log (where it publishes, which
    subjects, for which venues), and `status` of the finished run reports its store as healthy and its
    rows as the bus writers' (no "no SQLite file" hint about a database it never had)."""
    monkeypatch.delenv("OKEX_SQL_URL", raising=False)
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
    log = [line.split(": ", 1)[1] for line in capsys.readouterr().err.splitlines() if ": " in line]
    assert f"publishing okex_v1 rows to NATS {bus.url}, stream {bus.stream}, subjects " \
           f"{bus.subject_prefix}.> as collector cli-test" in log
    assert (f"recording okex_v1: 1 symbol from {simulator_thread.ws_url} over 1 connection(s) publishing to "
            f"NATS {bus.url}, stream {bus.stream} (the bus writers, `okex-recorder store`, write the "
            "stores)") in log
    finished = [line for line in log if line.startswith("status: finished ")]
    assert len(finished) == 1 and finished[0].endswith(", stores: bus ok, 0 open gaps"), finished
    # the status of the finished run, as the trial ran it (with the collector's configuration, on the bus)
    monkeypatch.setenv("OKEX_RECORDER__BUS__URL", bus.url)
    assert main(["status", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "store bus: healthy, 0 outages, 0 pending, 0 spilled, 0 refused" in out.splitlines()
    assert err == (
        "(row counts unavailable: this collector published to NATS JetStream and has no SQL database: its "
        "rows are in the database of the bus writers (`okex-recorder store --sql-url ...`); to count them, "
        "give status that database: --config with it as storage.sql_url (or OKEX_SQL_URL set to it, with "
        "--config), and --status-file naming this status file if that configuration names another)\n")
    assert not (tmp_path / "never.sqlite").exists()


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


def test_a_collector_of_okx_v5_alone_says_it_publishes_okx_v5_rows_under_the_prefix(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The trial's collector recorded okx_v5 alone and said "subjects triala.okex_v1.>": the line names
    the venues recorded and the subjects really published to (every row under ``<prefix>.>``)."""
    from recorder.storage.bus import open_bus_writer

    config = load_config(env={}, overrides={
        "venues": {"okex_v1": {"enabled": False}, "okx_v5": {"instruments": ["BTC-USDT", "ETH-USDT"]}},
        "bus": {"url": "nats://user:secret@127.0.0.1:4222", "stream": "TRIALA", "subject_prefix": "triala"},
        "collector": {"id": "trial-a"}, "storage": {"spill_dir": str(tmp_path / "spill")}})
    with caplog.at_level(logging.INFO, "recorder.storage"):
        writer = open_bus_writer(config)  # connects lazily: nothing is published
    writer.close()
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("publishing")] == [
        "publishing okx_v5 rows to NATS nats://***@127.0.0.1:4222, stream TRIALA, subjects triala.> as "
        "collector trial-a"]
    both = dataclasses.replace(config, venues={"okx_v5": {"instruments": ["BTC-USDT"]}})
    from recorder.storage.bus import _venues_text

    assert _venues_text(both) == "okex_v1 and okx_v5"
