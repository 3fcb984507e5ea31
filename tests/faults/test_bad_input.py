"""Gap 7: bad configuration and bad command-line input, for every subcommand.

Each case runs `okex-recorder` in a fresh directory and must end with exactly one line on
stderr naming the command and the problem, a non-zero exit code, and nothing half-started:
no data directory, database, status, Parquet or journal file appears.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.faults.helpers import DEMO_API_KEY, clean_env

pytestmark = pytest.mark.faults

BAD_VALUE = "[collector]\nping_interval = -1\n"
BAD_TOML = "[collector\nsymbols = ["
UNKNOWN_KEY = "[storage]\nsql_uri = 'sqlite:///x.sqlite'\n"
PG_DOWN = "postgresql+psycopg://rec:pw-NOT-SHOWN@127.0.0.1:9/rec"

# (command, argv, config file text or None, extra environment, expected text in the one line)
CASES: list[tuple[str, list[str], str | None, dict[str, str], str]] = [  # "" = the top-level parser
    ("run", ["run", "--config", "c.toml"], BAD_VALUE, {}, "collector.ping_interval"),
    ("run", ["run", "--config", "c.toml"], BAD_TOML, {}, "c.toml"),
    ("run", ["run", "--config", "c.toml"], UNKNOWN_KEY, {}, "unknown key 'storage.sql_uri'"),
    ("run", ["run", "--config", "missing.toml"], None, {}, "missing.toml"),
    ("run", ["run", "--duration", "0"], None, {}, "--duration"),
    ("run", ["run", "--duration", "soon"], None, {}, "--duration"),
    ("run", ["run"], None, {"OKEX_RECORDER__COLLECTOR__SYMBOLS": "../etc"}, "malformed symbol"),
    ("run", ["run"], None, {"OKEX_SQL_URL": PG_DOWN}, "rec:***@127.0.0.1:9/rec"),
    ("run", ["run"], None, {"OKEX_API_KEY": DEMO_API_KEY}, "OKEX_SECRET_KEY"),
    ("poll", ["poll"], None, {}, "credentials"),
    ("poll", ["poll", "--config", "c.toml"], "[poller]\nbalance_interval = 0\n", {},
     "poller.balance_interval"),
    ("poll", ["poll", "--duration", "-1"], None, {}, "--duration"),
    ("simulate", ["simulate", "--seed", "x"], None, {}, "--seed"),
    ("simulate", ["simulate", "--config", "missing.toml"], None, {}, "missing.toml"),
    ("simulate", ["simulate", "--config", "c.toml"], "[simulator]\nbook_depth = 5\n", {}, "book_depth"),
    ("simulate", ["simulate", "--symbols", "btc_usdt,../x"], None, {}, "malformed symbol"),
    ("db", ["db"], None, {}, "okex-recorder db"),
    ("db", ["db", "downgrade"], None, {}, "REVISION is required"),
    ("db", ["db", "current", "--sql-url", "not a url"], None, {}, "URL"),
    ("db", ["db", "current", "--sql-url", PG_DOWN], None, {}, "rec:***@127.0.0.1:9/rec"),
    ("compact", ["compact", "--parquet-root", "nowhere"], None, {}, "nowhere"),
    ("compact", ["compact", "--parquet-root", ".", "--date", "2026-13-45"], None, {}, "--date"),
    ("compact", ["compact", "--dataset", "../deals"], None, {}, "--dataset"),
    ("status", ["status"], None, {}, "status file"),
    ("status", ["status", "--config", "c.toml"], BAD_VALUE, {}, "collector.ping_interval"),
    ("", ["status", "--json", "extra"], None, {}, "unrecognized arguments: extra"),
    ("", ["frobnicate"], None, {}, "invalid choice"),
]


Case = tuple[str, list[str], str | None, dict[str, str], str]


def _run(case: Case, cwd: Path) -> subprocess.CompletedProcess[str]:
    _, argv, text, env, _ = case
    cwd.mkdir()
    if text is not None:
        (cwd / "c.toml").write_text(text)
    return subprocess.run([sys.executable, "-m", "recorder.cli", *argv], cwd=cwd, env=clean_env(**env),
                          capture_output=True, text=True, timeout=120)


def test_every_subcommand_refuses_bad_input_in_one_line_with_nothing_half_started(tmp_path: Path) -> None:
    dirs = [tmp_path / f"case{i}" for i in range(len(CASES))]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_run, CASES, dirs))
    problems = []
    for case, cwd, proc in zip(CASES, dirs, results, strict=True):
        command, argv, text, _, expected = case
        prefix = f"okex-recorder {command}: error: " if command else "okex-recorder: error: "
        lines = proc.stderr.splitlines()
        left = sorted(p.name for p in cwd.iterdir())
        if (proc.returncode == 0 or len(lines) != 1 or not lines[0].startswith(prefix)
                or expected not in lines[0] or "pw-NOT-SHOWN" in proc.stderr + proc.stdout
                or left != (["c.toml"] if text is not None else [])):
            problems.append(f"{argv}: exit {proc.returncode}, stderr {proc.stderr!r}, files {left}")
    assert not problems, "\n".join(problems)
