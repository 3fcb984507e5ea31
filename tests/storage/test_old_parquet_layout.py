"""A Parquet root written before schema revision 0003 (no ``venue=`` level, no venue column, v1
order status codes) stays readable: open_dataset, the pandas loaders, DuckDB views, polars and
compaction read it as venue okex_v1, alone and beside new files in the same root."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from analysis.duck import connect
from analysis.load import load_deals, load_orders
from recorder.records import Deal, Order, Record
from recorder.storage.compact import compact
from recorder.storage.parquet import ParquetStore, open_dataset
from recorder.storage.schema import DATASETS, V1_STATUS_NAMES, dataset_for
from tests.fixtures.storage import sample_records

CODE_OF = {name: code for code, name in V1_STATUS_NAMES.items()}
NEW_COLUMNS = {"venue", "count", "raw_status", "raw_type", "client_order_id", "ts_updated"}


def write_old_layout(root: Path, records: list[Record], part: str) -> None:
    """Files as the previous release wrote them: ``<dataset>/date=D/symbol=S/part-*.parquet``."""
    for i, record in enumerate(records):
        ds = dataset_for(record)
        row = {k: v for k, v in ds.to_row(record).items() if k not in NEW_COLUMNS and k != "symbol"}
        fields = [f for f in ds.arrow_schema if f.name in row]
        if "status" in row:
            row["status"] = CODE_OF[row["status"]]
            fields = [pa.field("status", pa.int16(), False) if f.name == "status" else f for f in fields]
        day = ds.partition_date(ds.to_row(record))
        directory = root / ds.name / f"date={day}" / f"symbol={record.symbol}"
        directory.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([row], schema=pa.schema(fields))
        pq.write_table(table, directory / f"part-{part}{i}.parquet")


def old_records() -> list[Record]:
    records = sample_records()
    deal = next(r for r in records if isinstance(r, Deal))
    order = next(r for r in records if isinstance(r, Order))
    return [deal, replace(deal, tid=deal.tid + 1), order]


def test_open_dataset_and_loaders_read_the_old_layout_as_okex_v1(tmp_path: Path) -> None:
    records = old_records()
    write_old_layout(tmp_path, records, "old")
    assert not list(tmp_path.rglob("venue=*"))
    for name in ("deals", "orders"):
        rows = open_dataset(str(tmp_path), name).to_table().to_pylist()
        # v1 status codes in old files: conform maps them (the reader a store or compaction uses)
        got = sorted((DATASETS[name].from_row(_named(r)) for r in rows), key=_key)
        assert got == sorted((r for r in records if dataset_for(r).name == name), key=_key)
    deals = load_deals(tmp_path, exact=True)
    assert deals["venue"].tolist() == ["okex_v1", "okex_v1"]
    assert deals[["base", "quote"]].drop_duplicates().values.tolist() == [["BTC", "USDT"]]
    assert load_deals(tmp_path, venues="okx_v5").empty
    orders = load_orders(tmp_path)
    assert orders["status"].tolist() == ["cancelled"]

    # the new writer adds venue= partitions beside the old ones; every reader sees both
    new = replace(records[0], tid=records[0].tid + 10)
    v5 = replace(records[0], venue="okx_v5", symbol="BTC-USDT")
    store = ParquetStore(tmp_path, fsync=False)
    store.write_batch([new, v5])
    store.close()
    assert (tmp_path / "deals" / "venue=okex_v1").is_dir() and (tmp_path / "deals" / "venue=okx_v5").is_dir()
    deals = load_deals(tmp_path, exact=True)
    assert sorted(zip(deals["venue"], deals["symbol"], deals["tid"], strict=True)) == sorted(
        (d.venue, d.symbol, d.tid) for d in [*records[:2], new, v5])
    assert set(zip(deals["base"], deals["quote"], strict=True)) == {("BTC", "USDT")}  # both venues' ids
    assert load_deals(tmp_path, venues=["okx_v5"])["symbol"].tolist() == ["BTC-USDT"]

    con = connect(tmp_path)
    assert sorted(con.sql("SELECT venue, symbol, tid FROM deals").fetchall()) == sorted(
        (d.venue, d.symbol, d.tid) for d in [*records[:2], new, v5])
    assert con.sql("SELECT venue, status FROM orders").fetchall() == [("okex_v1", "cancelled")]


def test_compaction_merges_an_old_layout_partition_and_keeps_its_rows(tmp_path: Path) -> None:
    records = old_records()[:2]
    write_old_layout(tmp_path, records[:1], "a")
    write_old_layout(tmp_path, records[1:], "b")
    results = compact(str(tmp_path), dataset="deals")
    assert [(r.files_before, r.rows) for r in results] == [(2, 2)]
    rows = open_dataset(str(tmp_path), "deals").to_table().to_pylist()
    assert sorted((DATASETS["deals"].from_row(r) for r in rows), key=_key) == sorted(records, key=_key)


def _named(row: dict[str, object]) -> dict[str, object]:
    for column in ("status", "previous_status"):
        value = row.get(column)
        if value is not None and str(value).lstrip("-").isdigit():  # old file cast to the new schema
            row[column] = V1_STATUS_NAMES[int(str(value))]
    return row


def _key(record: Record) -> tuple[object, ...]:
    return (type(record).__name__, getattr(record, "tid", 0), getattr(record, "order_id", 0))
