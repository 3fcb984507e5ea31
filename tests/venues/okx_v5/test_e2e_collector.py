"""okx_v5 through the real collector (``Recorder``: the generic connection shell, the pipeline, the
writer thread) into an in-memory writer, compared with the v5 simulator's ground truth: books level
for level, a sequence gap as a span then a correct book, a notice as a planned gap and a reconnect
made by the shell. (``test_e2e_storage.py`` does the same through SQLite and Parquet.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from recorder.collector.app import Recorder
from recorder.config import Config, load_config
from recorder.records import BookSnapshot, Deal, FeedEvent, FeedEventKind
from recorder.simulator.okx_v5 import Simulator, V5Settings
from tests.collector.conftest import MemoryWriter
from tests.collector.helpers import wait_until

INST = "BTC-USDT"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(V5Settings(seed=11, updates_per_second=0.0, instruments=(INST,))) as s:
        yield s


def v5_config(tmp_path: Path, sim: Simulator, **table: Any) -> Config:
    v5: dict[str, Any] = {
        "public_url": sim.public_url, "business_url": sim.business_url, "private_url": sim.private_url,
        "rest_url": sim.rest_url, "instruments": [INST], "channels": ["tickers", "books", "trades"],
        "candle_bars": ["1m"], "ping_after": 1.0, "pong_timeout": 2.0, "stall_timeout": 5.0,
        "reconnect_initial": 0.05, "reconnect_cap": 0.5,
    }  # fmt: skip
    v5.update(table)
    return load_config(env={}, overrides={
        "venues": {"okex_v1": {"enabled": False}, "okx_v5": v5},
        "collector": {"status_interval": 0.5, "status_file": str(tmp_path / "status.json")},
    })  # fmt: skip


async def test_the_collector_shell_records_okx_v5_as_sent(sim: Simulator, tmp_path: Path) -> None:
    writer = MemoryWriter()
    recorder = Recorder(v5_config(tmp_path, sim), writer)
    task = asyncio.create_task(recorder.run())

    def caught_up() -> bool:
        pushes = sim.truth.pushes(f"books:{INST}")
        sessions: list[Any] = list(recorder.pipeline.sessions.values())
        books = [s.core.book("books", INST) for s in sessions if getattr(s, "core", None) is not None]
        return bool(pushes) and any(b is not None and b.seq_id == pushes[-1].seq for b in books)

    async def steps(n: int) -> None:
        for _ in range(n):
            await sim.advance(1, INST)
            await asyncio.sleep(0.002)
        await wait_until(caught_up, what="the book to catch up")

    await wait_until(caught_up, what="the first book")
    await steps(20)
    sim.inject_gap(INST)
    await steps(10)
    await steps(10)
    assert sim.notice(close_after=20.0) == 1

    def events() -> list[FeedEvent]:
        with writer.lock:
            return [r for r in writer.records if isinstance(r, FeedEvent)]

    def planned_closed() -> bool:
        return any(e.kind is FeedEventKind.PLANNED_DISCONNECT and e.ts_end is not None for e in events())

    await wait_until(planned_closed, what="data on the replacement public connection")
    await steps(10)
    recorder.request_stop()
    assert (await asyncio.wait_for(task, 30)).exit_code == 0
    await asyncio.to_thread(writer.closed.wait, 10)

    truth = {p.seq: p for p in sim.truth.pushes(f"books:{INST}") if p.seq is not None}
    snaps = [s for s in writer.of(BookSnapshot) if s.source == "books"]
    assert len(snaps) > 20
    for s in snaps:
        assert s.seq_id is not None and s.venue == "okx_v5"
        t = truth[s.seq_id]
        assert s.bids == tuple((Decimal(lv[0]), Decimal(lv[1])) for lv in (t.bids or ())[:20])
        assert s.asks == tuple((Decimal(lv[0]), Decimal(lv[1])) for lv in (t.asks or ())[:20])
    deals = writer.of(Deal)
    items = [p.data for p in sim.truth.pushes(f"trades:{INST}")]
    assert sorted((d.tid, d.price, d.amount) for d in deals) == sorted(
        (int(i["tradeId"]), Decimal(i["px"]), Decimal(i["sz"])) for i in items)
    kinds = [e.kind for e in events()]
    breaks = [e for e in events() if e.kind is FeedEventKind.SEQUENCE_BREAK]
    assert len(breaks) == 2 and breaks[1].ts_end is not None
    planned = [e for e in events() if e.kind is FeedEventKind.PLANNED_DISCONNECT]
    assert len(planned) == 2 and planned[1].ts_end is not None
    assert FeedEventKind.DISCONNECTED not in kinds
    assert kinds.count(FeedEventKind.CONNECTED) == 3  # public, business, the public replacement


async def test_the_shell_pings_okx_v5_only_when_nothing_was_received(tmp_path: Path) -> None:
    """§2.3: the text ``ping`` goes out once nothing was received for ``ping_after`` s; a feed
    that keeps sending is never pinged (v1 pings on a fixed cadence instead)."""
    from websockets.asyncio.server import ServerConnection

    from .scripted import V5Exchange, book_msg

    feeding = asyncio.Event()
    feeding.set()
    bids, asks = [["100.0", "1", "0", "1"]], [["100.1", "3", "0", "1"]]

    async def script(ex: V5Exchange, ws: ServerConnection, op: str, rid: str, arg: dict[str, str]) -> None:
        await ws.send(ex.ack(op, rid, arg))
        await ws.send(book_msg(arg, "snapshot", bids, asks, seq=10, prev=-1))

        async def feed() -> None:
            seq = 10
            while feeding.is_set():  # a heartbeat update (same book) every 0.1 s, then silence
                await ws.send(book_msg(arg, "update", [], [], seq=seq, prev=seq))
                await asyncio.sleep(0.1)

        asyncio.get_running_loop().create_task(feed())

    async with V5Exchange(script) as ex:
        config = load_config(env={}, overrides={
            "venues": {"okex_v1": {"enabled": False}, "okx_v5": {
                "public_url": ex.url, "business_url": ex.business_url, "instruments": [INST],
                "channels": ["books"], "candle_bars": [], "ping_after": 0.5, "pong_timeout": 2.0,
                "stall_timeout": 30.0, "reconnect_initial": 0.05, "reconnect_cap": 0.5}},
            "collector": {"status_interval": 0.5, "status_file": str(tmp_path / "status.json")},
        })  # fmt: skip
        recorder = Recorder(config, MemoryWriter())
        task = asyncio.create_task(recorder.run())
        try:
            await wait_until(lambda: any('"books"' in t for t in ex.received), what="the books subscription")
            await asyncio.sleep(2.0)  # four ping intervals of a busy feed
            assert "ping" not in ex.received
            feeding.clear()  # the feed goes quiet: the shell must ping
            await wait_until(lambda: "ping" in ex.received, what="a ping after the silence")
        finally:
            recorder.request_stop()
            await asyncio.wait_for(task, 30)
    assert len(ex.connections) == 1  # answered pings keep the one connection
