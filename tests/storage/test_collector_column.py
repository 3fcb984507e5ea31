"""The ``collector`` column (schema 0002): stamped by the writer, kept by every store, NULL in older data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from analysis.duck import connect
from analysis.lazy import scan
from analysis.load import ParquetSource, SqlSource, load_feed_events
from recorder.records import Deal, FeedEvent, FeedEventKind, QuarantinedFrame, Record, Side
from recorder.storage.bus import HEADER_COLLECTOR, HEADER_DATASET, decode_message, encode_table
from recorder.storage.compact import compact
from recorder.storage.journal import Journal
from recorder.storage.parquet import ParquetStore, file_schema
from recorder.storage.schema import DATASETS, conform, feed_events, quarantine
from recorder.storage.sql import SqlStore
from recorder.storage.writer import StorageWriter

T = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def feed_event(event_id: str, minute: int, collector: str | None = None) -> FeedEvent:
    return FeedEvent(kind=FeedEventKind.DISCONNECTED, ts_start=T + timedelta(minutes=minute),
                     ts_end=T + timedelta(minutes=minute + 1), connection="ws-0", symbols=("btc_usdt",),
                     detail="closed", event_id=event_id, collector=collector)


def made_records() -> list[Record]:
    return [
        feed_event("e1", 0),
        feed_event("e2", 2, collector="relayed-by-another"),  # already stamped: kept
        QuarantinedFrame(ts_recv=T, connection="ws-0", reason="not json", payload=b"{x", channel="c"),
        # 19 fractional digits: no store can hold it, the screen quarantines it (a row the writer makes)
        Deal(venue="okex_v1",
             symbol="btc_usdt", tid=1, price=Decimal("1.0000000000000000001"), amount=Decimal(1),
             side=Side.BUY, ts_event=T, ts_recv=T),
    ]


def test_the_writer_stamps_its_collector_id_in_both_stores(migrated_db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "parquet"
    writer = StorageWriter(SqlStore(migrated_db_url), ParquetStore(str(root)),
                           spill_dir=str(tmp_path / "spill"), collector="tokyo-1")
    writer.write(made_records())
    writer.flush()
    writer.close()
    engine = sa.create_engine(migrated_db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            events = conn.execute(sa.select(feed_events.c.event_id, feed_events.c.collector)
                                  .order_by(feed_events.c.event_id)).all()
            frames = conn.execute(sa.select(quarantine.c.reason, quarantine.c.channel, quarantine.c.collector)
                                  .order_by(quarantine.c.channel)).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in events] == [("e1", "tokyo-1"), ("e2", "relayed-by-another")]
    assert [(channel, collector) for _, channel, collector in frames] == [
        ("c", "tokyo-1"), ("deals", "tokyo-1")]
    assert "deals.price" in frames[1][0]
    for source in (SqlSource.from_url(migrated_db_url), ParquetSource(root)):
        loaded = load_feed_events(source)
        assert sorted(zip(loaded["event_id"], loaded["collector"], strict=True)) == [
            ("e1", "tokyo-1"), ("e2", "relayed-by-another")]


def test_without_a_collector_id_nothing_is_stamped(migrated_sqlite_url: str, tmp_path: Path) -> None:
    writer = StorageWriter(SqlStore(migrated_sqlite_url), None)
    writer.write([feed_event("e1", 0)])
    writer.close()
    loaded = load_feed_events(SqlSource.from_url(migrated_sqlite_url))
    assert loaded["collector"].tolist() == [None]


def write_old_file(root: Path, events: list[FeedEvent]) -> Path:
    """A Parquet file as a recorder before schema 0002 wrote it: no ``collector`` column."""
    dataset = DATASETS["feed_events"]
    table = dataset.to_table(events).drop_columns(["collector", "connection"])
    old_schema = file_schema(dataset).remove(file_schema(dataset).get_field_index("collector"))
    assert table.schema.equals(old_schema)
    directory = root / "feed_events" / "date=2026-11-30" / "connection=ws-0"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "part-1000000000000000000-old.parquet"
    pq.write_table(table, path)
    return path


def test_older_parquet_files_read_the_column_as_null(tmp_path: Path) -> None:
    root = tmp_path / "parquet"
    write_old_file(root, [feed_event("old1", 0), feed_event("old2", 5)])
    # only old files: the loaders and the DuckDB view still have the column
    loaded = load_feed_events(ParquetSource(root))
    pairs = sorted(zip(loaded["event_id"], loaded["collector"], strict=True))
    assert pairs == [("old1", None), ("old2", None)]
    con = connect(root)
    assert con.sql("SELECT event_id, collector FROM feed_events ORDER BY event_id").fetchall() == [
        ("old1", None), ("old2", None)]
    # then new files beside them
    store = ParquetStore(str(root))
    store.write_batch([feed_event("new1", 10, collector="tokyo-1")])
    store.close()
    expected = [("new1", "tokyo-1"), ("old1", None), ("old2", None)]
    loaded = load_feed_events(ParquetSource(root))
    pairs = sorted(zip(loaded["event_id"], loaded["collector"], strict=True), key=str)
    assert pairs == sorted(expected, key=str)
    con = connect(root)
    assert con.sql("SELECT event_id, collector FROM feed_events ORDER BY event_id").fetchall() == expected
    lazy = scan(root, "feed_events").select("event_id", "collector").sort("event_id").collect()
    assert lazy.rows() == expected  # Polars
    # compaction merges old and new files into one, in the current schema
    results = compact(str(root), dataset="feed_events")
    assert len(results) == 1
    (merged,) = (root / "feed_events" / "date=2026-11-30" / "connection=ws-0").glob("*.parquet")
    table = pq.read_table(merged)
    assert table.schema.names == file_schema(DATASETS["feed_events"]).names
    assert sorted(zip(table["event_id"].to_pylist(), table["collector"].to_pylist(), strict=True),
                  key=str) == sorted(expected, key=str)


def test_an_older_spill_segment_is_replayed_with_a_null_collector(
    migrated_sqlite_url: str, tmp_path: Path,
) -> None:
    spill = tmp_path / "spill"
    journal = Journal(str(spill))
    old = DATASETS["feed_events"].to_table([feed_event("old", 0)]).drop_columns(["collector"])
    journal.append("sql.feed_events", old)
    journal.close()
    writer = StorageWriter(SqlStore(migrated_sqlite_url), None, spill_dir=str(spill), collector="tokyo-1")
    writer.write([feed_event("new", 1)])
    writer.close()
    loaded = load_feed_events(SqlSource.from_url(migrated_sqlite_url))
    # a replayed row is what the earlier run recorded: not stamped with this run's id
    assert sorted(zip(loaded["event_id"], loaded["collector"], strict=True)) == [("new", "tokyo-1"),
                                                                               ("old", None)]


def test_a_bus_message_from_an_older_collector_takes_its_header_as_collector() -> None:
    old = DATASETS["feed_events"].to_table([feed_event("e1", 0)]).drop_columns(["collector"])
    dataset, table = decode_message({HEADER_DATASET: "feed_events", HEADER_COLLECTOR: "osaka-2"},
                                    encode_table(old))
    assert dataset.name == "feed_events"
    assert table.schema.equals(dataset.arrow_schema)
    assert table["collector"].to_pylist() == ["osaka-2"]
    new = DATASETS["feed_events"].to_table([feed_event("e1", 0, collector="tokyo-1")])
    _, table = decode_message({HEADER_DATASET: "feed_events", HEADER_COLLECTOR: "osaka-2"}, encode_table(new))
    assert table["collector"].to_pylist() == ["tokyo-1"]


def test_conform_adds_missing_nullable_columns_and_refuses_missing_required_ones() -> None:
    schema = pa.schema([pa.field("a", pa.int64(), nullable=False), pa.field("b", pa.string())])
    out = conform(pa.table({"a": pa.array([1, 2], pa.int32())}), schema)
    assert out.schema.equals(schema) and out.to_pylist() == [{"a": 1, "b": None}, {"a": 2, "b": None}]
    with pytest.raises(KeyError, match="'a'"):
        conform(pa.table({"b": ["x"]}), schema)
