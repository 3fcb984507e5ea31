"""Two collectors, one recording: feed events carry each collector's id; merged gaps are the uncovered ones.

Against the simulator's ground truth, through NATS into SQL (SQLite, and PostgreSQL when
``OKEX_TEST_PG_URL`` is set) and Parquet: collectors ``east`` and ``west`` record the same
symbols; ``west`` loses its connection (a gap ``east`` covered) and is then stopped mid-run;
``east`` then loses its connection (a gap nobody covered). In the first test ``west`` is
stopped cleanly (``request_stop``, as on SIGTERM); in the second it is its own
``okex-recorder run --bus`` process, killed with SIGKILL while the market moves. The merged
rule takes a collector's last feed event as its last watched moment either way. The
recording equals the truth, each row once; the merged gap measure shows exactly ``east``'s
late gap, the per-collector view shows both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis import quality
from analysis.load import load_feed_events
from recorder.collector.app import Recorder
from recorder.simulator import Simulator, SimulatorSettings
from recorder.storage import migrate
from recorder.storage.bus_config import BusConfig
from tests.bus.test_end_to_end import SYMBOLS, assert_recording_equals_truth, collector, start, write_stores
from tests.collector.helpers import wait_until
from tests.faults.helpers import recorder_config, start_cli, write_config


@pytest.fixture
def simulator_settings(simulator_settings: SimulatorSettings) -> SimulatorSettings:
    return dataclasses.replace(simulator_settings, updates_per_second=0.0)  # the test drives the market


def channels() -> list[str]:
    # depth and ticker: one accounted message per push (deals count their trades)
    return [f"ok_sub_spot_{s}_{kind}" for s in SYMBOLS for kind in ("depth", "ticker")]


def received_by(recorder: Recorder, sim: Simulator, cids: Iterable[int]) -> bool:
    """The recorder received every push the simulator sent to its connections ``cids``."""
    acc = recorder.pipeline.accounting()
    ids = set(cids)
    return all(acc.get(ch, {}).get("received", 0)
               == sum(1 for p in sim.truth.pushes(ch) if p.connection_id in ids) for ch in channels())


async def drive(sim: Simulator, steps: int, watchers: dict[str, tuple[Recorder, set[int]]]) -> None:
    for _ in range(steps):
        await sim.advance(1)
        await asyncio.sleep(0.002)
    for name, (recorder, cids) in watchers.items():
        await wait_until(lambda r=recorder, c=cids: received_by(r, sim, c), timeout=60,
                         what=f"{name}: every push")


def new_connection(sim: Simulator, known: set[int]) -> int:
    (cid,) = set(sim.ws.connections) - known
    return cid


def dead_url() -> str:
    with socket.socket() as s:  # a loopback port nobody listens on: connecting is refused
        s.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{s.getsockname()[1]}/websocket"


async def outage(sim: Simulator, recorder: Recorder, cids: set[int], steps: int,
                 watchers: dict[str, tuple[Recorder, set[int]]]) -> int:
    """The recorder loses its connection (aborted by the server, no close frame) and cannot reconnect
    while the market moves ``steps``; then it reconnects. Returns the pushes sent meanwhile (to others)."""
    conn = recorder.connections[0]
    url = conn.url
    conn.url = dead_url()  # held down until restored
    (old,) = [c for c in cids if c in sim.ws.connections]
    connects, failed = conn.counters.connects, conn.failed_connects
    sim.ws.connections[old].ws.transport.abort()
    await wait_until(lambda: old not in sim.ws.connections, what="the connection gone")
    await wait_until(lambda: conn.failed_connects > failed, what="a refused reconnection")
    before = len(sim.truth.pushes())
    await drive(sim, steps, watchers)
    sent = len(sim.truth.pushes()) - before
    seen = set(sim.ws.connections)
    conn.url = url
    await wait_until(lambda: conn.counters.connects > connects, timeout=30, what="reconnected")
    await wait_until(lambda: len(set(sim.ws.connections) - seen) == 1, what="its new connection")
    cids |= set(sim.ws.connections) - seen
    return sent


async def test_two_collectors_one_killed_recording_exact_and_only_uncovered_gaps_merged(
        simulator: Simulator, tmp_path: Path, bus: BusConfig, db_url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, db_url)
    east, west = (collector(simulator, tmp_path, bus, name) for name in ("east", "west"))
    tasks = await start([east], simulator)
    east_ids = {new_connection(simulator, set())}
    tasks += await start([west], simulator)
    west_ids = {new_connection(simulator, east_ids)}
    both = {"east": (east, east_ids), "west": (west, west_ids)}
    await drive(simulator, 30, both)

    # west is down while the market moves: a gap east covered (it received those pushes)
    covered = await outage(simulator, west, west_ids, 15, {"east": (east, east_ids)})
    assert covered > 0
    await drive(simulator, 30, both)
    await wait_until(lambda: not west.pipeline.open_spans(), timeout=30, what="west's gap closed")

    # west stops mid-run; east records on alone
    west.request_stop()
    assert (await asyncio.wait_for(tasks[1], 60)).exit_code == 0
    only_east = {"east": (east, east_ids)}
    await drive(simulator, 20, only_east)

    # east is down while the market moves: nobody covers this gap
    assert await outage(simulator, east, east_ids, 15, {}) == 0  # nobody connected: nothing sent
    await drive(simulator, 20, only_east)
    await wait_until(lambda: not east.pipeline.open_spans(), timeout=30, what="east's gap closed")
    east.request_stop()
    assert (await asyncio.wait_for(tasks[0], 60)).exit_code == 0

    parquet = tmp_path / "parquet"
    stats = await write_stores(bus, db_url, parquet)
    assert stats["sql"].collectors == {"east", "west"}
    assert_recording_equals_truth(simulator.truth, db_url, parquet)  # incl. what only east saw

    for source in (db_url, parquet):
        events = load_feed_events(source)
        assert set(events["collector"]) == {"east", "west"}  # every row carries its collector
        assert events["event_id"].is_unique
    events = load_feed_events(db_url)
    lo = events.index.min()
    hi = max(events.index.max(), events["ts_end"].max())
    symbols = list(SYMBOLS)

    own = quality.gap_intervals(events, symbols, lo, hi, by_collector=True)
    west_gaps = own[own["collector"] == "west"]
    east_gaps = own[own["collector"] == "east"]
    assert set(west_gaps["symbol"]) == set(SYMBOLS) and set(east_gaps["symbol"]) == set(SYMBOLS)
    west_stop = events[events["collector"] == "west"]["ts_end"].max()
    assert (east_gaps["start"] > west_stop).all()  # east's only gap came after west stopped
    assert (west_gaps["end"] < west_stop).all()

    merged = quality.gap_intervals(events, symbols, lo, hi)
    # exactly east's late gap: west's gap was covered by east, east's by nobody
    assert _spans(merged) == _spans(east_gaps.drop(columns="collector"))
    for _, gap in west_gaps.iterrows():
        overlapping = merged[(merged["symbol"] == gap["symbol"]) & (merged["start"] < gap["end"])
                             & (merged["end"] > gap["start"])]
        assert overlapping.empty
    cov = quality.coverage(events, symbols, lo, hi)
    assert cov.loc["*", "unwatched"] == _union(east_gaps)
    west_alone = quality.coverage(events, symbols, lo, hi, collector="west")
    assert west_alone.loc["*", "unwatched"] >= _union(west_gaps) > pd.Timedelta(0)
    assert (cov.loc[symbols, "gaps"] == 1).all()


def _spans(gaps: pd.DataFrame) -> list[tuple[object, ...]]:
    return sorted(tuple(row) for row in gaps[["symbol", "start", "end"]].itertuples(index=False, name=None))


def _union(gaps: pd.DataFrame) -> pd.Timedelta:
    spans = sorted(zip(gaps["start"], gaps["end"], strict=True))
    total, current = pd.Timedelta(0), None
    for a, b in spans:
        if current is None or a > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = (a, b)
        else:
            current = (current[0], max(current[1], b))
    if current is not None:
        total += current[1] - current[0]
    return total


def west_status(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def status_received_all(path: Path, sim: Simulator, cids: set[int]) -> bool:
    """The process whose status file is ``path`` received every push sent to ``cids`` and
    had JetStream acknowledge every row it produced."""
    status = west_status(path)
    acc = status.get("channels", {})
    rows = status.get("rows", {})
    return bool(acc) and rows.get("produced") == rows.get("written") and all(
        acc.get(ch, {}).get("received", 0) == sum(1 for p in sim.truth.pushes(ch) if p.connection_id in cids)
        for ch in channels())


async def test_a_collector_killed_with_sigkill_is_covered_and_its_gap_is_not_merged(
        simulator: Simulator, tmp_path: Path, bus: BusConfig, sqlite_url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    # the market is still while west's process starts (seconds on a loaded machine): east must not
    # take that quiet for a stall and reconnect, or its connection ids below go stale
    east = collector(simulator, tmp_path, bus, "east", stall_timeout=600.0)
    tasks = await start([east], simulator)
    east_ids = {new_connection(simulator, set())}
    # west: its own `okex-recorder run --bus` process, killed with SIGKILL mid-run
    home = tmp_path / "west"
    home.mkdir()
    config = recorder_config(home, simulator.ws_url,
                             collector={"id": "west", "channels": ["ticker", "depth", "deals"]})
    bus_section = {f.name: getattr(bus, f.name) for f in dataclasses.fields(bus)}
    write_config(home / "bus.toml", {"bus": bus_section})
    config.write_text(config.read_text() + (home / "bus.toml").read_text())
    status = home / "status.json"
    proc = start_cli(["run", "--config", str(config)], home)
    try:
        await wait_until(lambda: len(set(simulator.ws.connections) - east_ids) == 1, timeout=60,
                         what="west connected")
        west_ids = {new_connection(simulator, east_ids)}
        await wait_until(lambda: status_received_all(status, simulator, west_ids), timeout=60,
                         what="west's initial books")
        await drive(simulator, 30, {"east": (east, east_ids)})
        await wait_until(lambda: status_received_all(status, simulator, west_ids), timeout=60, what="west")

        # west's connection is aborted; it reconnects at once (a short gap east covered)
        (old,) = west_ids
        seen = set(simulator.ws.connections)
        simulator.ws.connections[old].ws.transport.abort()
        await wait_until(lambda: old not in simulator.ws.connections, what="west's connection gone")
        await wait_until(lambda: len(set(simulator.ws.connections) - seen) == 1, timeout=30,
                         what="west's new connection")
        west_ids |= set(simulator.ws.connections) - seen
        await drive(simulator, 20, {"east": (east, east_ids)})
        await wait_until(lambda: status_received_all(status, simulator, west_ids), timeout=60,
                         what="west published what it saw since reconnecting")

        # SIGKILL while the market moves: what west held unpublished is lost from its copy only
        await drive(simulator, 10, {"east": (east, east_ids)})
        proc.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(proc.wait, 30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    only_east = {"east": (east, east_ids)}
    await drive(simulator, 10, only_east)
    assert await outage(simulator, east, east_ids, 10, {}) == 0  # a gap nobody covers
    await drive(simulator, 10, only_east)
    await wait_until(lambda: not east.pipeline.open_spans(), timeout=30, what="east's gap closed")
    east.request_stop()
    assert (await asyncio.wait_for(tasks[0], 60)).exit_code == 0

    parquet = tmp_path / "parquet"
    stats = await write_stores(bus, sqlite_url, parquet)
    assert stats["sql"].collectors == {"east", "west"}
    assert_recording_equals_truth(simulator.truth, sqlite_url, parquet)

    events = load_feed_events(sqlite_url)
    assert set(events["collector"]) == {"east", "west"}
    west_events = events[events["collector"] == "west"]
    assert "shutdown" not in set(west_events["kind"])  # killed: no clean end
    lo = events.index.min()
    hi = max(events.index.max(), events["ts_end"].max())
    symbols = list(SYMBOLS)
    own = quality.gap_intervals(events, symbols, lo, hi, by_collector=True)
    west_gaps, east_gaps = own[own["collector"] == "west"], own[own["collector"] == "east"]
    assert set(west_gaps["symbol"]) == set(SYMBOLS) and set(east_gaps["symbol"]) == set(SYMBOLS)
    merged = quality.gap_intervals(events, symbols, lo, hi)
    assert _spans(merged) == _spans(east_gaps.drop(columns="collector"))  # west's gap: covered by east
