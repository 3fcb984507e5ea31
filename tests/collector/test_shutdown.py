"""The `run` process: SIGTERM during a busy recording loses nothing received; bad config is one line."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recorder.collector.status import row_counts
from recorder.simulator import SimulatorSettings, SimulatorThread

pytestmark = pytest.mark.faults


def _config(tmp_path: Path, ws_url: str, extra: str = "") -> Path:
    f = tmp_path / "recorder.toml"
    f.write_text(
        f'[exchange]\nws_url = "{ws_url}"\n'
        '[collector]\nsymbols = ["btc_usdt", "ltc_btc", "eth_btc"]\nchannels = ["ticker", "depth", "deals"]\n'
        'ping_interval = 2.0\n'  # the fixture's simulator closes a connection idle 5 s without a ping
        f'status_interval = 0.2\nstatus_file = "{tmp_path / "status.json"}"\n{extra}'
        f'[storage]\nsql_url = "sqlite:///{tmp_path / "rec.sqlite"}"\n'
        f'parquet_root = "{tmp_path / "parquet"}"\n'
        f'spill_dir = "{tmp_path / "spill"}"\nparquet_journal_dir = "{tmp_path / "pqj"}"\n'
        "flush_interval = 0.5\n"
    )
    return f


def _closed_spans(url: str) -> int:
    """Feed-event rows of spans that opened and closed (each written twice: open, then close)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            q = "SELECT count(*) FROM feed_events WHERE ts_end IS NOT NULL AND ts_end > ts_start"
            return int(conn.execute(sa.text(q)).scalar_one())
    finally:
        engine.dispose()


def _status(path: Path) -> dict[str, object]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def test_sigterm_during_a_busy_recording_flushes_everything_received_and_exits_0(
    simulator_settings: SimulatorSettings, tmp_path: Path
) -> None:
    settings = dataclasses.replace(simulator_settings, updates_per_second=300.0)
    with SimulatorThread(settings) as sim:
        config = _config(tmp_path, sim.ws_url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OKEX_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "recorder.cli", "run", "--config", str(config)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while _status(tmp_path / "status.json").get("frames", {}).get("received", 0) < 2000:  # type: ignore[union-attr]
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the recorder did not get busy in time"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stderr
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "finished"
    frames = status["frames"]
    assert frames["dropped_backpressure"] == 0 and frames["queued"] == 0
    assert frames["received"] == frames["pongs"] + frames["decoded"] + frames["malformed"]
    for name, channel in status["channels"].items():
        assert channel["received"] == channel["accepted"] + sum(channel["rejected"].values()), name
    assert status["rows"]["produced"] == status["rows"]["written"]
    url = f"sqlite:///{tmp_path / 'rec.sqlite'}"
    counts = row_counts(url)
    closed_spans = _closed_spans(url)
    for table, n in status["rows"]["written"].items():
        # A span is written when it opens and again when it closes; SQL keeps one row per event_id.
        merged = closed_spans if table == "feed_events" else 0
        assert counts[table] == n - merged, table
    tickers = sum(c["accepted"] for name, c in status["channels"].items() if name.endswith("_ticker"))
    deals = sum(c["accepted"] for name, c in status["channels"].items() if name.endswith("_deals"))
    assert counts["tickers"] == tickers and counts["deals"] == deals and tickers > 0


def test_bad_config_is_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    config = _config(tmp_path, "ws://127.0.0.1:9/ws/v1", extra="symbol = ['btc_usdt']\n")
    proc = subprocess.run(
        [sys.executable, "-m", "recorder.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "okex-recorder run: error: config: unknown key 'collector.symbol' (did you mean 'symbols'?)"
    ]
    assert not (tmp_path / "status.json").exists() and not (tmp_path / "rec.sqlite").exists()
