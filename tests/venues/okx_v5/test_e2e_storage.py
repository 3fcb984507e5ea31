"""okx_v5 through the real collector (``Recorder``) and the real StorageWriter (SQLite + Parquet),
compared with the v5 simulator's ground truth.

Storage keys each row by ``venue`` and accepts the venue's own ids (``BTC-USDT``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from recorder.app import open_storage, prepare_database
from recorder.collector.app import Recorder
from recorder.config import Config, load_config
from recorder.records import FeedEventKind
from recorder.simulator.okx_v5 import Simulator, V5Settings
from tests.collector.helpers import stored, stored_parquet, wait_until

INST = "BTC-USDT"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(V5Settings(seed=7, updates_per_second=0.0, instruments=(INST,))) as s:
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
        "storage": {"sql_url": f"sqlite:///{tmp_path / 'rec.sqlite'}", "parquet_root": str(tmp_path / "pq"),
                    "spill_dir": str(tmp_path / "spill"), "parquet_journal_dir": str(tmp_path / "pqj"),
                    "flush_interval": 0.2},
    })  # fmt: skip


async def test_recorded_through_storage_equals_the_simulator_truth(sim: Simulator, tmp_path: Path) -> None:
    config = v5_config(tmp_path, sim)
    await asyncio.to_thread(prepare_database, config)
    recorder = Recorder(config, await asyncio.to_thread(open_storage, config))
    task = asyncio.create_task(recorder.run())

    def books_seen() -> int:
        return sum(n for (rtype, sym, _), n in recorder.pipeline.counters.accepted.items()
                   if rtype.__name__ == "BookSnapshot" and sym == INST)  # fmt: skip

    await wait_until(lambda: books_seen() >= 1, what="the first book")

    def caught_up() -> bool:
        last = sim.truth.pushes(f"books:{INST}")[-1].seq
        sessions: list[Any] = list(recorder.pipeline.sessions.values())
        books = [s.core.book("books", INST) for s in sessions if getattr(s, "core", None) is not None]
        return any(b is not None and b.seq_id == last for b in books)

    async def steps(n: int) -> None:
        for _ in range(n):
            await sim.advance(1, INST)
            await asyncio.sleep(0.002)
        await wait_until(caught_up, what="the book to catch up")

    await steps(20)
    for _ in range(3):
        sim.inject_gap(INST)
        await steps(10)
        await steps(10)
    recorder.request_stop()
    assert (await asyncio.wait_for(task, 30)).exit_code == 0
    url = config.storage.sql_url
    truth = {p.seq: p for p in sim.truth.pushes(f"books:{INST}")}
    snaps = stored(url, "book_snapshots", symbol=INST)
    assert len(snaps) > 20, recorder.pipeline.counters.accepted
    for s in snaps:
        t = truth[s.seq_id]
        assert s.venue == "okx_v5" and s.source == "books"
        assert s.bids == tuple((Decimal(lv[0]), Decimal(lv[1])) for lv in (t.bids or ())[:20])
        assert s.asks == tuple((Decimal(lv[0]), Decimal(lv[1])) for lv in (t.asks or ())[:20])
    deals = stored(url, "deals", symbol=INST, order_by="tid")
    items = [p.data for p in sim.truth.pushes(f"trades:{INST}")]
    assert [(d.tid, d.price, d.amount) for d in deals] == sorted(
        (int(i["tradeId"]), Decimal(i["px"]), Decimal(i["sz"])) for i in items)
    events = stored(url, "feed_events", order_by="ts_start")
    breaks = [e for e in events if e.kind is FeedEventKind.SEQUENCE_BREAK]
    assert len(breaks) == 3 and all(e.ts_end is not None and e.venue == "okx_v5" for e in breaks)
    for table in ("book_snapshots", "deals"):
        assert len(stored_parquet(tmp_path / "pq", table)) == len(stored(url, table))
