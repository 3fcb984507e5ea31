"""The writer process's table path: batches screened and stored as Arrow tables, no record per row.

* the same records written in process (``StorageWriter.write(records)``) and as the writer process
  gets them (``encode_batch`` -> IPC -> ``decode_tables``: table-native) store the same SQL rows and
  the same Parquet rows in every dataset, quarantine rows (refused rows' values) included;
* the child's loop (:func:`recorder.storage.process.serve`, run here on a real pipe) builds no
  record for a clean batch, and one record per suspect row only.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads
import pytest
import sqlalchemy as sa

from recorder.config import PlausibilityConfig
from recorder.records import Deal, FeedEvent, Kline, Order, QuarantinedFrame, Record, Ticker
from recorder.storage import migrate, schema
from recorder.storage.parquet import ParquetStore
from recorder.storage.process import decode_tables, encode_batch, serve
from recorder.storage.schema import DATASETS, Batch, _TableRecords
from recorder.storage.sql import SqlStore
from recorder.storage.writer import StorageWriter
from tests.fixtures.storage import T0, sample_book, sample_deal, sample_records

PLAUSIBLE = PlausibilityConfig()


def _records() -> list[Record]:
    """Every dataset, and rows the screen sets aside (times, partition values, a NUL) or repairs."""
    records = sample_records()
    ticker = next(r for r in records if isinstance(r, Ticker))
    kline = next(r for r in records if isinstance(r, Kline))
    order = next(r for r in records if isinstance(r, Order))
    event = next(r for r in records if isinstance(r, FeedEvent))
    # decimals of the refused rows in canonical text: Arrow keeps their values, not their digits
    # as written (docs/operations.md "Writer process")
    canonical = {"high": Decimal("10000000"), "vol": Decimal("0.00000001")}
    refused = [
        dataclasses.replace(ticker, ts_event=T0 - timedelta(hours=2), **canonical),  # time window
        dataclasses.replace(sample_deal(7), symbol="btc/usdt", amount=Decimal("0.00000007")),  # partition
        dataclasses.replace(kline, ts_event=T0 - timedelta(days=3)),  # more than one period before
        dataclasses.replace(order, ts_event=datetime(2001, 1, 1, tzinfo=UTC)),  # before orders_not_before
        dataclasses.replace(event, event_id="c" * 32, connection="ws\x001"),  # a NUL
    ]
    repaired = QuarantinedFrame(ts_recv=T0, connection="ws-\x00-9", reason="bad\x00frame", payload=b"x",
                                channel="c")
    books = [sample_book(i) for i in range(5)]
    deals = [sample_deal(t) for t in range(1, 20)]
    return [*records, *books, *deals, *refused, repaired]


def _writer(tmp: Path) -> StorageWriter:
    url = f"sqlite:///{tmp / 'rec.sqlite'}"
    migrate.upgrade(url)
    return StorageWriter(SqlStore(url), ParquetStore(tmp / "pq", fsync=False), spill_dir=str(tmp / "spill"),
                         fsync=False, plausibility=PLAUSIBLE, collector="tokyo-9")


def _key(row: dict[str, Any]) -> str:
    return repr(sorted(row.items()))


def _sql_rows(tmp: Path) -> dict[str, list[dict[str, Any]]]:
    engine = sa.create_engine(f"sqlite:///{tmp / 'rec.sqlite'}")
    out = {}
    with engine.connect() as conn:
        for name, ds in DATASETS.items():
            rows = [dict(r._mapping) for r in conn.execute(sa.select(ds.table))]
            for r in rows:
                r.pop("id", None)  # quarantine's serial id
            out[name] = sorted(rows, key=_key)
    engine.dispose()
    return out


def _parquet_rows(tmp: Path) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name in DATASETS:
        directory = tmp / "pq" / name
        rows = (pads.dataset(directory, format="parquet", partitioning="hive").to_table().to_pylist()
                if directory.exists() else [])
        out[name] = sorted(rows, key=_key)
    return out


def test_the_table_path_stores_what_the_record_path_stores(tmp_path: Path) -> None:
    records = _records()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    in_process = _writer(tmp_path / "a")
    in_process.write(records)
    in_process.flush()
    in_process.close()
    tables = _writer(tmp_path / "b")
    batch = decode_tables(encode_batch(records))  # what the writer process receives
    assert batch.table_native and all(isinstance(g, _TableRecords) for g in batch.groups.values())
    tables.write(batch)
    tables.flush()
    tables.close()

    sql_a, sql_b = _sql_rows(tmp_path / "a"), _sql_rows(tmp_path / "b")
    pq_a, pq_b = _parquet_rows(tmp_path / "a"), _parquet_rows(tmp_path / "b")
    assert sql_b == sql_a
    assert pq_b == pq_a
    assert all(sql_a[name] for name in batch.groups)  # every dataset sent was stored
    # the refused rows are quarantined with their values, the repaired one kept
    payloads = [json.loads(r["payload"]) for r in sql_a["quarantine"] if r["connection"] == "storage"]
    assert sorted(p["dataset"] for p in payloads) == ["deals", "feed_events", "klines", "orders", "tickers"]
    deal = next(p["values"] for p in payloads if p["dataset"] == "deals")
    assert deal["symbol"] == "btc/usdt" and deal["tid"] == 7
    assert Decimal(deal["amount"]) == Decimal("0.00000007")
    assert {r["connection"] for r in sql_a["quarantine"]} == {"storage", "ws-0", "ws-\\x00-9"}
    assert {r["collector"] for r in sql_a["quarantine"]} == {"tokyo-9"}
    assert in_process.quarantine_stats() == tables.quarantine_stats()
    assert tables.quarantine_stats()["total"] == 5
    assert {n: c.written for n, c in in_process.stats()["sql"].datasets.items()} == \
           {n: c.written for n, c in tables.stats()["parquet"].datasets.items()}


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every record built from a row (``Dataset.from_row``) or a lazy table materialised, by dataset."""
    built: list[str] = []
    for name, ds in DATASETS.items():
        def counted(row: Any, _name: str = name, _from_row: Any = ds.from_row) -> Any:
            built.append(_name)
            return _from_row(row)
        monkeypatch.setitem(schema.DATASETS, name, dataclasses.replace(ds, from_row=counted))
    original = _TableRecords._built

    def materialised(self: _TableRecords) -> list[Record]:
        built.append(f"all of {self.name}")
        return original(self)
    monkeypatch.setattr(_TableRecords, "_built", materialised)
    return built


