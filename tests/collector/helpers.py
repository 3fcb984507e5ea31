"""Helpers for collector tests: ground truth -> expected rows, stored rows, event-driven waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from recorder.collector.app import Recorder
from recorder.records import Level, Ticker
from recorder.simulator.truth import Truth
from recorder.storage import schema
from recorder.storage.parquet import open_dataset

Top = tuple[tuple[Level, ...], tuple[Level, ...]]


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``condition`` (cheap, in-memory) until true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def _levels(rows: Any, depth: int) -> tuple[Level, ...]:
    return tuple((Decimal(p), Decimal(a)) for p, a in rows[:depth])


def expected_snapshots(truth: Truth, symbol: str, depth: int) -> list[tuple[int, Top]]:
    """Snapshots on change of the top ``depth`` levels, from the books the simulator sent, in order.

    A new connection starts from a fresh book, so its first push always gives a snapshot.
    """
    out: list[tuple[int, Top]] = []
    last: Top | None = None
    conn = None
    for book in truth.depth_books(symbol):
        if book.connection_id != conn:
            conn, last = book.connection_id, None
        top = (_levels(book.bids, depth), _levels(book.asks, depth))
        if top != last:
            out.append((book.ts_ms, top))
            last = top
    return out


def sent_data(truth: Truth, channel: str) -> list[Any]:
    return [p.data for p in truth.pushes(channel)]


def received(recorder: Recorder, cls: type, symbol: str, extra: object = None) -> int:
    """Messages of one channel the recorder's pipeline accepted so far."""
    return recorder.pipeline.counters.accepted.get((cls, symbol, extra), 0)


def all_received(recorder: Recorder, truth: Truth, symbols: tuple[str, ...]) -> bool:
    """Every depth and ticker push the simulator sent has been received (accepted or rejected)."""
    acc = recorder.pipeline.accounting()
    return all(
        acc.get(name, {}).get("received", 0) == len(truth.pushes(name))
        for s in symbols
        for name in (f"ok_sub_spot_{s}_depth", f"ok_sub_spot_{s}_ticker")
    )


def stored(url: str, table: str, order_by: str = "ts_recv", **where: object) -> list[Any]:
    """Records of one table, rebuilt by the schema's converter, in ``order_by`` order."""
    ds = schema.DATASETS[table]
    t = ds.table
    q = sa.select(t)
    for col, value in where.items():
        q = q.where(t.c[col] == value)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [ds.from_row(row._mapping) for row in conn.execute(q.order_by(t.c[order_by]))]
    finally:
        engine.dispose()


def stored_parquet(root: Path, table: str, order_by: str = "ts_recv") -> list[Any]:
    ds = schema.DATASETS[table]
    rows = open_dataset(str(root), table).to_table().to_pylist()
    return sorted(
        (ds.from_row(r) for r in rows), key=lambda r: (getattr(r, order_by), getattr(r, "symbol", ""))
    )


def ticker_from_push(data: dict[str, Any]) -> tuple[Any, ...]:
    return (
        data["timestamp"],
        *(
            Decimal(data[k])
            for k in ("buy", "sell", "last", "high", "low", "vol", "change", "dayHigh", "dayLow")
        ),
    )


def ticker_key(t: Ticker) -> tuple[Any, ...]:
    return (
        int(t.ts_event.timestamp() * 1000),
        t.buy,
        t.sell,
        t.last,
        t.high,
        t.low,
        t.vol,
        t.change,
        t.day_high,
        t.day_low,
    )


def snapshot_key(s: Any) -> tuple[int, Top]:
    return (int(s.ts_event.timestamp() * 1000), (s.bids, s.asks))
