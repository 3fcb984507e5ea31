"""``[storage] writer_process``: SIGKILL of the writer process, and of the collector, are tested faults.

* the writer process is killed (twice) while `okex-recorder run` records from the simulator: the
  collector restarts it and sends the unacknowledged batches again; after a clean stop every ticker
  the simulator sent is in SQL exactly once, in order, the same in Parquet, and the accounting adds
  up (produced = written by each store + quarantined);
* the collector (a process driving a :class:`ProcessWriter`) is killed: the writer process notices
  the end of the pipe, closes its storage writer (the Parquet journal rolled into files) and exits;
  every batch the collector had seen acknowledged is stored, in both stores, nothing twice;
* the writer process cannot be started again for a while: the status says so (every store unhealthy,
  ``writer process down``, the held rows pending) and ``flush`` raises, until it is back.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.dataset as pads
import pytest
import sqlalchemy as sa

from recorder.errors import StoreUnavailableError
from recorder.records import FeedEventKind
from recorder.simulator import SimulatorSettings, SimulatorThread
from recorder.storage import migrate
from recorder.storage.process import ProcessWriter
from tests.collector.helpers import stored, ticker_from_push, ticker_key
from tests.faults.helpers import (
    SYMBOLS,
    parquet_rows,
    read_status,
    recorder_config,
    start_cli,
    stop,
    wait_for,
)
from tests.faults.writer_process import flaky_writer
from tests.fixtures.storage import sample_deal

pytestmark = pytest.mark.faults


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc/<n>/stat)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def _writer_child(pid: int) -> int | None:
    for child in _children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:  # not the resource tracker
            return child
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_writer_process_killed_twice_nothing_lost_or_doubled(simulator_settings: SimulatorSettings,
                                                           tmp_path: Path) -> None:
    settings = dataclasses.replace(simulator_settings, updates_per_second=40.0)
    with SimulatorThread(settings) as sim:
        # flush_interval 2 s: the queue's age bound (10 s) covers a restart on a busy machine
        config = recorder_config(tmp_path, sim.ws_url,
                                 storage={"writer_process": True, "flush_interval": 2.0,
                                          "parquet_roll_rows": 200})
        url = f"sqlite:///{tmp_path / 'rec.sqlite'}"
        proc = start_cli(["run", "--config", str(config)], tmp_path)
        status_file = tmp_path / "status.json"
        try:
            for kill in range(2):
                wait_for(lambda: _writer_child(proc.pid) is not None, timeout=90, what="the writer process",
                         proc=proc)
                child = _writer_child(proc.pid)
                assert child is not None
                written = sum(read_status(status_file).get("rows", {}).get("written", {}).values())
                wait_for(lambda w=written: sum(read_status(status_file).get("rows", {}).get("written", {})
                                               .values()) > w + 50,
                         timeout=90, what="rows written by the writer process", proc=proc)
                os.kill(child, signal.SIGKILL)
                wait_for(lambda c=child: _writer_child(proc.pid) not in (None, c), timeout=90,
                         what=f"a restarted writer process ({kill + 1})", proc=proc)
            wait_for(lambda: all(s["healthy"] for s in read_status(status_file)["storage"]["stores"].values())
                     and read_status(status_file)["frames"]["received"] > 0,
                     timeout=60, what="healthy stores again", proc=proc)
            time.sleep(1.0)
            stopped_at = datetime.now(UTC)
        finally:
            assert stop(proc) == 0, (tmp_path / "run.err").read_text()[-3000:]
        err = (tmp_path / "run.err").read_text()
        assert err.count("writer process lost") >= 2 and "writer process back" in err
        final = read_status(status_file)
        assert final["frames"]["dropped_backpressure"] == 0
        # SQL: every ticker sent before the stop, once, exactly, in order: what the simulator sent, less
        # only tickers sent while the connection was down (a disconnect or stall span: a machine busy
        # restarting the writer process can stall the feed; the gap is then data, not a loss)
        events = stored(url, "feed_events", order_by="ts_start")
        gaps = [(e.ts_start - timedelta(seconds=1), e.ts_end or stopped_at) for e in events
                if e.kind in (FeedEventKind.DISCONNECTED, FeedEventKind.STALL)]
        for symbol in SYMBOLS:
            pushes = sim.truth.pushes(f"ok_sub_spot_{symbol}_ticker")
            sent = [ticker_from_push(p.data) for p in pushes]
            rows = [ticker_key(t) for t in stored(url, "tickers", symbol=symbol)]
            at = {key: i for i, key in enumerate(sent)}
            where = [at.get(r, -1) for r in rows]
            why = (symbol, [(e.kind.value, e.ts_start, e.ts_end, e.detail) for e in events], err[-2000:])
            assert -1 not in where and where == sorted(set(where)), why  # each sent, once, in order
            missing = sorted(set(range(where[-1] + 1)) - set(where)) if where else []
            assert all(any(a <= pushes[i].sent_at <= b for a, b in gaps) for i in missing), (missing, why)
            before = [p for p in pushes if p.sent_at <= stopped_at - timedelta(seconds=1)]
            assert len(rows) + len(missing) >= len(before) > 0, symbol
    # Parquet holds exactly the tickers SQL holds (a batch made durable in the instant before its ack
    # was lost would be there twice: docs/operations.md "Writer process"; compared as a set)
    in_parquet = {(t.symbol, t.ts_recv, t.last) for t in parquet_rows(tmp_path / "parquet", "tickers")}
    in_sql = {(t.symbol, t.ts_recv, t.last) for s in SYMBOLS for t in stored(url, "tickers", symbol=s)}
    assert in_parquet == in_sql
    rows = final["rows"]
    for table in ("tickers", "book_snapshots"):
        produced = rows["produced"].get(table, 0)
        assert produced > 0
        for store in ("sql", "parquet"):
            written = rows["written_by_store"][store].get(table, 0)
            assert written + rows["quarantined"].get(table, 0) == produced, (table, store)
    assert not list((tmp_path / "pqj").rglob("*.arrows"))  # the journal was rolled at the stop


_DRIVER = """
import functools, json, sys, time
from recorder.storage.process import ProcessWriter
from tests.faults.writer_process import make_writer
from tests.fixtures.storage import sample_deal

