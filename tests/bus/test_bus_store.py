"""The bus store against a real JetStream: ids, acknowledgement, outage, consumer round trip."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from recorder.errors import StoreUnavailableError
from recorder.records import Deal, Record, Side, Ticker
from recorder.storage import migrate
from recorder.storage.bus import BusStore, row_identities, subject_for
from recorder.storage.bus_config import BusConfig
from recorder.storage.consume import WorkerStats, consume, open_stores
from recorder.storage.schema import DATASETS, Batch
from recorder.storage.writer import StorageWriter, Store
from tests.bus.helpers import PrivateNats, require_nats_server, stream_state, unique_bus, wait_drained
from tests.collector.helpers import stored, wait_until

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def tickers(n: int, recv_offset_ms: int = 0, symbol: str = "btc_usdt") -> list[Ticker]:
    """``n`` distinct tickers; ``recv_offset_ms`` shifts only the receive time (another collector)."""
    return [
        Ticker(venue="okex_v1", symbol=symbol, ts_event=T0 + timedelta(milliseconds=100 * i),
               ts_recv=T0 + timedelta(milliseconds=100 * i + 7 + recv_offset_ms),
               buy=Decimal("100.5") + i, sell=Decimal("100.7") + i, last=Decimal("100.6") + i,
               high=Decimal("120"), low=Decimal("90.10"), vol=Decimal("1E-8") * (i + 1))
        for i in range(n)
    ]


def deals(n: int, recv_offset_ms: int = 0) -> list[Deal]:
    return [Deal(venue="okex_v1",
                 symbol="ltc_btc", tid=1000 + i, price=Decimal("0.0123"), amount=Decimal(i + 1),
                 side=Side.BUY if i % 2 else Side.SELL, ts_event=T0 + timedelta(seconds=i),
                 ts_recv=T0 + timedelta(seconds=i, milliseconds=5 + recv_offset_ms)) for i in range(n)]


def test_identity_ignores_receive_time_and_nothing_else() -> None:
    ds = DATASETS["tickers"]
    a = row_identities(ds, ds.to_table(tickers(5)))
    b = row_identities(ds, ds.to_table(tickers(5, recv_offset_ms=333)))
    assert a == b and len(set(a)) == 5
    other = [*tickers(4), dataclasses.replace(tickers(5)[4], vol=Decimal("7"))]
    assert row_identities(ds, ds.to_table(other))[4] != a[4]
    balances = DATASETS["balances"]  # no exchange time: the receive time is what the row says
    from recorder.records import Balance

    polls = [Balance(venue="okex_v1",
                     ts_recv=T0 + timedelta(seconds=s), account="spot", currency="btc", free=Decimal(1),
                     frozen=Decimal(0)) for s in (0, 10)]
    first, second = row_identities(balances, balances.to_table(polls))
    assert first != second
    assert subject_for("okex", "feed_events", "conn 1.a") == "okex.okex_v1.feed_events.conn_1_a"


async def test_two_collectors_batching_differently_store_each_row_once(
        bus: BusConfig, tmp_path: Path, sqlite_url: str) -> None:
    rows_a, rows_b = tickers(40) + deals(10), tickers(40, recv_offset_ms=250) + deals(10, recv_offset_ms=90)
    a = BusStore(bus, collector_id="collector-a")
    b = BusStore(bus, collector_id="collector-b")
    try:
        for chunk in (rows_a[0:7], rows_a[7:30], rows_a[30:]):
            await asyncio.to_thread(a.write_batch, chunk)
        for chunk in (rows_b[0:19], rows_b[19:45], rows_b[45:]):
            await asyncio.to_thread(b.write_batch, chunk)
        await asyncio.to_thread(a.write_batch, rows_a[:13])  # a retry after a lost acknowledgement
    finally:
        a.close()
        b.close()
    count, _ = await stream_state(bus)
    # 40 ticker rows, one message each, stored once; deals: one message per flush and subject, the
    # same rows in the same message only once (a's 10 deals), else again (b's 5 + 5): the stores' keys.
    assert count == 40 + 1 + 2
    assert b.duplicate_messages == 40 and a.duplicate_messages == 13
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    stores = open_stores(sqlite_url, str(tmp_path / "parquet"))
    stop = asyncio.Event()
    stats: dict[str, WorkerStats] = {}
    task = asyncio.create_task(consume(bus, stores, stop, durable="w", batch=16, ack_wait=5, stats=stats))
    await wait_drained(bus, ("w-sql", "w-parquet"))
    stop.set()
    await asyncio.wait_for(task, 30)
    got = stored(sqlite_url, "tickers")
    assert [(t.ts_event, t.buy, t.vol) for t in got] == [(t.ts_event, t.buy, t.vol) for t in rows_a[:40]]
    assert [d.tid for d in stored(sqlite_url, "deals", order_by="tid")] == list(range(1000, 1010))
    assert stats["sql"].collectors == {"collector-a", "collector-b"}
    from analysis.load import load_deals, load_tickers

    assert len(load_tickers(tmp_path / "parquet")) == 40
    assert sorted(load_deals(tmp_path / "parquet")["tid"]) == list(range(1000, 1010))


def test_unreachable_nats_raises_quickly_and_the_writer_journals_then_publishes(tmp_path: Path) -> None:
    require_nats_server()
    server = PrivateNats(tmp_path / "nats")  # not started yet: nothing listens on its port
    config = unique_bus(server.url, publish_timeout=1.0, connect_timeout=0.5)
    store = BusStore(config, collector_id="c")
    with pytest.raises(StoreUnavailableError):
        store.write_batch(Batch(tickers(3)))
    clock = [0.0]
    writer = StorageWriter(None, None, bus=store, spill_dir=str(tmp_path / "spill"), fsync=False,
                           clock=lambda: clock[0])
    writer.write(tickers(10))
    writer.flush()  # nothing acknowledged: spilled to the journal
    assert writer.stats()["bus"].datasets["tickers"].spilled == 10
    server.start()
    try:
        clock[0] += 3600
        writer.write(tickers(12)[10:])
        writer.flush()
        counts = writer.stats()["bus"].datasets["tickers"]
        assert (counts.written, counts.pending, counts.spilled) == (12, 0, 0)
        outage = writer.stats()["bus"].datasets["feed_events"]
        writer.close()
        # Beside the 12 tickers (one message each): the bus's store_outage span, published once it
        # was back (the open row) and again at close (the closed row), each in a message of its own.
        assert (outage.written, outage.pending, outage.spilled) == (1, 0, 0)
        count, _ = asyncio.run(stream_state(config))
        assert count == 12 + 2
    finally:
        server.stop()


async def test_nats_restart_while_a_writer_consumes_loses_and_doubles_nothing(
        private_nats: PrivateNats, tmp_path: Path, sqlite_url: str) -> None:
    bus = unique_bus(private_nats.url, publish_timeout=2.0, connect_timeout=0.5)
    rows = [t for s in ("btc_usdt", "ltc_btc") for t in tickers(500, symbol=s)]
    store = BusStore(bus, collector_id="c")
    try:
        await asyncio.to_thread(store.write_batch, rows)
    finally:
        store.close()
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    stop = asyncio.Event()
    task = asyncio.create_task(consume(bus, open_stores(sqlite_url, None), stop, durable="w", batch=10,
                                       ack_wait=2))
    try:
        await wait_until(lambda: len(stored(sqlite_url, "tickers")) > 0, what="first rows stored")
        await asyncio.to_thread(private_nats.stop)
        assert 0 < len(stored(sqlite_url, "tickers")) < len(rows)
        await asyncio.to_thread(private_nats.start)
        await wait_drained(bus, ("w-sql",), timeout=120)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    got = stored(sqlite_url, "tickers")
    assert len(got) == len(rows)
    assert sorted((t.symbol, t.ts_event, t.buy) for t in got) == sorted(
        (t.symbol, t.ts_event, t.buy) for t in rows)


class _MeetFirst:
    """A store whose first write waits until the other writer process's first write arrived too."""

    def __init__(self, store: Store, barrier: threading.Barrier) -> None:
        self.store, self.barrier, self.writes = store, barrier, 0

    def write_batch(self, records: Sequence[Record]) -> None:
        if self.writes == 0:
            self.barrier.wait(60)  # raises BrokenBarrierError if the other never gets work
        self.writes += 1
        self.store.write_batch(records)

    def close(self) -> None:
        self.store.close()


