"""DuckDB views over the Parquet datasets answer with the recorded values."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from analysis.duck import connect, register_views
from tests.analysis.recording import hand_records, write_recording


@pytest.fixture
def root(migrated_sqlite_url: str, tmp_path: Path) -> Path:
    root = tmp_path / "parquet"
    write_recording(hand_records(), migrated_sqlite_url, root)
    return root


def test_views_for_every_dataset_written(root: Path) -> None:
    con = connect(root)
    tables = {row[0] for row in con.sql("SHOW TABLES").fetchall()}
    names = {"balances", "book_snapshots", "deals", "feed_events", "klines", "order_status_changes", "orders",
             "tickers"}
    assert tables == names | {f"{n}_raw" for n in names}


def test_deals_by_partition(root: Path) -> None:
    con = connect(root)
    rows = con.sql(
        "SELECT symbol, date, count(*), sum(amount) FROM deals GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert rows == [
        ("btc_usdt", dt.date(2024, 5, 1), 2, Decimal("1.5")),
        ("btc_usdt", dt.date(2024, 5, 2), 2, Decimal("2.25")),
        ("eth_usdt", dt.date(2024, 5, 1), 1, Decimal("3")),
    ]


def test_partition_key_of_balances_is_currency_and_filters_bind(root: Path) -> None:
    con = connect(root)
    rows = con.execute(
        "SELECT free FROM balances WHERE currency = ? ORDER BY ts_recv", ["btc"]
    ).fetchall()
    assert rows == [(Decimal("1"),), (Decimal("3.5"),)]


def test_append_only_states_and_the_latest_one(root: Path) -> None:
    con = connect(root)
    assert con.sql("SELECT count(*) FROM orders_raw WHERE order_id = 7").fetchall() == [(2,)]
    latest = con.sql("SELECT status FROM orders WHERE order_id = 7").fetchall()
    assert latest == [("filled",)]  # OrderStatus.FILLED (a name since schema revision 0003; v1 code 2)


def test_register_views_limits_to_named_datasets(root: Path) -> None:
    import duckdb

    con = duckdb.connect()
    assert register_views(con, root, ["deals", "quarantine"]) == ["deals"]  # no quarantine files
