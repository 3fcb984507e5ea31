"""Query the Parquet datasets in place with DuckDB: one view per dataset.

    >>> from analysis.duck import connect
    >>> con = connect("data/parquet")
    >>> con.sql("SELECT symbol, count(*) FROM deals GROUP BY symbol").df()

Each view reads ``<root>/<dataset>/date=*/<key>=*/*.parquet`` with Hive partitioning, so
it has the dataset's columns (:data:`recorder.storage.schema.DATASETS`) plus ``date``
(DATE, the UTC date partition) and the partition key column (``symbol``; ``currency``
for balances; ``connection`` for feed events) as VARCHAR; a ``WHERE`` on ``date`` or the
key skips whole directories. Files written before a column existed read it as NULL
(``feed_events.collector``, ``quarantine.collector``: schema revision 0002). Decimals
are ``DECIMAL(38,18)``, timestamps ``TIMESTAMP WITH TIME ZONE`` (set
``SET TimeZone = 'UTC'`` to see them in UTC; the connection made here does).

A root on S3-compatible storage (``connect("s3://bucket/prefix")``) is read through
:mod:`pyarrow.dataset` on the recorder's own :class:`pyarrow.fs.S3FileSystem` (endpoint and
credentials from ``AWS_*`` variables / ``~/.aws``, see :mod:`recorder.storage.fs`): each view
is a registered Arrow dataset, with the same columns and types, filters and projections
pushed down to the Parquet scan. DuckDB's ``httpfs`` extension is not used (it cannot be
installed offline, and would be a second credential path).

The Parquet datasets are append-only: an order, an open kline or a feed-event span
appears once per state written. Take the latest state in SQL, e.g.
``SELECT * FROM orders QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY ts_recv DESC) = 1``
(:mod:`analysis.load` does this for you).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb
import pyarrow as pa

from recorder.storage.fs import is_dir, is_object_store_uri, resolve
from recorder.storage.parquet import open_dataset
from recorder.storage.schema import DATASETS

__all__ = ["connect", "register_views"]


def register_views(
    con: duckdb.DuckDBPyConnection, parquet_root: str | Path, datasets: Iterable[str] | None = None
) -> list[str]:
    """Create (or replace) one view per dataset found under ``parquet_root`` on ``con``.

    ``datasets`` limits the views to those names (default: every dataset of the schema
    that has at least one Parquet file). Returns the names of the views created, sorted.
    Raises KeyError for an unknown dataset name.
    """
    names = sorted(DATASETS) if datasets is None else sorted(datasets)
    if is_object_store_uri(parquet_root):
        return _register_arrow_views(con, str(parquet_root), names)
    root = Path(parquet_root)
    created: list[str] = []
    for name in names:
        dataset = DATASETS[name]
        directory = root / name
        if not any(directory.glob("*/*/*.parquet")):
            continue
        # union_by_name: files written before a column existed (feed_events.collector) read it as NULL
        relation = con.read_parquet(str(directory / "*" / "*" / "*.parquet"), hive_partitioning=True,
                                    union_by_name=True)
        key = dataset.key_column
        columns = [
            duckdb.ColumnExpression(c).cast(duckdb.sqltypes.VARCHAR).alias(c)
            if c == key
            else duckdb.ColumnExpression(c).cast(duckdb.sqltypes.DATE).alias(c)
            if c == "date"
            else duckdb.ColumnExpression(c)
            for c in relation.columns
        ]
        columns += [  # a column no file has yet (only files older than it): NULL
            duckdb.ConstantExpression(None).cast(duckdb.sqltypes.VARCHAR).alias(f.name)
            for f in dataset.arrow_schema if f.name not in relation.columns and f.type == pa.string()
        ]
        relation.select(*columns).create_view(name, replace=True)
        created.append(name)
    return created


def _register_arrow_views(con: duckdb.DuckDBPyConnection, root: str, names: list[str]) -> list[str]:
    """One view per dataset with at least one file under an object-storage ``root``: an Arrow dataset."""
    fs, base = resolve(root)
    created: list[str] = []
    for name in names:
        if name not in DATASETS:
            raise KeyError(name)
        if not is_dir(fs, f"{base}/{name}"):
            continue
        arrow = open_dataset(base, name, filesystem=fs)
        if not arrow.files:
            continue
        con.register(name, arrow)
        created.append(name)
    return created


def connect(
    parquet_root: str | Path, database: str = ":memory:", datasets: Iterable[str] | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection (in memory by default) with the views of :func:`register_views`
    and the session time zone set to UTC. ``parquet_root`` is a local directory or
    ``s3://bucket/prefix``."""
    con = duckdb.connect(database)
    con.execute("SET TimeZone = 'UTC'")
    register_views(con, parquet_root, datasets)
    return con
