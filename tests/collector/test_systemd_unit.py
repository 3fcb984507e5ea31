"""The systemd unit in docs/operations.md: read from the page, verified, and its ExecStart run against the
simulator with the unit's working directory and environment file (moved into a temporary directory)."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from recorder.simulator import SimulatorThread
from recorder.simulator.settings import DEMO_API_KEY, DEMO_SECRET
from tests.collector.helpers import stored, ticker_from_push, ticker_key

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "operations.md"


def doc_block(first_line: str) -> str:
    """The fenced ``ini`` block of docs/operations.md whose first line is ``first_line``."""
    for block in re.findall(r"```ini\n(.*?)```", DOC.read_text("utf-8"), re.S):
        if block.splitlines()[0] == first_line:
            return str(block)
    raise AssertionError(f"no ini block starting {first_line!r} in {DOC}")


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(doc_block("# /etc/systemd/system/okex-recorder.service"))
    return parser


def test_the_unit_has_what_an_operator_needs() -> None:
    service = unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # a bad configuration is not restarted in a loop
    assert service["KillSignal"] == "SIGTERM"
    assert service["EnvironmentFile"] == "/etc/okex-recorder/okex-recorder.env"
    assert service["WorkingDirectory"] == "/var/lib/okex-recorder"
    assert service["ReadWritePaths"] == service["WorkingDirectory"]
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "okex-recorder" and argv[1:3] == ["run", "--config"]
    env_file = doc_block("# /etc/okex-recorder/okex-recorder.env")
    env_keys = [line.split("=", 1)[0] for line in env_file.splitlines() if line and not line.startswith("#")]
    assert env_keys == ["OKEX_API_KEY", "OKEX_SECRET_KEY"]


def _installed(tmp_path: Path, ws_url: str, rest_url: str) -> tuple[list[str], Path, dict[str, str], str]:
    """The unit's ExecStart, working directory and environment file, moved under ``tmp_path``."""
    service = unit()["Service"]
    workdir = tmp_path / service["WorkingDirectory"].lstrip("/")
    workdir.mkdir(parents=True)
    argv = shlex.split(service["ExecStart"])
    config = tmp_path / argv[3].lstrip("/")
    config.parent.mkdir(parents=True)
    text = (REPO / "config.example.toml").read_text("utf-8")
    text = re.sub(r'(?m)^ws_url = .*$', f'ws_url = "{ws_url}"', text)
    text = re.sub(r'(?m)^rest_url = .*$', f'rest_url = "{rest_url}"', text)
    text = re.sub(r'(?m)^symbols = \["btc_usdt", "eth_usdt"\]', 'symbols = ["btc_usdt", "ltc_btc"]', text)
    text = re.sub(r'(?m)^flush_interval = .*$', "flush_interval = 0.2", text)
    config.write_text(text, "utf-8")
    env_file = tmp_path / service["EnvironmentFile"].lstrip("/")
    env_file.parent.mkdir(parents=True, exist_ok=True)
    values = {"OKEX_API_KEY": DEMO_API_KEY, "OKEX_SECRET_KEY": DEMO_SECRET}
    lines = []
    for line in doc_block("# /etc/okex-recorder/okex-recorder.env").splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={values[key]}" if key in values else line)
    env_file.write_text("\n".join(lines) + "\n")
    env_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKEX_")}
    for line in env_file.read_text().splitlines():  # what systemd does with EnvironmentFile=
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            env[key] = value
    binary = Path(sys.executable).with_name("okex-recorder")
    assert binary.exists(), binary
    argv = [str(binary), *argv[1:3], str(config)]
    unit_text = doc_block("# /etc/systemd/system/okex-recorder.service")
    unit_text = unit_text.replace(service["ExecStart"], shlex.join(argv))
    unit_text = unit_text.replace(service["WorkingDirectory"], str(workdir))
    unit_text = unit_text.replace(service["EnvironmentFile"], str(env_file))
    return argv, workdir, env, unit_text


def test_the_units_command_line_records_into_its_working_directory(
    tmp_path: Path, simulator_thread: SimulatorThread
) -> None:
    sim = simulator_thread
    argv, workdir, env, _ = _installed(tmp_path, sim.ws_url, sim.rest_url)
    proc = subprocess.run([*argv, "--duration", "4"], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "poller on with" in proc.stderr  # the environment file's credentials were used
    assert DEMO_SECRET not in proc.stderr + proc.stdout
    data = workdir / "data"
    assert (data / "status.json").exists() and (data / "parquet").is_dir()
    url = f"sqlite:///{data / 'recording.sqlite'}"
    for symbol in ("btc_usdt", "ltc_btc"):
        sent = [ticker_from_push(p.data) for p in sim.truth.pushes(f"ok_sub_spot_{symbol}_ticker")]
        rows = [ticker_key(t) for t in stored(url, "tickers", symbol=symbol)]
        assert rows and rows == sent[:len(rows)], symbol
    balances = stored(url, "balances")
    account = sim.demo_account
    assert {b.currency for b in balances if b.account == "spot"} == set(account.currencies())
    okb = [b for b in balances if b.currency == "okb" and b.account == "spot"]
    assert okb and all(b.free == Decimal(0) and b.frozen == Decimal(0) for b in okb)


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    _, _, _, unit_text = _installed(tmp_path, "ws://127.0.0.1:1/ws/v1", "http://127.0.0.1:1/api/v1")
    path = tmp_path / "okex-recorder.service"
    path.write_text(unit_text)
    proc = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=120)
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if str(path) in line]
    assert proc.returncode == 0 and not complaints, proc.stdout + proc.stderr
