"""The schema defined once: SQL tables and Arrow schemas agree, converters are exact and reversible."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pytest
import sqlalchemy as sa

from recorder import records as rec
from recorder.records import Record
from recorder.storage import schema
from recorder.storage.schema import DATASETS, dataset_for, levels_from_json, levels_to_json, plain_decimal
from tests.fixtures.storage import T0, sample_records, v5_records


def _arrow_kind(kind: pa.DataType) -> str:
    if pa.types.is_decimal(kind):
        return "decimal"
    if pa.types.is_timestamp(kind):
        assert kind.unit == "us" and kind.tz == "UTC"
        return "timestamp"
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "binary"
    raise AssertionError(f"unexpected arrow type {kind}")


def _sql_kind(kind: sa.types.TypeEngine[object]) -> str:
    if isinstance(kind, schema.ExactDecimal):
        return "decimal"
    if isinstance(kind, schema.UtcDateTime):
        return "timestamp"
    if isinstance(kind, sa.Integer):
        return "integer"
    if isinstance(kind, sa.Boolean):
        return "boolean"
    if isinstance(kind, sa.String):  # String and Text
        return "string"
    if isinstance(kind, sa.LargeBinary):
        return "binary"
    raise AssertionError(f"unexpected SQL type {kind!r}")


@pytest.mark.parametrize("name", list(DATASETS))
def test_arrow_schema_mirrors_sql_table_column_by_column(name: str) -> None:
    ds = DATASETS[name]
    sql_columns = [c for c in ds.table.columns if not c.info.get("sql_only")]
    assert [c.name for c in sql_columns] == ds.arrow_schema.names
    for column in sql_columns:
        field = ds.arrow_schema.field(column.name)
        assert _arrow_kind(field.type) == _sql_kind(column.type), column.name
        assert field.nullable == column.nullable, column.name


def test_every_record_type_has_exactly_one_dataset() -> None:
    record_types = set(Record.__args__)
    assert {ds.record_type for ds in DATASETS.values()} == record_types
    assert len(DATASETS) == len(record_types)
    assert set(DATASETS) == set(schema.metadata.tables)
    assert {ds.name: ds.table.name for ds in DATASETS.values()} == {n: n for n in DATASETS}


def test_only_the_quarantine_serial_id_is_sql_only() -> None:
    sql_only = [(t.name, c.name) for t in schema.metadata.tables.values() for c in t.columns
                if c.info.get("sql_only")]
    assert sql_only == [("quarantine", "id")]


def test_every_constraint_and_index_follows_the_naming_convention() -> None:
    for table in schema.metadata.tables.values():
        assert table.primary_key.name == f"pk_{table.name}"
        for index in table.indexes:
            assert index.name == "ix_" + table.name + "_" + "_".join(c.name for c in index.columns)


def test_to_row_columns_are_the_arrow_columns_and_from_row_rebuilds_the_record() -> None:
    for record in [*sample_records(), *v5_records()]:
        ds = dataset_for(record)
        row = ds.to_row(record)
        assert list(row) == ds.arrow_schema.names
        assert ds.from_row(row) == record


def test_records_round_trip_exactly_through_arrow() -> None:
    for record in [*sample_records(), *v5_records()]:
        ds = dataset_for(record)
        table = pa.Table.from_pylist([ds.to_row(record)], schema=ds.arrow_schema)
        (back,) = table.to_pylist()
        rebuilt = ds.from_row(back)
        assert rebuilt == record
        for value in back.values():
            if isinstance(value, datetime):
                assert value.utcoffset() == timedelta(0)


def test_book_snapshot_row_has_queryable_top_of_book_and_exact_levels() -> None:
    book = next(r for r in sample_records() if isinstance(r, rec.BookSnapshot) and r.bids)
    row = dataset_for(book).to_row(book)
    assert row["best_bid"] == Decimal("10532696.39199642")
    assert row["best_bid_amount"] == Decimal("0.00000001")
    assert row["best_ask"] == Decimal("10532697")
    assert row["best_ask_amount"] == Decimal("1.5")
    assert row["depth"] == 2
    assert row["source"] == "depth_5"
    assert row["bids"] == '[["10532696.39199642","0.00000001"],["10532696.39","123456789.123456789"]]'
    assert row["asks"] == '[["10532697","1.50"]]'


def test_empty_book_has_null_top_of_book() -> None:
    empty = rec.BookSnapshot(venue="okex_v1", symbol="ltc_btc", ts_event=T0, ts_recv=T0, bids=(), asks=())
    row = dataset_for(empty).to_row(empty)
    assert (row["best_bid"], row["best_ask"], row["depth"], row["bids"]) == (None, None, 0, "[]")


def test_enum_columns_hold_the_enum_values() -> None:
    rows: dict[str, dict[str, object]] = {}
    for r in sample_records():  # the first (okex_v1) record of each type
        rows.setdefault(type(r).__name__, dataset_for(r).to_row(r))
    assert rows["Deal"]["side"] == "sell"
    assert rows["Kline"]["period"] == "day"
    assert rows["Order"]["type"] == "buy_market"
    assert rows["Order"]["status"] == "cancelled"  # the neutral name since revision 0003
    assert rows["OrderStatusChange"]["previous_status"] is None
    assert rows["FeedEvent"]["kind"] in {"disconnected", "connected"}


def test_feed_event_symbols_are_comma_separated() -> None:
    event = rec.FeedEvent(kind=rec.FeedEventKind.STALL, ts_start=T0, ts_end=None, connection="ws-1",
                          symbols=("btc_usdt", "eth_btc"), event_id="e1")
    row = dataset_for(event).to_row(event)
    assert row["symbols"] == "btc_usdt,eth_btc"
    no_symbols = rec.FeedEvent(kind=rec.FeedEventKind.SHUTDOWN, ts_start=T0, ts_end=T0, connection="ws-1")
    assert dataset_for(no_symbols).from_row(dataset_for(no_symbols).to_row(no_symbols)).symbols == ()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1E-8"), "0.00000001"),
        (Decimal("0.00000001"), "0.00000001"),
        (Decimal("10532696.39199642"), "10532696.39199642"),
        (Decimal("1.50"), "1.5"),
        (Decimal("100"), "100"),
        (Decimal("1E+2"), "100"),
        (Decimal("-0.10"), "-0.1"),
        (Decimal("123456789.123456789"), "123456789.123456789"),
        (Decimal("0"), "0"),
    ],
)
def test_plain_decimal_is_canonical_and_exact(value: Decimal, text: str) -> None:
    assert plain_decimal(value) == text
    assert Decimal(text) == value


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_plain_decimal_refuses_non_finite(bad: Decimal) -> None:
    with pytest.raises(ValueError, match="finite"):
        plain_decimal(bad)


def test_levels_json_round_trip() -> None:
    levels = ((Decimal("1E-8"), Decimal("10532696.39199642")), (Decimal("7"), Decimal("0.50")),
              (Decimal("1E+3"), Decimal("1.23E-7")))
    text = levels_to_json(levels)
    assert text == '[["0.00000001","10532696.39199642"],["7","0.50"],["1000","0.000000123"]]'
    assert levels_from_json(text) == levels


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), Decimal("sNaN")])
def test_levels_json_refuses_non_finite(bad: Decimal) -> None:
    with pytest.raises(ValueError, match="finite"):
        levels_to_json(((Decimal(1), bad),))


def test_partitions_use_the_records_own_utc_date_and_key() -> None:
    plus8 = timezone(timedelta(hours=8))
    deal = rec.Deal(venue="okex_v1",
                    symbol="btc_usdt", tid=1, price=Decimal(1), amount=Decimal(1), side=rec.Side.BUY,
                    ts_event=datetime(2026, 11, 24, 7, 59, tzinfo=plus8),  # 23:59 UTC on the 23rd
                    ts_recv=datetime(2026, 11, 24, 0, 0, 1, tzinfo=UTC))
    ds = dataset_for(deal)
    row = ds.to_row(deal)
    assert str(ds.partition_date(row)) == "2026-11-23"
    assert ds.partition_key(row) == "btc_usdt"
    balance = rec.Balance(venue="okex_v1",
                          ts_recv=T0, account="wallet", currency="btc", free=Decimal(0), frozen=Decimal(0))
    assert DATASETS["balances"].partition_key(DATASETS["balances"].to_row(balance)) == "btc"
    keys = {name: (ds.date_column, ds.key_column) for name, ds in DATASETS.items()}
    assert keys == {
        "tickers": ("ts_event", "symbol"),
        "book_snapshots": ("ts_event", "symbol"),
        "deals": ("ts_event", "symbol"),
        "klines": ("ts_event", "symbol"),
        "balances": ("ts_recv", "currency"),
        "orders": ("ts_recv", "symbol"),
        "order_status_changes": ("ts_recv", "symbol"),
        "instruments": ("ts_recv", "symbol"),
        "fills": ("ts_event", "symbol"),
        "feed_events": ("ts_start", "connection"),
        "quarantine": ("ts_recv", "connection"),
    }


def test_dataset_for_refuses_a_non_record() -> None:
    with pytest.raises(TypeError, match="not a storable record"):
        dataset_for("ticker")  # type: ignore[arg-type]


def test_every_dataset_is_derived_from_the_one_spec() -> None:
    from recorder.storage.datasets import SPECS

    assert [s.name for s in SPECS] == list(DATASETS)
    for spec in SPECS:
        ds = DATASETS[spec.name]
        assert [c.name for c in ds.table.primary_key.columns] == list(spec.key or ("id",))
        assert ds.arrow_schema.names == [c.name for c in spec.columns if not c.sql_only]
        assert [c.name for c in ds.table.columns] == [c.name for c in spec.columns]
        for c in spec.columns:
            assert ds.table.c[c.name].nullable == c.nullable, (spec.name, c.name)


def test_venue_is_in_every_market_and_account_key() -> None:
    for name, ds in DATASETS.items():
        if name in ("feed_events", "quarantine"):
            assert "venue" in ds.arrow_schema.names
            continue
        assert ds.key[0] == "venue", name
        assert ds.partition_columns[0] == "venue", name


def test_a_row_of_an_older_schema_reads_back_as_okex_v1() -> None:
    deal = sample_records()[3]
    row = DATASETS["deals"].to_row(deal)
    del row["venue"], row["count"]
    assert DATASETS["deals"].from_row(row) == deal
    old = DATASETS["orders"].to_table([sample_records()[6]]).drop_columns(["venue", "raw_status"])
    old = old.set_column(old.schema.get_field_index("status"), "status", pa.array([-1], pa.int16()))
    back = schema.conform(old, DATASETS["orders"].arrow_schema).to_pylist()
    assert DATASETS["orders"].from_row(back[0]) == sample_records()[6]
