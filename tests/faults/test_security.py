"""Gap 5: nothing leaked, nothing injected, nothing listening beyond loopback.

* `run` (collector + poller, credentials from the environment, DEBUG logs) and its crash paths
  (unreachable database after the credentials were loaded; a rejected secret for `poll`): the
  secret is nowhere (stdout, stderr, status.json, SQLite bytes, Parquet, journal and spill
  files); the api key appears only masked; a database password never appears.
* Symbols carrying path traversal or SQL are refused with one clear line before they reach
  SQL, paths or channel names (config file, environment, command line, ParquetStore, writer).
* The simulator, and the recorder, listen on loopback only.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.config import load_config
from recorder.credentials import mask
from recorder.errors import ConfigError, SymbolError
from recorder.simulator import SimulatorSettings, SimulatorThread
from recorder.storage.parquet import ParquetStore
from recorder.storage.writer import StorageWriter
from tests.collector.helpers import stored
from tests.faults.helpers import (
    DEMO_API_KEY,
    DEMO_SECRET,
    all_bytes_under,
    clean_env,
    read_status,
    recorder_config,
    run_cli,
    start_cli,
    wait_for,
)
from tests.fixtures.storage import sample_deal

pytestmark = pytest.mark.faults

DB_PASSWORD = "pg-PASSW0RD-never-printed"
BAD_SYMBOLS = ("../etc", "btc_usdt'; drop table deals;--", "btc_usdt/../../x", "btc_usdt\x00")


def _listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if m := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(m.group(1))
    out = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hex_addr, hex_port = local.split(":")
            raw = bytes.fromhex(hex_addr)
            if width == 8:
                addr = ".".join(str(b) for b in reversed(raw))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                addr = ":".join(words[i:i + 2].hex() for i in range(0, 16, 2))
            out.append((addr, int(hex_port, 16)))
    return out


def _assert_nothing_leaked(blobs: list[tuple[Path, bytes]]) -> None:
    assert blobs
    for path, data in blobs:
        assert DEMO_SECRET.encode() not in data, f"the secret is in {path}"
        assert DEMO_API_KEY.encode() not in data, f"the unmasked api key is in {path}"
        assert DB_PASSWORD.encode() not in data, f"the database password is in {path}"


@pytest.fixture
def sim(simulator_settings: SimulatorSettings) -> Iterator[SimulatorThread]:
    settings = dataclasses.replace(simulator_settings, account_activity=True, account_activity_interval=0.3)
    with SimulatorThread(settings) as thread:
        yield thread


def test_run_with_credentials_at_debug_level_and_its_crash_paths_leak_no_secret(
    sim: SimulatorThread, tmp_path: Path
) -> None:
    config = recorder_config(tmp_path, sim.ws_url, rest_url=sim.rest_url, log_level="debug")
    with config.open("a") as f:
        f.write("[poller]\nbalance_interval = 0.5\norder_interval = 0.5\n")
    env = clean_env(OKEX_API_KEY=DEMO_API_KEY, OKEX_SECRET_KEY=DEMO_SECRET)
    proc = start_cli(["run", "--config", str(config), "--duration", "30"], tmp_path, env=env)
    try:
        url = f"sqlite:///{tmp_path / 'rec.sqlite'}"
        status_file = tmp_path / "status.json"
        wait_for(lambda: (read_status(status_file).get("poller") or {}).get("balance_polls", 0) >= 2
                 and read_status(status_file)["rows"]["written"].get("orders", 0) > 0,
                 timeout=60, what="balances and orders polled", proc=proc)
        # the recorder itself listens on nothing; the simulator on loopback only
        assert _listening(proc.pid) == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (tmp_path / "run.err").read_text()
    assert "DEBUG" in err and f"api_key='{mask(DEMO_API_KEY)}'" in err  # shown, masked
    assert stored(url, "balances") and stored(url, "orders")

    # crash path 1: credentials loaded, then the database is unreachable (password in the URL)
    # (the password comes from OKEX_SQL_URL, as documented, so no file holds it)
    pg_env = {**env, "OKEX_SQL_URL": f"postgresql+psycopg://rec:{DB_PASSWORD}@127.0.0.1:9/rec"}
    failed = run_cli(["run", "--config", str(config)], tmp_path, env=pg_env)
    assert failed.returncode != 0
    assert "rec:***@127.0.0.1:9/rec" in failed.stderr
    # crash path 2: `poll` with a secret the exchange rejects (exit 3, one clear line)
    wrong = run_cli(["poll", "--config", str(config), "--duration", "20"], tmp_path,
                    env=clean_env(OKEX_API_KEY=DEMO_API_KEY, OKEX_SECRET_KEY=DEMO_SECRET[::-1]))
    assert wrong.returncode == 3, wrong.stderr
    # `status` of a configuration whose database URL has a password: masked
    shown = run_cli(["status", "--config", str(config)], tmp_path, env=pg_env)
    assert "***" in shown.stdout + shown.stderr

    outputs = [(Path(name), text.encode()) for name, text in (
        ("crash.out", failed.stdout), ("crash.err", failed.stderr), ("poll.err", wrong.stderr),
        ("poll.out", wrong.stdout), ("status.out", shown.stdout), ("status.err", shown.stderr))]
    assert DEMO_SECRET[::-1].encode() not in b"".join(b for _, b in outputs)
    # everything the runs left: logs, status.json, SQLite (+WAL), Parquet, journals, spill files
    _assert_nothing_leaked(outputs + all_bytes_under(tmp_path))
    assert any(p.suffix == ".parquet" for p, _ in all_bytes_under(tmp_path / "parquet"))


@pytest.mark.parametrize("symbol", BAD_SYMBOLS)
def test_hostile_symbols_are_refused_before_sql_paths_or_channels(symbol: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"collector.symbols: malformed symbol"):
        load_config(env={}, overrides={"collector": {"symbols": [symbol]}})
    with pytest.raises(ConfigError, match=r"malformed symbol"):
        load_config(env={"OKEX_RECORDER__COLLECTOR__SYMBOLS": f"btc_usdt,{symbol}"})
    with pytest.raises(ConfigError, match=r"poller.symbols: malformed symbol"):
        load_config(env={}, overrides={"poller": {"symbols": [symbol]}})
    with pytest.raises(ConfigError, match=r"malformed symbol"):
        load_config(env={}, overrides={"collector": {"symbols": ["btc_usdt"],
                                                     "symbol_channels": {symbol: ["ticker"]}}})
    store = ParquetStore(tmp_path / "pq", journal_dir=tmp_path / "j", fsync=False)
    with pytest.raises(SymbolError):
        store.write_batch([sample_deal(1, symbol=symbol)])
    store.close()
    # Through the writer the record is screened: quarantined (reason + original values), never a path.
    writer = StorageWriter(None, ParquetStore(tmp_path / "pq2", journal_dir=tmp_path / "j2", fsync=False))
    writer.write([sample_deal(1, symbol=symbol), sample_deal(2)])
    writer.close()
    assert writer.quarantine_stats()["by_dataset"] == {"deals": 1}
    assert [p.parent.name for p in (tmp_path / "pq2" / "deals").rglob("*.parquet")] == ["symbol=btc_usdt"]
    quarantined = (tmp_path / "pq2" / "quarantine").rglob("*.parquet")
    assert [p.parent.name for p in quarantined] == ["connection=storage"]
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".arrows"]
    assert not list(tmp_path.parent.glob("etc")) and not list(tmp_path.rglob("*etc*"))


def test_hostile_symbols_on_the_command_line_are_one_line_and_nothing_starts(tmp_path: Path) -> None:
    symbol = BAD_SYMBOLS[1]
    config = recorder_config(tmp_path, "ws://127.0.0.1:9/ws/v1", collector={"symbols": [symbol]})
    procs = {
        "run": subprocess.Popen([sys.executable, "-m", "recorder.cli", "run", "--config", str(config)],
                                cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True),
        "simulate": subprocess.Popen([sys.executable, "-m", "recorder.cli", "simulate", "--symbols", symbol],
                                     cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True),
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (name, err)
        assert err.count("\n") == 1 and "malformed symbol" in err, (name, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recorder.toml"]  # nothing half-started


def test_the_simulator_listens_on_loopback_only(tmp_path: Path) -> None:
    proc = start_cli(["simulate", "--seed", "3"], tmp_path, name="simulate")
    try:
        wait_for(lambda: "Ctrl-C" in (tmp_path / "simulate.out").read_text(), timeout=60,
                 what="the simulator to listen", proc=proc)
        sockets = _listening(proc.pid)
        assert len(sockets) == 2  # WebSocket and REST
        assert {addr for addr, _ in sockets} == {"127.0.0.1"}
        out = (tmp_path / "simulate.out").read_text()
        assert all(f"127.0.0.1:{port}" in out for _, port in sockets)
    finally:
        proc.terminate()
        proc.wait(30)
