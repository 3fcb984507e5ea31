"""What ``okex-recorder store`` cannot store goes to each store's quarantine, and only then is its
message settled: nothing silently lost, produced = stored + quarantined per dataset and store.

Good and bad messages are published into a unique stream on the real NATS server and consumed
into a real SQLite file / PostgreSQL database and a Parquet root; every row read back is
compared with what was published.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
import pyarrow as pa
import pytest
import sqlalchemy as sa

from recorder.errors import StorageError, StoreUnavailableError
from recorder.records import FeedEvent, FeedEventKind, QuarantinedFrame, Record
from recorder.simulator import Simulator
from recorder.storage import migrate
from recorder.storage.bus import (
    HEADER_COLLECTOR,
    HEADER_DATASET,
    HEADER_ROWS,
    HEADER_VENUE,
    BusStore,
    encode_table,
    ensure_stream,
    subject_for,
)
from recorder.storage.bus_config import BusConfig
from recorder.storage.consume import QUARANTINE_CONNECTION, WorkerStats, consume, open_stores
from recorder.storage.schema import Batch
from recorder.storage.store import Store
from tests.bus.helpers import stream_state, wait_drained
from tests.bus.test_bus_store import T0, deals, tickers
from tests.bus.test_consume_batches import events, snapshots
from tests.collector.helpers import stored, stored_parquet, wait_until

STORES = ("sql", "parquet")


@dataclasses.dataclass
class Sent:
    """What was published: good records per dataset, and the bad ones with what must be quarantined."""

    good: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    rows: Counter[str] = dataclasses.field(default_factory=Counter)  # rows of readable messages
    # rows set aside: (stream seq, subject, reason, record); unreadable messages: (..., payload)
    bad_rows: list[tuple[int, str, str, Any]] = dataclasses.field(default_factory=list)
    whole: list[tuple[int, str, str, bytes]] = dataclasses.field(default_factory=list)
    refused: Counter[str] = dataclasses.field(default_factory=Counter)  # whole messages by Okex-Dataset


async def publish_raw(bus: BusConfig, subject: str, payload: bytes, headers: dict[str, str]) -> int:
    """Publish one message as it is (creating the stream if need be); its stream sequence."""
    nc = await nats.connect(bus.url)
    try:
        js = nc.jetstream()
        await ensure_stream(js, bus)
        ack = await js.publish(subject, payload, headers=headers)
        return int(ack.seq)
    finally:
        await nc.close()


def headers(dataset: str, rows: int, msg_id: str) -> dict[str, str]:
    return {HEADER_DATASET: dataset, HEADER_COLLECTOR: "tokyo-1", HEADER_VENUE: "okex_v1",
            HEADER_ROWS: str(rows), "Nats-Msg-Id": msg_id}


async def consume_all(bus: BusConfig, stores: dict[str, Store],
                      ack_wait: float = 30.0) -> dict[str, WorkerStats]:
    """Run ``consume`` until every durable has settled every message."""
    stop = asyncio.Event()
    stats: dict[str, WorkerStats] = {}
    task = asyncio.create_task(consume(bus, stores, stop, durable="w", batch=1000, ack_wait=ack_wait,
                                       stats=stats))
    try:
        await wait_drained(bus, tuple(f"w-{n}" for n in stores))
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    return stats


def plain(value: object) -> object:
    """A record field as the quarantine JSON writes it (decimals exact text, times ISO 8601)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value


def values_of(record: Any) -> dict[str, object]:
    return {f.name: plain(getattr(record, f.name)) for f in dataclasses.fields(record)}


def assert_values(body: dict[str, Any], record: Any) -> None:
    """The quarantine JSON holds ``record``'s values exactly (decimals as exact text, equal in value:
    Arrow keeps the value, not how it was written, so ``1E-8`` comes back as ``0.00000001``)."""
    values = body["values"]
    assert set(values) == {f.name for f in dataclasses.fields(record)}
    for name, value in values_of(record).items():
        if isinstance(getattr(record, name), Decimal):
            assert Decimal(values[name]) == getattr(record, name), name
        else:
            assert values[name] == value, name


