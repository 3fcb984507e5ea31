"""Gap 3: SIGKILL of `okex-recorder run` mid-write, then a restart with the same configuration.

Afterwards every Parquet file is readable, the SQLite database is intact and at head, the
rows stored before the kill are an exact, gap-free prefix of what the simulator sent, the
loss is bounded by the flush interval (docs/operations.md), and the restarted process records
new rows.
"""

from __future__ import annotations

import dataclasses
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recorder.simulator import SimulatorSettings, SimulatorThread
from recorder.storage import migrate
from tests.collector.helpers import stored, ticker_from_push, ticker_key
from tests.faults.helpers import (
    SYMBOLS,
    parquet_rows,
    read_status,
    recorder_config,
    run_cli,
    start_cli,
    wait_for,
)

pytestmark = pytest.mark.faults

FLUSH_INTERVAL = 0.5
# The documented loss bound: what was received within one flush interval before the kill (plus
# the time one write takes; 1 s of margin for a busy 2-core machine) may be lost, nothing older.
LOSS_WINDOW = timedelta(seconds=FLUSH_INTERVAL + 1.0)


def _prefix_check(truth_pushes: list[tuple[datetime, tuple[object, ...]]], rows: list[tuple[object, ...]],
                  killed_at: datetime) -> int:
    """``rows`` (stored before the kill) are exactly the first pushes sent; none sent before
    ``killed_at - LOSS_WINDOW`` is missing. Returns how many sent before the kill were lost."""
    sent = [key for at, key in truth_pushes if at <= killed_at]
    assert rows == sent[: len(rows)], "rows stored before the kill are not a gap-free prefix of what was sent"
    must_have = [key for at, key in truth_pushes if at <= killed_at - LOSS_WINDOW]
    assert len(rows) >= len(must_have), f"lost {len(must_have) - len(rows)} rows older than the flush window"
    return len(sent) - len(rows)


def test_sigkill_mid_write_loses_at_most_one_flush_interval_and_recording_resumes(
    simulator_settings: SimulatorSettings, tmp_path: Path
) -> None:
    settings = dataclasses.replace(simulator_settings, updates_per_second=150.0)
    with SimulatorThread(settings) as sim:
        config = recorder_config(tmp_path, sim.ws_url, collector={"status_interval": 0.1},
                                 storage={"flush_interval": FLUSH_INTERVAL, "parquet_roll_rows": 300})
        url = f"sqlite:///{tmp_path / 'rec.sqlite'}"
        proc = start_cli(["run", "--config", str(config)], tmp_path, name="first")
        try:
            status_file = tmp_path / "status.json"
            wait_for(lambda: read_status(status_file).get("frames", {}).get("received", 0) > 3000, timeout=90,
                     what="a busy recording", proc=proc)
            # mid-write: Parquet files have been rolled and rows are flowing into SQL and the journal
            wait_for(lambda: any((tmp_path / "parquet").rglob("*.parquet")), timeout=30, what="Parquet files",
                     proc=proc)
            proc.send_signal(signal.SIGKILL)
            killed_at = datetime.now(UTC)
            assert proc.wait(30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
        last_status = read_status(tmp_path / "status.json")
        assert last_status["state"] == "running"

        # before any restart: every visible Parquet file is complete; SQLite intact and at head
        for path in (tmp_path / "parquet").rglob("*.parquet"):
            pq.read_table(path)
        assert not [p for p in (tmp_path / "parquet").rglob("*") if p.name.startswith(".")]
        with sqlite3.connect(tmp_path / "rec.sqlite") as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        migrate.require_head(url)
        shown = run_cli(["status", "--config", str(config)], tmp_path)
        assert shown.returncode == 0 and "killed" in shown.stdout, shown

        tickers = {s: [(p.sent_at, ticker_from_push(p.data))
                       for p in sim.truth.pushes(f"ok_sub_spot_{s}_ticker")] for s in SYMBOLS}
        lost_sql = sum(
            _prefix_check(tickers[s], [ticker_key(t) for t in stored(url, "tickers", symbol=s)], killed_at)
            for s in SYMBOLS)

        restarted_at = datetime.now(UTC)
        again = start_cli(["run", "--config", str(config), "--duration", "3"], tmp_path, name="second")
        assert again.wait(90) == 0, (tmp_path / "second.err").read_text()
    final = read_status(tmp_path / "status.json")
    assert final["state"] == "finished"

    # the restart rolled the killed run's journal into files: all of it readable as one dataset
    root = tmp_path / "parquet"
    in_parquet = parquet_rows(root, "tickers")
    before = [t for t in in_parquet if t.ts_recv < restarted_at]
    after_sql = [t for t in stored(url, "tickers") if t.ts_recv > restarted_at]
    assert after_sql, "recording did not resume after the restart"
    assert len({(t.symbol, t.ts_recv) for t in in_parquet}) == len(in_parquet)  # nothing twice
    lost_parquet = sum(
        _prefix_check(tickers[s], [ticker_key(t) for t in sorted(before, key=lambda t: t.ts_recv)
                                   if t.symbol == s], killed_at)
        for s in SYMBOLS)
    for table in ("book_snapshots", "feed_events"):
        parquet_rows(root, table)  # readable by pyarrow.dataset
    assert not list((tmp_path / "pqj").rglob("*.arrows"))  # the journal was rolled into files
    # what the bound allows is small next to what was recorded
    received_tickers = sum(len(v) for v in tickers.values())
    assert lost_sql <= received_tickers // 10 and lost_parquet <= received_tickers // 10
