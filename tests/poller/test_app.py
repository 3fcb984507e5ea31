"""``okex-recorder poll`` end to end against a simulator thread, and the secret appears nowhere:
not in debug logs, exception texts, reprs, the SQLite file or the Parquet files."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.cli import main
from recorder.config import load_config
from recorder.errors import ConfigError
from recorder.poller.service import Poller
from recorder.simulator import Simulator, SimulatorThread
from tests.poller.conftest import API_KEY, CREDS, SECRET, RecordingSink, servable_orders, sim_settings


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(sim_settings()) as thread:
        yield thread


def _config(tmp_path: Path, sim: SimulatorThread, **poller: str) -> Path:
    extra = "".join(f"{k} = {v}\n" for k, v in poller.items())
    path = tmp_path / "poll.toml"
    path.write_text(
        f"""
[exchange]
rest_url = "{sim.sim.rest_url}"

[storage]
sql_url = "sqlite:///{tmp_path / 'rec.sqlite'}"
parquet_root = "{tmp_path / 'parquet'}"
spill_dir = "{tmp_path / 'spill'}"
flush_interval = 0.2
parquet_roll_seconds = 0.5

[log]
level = "debug"

[poller]
symbols = ["btc_usdt", "ltc_btc", "eth_btc"]
balance_interval = 0.2
order_interval = 0.2
{extra}""",
        "utf-8",
    )
    return path


def _all_bytes(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]


@pytest.mark.faults
def test_poll_records_into_sql_and_parquet_and_leaks_no_secret(
    tmp_path: Path, sim: SimulatorThread, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OKEX_API_KEY", API_KEY)
    monkeypatch.setenv("OKEX_SECRET_KEY", SECRET)
    config = _config(tmp_path, sim)
    assert main(["poll", "--config", str(config), "--duration", "1.5"]) == 0

    truth = servable_orders(sim.sim)
    with sqlite3.connect(tmp_path / "rec.sqlite") as db:
        orders = dict(db.execute("SELECT order_id, status FROM orders").fetchall())
        changes = db.execute("SELECT order_id, status FROM order_status_changes").fetchall()
        balances = db.execute("SELECT DISTINCT currency FROM balances WHERE account = 'spot'").fetchall()
    assert orders == {oid: o.status.value for oid, o in truth.items()}
    assert sorted(changes) == sorted((oid, o.status.value) for oid, o in truth.items())
    assert {c for (c,) in balances} == set(sim.sim.accounts[API_KEY].currencies())
    assert list((tmp_path / "parquet").rglob("*.parquet"))

    out, err = capfd.readouterr()
    assert "DEBUG" in err  # debug logging really was on
    closing = next(line for line in err.splitlines() if "poll finished: rows written this run: " in line)
    assert "parquet: " in closing and "sql: " in closing  # the closing line says what each store got
    assert f"order_status_changes {len(changes)}" in closing  # one row per change, all new this run
    for text in (out, err):
        assert SECRET not in text
        assert API_KEY not in text  # only ever masked
    for path, data in _all_bytes(tmp_path):
        if path.name == "poll.toml":
            continue
        assert SECRET.encode() not in data, path
        assert API_KEY.encode() not in data, path


@pytest.mark.faults
def test_poll_with_a_wrong_secret_exits_3_with_one_clear_line(
    tmp_path: Path, sim: SimulatorThread, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    wrong = SECRET[::-1]
    monkeypatch.setenv("OKEX_API_KEY", API_KEY)
    monkeypatch.setenv("OKEX_SECRET_KEY", wrong)
    assert main(["poll", "--config", str(_config(tmp_path, sim)), "--duration", "5"]) == 3
    _, err = capfd.readouterr()
    assert "error 10007" in err and "secret key is wrong" in err
    assert wrong not in err and SECRET not in err
    with sqlite3.connect(tmp_path / "rec.sqlite") as db:
        kinds = db.execute("SELECT kind, detail FROM feed_events").fetchall()
        assert db.execute("SELECT COUNT(*) FROM orders").fetchone() == (0,)
    assert [k for k, _ in kinds] == ["auth_failure"]
    for path, data in _all_bytes(tmp_path):
        assert wrong.encode() not in data, path


def test_poll_without_credentials_is_one_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    for var in ("OKEX_API_KEY", "OKEX_SECRET_KEY", "OKEX_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["poll", "--duration", "1"]) == 2
    _, err = capfd.readouterr()
    assert err.strip().splitlines()[-1].startswith("okex-recorder poll: error: no API credentials")
    assert not (tmp_path / "data").exists()  # nothing half-started


async def test_reprs_and_exceptions_never_show_the_secret(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RecordingSink()
    settings = load_config(None, env={}).poller
    texts: list[str] = [repr(CREDS), str(CREDS), repr(settings)]
    with caplog.at_level(logging.DEBUG):
        async with Poller(settings, CREDS, sink, rest_url=simulator.rest_url) as poller:
            texts.append(repr(poller))
            await poller.poll_balances()
        try:
            load_config(None, env={"OKEX_RECORDER__POLLER__SECRET_KEY": SECRET})
        except ConfigError as exc:
            texts.append(str(exc))
    texts.append(caplog.text)
    texts.extend(str(r) for r in sink.records)
    assert all(SECRET not in t for t in texts)