async def publish_mix(bus: BusConfig) -> Sent:
    sent = Sent()
    # good messages, published by the collector's bus store: one-row and batched datasets
    sent.good = {"tickers": tickers(20), "book_snapshots": snapshots(5, "btc_usdt"),
                 "deals": deals(10), "feed_events": events(3)}
    store = BusStore(bus, collector_id="tokyo-1")
    try:
        await asyncio.to_thread(store.write_batch, [r for rs in sent.good.values() for r in rs])
    finally:
        store.close()
    for name, records in sent.good.items():
        sent.rows[name] += len(records)
    tick = tickers(1)[0]
    later = dataclasses.replace(tick, ts_recv=tick.ts_recv + timedelta(hours=1))
    good_table = Batch.of([later]).table("tickers")
    subject = subject_for(bus.subject_prefix, "tickers", "btc_usdt")

    # 1. bytes that are no Arrow stream, one of them over 64 KiB
    for i, payload in enumerate((b"\x00\x01 not an arrow stream \xff", bytes(range(256)) * 400)):
        seq = await publish_raw(bus, subject, payload, headers("tickers", 1, f"garbage-{i}"))
        kept = payload[:65536]
        note = f"; {len(payload)} bytes, the first 65536 kept" if len(payload) > 65536 else ""
        reason = f"tickers: undecodable bus message: @ (stream {bus.stream} seq {seq}{note})"
        sent.whole.append((seq, subject, reason, kept))
        sent.refused["tickers"] += 1
    # 2. a dataset header no recorder knows (a good Arrow stream)
    payload = encode_table(good_table)
    odd_subject = f"{bus.subject_prefix}.okex_v1.nonsense.x"
    seq = await publish_raw(bus, odd_subject, payload, headers("nonsense", 1, "nonsense"))
    sent.whole.append((seq, odd_subject, f"not a recorder bus message: dataset header 'nonsense' (stream "
                       f"{bus.stream} seq {seq})", payload))
    sent.refused["?"] += 1
    # 3. columns that cannot be cast to this version's schema (a price that is no number)
    uncastable = good_table.set_column(good_table.schema.get_field_index("buy"), "buy",
                                       pa.array(["one hundred"], pa.string()))
    payload = encode_table(uncastable)
    seq = await publish_raw(bus, subject, payload, headers("tickers", 1, "uncastable"))
    sent.whole.append((seq, subject, "tickers: bus message does not fit this version's schema: @ "
                       f"(stream {bus.stream} seq {seq})", payload))
    sent.refused["tickers"] += 1
    # 4. a symbol no Parquet path may hold, alone in its message (a one-row ticker) ...
    bad = dataclasses.replace(tick, symbol="btc/../../etc", ts_recv=tick.ts_recv + timedelta(hours=2))
    bad_subject = subject_for(bus.subject_prefix, "tickers", bad.symbol)
    seq = await publish_raw(bus, bad_subject, encode_table(Batch.of([bad]).table("tickers")),
                            headers("tickers", 1, "bad-symbol"))
    sent.bad_rows.append((seq, bad_subject, "tickers.symbol: not a symbol: malformed symbol 'btc/../../etc'",
                          bad))
    sent.rows["tickers"] += 1
    # ... and amid good rows of one message: the middle deal's symbol
    three = [dataclasses.replace(d, tid=5000 + i, ts_recv=d.ts_recv + timedelta(hours=3)) for i, d in
             enumerate(deals(3))]
    three[1] = dataclasses.replace(three[1], symbol="ltc/../x")
    deal_subject = subject_for(bus.subject_prefix, "deals", "ltc_btc")
    seq = await publish_raw(bus, deal_subject, encode_table(Batch.of(three).table("deals")),
                            headers("deals", 3, "mixed-deals"))
    sent.good["deals"] += [three[0], three[2]]
    sent.bad_rows.append((seq, deal_subject, "deals.symbol: not a symbol: malformed symbol 'ltc/../x'",
                          three[1]))
    sent.rows["deals"] += 3
    # 5. a NUL character (PostgreSQL refuses it) in one of two feed events of one message
    pair = [FeedEvent(kind=FeedEventKind.STALL, ts_start=T0 + timedelta(minutes=m), ts_end=None,
                      connection="public-0", symbols=("btc_usdt",), detail=detail, event_id=f"nul-{m}",
                      collector="tokyo-1", venue="okex_v1")
            for m, detail in ((1, "no data for 5 s"), (2, "no data\x00for 5 s"))]
    event_subject = subject_for(bus.subject_prefix, "feed_events", "public-0")
    seq = await publish_raw(bus, event_subject, encode_table(Batch.of(pair).table("feed_events")),
                            headers("feed_events", 2, "nul-events"))
    sent.good["feed_events"].append(pair[0])
    sent.bad_rows.append((seq, event_subject, "feed_events.detail: contains a NUL character", pair[1]))
    sent.rows["feed_events"] += 2
    # 6. a collector's own quarantine row with a NUL in its reason: stored, repaired as the storage
    #    writer repairs it (a quarantine row is never quarantined)
    frame = QuarantinedFrame(ts_recv=T0, connection="public-0", reason="bad\x00frame", payload=b"{\x00",
                             channel="ok_sub_spot_btc_usdt_ticker", collector="tokyo-1", venue="okex_v1")
    q_subject = subject_for(bus.subject_prefix, "quarantine", "public-0")
    await publish_raw(bus, q_subject, encode_table(Batch.of([frame]).table("quarantine")),
                      headers("quarantine", 1, "frame"))
    sent.good["quarantine"] = [dataclasses.replace(frame, reason="bad\\x00frame")]
    sent.rows["quarantine"] += 1
    return sent