def _serve(tmp: Path, batches: list[list[Record]]) -> list[tuple[Any, ...]]:
    """Run the child's loop on a real pipe in a thread; send ``batches``, close; its answers."""
    parent, child = multiprocessing.Pipe(duplex=True)
    thread = threading.Thread(target=serve, args=(child, functools.partial(_writer, tmp)))
    thread.start()
    answers = [parent.recv()]
    for seq, records in enumerate(batches, 1):
        parent.send(("batch", seq, encode_batch(records)))
    parent.send(("close",))
    while answers[-1][0] != "closed":
        answers.append(parent.recv())
    thread.join(30)
    parent.close()
    return answers


def test_the_child_builds_no_record_for_a_clean_batch(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    clean = [r for r in sample_records() if not isinstance(r, QuarantinedFrame)]
    books = [sample_book(i) for i in range(200)]
    deals = [sample_deal(t) for t in range(1, 200)]
    late = dataclasses.replace(sample_deal(500), ts_event=sample_deal(500).ts_recv - timedelta(hours=1))
    built = _count_builds(monkeypatch)
    answers = _serve(tmp_path, [[*clean, *books], deals, [*deals[:3], late]])
    kinds = [a[0] for a in answers]
    assert kinds[0] == "ready" and kinds[-1] == "closed" and "pending" not in kinds
    assert max(a[1] for a in answers if a[0] == "ack") == 3
    assert built == ["deals"]  # only the suspect deal of the third batch was built as a record
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'rec.sqlite'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM book_snapshots")).scalar() == 202
        tids = [r[0] for r in conn.execute(sa.text("SELECT tid FROM deals ORDER BY tid"))]
        reason = conn.execute(sa.text("SELECT reason FROM quarantine")).scalar()
    engine.dispose()
    assert tids == sorted([*range(1, 200), next(r.tid for r in clean if isinstance(r, Deal))])
    assert "deals.ts_event" in str(reason)


def test_a_batch_of_tables_and_records_keeps_both(tmp_path: Path) -> None:
    """A pickled part (a record the converter refused) travels beside the tables of a batch."""
    bad = dataclasses.replace(sample_deal(2), price=Decimal("1." + "1" * 30))  # beyond decimal128(38, 18)
    records: list[Record] = [sample_deal(1), bad, sample_deal(3), *[sample_book(i) for i in range(3)]]
    batch = decode_tables(encode_batch(records))
    assert batch.is_table("book_snapshots") and not batch.is_table("deals")
    writer = _writer(tmp_path)
    writer.write(batch)
    writer.flush()
    writer.close()
    assert Batch.of(batch).counts() == {"deals": 3, "book_snapshots": 3}
    stats = writer.stats()["sql"].datasets
    assert stats["deals"].written == 2 and stats["book_snapshots"].written == 3
    assert stats["quarantine"].written == 1
    assert writer.quarantine_stats()["by_dataset"] == {"deals": 1}
