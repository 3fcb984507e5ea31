"""Gap 6: the soak run. `okex-recorder run` against a live simulator for SOAK_SECONDS (default 60;
`make soak` runs 300) while faults are injected at random (seeded): server drops, stalls and
bursts of broken frames. Memory stays flat after warm-up (RSS from /proc) and every received
frame is accounted for: per channel, received = accepted + rejected, and the accepted tickers
and deals are exactly the rows stored in SQL and in Parquet.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import statistics
import time
from collections import Counter
from pathlib import Path

import pytest

from recorder.collector.status import row_counts
from recorder.simulator import SimulatorSettings, SimulatorThread
from recorder.simulator.settings import FrameFault
from tests.collector.helpers import stored
from tests.faults.helpers import SYMBOLS, parquet_rows, read_status, recorder_config, start_cli, wait_for

pytestmark = pytest.mark.faults

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
SOAK_SEED = int(os.environ.get("SOAK_SEED", "20181106"))
RSS_GROWTH_LIMIT = 40 * 1024 * 1024  # bytes, after warm-up


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_soak_with_random_faults_keeps_memory_flat_and_accounts_for_every_frame(
    simulator_settings: SimulatorSettings, tmp_path: Path
) -> None:
    rng = random.Random(SOAK_SEED)
    settings = dataclasses.replace(simulator_settings, updates_per_second=60.0, truth_memory=20_000)
    with SimulatorThread(settings) as sim:
        config = recorder_config(
            tmp_path, sim.ws_url,
            collector={"channels": ["ticker", "depth", "deals"], "stall_timeout": 1.0,
                       "status_interval": 1.0},
            storage={"parquet_roll_rows": 5000, "parquet_roll_seconds": 10.0})
        proc = start_cli(["run", "--config", str(config)], tmp_path)
        samples: list[tuple[float, int]] = []
        injected: Counter[str] = Counter()
        try:
            wait_for(lambda: read_status(tmp_path / "status.json").get("frames", {}).get("received", 0) > 100,
                     timeout=60, what="recording to start", proc=proc)
            start = time.monotonic()
            next_fault = start + rng.uniform(1, 3)
            while (now := time.monotonic()) - start < SOAK_SECONDS:
                assert proc.poll() is None, (tmp_path / "run.err").read_text()[-2000:]
                samples.append((now - start, _rss(proc.pid)))
                if now >= next_fault:
                    fault = rng.choice(["drop", "stall", "frames", "frames"])
                    if fault == "drop":
                        sim.drop_connections(abrupt=rng.random() < 0.5)
                    elif fault == "stall":
                        sim.stall(rng.uniform(1.2, 2.0))
                    else:
                        sim.faults.inject_frames(rng.choice(list(FrameFault)), rng.randint(1, 5))
                    injected[fault] += 1
                    next_fault = now + rng.uniform(1, 3)
                time.sleep(0.25)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(90) == 0, (tmp_path / "run.err").read_text()[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    assert injected["drop"] and injected["stall"] and injected["frames"]

    # memory: flat after warm-up (a third of the run, at least 10 s)
    warm = max(10.0, SOAK_SECONDS / 3)
    baseline = statistics.median(rss for t, rss in samples if warm - 5 <= t <= warm)
    peak = max(rss for t, rss in samples if t > warm)
    print(f"soak: {SOAK_SECONDS:.0f} s, faults {dict(injected)}, RSS {baseline / 2**20:.1f} -> peak "
          f"{peak / 2**20:.1f} MiB after warm-up")
    assert peak - baseline < RSS_GROWTH_LIMIT, f"RSS grew {(peak - baseline) / 2**20:.1f} MiB after warm-up"

    # accounting: every frame received is a pong, decoded or malformed; every channel message is
    # accepted or rejected; every accepted ticker and deal is one row in SQL and one in Parquet
    status = read_status(tmp_path / "status.json")
    assert status["state"] == "finished"
    frames = status["frames"]
    assert frames["received"] == frames["pongs"] + frames["decoded"] + frames["malformed"]
    assert frames["queued"] == 0 and frames["dropped_backpressure"] == 0
    assert frames["malformed"] > 0
    channels = status["channels"]
    for name, channel in channels.items():
        assert channel["received"] == channel["accepted"] + sum(channel["rejected"].values()), name
    assert status["rows"]["produced"] == status["rows"]["written"]
    url = f"sqlite:///{tmp_path / 'rec.sqlite'}"
    counts = row_counts(url)
    root = tmp_path / "parquet"
    for table, n in status["rows"]["written"].items():
        if table == "feed_events":  # a span is written open, then closed: one SQL row, two in Parquet
            versions = parquet_rows(root, table)
            assert len(versions) == n and counts[table] == len({e.event_id for e in versions})
        else:
            assert counts[table] == n, table
    for table, kind in (("tickers", "ticker"), ("deals", "deals")):
        in_sql = Counter(r.symbol for r in stored(url, table))
        in_parquet = Counter(r.symbol for r in parquet_rows(root, table))
        for symbol in SYMBOLS:
            accepted = channels[f"ok_sub_spot_{symbol}_{kind}"]["accepted"]
            assert accepted == in_sql[symbol] == in_parquet[symbol], (table, symbol)
    assert counts["book_snapshots"] == len(parquet_rows(root, "book_snapshots"))
    assert not list((tmp_path / "pqj").rglob("*.arrows")) and not list((tmp_path / "spill").rglob("*.arrows"))