def _matches(reason: str, want: str) -> bool:
    """``want`` with ``@`` standing for the library's error text (its start and end must match)."""
    head, _, tail = want.partition(" @ ")
    return reason == want if not tail else reason.startswith(head + " ") and reason.endswith(" " + tail)


def assert_quarantined(sent: Sent, rows: Sequence[QuarantinedFrame], store: str, stream: str) -> None:
    bus_rows = [q for q in rows if q.connection == QUARANTINE_CONNECTION]
    assert len(bus_rows) == len(sent.whole) + len(sent.bad_rows), store
    for seq, subject, reason, payload in sent.whole:
        (q,) = [q for q in bus_rows if q.reason.endswith(f" seq {seq})") or f" seq {seq};" in q.reason]
        assert (q.channel, q.payload, q.collector, q.venue) == (subject, payload, "tokyo-1", "okex_v1"), store
        assert _matches(q.reason, reason), (store, q.reason)
        assert "\n" not in q.reason
    for seq, subject, reason, record in sent.bad_rows:
        (q,) = [q for q in bus_rows if q.reason.endswith(f" seq {seq})")]
        assert (q.channel, q.collector, q.venue, q.ts_recv) == (subject, "tokyo-1", "okex_v1", (
            getattr(record, "ts_recv", None) or record.ts_start)), store
        assert q.reason.startswith(reason) and q.reason.endswith(f"(stream {stream} seq {seq})"), q.reason
        body = json.loads(q.payload)
        assert body["dataset"] == subject.split(".")[2]
        assert_values(body, record)


def assert_stored(sent: Sent, url: str, parquet: Path) -> None:
    def key(r: Any) -> tuple[Any, ...]:
        return (getattr(r, "symbol", ""), getattr(r, "ts_recv", None) or r.ts_start, getattr(r, "tid", 0))

    for name, records in sent.good.items():
        order = "ts_start" if name == "feed_events" else "ts_recv"
        want = sorted(records, key=key)
        in_sql, in_parquet = stored(url, name, order_by=order), stored_parquet(parquet, name, order_by=order)
        if name == "quarantine":  # beside the writers' own
            in_sql = [q for q in in_sql if q.connection != QUARANTINE_CONNECTION]
            in_parquet = [q for q in in_parquet if q.connection != QUARANTINE_CONNECTION]
        assert sorted(in_sql, key=key) == want, name
        assert sorted(in_parquet, key=key) == want, name


@pytest.mark.parametrize("batch", [1000, 3])
async def test_every_bad_message_and_row_is_quarantined_in_both_stores_and_every_good_row_stored(
        bus: BusConfig, tmp_path: Path, db_url: str, batch: int) -> None:
    sent = await publish_mix(bus)
    total, _ = await stream_state(bus)
    await asyncio.to_thread(migrate.upgrade, db_url)
    parquet = tmp_path / "parquet"
    stop = asyncio.Event()
    stats: dict[str, WorkerStats] = {}
    task = asyncio.create_task(consume(bus, open_stores(db_url, str(parquet)), stop, durable="w", batch=batch,
                                       ack_wait=30, stats=stats))
    try:
        assert await wait_drained(bus, ("w-sql", "w-parquet")) == total  # settled, nothing pending
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)

    assert_stored(sent, db_url, parquet)
    in_sql = stored(db_url, "quarantine", order_by="id")
    in_parquet = stored_parquet(parquet, "quarantine")
    assert_quarantined(sent, in_sql, "sql", bus.stream)
    assert_quarantined(sent, in_parquet, "parquet", bus.stream)
    assert Counter(in_sql) == Counter(in_parquet)  # the same rows, field for field, in both stores
    # produced = stored + quarantined, per dataset and store; unreadable messages: one row each
    bad_rows = Counter(subject.split(".")[2] for _, subject, _, _ in sent.bad_rows)
    for name in STORES:
        s = stats[name]
        assert s.stored == Counter({ds: len(rs) for ds, rs in sent.good.items()}), name
        assert s.quarantined == bad_rows, name
        for ds, produced in sent.rows.items():
            assert s.stored[ds] + s.quarantined[ds] == produced, (name, ds)
        assert (s.refused, s.refused_by_dataset, s.unstorable) == (len(sent.whole), sent.refused, 0), name
        assert s.repaired == 1, name
        assert s.messages == total - len(sent.whole) and s.rows == sum(s.stored.values()), name
        assert ", rows quarantined 3 (deals 1, feed_events 1, tickers 1), unreadable messages quarantined " \
               "whole 4 (? 1, tickers 3), quarantine rows repaired 1, retries 0" in s.summary()
    # nothing is redelivered later: terminated or acknowledged
    _, state = await stream_state(bus, ("w-sql", "w-parquet"))
    assert state == {"w-sql": (0, 0), "w-parquet": (0, 0)}


