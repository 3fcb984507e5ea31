"""Query the Parquet datasets in place with DuckDB: one view per dataset.

    >>> from analysis.duck import connect
    >>> con = connect("data/parquet")
    >>> con.sql("SELECT symbol, count(*) FROM deals GROUP BY symbol").df()

Each view reads ``<root>/<dataset>/venue=*/date=*/<key>=*/*.parquet`` with Hive partitioning,
and, in roots written before schema revision 0003, ``<root>/<dataset>/date=*/<key>=*/*.parquet``
(venue ``okex_v1``, v1 order status codes shown as their names), so it has the dataset's columns
(:data:`recorder.storage.schema.DATASETS`, in that order) plus ``date`` (DATE, the UTC date
partition); the partition columns (``venue``, and ``symbol``; ``currency`` for balances;
``connection`` for feed events) are VARCHAR; a ``WHERE`` on ``date``, the venue or the key skips
whole directories. Files written before a column existed read it as NULL
(``feed_events.collector``, ``quarantine.collector``: schema revision 0002). Decimals
are ``DECIMAL(38,18)``, timestamps ``TIMESTAMP WITH TIME ZONE`` (set
``SET TimeZone = 'UTC'`` to see them in UTC; the connection made here does).

A root on S3-compatible storage (``connect("s3://bucket/prefix")``) is read through
:mod:`pyarrow.dataset` on the recorder's own :class:`pyarrow.fs.S3FileSystem` (endpoint and
credentials from ``AWS_*`` variables / ``~/.aws``, see :mod:`recorder.storage.fs`): each view
is a registered Arrow dataset, with the same columns and types, filters and projections
pushed down to the Parquet scan. DuckDB's ``httpfs`` extension is not used (it cannot be
installed offline, and would be a second credential path).

The Parquet datasets are append-only: an order, an open kline or a feed-event span appears once
per state written, and a row can be stored twice (a journal replay, a compaction caught midway, a
fill read again by a poller started before it resumed from storage). Each view ``<name>`` holds
what the SQL store holds: one row per key of the dataset (``Spec.key``), the earliest ``ts_recv``
for the keep-first datasets (deals, fills, status changes, ...), the latest ``ts_recv`` for orders
and klines, the closed state of a feed-event span (:func:`dedupe_sql`), like :mod:`analysis.load`
and :mod:`analysis.lazy`. ``<name>_raw`` is every stored copy, as in the files. The de-duplicating
window is partitioned by the key and by the partition columns that are the same in every copy of a
key, so a ``WHERE`` on ``date``, the venue or the symbol still skips directories (not on ``date``
for orders and status changes, whose ``date`` is that of ``ts_recv``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb
import pyarrow as pa

from recorder.storage.datasets import LEGACY_VENUE, Merge
from recorder.storage.fs import is_dir, is_object_store_uri, resolve
from recorder.storage.parquet import open_dataset
from recorder.storage.schema import DATASETS, V1_STATUS_NAMES, Dataset

__all__ = ["RAW_SUFFIX", "connect", "dedupe_sql", "register_views"]

RAW_SUFFIX = "_raw"
"""``<dataset>_raw``: the view of every stored copy."""


def register_views(
    con: duckdb.DuckDBPyConnection, parquet_root: str | Path, datasets: Iterable[str] | None = None
) -> list[str]:
    """Create (or replace) two views per dataset found under ``parquet_root`` on ``con``: ``<name>``,
    one row per key as the SQL store keeps it, and ``<name>_raw``, every stored copy.

    ``datasets`` limits the views to those names (default: every dataset of the schema
    that has at least one Parquet file). Returns the dataset names of the views created, sorted.
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
        parts = []
        # The layout since schema revision 0003 (venue=V/date=D/key=K), and the one before it
        # (date=D/key=K, venue okex_v1); feed events and quarantine have no venue level.
        layouts = [("venue=*/date=*/*/*.parquet", None), ("date=*/*/*.parquet", dataset.venue_partitioned)]
        for pattern, legacy in layouts:
            if not any(directory.glob(pattern)):
                continue
            # union_by_name: files written before a column existed (feed_events.collector) read it as NULL
            relation = con.read_parquet(str(directory / pattern), hive_partitioning=True, union_by_name=True)
            columns = _view_columns(dataset, relation.columns, legacy_venue=bool(legacy))
            parts.append(relation.select(*columns))
        if not parts:
            continue
        view = parts[0]
        for part in parts[1:]:
            view = view.union(part)  # UNION ALL
        view.create_view(name + RAW_SUFFIX, replace=True)
        _create_deduped(con, name)
        created.append(name)
    return created


