"""The writer's batching: one fetch of many messages read as one Arrow stream per schema, cast once,
written as tables. Stored rows are compared value for value with what was published."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
import pyarrow as pa
import pytest

from recorder.errors import StoreUnavailableError
from recorder.records import BookSnapshot, FeedEvent, FeedEventKind, Record
from recorder.storage import migrate
from recorder.storage.bus import (
    HEADER_COLLECTOR,
    HEADER_DATASET,
    HEADER_ROWS,
    BusStore,
    encode_table,
    subject_for,
)
from recorder.storage.bus_config import BusConfig
from recorder.storage.consume import WorkerStats, consume, open_stores
from recorder.storage.schema import DATASETS, Batch
from recorder.storage.store import Store
from tests.bus.helpers import stream_state, wait_drained
from tests.bus.test_bus_store import T0, deals, tickers
from tests.collector.helpers import stored, stored_parquet

DURABLES = ("w-sql", "w-parquet")


def snapshots(n: int, symbol: str) -> list[BookSnapshot]:
    return [BookSnapshot(venue="okex_v1", symbol=symbol, ts_event=T0 + timedelta(milliseconds=50 * i),
                         ts_recv=T0 + timedelta(milliseconds=50 * i + 3),
                         bids=((Decimal("100.25") - i, Decimal("1.5")),
                               (Decimal("99") - i, Decimal("0.001"))),
                         asks=((Decimal("101") + i, Decimal("2")),), source="depth_5")
            for i in range(n)]


def events(n: int) -> list[FeedEvent]:
    return [FeedEvent(kind=FeedEventKind.DISCONNECTED, ts_start=T0 + timedelta(seconds=i),
                      ts_end=T0 + timedelta(seconds=i, milliseconds=700), connection="public-0",
                      symbols=("btc_usdt", "ltc_btc"), detail=f"gap {i}", event_id=f"ev{i:04d}",
                      collector="c", venue="okex_v1")
            for i in range(n)]


def published() -> dict[str, list[Any]]:
    """Several datasets and symbols: one-row messages (tickers, snapshots) and batched ones."""
    return {
        "tickers": [*tickers(40), *tickers(30, symbol="ltc_btc"), *tickers(25, symbol="eth_btc")],
        "book_snapshots": [*snapshots(35, "btc_usdt"), *snapshots(20, "ltc_btc")],
        "deals": deals(60),
        "feed_events": events(5),
    }


def _key(r: Any) -> tuple[Any, ...]:
    return (getattr(r, "symbol", ""), getattr(r, "ts_recv", None) or r.ts_start, getattr(r, "tid", 0))


async def _publish_raw(bus: BusConfig, subject: str, payload: bytes, headers: dict[str, str]) -> None:
    nc = await nats.connect(bus.url)
    try:
        await nc.jetstream().publish(subject, payload, headers=headers)
    finally:
        await nc.close()


async def _write(bus: BusConfig, stores: dict[str, Store], batch: int = 1000,
                 ack_wait: float = 30.0) -> dict[str, WorkerStats]:
    stop = asyncio.Event()
    stats: dict[str, WorkerStats] = {}
    task = asyncio.create_task(consume(bus, stores, stop, durable="w", batch=batch, ack_wait=ack_wait,
                                       stats=stats))
    try:
        await wait_drained(bus, tuple(f"w-{n}" for n in stores))
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    return stats


def assert_stored(sent: dict[str, list[Any]], url: str, parquet: Path | None) -> None:
    for name, records in sent.items():
        order = "ts_start" if name == "feed_events" else "ts_recv"
        want = sorted(records, key=_key)
        assert sorted(stored(url, name, order_by=order), key=_key) == want, name
        if parquet is not None:
            assert sorted(stored_parquet(parquet, name, order_by=order), key=_key) == want, name


async def test_one_fetch_of_many_datasets_old_and_odd_messages_stores_each_row_once(
        bus: BusConfig, tmp_path: Path, sqlite_url: str) -> None:
    sent = published()
    store = BusStore(bus, collector_id="c")
    try:
        await asyncio.to_thread(store.write_batch, [r for rs in sent.values() for r in rs])
    finally:
        store.close()
    # a message from a collector older than the collector column (its header gives the value) ...
    old = events(7)[5:6]
    table = Batch.of(old).table("feed_events").drop_columns(["collector"])
    await _publish_raw(bus, subject_for(bus.subject_prefix, "feed_events", "public-0"), encode_table(table),
                       {HEADER_DATASET: "feed_events", HEADER_COLLECTOR: "old-c", HEADER_ROWS: "1",
                        "Nats-Msg-Id": "old-1"})
    sent["feed_events"].append(FeedEvent(**{**{f: getattr(old[0], f) for f in old[0].__dataclass_fields__},
                                            "collector": "old-c"}))
    # ... and one whose Okex-Rows header is wrong (it cannot join the others: read on its own)
    odd = tickers(41)[40:]
    await _publish_raw(bus, subject_for(bus.subject_prefix, "tickers", "btc_usdt"),
                       encode_table(Batch.of(odd).table("tickers")),
                       {HEADER_DATASET: "tickers", HEADER_COLLECTOR: "c", HEADER_ROWS: "3",
                        "Nats-Msg-Id": "odd"})
    sent["tickers"].extend(odd)
    messages, _ = await stream_state(bus)
    assert messages == 40 + 30 + 25 + 35 + 20 + 1 + 1 + 2  # one-row messages; deals, events one each; 2 raw
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    parquet = tmp_path / "parquet"
    stats = await _write(bus, open_stores(sqlite_url, str(parquet)))
    assert_stored(sent, sqlite_url, parquet)
    rows = sum(len(v) for v in sent.values())
    for name in ("sql", "parquet"):
        assert (stats[name].messages, stats[name].rows, stats[name].refused) == (messages, rows, 0)
        assert (stats[name].quarantined, stats[name].unstorable) == ({}, 0)


class _DiesAfterCommit:
    """A store whose first write is made durable, then the writer 'dies' before acknowledging."""

    def __init__(self, store: Store, stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
        self.store, self.stop, self.loop, self.writes = store, stop, loop, 0

    def write_batch(self, records: Sequence[Record]) -> None:
        self.store.write_batch(records)
        self.writes += 1
        self.loop.call_soon_threadsafe(self.stop.set)  # stopping: nothing of this batch is acknowledged
        raise StoreUnavailableError("killed between commit and acknowledgement")

    def close(self) -> None:
        self.store.close()


async def test_a_batch_redelivered_after_its_commit_is_stored_once(
        bus: BusConfig, tmp_path: Path, sqlite_url: str) -> None:
    from analysis.load import load_book_top, load_deals, load_tickers

    sent = published()
    store = BusStore(bus, collector_id="c")
    try:
        await asyncio.to_thread(store.write_batch, [r for rs in sent.values() for r in rs])
    finally:
        store.close()
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    parquet = tmp_path / "parquet"
    first = open_stores(sqlite_url, str(parquet))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    dying = {name: _DiesAfterCommit(s, stop, loop) for name, s in first.items()}
    await asyncio.wait_for(consume(bus, dying, stop, durable="w", batch=1000, ack_wait=1.0), 60)  # type: ignore[arg-type]
    assert [d.writes for d in dying.values()] == [1, 1]
    total, state = await stream_state(bus, DURABLES)
    assert all(unacked == total for _, unacked in state.values())  # all in one batch, none acknowledged
    assert_stored(sent, sqlite_url, None)  # durable already
    stats = await _write(bus, open_stores(sqlite_url, str(parquet)), ack_wait=1.0)
    for name in ("sql", "parquet"):
        assert (stats[name].messages, stats[name].refused) == (total, 0)  # redelivered, written again
    assert_stored(sent, sqlite_url, None)  # SQL: each row once
    for symbol in ("btc_usdt", "ltc_btc", "eth_btc"):  # Parquet readers keep one row per key
        assert len(load_tickers(parquet, symbol)) == sum(t.symbol == symbol for t in sent["tickers"])
    assert len(load_book_top(parquet, "btc_usdt")) == 35 and len(load_book_top(parquet, "ltc_btc")) == 20
    assert sorted(load_deals(parquet, "ltc_btc")["tid"]) == [d.tid for d in sent["deals"]]


async def test_a_poisoned_row_inside_a_batch_is_quarantined_and_its_neighbours_stored(
        bus: BusConfig, tmp_path: Path, sqlite_url: str) -> None:
    import json

    good = tickers(30)
    poisoned = tickers(31, symbol="btc/../../etc")[30:]  # a symbol no Parquet path may hold
    store = BusStore(bus, collector_id="c")
    try:  # the poisoned one-row message in the middle, in the same schema as its neighbours
        await asyncio.to_thread(store.write_batch, good[:15])
        await asyncio.to_thread(store.write_batch, poisoned)
        await asyncio.to_thread(store.write_batch, good[15:])
    finally:
        store.close()
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    parquet = tmp_path / "parquet"
    stats = await _write(bus, {"parquet": open_stores(None, str(parquet))["parquet"]})
    s = stats["parquet"]
    assert (s.messages, s.rows, s.quarantined, s.refused) == (31, 30, {"tickers": 1}, 0)
    assert stored_parquet(parquet, "tickers") == good
    (q,) = stored_parquet(parquet, "quarantine")
    assert (q.connection, q.channel, q.ts_recv) == (
        "bus", subject_for(bus.subject_prefix, "tickers", "btc/../../etc"), poisoned[0].ts_recv)
    assert q.reason.startswith("tickers.symbol: not a symbol: malformed symbol 'btc/../../etc'")
    assert q.reason.endswith(f"(stream {bus.stream} seq 16)")
    assert json.loads(q.payload)["values"]["symbol"] == "btc/../../etc"
    total, state = await stream_state(bus, ("w-parquet",))
    assert total == 31 and state["w-parquet"] == (0, 0)  # acknowledged: its row is quarantined


@pytest.mark.parametrize("rows", [1, 3])
def test_a_message_is_one_arrow_stream_the_writer_can_join(rows: int) -> None:
    from recorder.storage.consume import _read_joined, _schema_prefix

    tables = [Batch.of(tickers(rows, symbol=s)).table("tickers") for s in ("btc_usdt", "ltc_btc")]
    payloads = [encode_table(t) for t in tables]
    prefix = _schema_prefix(payloads[0])
    assert prefix is not None and prefix == _schema_prefix(payloads[1])

    class Msg:
        def __init__(self, data: bytes, n: int) -> None:
            self.data, self.headers = data, {HEADER_ROWS: str(n)}

    joined = _read_joined("tickers", prefix, [Msg(p, rows) for p in payloads])
    assert joined is not None and joined.equals(pa.concat_tables(tables))
    assert _read_joined("tickers", prefix, [Msg(p, rows + 1) for p in payloads]) is None
    assert DATASETS["tickers"].arrow_schema.equals(joined.schema)


async def test_without_dedupe_across_collectors_per_row_datasets_travel_batched(
        bus: BusConfig, tmp_path: Path, sqlite_url: str) -> None:
    batched = dataclasses.replace(bus, dedupe_across_collectors=False)
    sent = published()
    store = BusStore(batched, collector_id="c")
    try:
        await asyncio.to_thread(store.write_batch, [r for rs in sent.values() for r in rs])
        await asyncio.to_thread(store.write_batch, [r for rs in sent.values() for r in rs])  # re-published
        assert (store.published_messages, store.duplicate_messages) == (14, 7)
    finally:
        store.close()
    messages, _ = await stream_state(bus)
    assert messages == 3 + 2 + 1 + 1  # one per subject: tickers of 3 symbols, snapshots of 2, deals, events
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    parquet = tmp_path / "parquet"
    stats = await _write(batched, open_stores(sqlite_url, str(parquet)))
    assert_stored(sent, sqlite_url, parquet)
    for name in ("sql", "parquet"):
        assert (stats[name].messages, stats[name].rows) == (7, sum(len(v) for v in sent.values()))