class _Refusing:
    """A real store that refuses (for good) any batch holding deal ``tid``, and, while ``down`` is set,
    is unavailable for any batch holding quarantine rows."""

    def __init__(self, store: Store, tid: int) -> None:
        self.store, self.tid, self.down, self.writes = store, tid, False, Counter[str]()
        self.name = getattr(store, "name", "sql")

    def write_batch(self, records: Sequence[Record]) -> None:
        batch = Batch.of(records)
        if "quarantine" in batch.groups:
            self.writes["quarantine"] += 1
            if self.down:
                raise StoreUnavailableError("test: the database went away")
        if "deals" in batch.groups and self.tid in batch.table("deals").column("tid").to_pylist():
            raise StorageError(f"test: the sql store refuses tid {self.tid}")
        self.store.write_batch(records)

    def close(self) -> None:
        self.store.close()


async def test_rows_a_store_refuses_are_quarantined_alone_and_an_outage_of_that_write_leaves_the_message(
        bus: BusConfig, tmp_path: Path, sqlite_url: str) -> None:
    """The one-by-one path: the store refuses one deal of a message; its neighbours are stored, it is
    quarantined. While the quarantine write meets an outage the message is not acknowledged: it is
    redelivered and quarantined once the store is back (once: no second quarantine row)."""
    five = [dataclasses.replace(d, tid=7000 + i) for i, d in enumerate(deals(5))]
    others = tickers(4)
    store = BusStore(bus, collector_id="tokyo-1")
    try:
        await asyncio.to_thread(store.write_batch, [*others, *five])
    finally:
        store.close()
    total, _ = await stream_state(bus)
    assert total == 4 + 1
    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    parquet = tmp_path / "parquet"

    refusing = _Refusing(open_stores(sqlite_url, None)["sql"], tid=7003)
    refusing.down = True
    stop = asyncio.Event()
    first: dict[str, WorkerStats] = {}
    task = asyncio.create_task(consume(bus, {"sql": refusing}, stop, durable="w", batch=1000, ack_wait=2,
                                       stats=first, close_stores=False))
    try:
        await wait_until(lambda: refusing.writes["quarantine"] >= 1,
                         what="a quarantine write during the outage")
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    assert (first["sql"].messages, first["sql"].quarantined) == (4, Counter())  # the tickers only
    _, state = await stream_state(bus, ("w-sql",))
    assert state["w-sql"] == (0, 1)  # the deals message: delivered, neither acknowledged nor terminated
    assert stored(sqlite_url, "quarantine", order_by="id") == []

    refusing.down = False
    second = await consume_all(bus, {"sql": refusing, "parquet": open_stores(None, str(parquet))["parquet"]},
                               ack_wait=2)
    assert (second["sql"].messages, second["sql"].stored, second["sql"].quarantined) == (
        1, Counter({"deals": 4}), Counter({"deals": 1}))  # redelivered to this writer
    assert (second["parquet"].stored, second["parquet"].quarantined) == (
        Counter({"deals": 5, "tickers": 4}), Counter())  # Parquet holds what SQL refused
    assert stored(sqlite_url, "deals", order_by="tid") == [d for d in five if d.tid != 7003]
    assert stored(sqlite_url, "tickers") == others
    (q,) = stored(sqlite_url, "quarantine", order_by="id")
    deal_subject = subject_for(bus.subject_prefix, "deals", "ltc_btc")
    assert (q.connection, q.channel, q.collector) == (QUARANTINE_CONNECTION, deal_subject, "tokyo-1")
    assert q.reason == ("deals: refused by the sql store: test: the sql store refuses tid 7003 "
                        f"(stream {bus.stream} seq {total})")  # the deals message was published last
    body = json.loads(q.payload)
    assert body["dataset"] == "deals"
    assert_values(body, five[3])
    assert sorted(stored_parquet(parquet, "deals", order_by="ts_recv"), key=lambda d: d.tid) == five
    assert stored_parquet(parquet, "quarantine") == []
    # per dataset and store: produced = stored + quarantined
    for name in STORES:
        assert second[name].stored["deals"] + second[name].quarantined["deals"] == 5, name


