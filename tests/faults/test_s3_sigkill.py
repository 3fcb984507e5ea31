"""SIGKILL of `okex-recorder run` writing Parquet to S3 (a local moto server), then a restart.

Every object visible in the bucket is a complete Parquet file (uploads are invisible until they
complete), there are no directory markers or temporaries, the restart uploads what the killed
run had journaled, nothing is stored twice, and the loss stays within the flush interval.
"""

from __future__ import annotations

import dataclasses
import io
import signal
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recorder.simulator import SimulatorSettings, SimulatorThread
from tests.collector.helpers import stored, stored_parquet, ticker_from_push, ticker_key
from tests.faults.helpers import SYMBOLS, read_status, recorder_config, start_cli, wait_for
from tests.faults.test_sigkill import _prefix_check
from tests.fixtures.s3 import FAKE_SECRET, S3Server

pytestmark = pytest.mark.faults


def test_sigkill_while_uploading_to_s3_leaves_only_complete_objects_and_the_restart_finishes(
    simulator_settings: SimulatorSettings, tmp_path: Path, s3: S3Server
) -> None:
    settings = dataclasses.replace(simulator_settings, updates_per_second=150.0)
    root = f"s3://{s3.bucket}/okex"
    url = f"sqlite:///{tmp_path / 'rec.sqlite'}"
    with SimulatorThread(settings) as sim:
        config = recorder_config(tmp_path, sim.ws_url, collector={"status_interval": 0.1},
                                 storage={"parquet_root": root, "parquet_roll_rows": 300})
        proc = start_cli(["run", "--config", str(config)], tmp_path, name="first")
        try:
            status = tmp_path / "status.json"
            wait_for(lambda: read_status(status).get("frames", {}).get("received", 0) > 3000,
                     timeout=90, what="a busy recording", proc=proc)
            wait_for(lambda: len(s3.list_keys()) > 10, timeout=30, what="objects in the bucket", proc=proc)
            proc.send_signal(signal.SIGKILL)
            killed_at = datetime.now(UTC)
            assert proc.wait(30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()

        client = s3.client()
        keys = s3.list_keys()
        # no directory markers, no temporaries
        assert keys and all(k.endswith(".parquet") and "/." not in k for k in keys)
        for key in keys:  # every visible object is a complete Parquet file
            pq.read_table(io.BytesIO(client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()))

        restarted_at = datetime.now(UTC)
        again = start_cli(["run", "--config", str(config), "--duration", "3"], tmp_path, name="second")
        assert again.wait(90) == 0, (tmp_path / "second.err").read_text()
        tickers = {s: [(p.sent_at, ticker_from_push(p.data))
                       for p in sim.truth.pushes(f"ok_sub_spot_{s}_ticker")] for s in SYMBOLS}

    in_parquet = stored_parquet(root, "tickers")  # type: ignore[arg-type]
    assert len({(t.symbol, t.ts_recv) for t in in_parquet}) == len(in_parquet)  # nothing twice
    before = [t for t in in_parquet if t.ts_recv < restarted_at]
    for s in SYMBOLS:
        _prefix_check(tickers[s], [ticker_key(t) for t in before if t.symbol == s], killed_at)
    assert [t for t in in_parquet if t.ts_recv > restarted_at], "recording did not resume"
    # the same rows as the SQL store, which both runs wrote too
    assert sorted(in_parquet, key=lambda t: (t.symbol, t.ts_recv)) == sorted(
        stored(url, "tickers"), key=lambda t: (t.symbol, t.ts_recv))
    assert not [k for k in s3.list_keys() if k.endswith("/")]
    assert not list((tmp_path / "pqj").rglob("*.arrows"))  # the journal was uploaded
    for name in ("first.err", "second.err", "first.out", "second.out", "status.json"):
        assert FAKE_SECRET not in (tmp_path / name).read_text()
