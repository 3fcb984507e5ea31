"""Bulk SQL (ADBC ingest + INSERT ... SELECT ... ON CONFLICT) against SqlStore (executemany), same run.

``python -m bench.sql_bulk [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]
[--rows 3000 --batches 10]``

Each store writes the same batches (tickers, deals: keep-first; klines: last-seen-wins, every row a
new key), to a fresh SQLite file and, with ``--pg``, a fresh PostgreSQL database (created and
dropped). Prints rows/s per store and database. SQLite's bulk figure is measured with
``sqlite_alone=True``: the recorder never uses it (see recorder.storage.sql_bulk).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from recorder.records import Deal, Kline, KlinePeriod, Record, Side, Ticker
from recorder.storage import migrate
from recorder.storage.sql import SqlStore
from recorder.storage.sql_bulk import BulkSqlStore

T0 = datetime(2026, 11, 23, tzinfo=UTC)


def batches(rows: int, count: int) -> list[list[Record]]:
    """``count`` batches of ``rows`` records (a third each tickers, deals, klines), all new keys."""
    out: list[list[Record]] = []
    n = 0
    for _ in range(count):
        batch: list[Record] = []
        for _ in range(rows // 3):
            t = T0 + timedelta(microseconds=n)
            price = Decimal(6500) + Decimal(n % 997).scaleb(-2)
            batch.append(Ticker(venue="okex_v1", symbol="btc_usdt", ts_event=t, ts_recv=t, buy=price,
                                sell=price + Decimal("0.1"), last=price, high=price, low=price,
                                vol=Decimal(n).scaleb(-8)))
            batch.append(Deal(venue="okex_v1", symbol="btc_usdt", tid=n, price=price,
                              amount=Decimal("0.0125"), side=Side.BUY, ts_event=t, ts_recv=t))
            batch.append(Kline(venue="okex_v1", symbol="btc_usdt", period=KlinePeriod.MIN_1,
                               ts_event=T0 + timedelta(minutes=n), ts_recv=t, open=price, high=price,
                               low=price, close=price, volume=Decimal("1.5")))
            n += 1
        out.append(batch)
    return out


def measure(store: SqlStore, work: list[list[Record]]) -> float:
    """rows/s of writing ``work`` through ``store`` (each batch one transaction)."""
    start = time.perf_counter()
    for batch in work:
        store.write_batch(batch)
    elapsed = time.perf_counter() - start
    store.close()
    return sum(map(len, work)) / elapsed


def run(pg: str | None, rows: int, count: int) -> dict[str, float]:
    """``{"<db> <store>": rows/s}`` for SQLite and, with ``pg``, PostgreSQL."""
    work = batches(rows, count)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("executemany", "bulk"):
            url = f"sqlite:///{Path(tmp) / kind}.sqlite"
            migrate.upgrade(url)
            store = SqlStore(url) if kind == "executemany" else BulkSqlStore(url, sqlite_alone=True)
            results[f"sqlite {kind}"] = measure(store, work)
    if pg:
        admin = sa.create_engine(pg, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        for kind in ("executemany", "bulk"):
            name = f"okex_bench_{uuid.uuid4().hex[:10]}"
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            url = sa.make_url(pg).set(database=name).render_as_string(hide_password=False)
            try:
                migrate.upgrade(url)
                store = SqlStore(url) if kind == "executemany" else BulkSqlStore(url)
                results[f"postgresql {kind}"] = measure(store, work)
            finally:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", help="a PostgreSQL URL whose server may create a scratch database")
    parser.add_argument("--rows", type=int, default=3000, help="records per batch")
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    for name, rate in run(args.pg, args.rows, args.batches).items():
        print(f"{name:28s} {rate:>10,.0f} rows/s")


if __name__ == "__main__":
    main()
