"""``okex-recorder demo`` run twice into one directory: the summary describes this run, says what the
totals are, and a second run records new trades (a new market seed per run)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from recorder.collector.status import row_counts


def demo(tmp_path: Path, *extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKEX_")}
    proc = subprocess.run([sys.executable, "-m", "recorder.cli", "demo", "--duration", "2", "--rate", "20",
                           "--data-dir", "data", *extra], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def this_run(out: str) -> dict[str, list[int]]:
    """The "this run" rows table: table -> [produced, written SQL, written Parquet, added to SQL, in SQL]
    (the quarantined column, between the written and added ones, is asserted to be 0: the simulator's
    demo stream holds nothing a store cannot hold)."""
    section = out.split("== this run:", 1)[1].split("now holds:", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"  (\w+) +(\d+) +(\d+) +(\d+) +(\d+) +(\d+) +(\d+)(?:  <- (.*))?$", line)
        if m:
            assert m.group(5) == "0", line
            rows[m.group(1)] = [int(m.group(i)) for i in (2, 3, 4, 6, 7)]
    return rows


def line_of(out: str, table: str) -> str:
    section = out.split("== this run:", 1)[1].split("now holds:", 1)[0]
    return next(line for line in section.splitlines() if line.startswith(f"  {table} "))


def holds(out: str) -> dict[str, int]:
    section = out.split("now holds:", 1)[1].split("== gaps", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+) +(\d+) rows$", section, re.M)}


def seed_of(out: str) -> int:
    m = re.search(r"simulator seed (\d+)", out)
    assert m
    return int(m.group(1))


def test_second_demo_run_says_what_is_this_run_and_what_is_the_total(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'recording.sqlite'}"
    first = demo(tmp_path)
    assert "now holds: this run only" in first
    after_first = row_counts(url)
    assert holds(first) == after_first
    run1 = this_run(first)
    assert run1["tickers"][1] == run1["tickers"][2] == after_first["tickers"] > 0

    second = demo(tmp_path)
    after_second = row_counts(url)
    earlier = sum(after_first.values())
    assert f"already holds {earlier} rows from earlier runs" in second
    assert f"now holds: this run plus {earlier} rows from earlier runs" in second
    assert holds(second) == after_second
    assert seed_of(first) != seed_of(second)
    run2 = this_run(second)
    gained = {t: after_second[t] - after_first.get(t, 0) for t in after_second}
    assert {t: figures[3] for t, figures in run2.items()} == gained
    # This run's figures are this run's: tickers and deals written this run = rows SQL gained.
    for table in ("tickers", "deals", "book_snapshots"):
        produced, written_sql, written_parquet, sql_added, in_sql = run2[table]
        assert produced == written_sql == written_parquet == sql_added > 0, table
        assert in_sql == after_second[table]
        assert line_of(second, table).endswith(f"<- {after_first[table]} from earlier runs")
    # The explanation is on the line where SQL differs by design.
    assert "SQL keeps the latest state of each candle" in line_of(second, "klines")


def test_a_repeated_seed_is_explained_not_hidden(tmp_path: Path) -> None:
    """The same seed twice repeats trade ids: SQL stores each once, and the deals line says so."""
    demo(tmp_path, "--seed", "7")
    before = row_counts(f"sqlite:///{tmp_path / 'data' / 'recording.sqlite'}")
    second = demo(tmp_path, "--seed", "7")
    after = row_counts(f"sqlite:///{tmp_path / 'data' / 'recording.sqlite'}")
    _, written_sql, _, sql_added, in_sql = this_run(second)["deals"]
    assert in_sql == after["deals"]
    assert sql_added == after["deals"] - before["deals"]
    # The simulator's seeded trades (its kline and deal history) come again with the same seed.
    assert sql_added < written_sql
    assert "SQL keeps one row per trade id" in line_of(second, "deals")