@pytest.mark.postgres
async def test_a_quarantine_write_during_a_database_outage_terminates_nothing(
        bus: BusConfig, pg_url: str) -> None:
    """PostgreSQL refuses connections while an unreadable message waits: its quarantine row cannot be
    written, so it is not terminated; once the database is back it is redelivered and quarantined once."""
    from tests.faults.test_sql_outage import _admin, _allow_connections

    await asyncio.to_thread(migrate.upgrade, pg_url)
    subject = subject_for(bus.subject_prefix, "deals", "ltc_btc")
    payload = b"ARROW1 this is not an Arrow stream"
    seq = await publish_raw(bus, subject, payload, headers("deals", 1, "garbage"))
    database = sa.make_url(pg_url).database
    assert database is not None
    admin = _admin()
    store = open_stores(pg_url, None)["sql"]
    stats: dict[str, WorkerStats] = {}
    await asyncio.to_thread(_allow_connections, admin, database, False)
    try:
        stop = asyncio.Event()
        task = asyncio.create_task(consume(bus, {"sql": store}, stop, durable="w", batch=100, ack_wait=2,
                                           stats=stats, close_stores=False))
        try:
            await wait_until(lambda: stats.get("sql", WorkerStats()).retries >= 2, timeout=30,
                             what="the quarantine write retried during the outage")
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
        assert (stats["sql"].refused, stats["sql"].messages) == (0, 0)
        _, state = await stream_state(bus, ("w-sql",))
        assert state["w-sql"] == (0, 1)  # delivered, not terminated: JetStream redelivers it
    finally:
        await asyncio.to_thread(_allow_connections, admin, database, True)
        admin.dispose()
    again = await consume_all(bus, {"sql": store}, ack_wait=2)
    assert (again["sql"].refused, again["sql"].refused_by_dataset) == (1, Counter({"deals": 1}))
    (q,) = stored(pg_url, "quarantine", order_by="id")
    assert (q.connection, q.channel, q.payload) == (QUARANTINE_CONNECTION, subject, payload)
    assert q.reason.startswith("deals: undecodable bus message: ")
    assert q.reason.endswith(f"(stream {bus.stream} seq {seq})")
    _, state = await stream_state(bus, ("w-sql",))
    assert state["w-sql"] == (0, 0)


async def test_status_of_a_bus_collector_tells_what_the_writers_stored_and_quarantined(
        simulator: Simulator, tmp_path: Path, bus: BusConfig, sqlite_url: str) -> None:
    """``okex-recorder status`` of a collector on the bus, counting the writers' database: the quarantine
    rows the writers made are theirs (not 'earlier runs'), and the storage line says who writes the stores."""
    from recorder.collector.status import ON_THE_BUS_QUARANTINE, describe, row_counts
    from tests.bus.test_end_to_end import collector, drive, start, stop, write_stores

    await asyncio.to_thread(migrate.upgrade, sqlite_url)
    recorders = [collector(simulator, tmp_path, bus, "east")]
    tasks = await start(recorders, simulator)
    await drive(simulator, recorders, 20)
    await stop(recorders, tasks)
    subject = subject_for(bus.subject_prefix, "tickers", "btc_usdt")
    await publish_raw(bus, subject, b"not arrow", headers("tickers", 1, "junk"))
    stats = await write_stores(bus, sqlite_url, tmp_path / "parquet")
    status = recorders[0].status.snapshot("finished")
    written = status["rows"]["written"]
    counts = row_counts(sqlite_url)
    lines = describe(status, counts).splitlines()

    assert next(x for x in lines if x.startswith("storage:")) == (
        "storage:     published to NATS JetStream; `okex-recorder store` writes SQL and Parquet (its log "
        "counts the rows it stored and quarantined)")
    quarantine = next(x for x in lines if x.startswith("  quarantine "))
    assert quarantine.split()[:5] == ["quarantine", "0", "0", "0", "1"]
    assert quarantine.endswith(f"<- {ON_THE_BUS_QUARANTINE}")
    for table in ("tickers", "book_snapshots", "deals"):  # one collector: the writers stored what it sent
        assert written[table] > 0 and counts[table] == written[table] == stats["sql"].stored[table], table
        assert next(x for x in lines if x.startswith(f"  {table} ")).split() == [
            table, str(written[table]), str(written[table]), "0", str(written[table])]
    assert (stats["sql"].refused, stats["parquet"].refused) == (1, 1)
