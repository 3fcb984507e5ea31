"""The honest floor stores the same rows as the recorder, dataset by dataset, in both stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench import ingest, streams
from recorder.storage.parquet import open_dataset
from recorder.storage.schema import DATASETS

pytestmark = pytest.mark.bench

TABLES = ("book_snapshots", "tickers", "deals")


def _sql_rows(url: str, table: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(ingest.sa_url(url))
    t = DATASETS[table].table
    cols = [c.name for c in t.columns]
    keys = [c.name for c in t.primary_key.columns]
    with engine.connect() as conn:  # raw stored values, no type processing: text on SQLite, NUMERIC on PG
        rows = conn.exec_driver_sql(
            f"SELECT {', '.join(cols)} FROM {table} ORDER BY {', '.join(keys)}").fetchall()
    engine.dispose()
    return [tuple(r) for r in rows]


def _parquet_rows(root: Path, table: str) -> list[dict[str, object]]:
    rows = open_dataset(str(root), table).to_table().to_pylist()
    keys = [c.name for c in DATASETS[table].table.primary_key.columns]
    return sorted(rows, key=lambda r: tuple(r[k] for k in keys))


def _compare(tmp_path: Path, url_floor: str, url_rec: str) -> None:
    stream = streams.generate(3_000, 20)
    frames = [f.decode() for f in stream.frames]
    (tmp_path / "floor").mkdir()
    (tmp_path / "rec").mkdir()
    ingest.run_floor_job(frames, url_floor, tmp_path / "floor")
    ingest.run_recorder(frames, url_rec, tmp_path / "rec")
    for table in TABLES:
        rec_sql, floor_sql = _sql_rows(url_rec, table), _sql_rows(url_floor, table)
        assert len(rec_sql) > 100
        assert floor_sql == rec_sql, table
        rec_pq = _parquet_rows(tmp_path / "rec" / "parquet", table)
        floor_pq = _parquet_rows(tmp_path / "floor" / "parquet", table)
        assert len(rec_pq) == len(rec_sql)
        assert floor_pq == rec_pq, table


def test_honest_floor_stores_the_recorders_rows_sqlite(tmp_path: Path) -> None:
    _compare(tmp_path, f"sqlite:///{tmp_path / 'floor.sqlite'}", f"sqlite:///{tmp_path / 'rec.sqlite'}")


@pytest.mark.postgres
def test_honest_floor_stores_the_recorders_rows_postgres(tmp_path: Path) -> None:
    if not os.environ.get("OKEX_TEST_PG_URL"):
        pytest.skip("OKEX_TEST_PG_URL not set")
    with ingest.throwaway_pg() as floor_url, ingest.throwaway_pg() as rec_url:
        if floor_url is None or rec_url is None:
            pytest.skip("PostgreSQL not reachable")
        _compare(tmp_path, floor_url, rec_url)