def main():
    url, pq, spill = sys.argv[1:4]
    pw = ProcessWriter(functools.partial(make_writer, url, pq, spill), spill_dir=spill)
    print(json.dumps({"child": pw.pid}), flush=True)
    tid = 0
    while True:
        pw.write([sample_deal(tid + k) for k in range(1, 51)])
        tid += 50
        pw.flush()
        print(json.dumps({"acked": tid}), flush=True)
        time.sleep(0.02)

if __name__ == "__main__":
    main()
"""


def test_collector_killed_the_writer_process_stores_what_it_acknowledged_and_exits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rec.sqlite'}"
    migrate.upgrade(url)
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, str(driver), url, str(tmp_path / "pq"), str(tmp_path / "spill")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.stdout is not None
    try:
        child = json.loads(proc.stdout.readline())["child"]
        acked = 0
        while acked < 1500:
            line = proc.stdout.readline()
            assert line, "the driver ended"
            acked = json.loads(line)["acked"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        for line in proc.stdout:  # acknowledgements printed before the kill
            acked = max(acked, json.loads(line)["acked"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    deadline = time.monotonic() + 60
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the writer process outlived its collector"
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        tids = [r[0] for r in conn.execute(sa.text("SELECT tid FROM deals ORDER BY tid"))]
    engine.dispose()
    assert tids[:acked] == list(range(1, acked + 1))  # every acknowledged deal, in SQL
    assert tids == list(range(1, len(tids) + 1))  # and nothing else but the next batches, once
    in_parquet = sorted(d.tid for d in parquet_rows(tmp_path / "pq", "deals"))
    assert in_parquet == tids  # the child rolled its journal into files before it exited
    assert not list((tmp_path / "pq").rglob("*.arrows"))


def test_writer_process_down_status_says_so_and_flush_raises_until_it_is_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rec.sqlite'}"
    migrate.upgrade(url)
    marker = tmp_path / "refuse-start"
    pw = ProcessWriter(functools.partial(flaky_writer, str(marker), url, str(tmp_path / "pq"),
                                         str(tmp_path / "spill")), spill_dir=tmp_path / "spill")
    try:
        pw.write([sample_deal(t) for t in range(1, 101)])
        pw.wait_durable()  # flush() may return with the batch still in flight (max_in_flight=1)
        marker.write_text("x")  # the next start of the child fails
        child = pw.pid
        assert child is not None
        os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 30
        # dead, every thread (its pipe end closed), before the next flush sends to it: exited as
        # waitpid sees it (WNOWAIT: the ProcessWriter still reaps it)
        while os.waitid(os.P_PID, child, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        pw.write([sample_deal(t) for t in range(101, 201)])
        with pytest.raises(StoreUnavailableError, match="writer process down"):
            pw.flush()
        stats = pw.stats()
        assert set(stats) == {"sql", "parquet"}
        for st in stats.values():
            assert st.healthy is False and "writer process down" in (st.last_error or "")
            assert st.datasets["deals"].written == 100
            assert st.datasets["deals"].pending == 100
        assert pw.unacked_rows == 100
        marker.unlink()
        deadline = time.monotonic() + 90
        while True:
            try:
                pw.wait_durable()
                break
            except StoreUnavailableError:
                assert time.monotonic() < deadline, "the writer process did not come back"
                time.sleep(0.2)
        stats = pw.stats()
        for st in stats.values():
            assert st.healthy is True
            assert st.datasets["deals"].written == 200 and st.datasets["deals"].pending == 0
    finally:
        pw.close()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        tids = [r[0] for r in conn.execute(sa.text("SELECT tid FROM deals ORDER BY tid"))]
    engine.dispose()
    assert tids == list(range(1, 201))
    assert sorted(d.tid for d in parquet_rows(tmp_path / "pq", "deals")) == tids
    assert pads.dataset(tmp_path / "pq" / "deals", format="parquet").count_rows() == 200