def dedupe_sql(name: str, source: str) -> str:
    """The ``SELECT`` of dataset ``name``'s rows in ``source`` (a view or table with its columns)
    reduced to one row per key as the SQL store merges them (:class:`~recorder.storage.datasets.Merge`):
    keep-first: the earliest ``ts_recv``; last-seen-wins: the latest ``ts_recv``; spans: the latest
    ``ts_end``, a closed span over its open copy; append-only (quarantine): every row."""
    dataset = DATASETS[name]
    spec = dataset.spec
    if spec is None or not spec.key:
        return f'SELECT * FROM "{source}"'  # noqa: S608 - names from the schema, not from input
    order = {Merge.KEEP_FIRST: "ts_recv ASC", Merge.LAST_SEEN_WINS: "ts_recv DESC",
             Merge.SPAN: "ts_end DESC NULLS LAST"}[spec.merge]
    # partition columns equal in every copy of a key join the window's partition, so filters on them
    # are pushed below it (into the scan); the date is, unless it is that of a ts_recv outside the key
    stable = [p for p in spec.partition if p != "date" or spec.date_column in spec.key
              or spec.date_column != "ts_recv"]
    by = ", ".join(f'"{c}"' for c in dict.fromkeys([*spec.key, *stable]))
    return (f'SELECT * FROM "{source}" '  # noqa: S608 - names from the schema, not from input
            f"QUALIFY row_number() OVER (PARTITION BY {by} ORDER BY {order}) = 1")


def _create_deduped(con: duckdb.DuckDBPyConnection, name: str) -> None:
    con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {dedupe_sql(name, name + RAW_SUFFIX)}')


_DUCK_TYPES = {pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.bool_(): "BOOLEAN",
               pa.binary(): "BLOB"}


def _duck_type(kind: pa.DataType) -> str:
    if pa.types.is_decimal(kind):
        return f"DECIMAL({kind.precision}, {kind.scale})"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMPTZ"
    return _DUCK_TYPES[kind]


def _view_columns(dataset: Dataset, present: list[str], *, legacy_venue: bool) -> list[duckdb.Expression]:
    """The columns of :func:`recorder.storage.parquet.open_dataset`: the file columns in schema order,
    then the partitions in path order (``venue``, ``date`` as DATE, the key as VARCHAR). A column no
    file has yet is NULL; the venue of a root without the venue level is ``okex_v1``."""
    out: list[duckdb.Expression] = []
    partitions = [p for p in dataset.spec.partition] if dataset.spec is not None else []
    fields = [f for f in dataset.arrow_schema if f.name not in partitions]
    for f in fields:
        if f.name in ("status", "previous_status") and legacy_venue and f.name in present:
            # v1 small-int statuses in files written before revision 0003: their neutral names
            whens = " ".join(f"WHEN '{code}' THEN '{name}'" for code, name in V1_STATUS_NAMES.items())
            text = f'CAST("{f.name}" AS VARCHAR)'
            out.append(duckdb.SQLExpression(f"CASE {text} {whens} ELSE {text} END").alias(f.name))
        elif f.name not in present:
            out.append(duckdb.SQLExpression(f"CAST(NULL AS {_duck_type(f.type)})").alias(f.name))
        else:
            out.append(duckdb.ColumnExpression(f.name))
    for p in partitions:
        if p == "date":
            out.append(duckdb.ColumnExpression("date").cast(duckdb.sqltypes.DATE).alias("date"))
        elif p == "venue" and legacy_venue:
            out.append(duckdb.ConstantExpression(LEGACY_VENUE).cast(duckdb.sqltypes.VARCHAR).alias("venue"))
        else:
            out.append(duckdb.ColumnExpression(p).cast(duckdb.sqltypes.VARCHAR).alias(p))
    return out


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
        con.register(name + RAW_SUFFIX, arrow)
        _create_deduped(con, name)
        created.append(name)
    return created


def connect(
    parquet_root: str | Path, database: str = ":memory:", datasets: Iterable[str] | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection (in memory by default) with the views of :func:`register_views`
    (``<name>`` de-duplicated by key, ``<name>_raw`` every stored copy) and the session time zone
    set to UTC. ``parquet_root`` is a local directory or
    ``s3://bucket/prefix``."""
    con = duckdb.connect(database)
    con.execute("SET TimeZone = 'UTC'")
    register_views(con, parquet_root, datasets)
    return con