async def test_two_writers_share_one_durable(bus: BusConfig, db_url: str) -> None:
    rows = [t for s in ("btc_usdt", "ltc_btc", "eth_btc") for t in tickers(200, symbol=s)]
    store = BusStore(bus, collector_id="c")
    try:
        await asyncio.to_thread(store.write_batch, rows)
    finally:
        store.close()
    await asyncio.to_thread(migrate.upgrade, db_url)
    barrier = threading.Barrier(2)
    stop = asyncio.Event()
    stats: list[dict[str, WorkerStats]] = [{}, {}]
    tasks = [asyncio.create_task(consume(bus, {"sql": _MeetFirst(open_stores(db_url, None)["sql"], barrier)},
                                         stop, durable="w", batch=20, ack_wait=30, stats=stats[i]))
             for i in range(2)]
    try:
        await wait_drained(bus, ("w-sql",))
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    shares = [s["sql"].rows for s in stats]
    assert all(shares) and sum(shares) == len(rows)  # both worked, each message once
    got = stored(db_url, "tickers")
    assert sorted((t.symbol, t.ts_event) for t in got) == sorted((t.symbol, t.ts_event) for t in rows)


async def test_the_writer_says_which_subjects_it_consumes_and_stores_every_venue_under_them(
        bus: BusConfig, tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The writer's consumer filters ``<prefix>.>``: every venue's rows (``okx_v5`` ones too) are stored,
    and its log line names that filter (it once said ``<prefix>.okex_v1.>`` while storing okx_v5 rows)."""
    v1 = tickers(2)
    v5 = [dataclasses.replace(t, venue="okx_v5", symbol="BTC-USDT") for t in tickers(3)]
    store = BusStore(bus, collector_id="c")
    try:
        await asyncio.to_thread(store.write_batch, [*v1, *v5])
    finally:
        store.close()
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, "recorder.storage"):
        task = asyncio.create_task(consume(bus, open_stores(sqlite_url, None), stop, durable="w"))
        await wait_drained(bus, ("w-sql",))
        stop.set()
        await asyncio.wait_for(task, 30)
    assert (f"sql store consuming {bus.stream} (subjects {bus.subject_prefix}.>: every venue) as durable "
            "w-sql") in [r.getMessage() for r in caplog.records]
    got = sorted((t.venue, t.symbol, t.ts_event, t.buy) for t in stored(sqlite_url, "tickers"))
    assert got == sorted((t.venue, t.symbol, t.ts_event, t.buy) for t in [*v1, *v5])
