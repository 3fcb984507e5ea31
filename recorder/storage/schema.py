"""The storage schema, derived from the one declarative spec :mod:`recorder.storage.datasets`.

Every record type of :mod:`recorder.records` has one *dataset*: a SQL table in
:data:`metadata` and an explicit :class:`pyarrow.Schema` with the same columns,
joined by one converter (:attr:`Dataset.to_row`) that every store uses. All of them
are built here from :data:`recorder.storage.datasets.SPECS`; nothing is written twice.

Representations (see ``docs/storage.md``):

* **Decimals** are exact everywhere. SQL: :class:`ExactDecimal` is ``NUMERIC``
  (unconstrained, so nothing is rounded) on PostgreSQL and ``TEXT`` holding the
  canonical plain string (:func:`recorder.storage.codecs.decimal_text`) on SQLite;
  both read back as :class:`~decimal.Decimal`. Arrow: ``decimal128(38, 18)``.
* **Timestamps** are timezone-aware UTC. SQL: :class:`UtcDateTime` is
  ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL and the fixed-width ISO text
  ``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC, sorts correctly) on SQLite; both read back
  tz-aware UTC. Arrow: ``timestamp("us", tz="UTC")``.
* **Enums** are stored as their values (``"buy"``, ``"depth_5"``, ``"1min"``, order
  statuses as their neutral names ``"filled"``... since revision 0003).
* **Book levels** are JSON text ``[["price", "amount"], ...]`` (plain decimal strings,
  best level first) in both stores, beside queryable top-of-book columns.

Partitions (Parquet): ``<dataset>/venue=<venue>/date=<UTC date>/<key>=<value>/`` for
every market and account dataset; ``<dataset>/date=.../connection=.../`` for feed events
and quarantined frames (their ``venue`` is a plain column: many events belong to no one venue).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, overload

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from recorder.records import BookSnapshot, Record
from recorder.storage.codecs import decimal_text, decimal_texts, levels_from_json, levels_to_json, to_utc
from recorder.storage.datasets import SPECS, Column, Kind, Merge, Spec

__all__ = [
    "ARROW_DECIMAL",
    "ARROW_TIMESTAMP",
    "DATASETS",
    "Batch",
    "Dataset",
    "ExactDecimal",
    "Merge",
    "RowLike",
    "UtcDateTime",
    "conform",
    "dataset_for",
    "levels_from_json",
    "levels_to_json",
    "metadata",
    "plain_decimal",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
"""The one SQL schema; Alembic's ``target_metadata``."""

RowLike = Mapping[Any, Any]
"""A row read back: a dict from :attr:`Dataset.to_row`, a SQLAlchemy ``RowMapping``, a pyarrow pylist item."""

ARROW_DECIMAL = pa.decimal128(38, 18)
ARROW_TIMESTAMP = pa.timestamp("us", tz="UTC")

plain_decimal = decimal_text  # the one exact-decimal codec (recorder.storage.codecs), old name


# --------------------------------------------------------------------------- column types


class ExactDecimal(sa.types.TypeDecorator[Decimal]):
    """An exact decimal: ``NUMERIC`` on PostgreSQL, canonical plain ``TEXT`` on SQLite."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.Numeric(asdecimal=True))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"expected Decimal, got {type(value).__name__}")
        if dialect.name == "postgresql":
            if not value.is_finite():
                raise ValueError(f"not a finite decimal: {value!r}")
            return value
        return decimal_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        return Decimal(value)


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime; refuses naive datetimes, always reads back aware UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = to_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# --------------------------------------------------------------------------- derivation


def _sql_type(c: Column) -> sa.types.TypeEngine[Any]:
    if c.kind is Kind.TEXT:
        return sa.String(c.length) if c.length is not None else sa.Text()
    types: dict[Kind, sa.types.TypeEngine[Any]] = {
        Kind.DECIMAL: ExactDecimal(), Kind.TIMESTAMP: UtcDateTime(), Kind.INT32: sa.Integer(),
        Kind.INT64: sa.BigInteger(), Kind.BOOL: sa.Boolean(), Kind.BYTES: sa.LargeBinary(),
    }
    return types[c.kind]


_ARROW_TYPES = {
    Kind.TEXT: pa.string(), Kind.DECIMAL: ARROW_DECIMAL, Kind.TIMESTAMP: ARROW_TIMESTAMP,
    Kind.INT32: pa.int32(), Kind.INT64: pa.int64(), Kind.BOOL: pa.bool_(), Kind.BYTES: pa.binary(),
}


def _table(spec: Spec) -> sa.Table:
    items: list[Any] = []
    for c in spec.columns:
        if c.sql_only:
            items.append(sa.Column(c.name, _sql_type(c), primary_key=True, autoincrement=True,
                                   info={"sql_only": True}, comment=None))
            continue
        items.append(sa.Column(c.name, _sql_type(c), nullable=c.nullable,
                               autoincrement=False if c.kind is Kind.INT64 else "auto"))
    if spec.key:
        items.append(sa.PrimaryKeyConstraint(*spec.key))
    for cols in spec.indexes:
        items.append(sa.Index(f"ix_{spec.name}_{'_'.join(cols)}", *cols))
    return sa.Table(spec.name, metadata, *items)


def _arrow_schema(spec: Spec) -> pa.Schema:
    return pa.schema([pa.field(c.name, _ARROW_TYPES[c.kind], nullable=c.nullable)
                      for c in spec.columns if not c.sql_only])


def _enum_value(v: Any) -> Any:
    return None if v is None else v.value


def _enum_getter(get: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda r: _enum_value(get(r))


def _row_converter(spec: Spec) -> Callable[[Any], dict[str, Any]]:
    getters: list[tuple[str, Callable[[Any], Any]]] = []
    for c in spec.columns:
        if c.sql_only:
            continue
        if c.get is not None:
            getters.append((c.name, c.get))
        elif c.enum is not None:
            getters.append((c.name, _enum_getter(attrgetter(c.attr or c.name))))
        else:
            getters.append((c.name, attrgetter(c.attr or c.name)))

    def to_row(record: Any) -> dict[str, Any]:
        return {name: get(record) for name, get in getters}

    return to_row


def _column_converter(spec: Spec) -> Callable[[Sequence[Any]], Columns]:
    plan: list[tuple[str, Callable[[Any], Any], bool]] = []  # name, getter, enum
    for c in spec.columns:
        if c.sql_only:
            continue
        if c.get is not None:
            plan.append((c.name, c.get, False))
        else:
            plan.append((c.name, attrgetter(c.attr or c.name), c.enum is not None))

    def columns(records: Sequence[Any]) -> Columns:
        out: Columns = {}
        for name, get, is_enum in plan:
            values = list(map(get, records))
            out[name] = [None if v is None else v.value for v in values] if is_enum else values
        return out

    return columns


def _reader(spec: Spec) -> Callable[[RowLike], Any]:
    fields: list[tuple[str, str, bool, Callable[[Any], Any] | None, Any]] = []
    for c in spec.columns:
        attr = c.attr
        if attr is None or c.sql_only:
            continue
        convert = c.put if c.put is not None else c.enum
        fields.append((attr, c.name, c.nullable or c.legacy is not None, convert, c.legacy))
    kind = spec.record_type

    def from_row(row: RowLike) -> Any:
        kwargs = {}
        for attr, name, optional, convert, legacy in fields:
            v = row.get(name, legacy) if optional else row[name]
            if v is None:
                v = legacy
            elif convert is not None:
                v = convert(v)
            kwargs[attr] = v
        return kind(**kwargs)

    return from_row


Columns = dict[str, list[Any]]

_NO_LEVEL = (None, None)


def _book_columns(records: Sequence[BookSnapshot]) -> Columns:
    # The hot path of the busiest dataset: the same values as the spec's getters, fewer passes.
    bids = [r.bids for r in records]
    asks = [r.asks for r in records]
    best_bids = [b[0] if b else _NO_LEVEL for b in bids]
    best_asks = [a[0] if a else _NO_LEVEL for a in asks]
    return {
        "venue": [r.venue for r in records],
        "symbol": [r.symbol for r in records], "ts_event": [r.ts_event for r in records],
        "ts_recv": [r.ts_recv for r in records], "source": [r.source for r in records],
        "depth": [max(len(b), len(a)) for b, a in zip(bids, asks, strict=True)],
        "best_bid": [b[0] for b in best_bids], "best_bid_amount": [b[1] for b in best_bids],
        "best_ask": [a[0] for a in best_asks], "best_ask_amount": [a[1] for a in best_asks],
        "bids": list(map(levels_to_json, bids)), "asks": list(map(levels_to_json, asks)),
        "seq_id": [r.seq_id for r in records],
    }


_FAST_COLUMNS: dict[str, Callable[[Sequence[Any]], Columns]] = {"book_snapshots": _book_columns}

_UTC_ZONES = frozenset({UTC})


def _check_aware(values: list[Any]) -> None:
    # A naive datetime must not pass as UTC (pyarrow would take it as UTC silently).
    zones = set(map(attrgetter("tzinfo"), [v for v in values if v is not None]))
    if zones <= _UTC_ZONES:
        return
    for v in values:
        if v is not None and (not isinstance(v, datetime) or v.utcoffset() is None):
            raise ValueError(f"expected a timezone-aware datetime, got {v!r}")


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True, slots=True)
class Dataset:
    """One kind of record in every store, derived from its :class:`~recorder.storage.datasets.Spec`.

    ``to_row(record)`` gives a dict keyed by column name with Python values (Decimal,
    aware UTC datetime, enum *values*, str, int, bytes), usable as SQL bind
    parameters and as Arrow input alike; ``from_row(mapping)`` rebuilds the record
    (a row of an older schema version lacking a column gets the spec's ``legacy`` value,
    e.g. venue ``okex_v1``). ``date_column`` holds the datetime whose UTC date is the
    Parquet ``date=`` partition; ``partition_columns`` the other partition columns in path
    order (``venue`` then ``key_column`` for market data), ``key_column`` the last one.
    """

    name: str
    table: sa.Table
    arrow_schema: pa.Schema
    record_type: type
    to_row: Callable[[Any], dict[str, Any]]
    from_row: Callable[[RowLike], Any]
    date_column: str
    key_column: str
    columns: Callable[[Sequence[Any]], Columns] | None = None
    spec: Spec | None = None

    @property
    def key(self) -> tuple[str, ...]:
        """The natural key (the SQL primary key; () for quarantine)."""
        return self.spec.key if self.spec is not None else ()

    @property
    def merge(self) -> Merge:
        return self.spec.merge if self.spec is not None else Merge.KEEP_FIRST

    @property
    def partition_columns(self) -> tuple[str, ...]:
        """Partition columns other than ``date``, in path order (e.g. ``("venue", "symbol")``)."""
        assert self.spec is not None
        return tuple(p for p in self.spec.partition if p != "date")

    @property
    def venue_partitioned(self) -> bool:
        return self.spec is not None and "venue" in self.spec.partition

    @property
    def path_checked(self) -> tuple[str, ...]:
        return self.spec.path_checked if self.spec is not None else ()

    def to_columns(self, records: Sequence[Any]) -> Columns:
        """The rows of ``records`` as columns: the same values as :attr:`to_row`, keyed by column name."""
        if self.columns is not None:
            return self.columns(records)
        rows = [self.to_row(r) for r in records]
        return {f.name: [row[f.name] for row in rows] for f in self.arrow_schema}

    def to_table(self, records: Sequence[Any]) -> pa.Table:
        """``records`` (all of this dataset) as an Arrow table of :attr:`arrow_schema`, column by column.

        Raises ValueError for a naive datetime or a non-finite decimal, and pyarrow's
        ``ArrowInvalid`` / ``ArrowTypeError`` for a value the Arrow type cannot hold
        (e.g. more than 18 fractional digits).
        """
        columns = self.to_columns(records)
        arrays = []
        for f in self.arrow_schema:
            values = columns[f.name]
            if f.type == ARROW_TIMESTAMP:
                _check_aware(values)
            arrays.append(pa.array(values, f.type))
        return pa.Table.from_arrays(arrays, schema=self.arrow_schema)

    def partition_date(self, row: RowLike) -> date:
        """The UTC date of the row's partition datetime."""
        ts: datetime = row[self.date_column]
        return ts.astimezone(UTC).date()

    def partition_key(self, row: RowLike) -> str:
        """The value of the row's last partition: its symbol, currency or connection."""
        return str(row[self.key_column])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in ``schema``: its columns in that order, cast, columns it lacks added.

    For rows written by an older schema version (e.g. Parquet files, journal segments or bus
    messages from before the ``collector`` column of revision 0002 or the ``venue`` column of
    0003). A missing column is filled with its spec's ``legacy`` value (``venue``: ``okex_v1``),
    else with nulls if nullable. Columns ``schema`` does not name are dropped. Raises KeyError
    for a missing non-nullable column without a legacy value and pyarrow's ``ArrowInvalid`` /
    ``ArrowTypeError`` for a column that cannot be cast (v1 small-int order statuses are
    mapped to their names).
    """
    if table.column_names == schema.names:
        return table.cast(schema)
    names = set(table.column_names)
    legacy = _legacy_values(schema)
    columns = []
    for f in schema:
        if f.name in names:
            column = table.column(f.name)
            if f.name in STATUS_COLUMNS and pa.types.is_integer(column.type):
                column = status_names(column)
            columns.append(column)
        elif f.name in legacy:
            columns.append(pa.array([legacy[f.name]] * table.num_rows, f.type))
        elif f.nullable:
            columns.append(pa.nulls(table.num_rows, f.type))
        else:
            raise KeyError(f"column {f.name!r} missing (and not nullable)")
    return pa.Table.from_arrays(columns, names=schema.names).cast(schema)


V1_STATUS_NAMES = {-1: "cancelled", 0: "open", 1: "partially_filled", 2: "filled", 3: "cancelling",
                   4: "failed", 5: "placing"}
"""How schema revisions 0001-0002 held an order status (OkEx v1's small ints); 0003 stores the names."""


STATUS_COLUMNS = ("status", "previous_status")
_NAME_OF_CODE = {**{str(code): name for code, name in V1_STATUS_NAMES.items()},
                 **{name: name for name in V1_STATUS_NAMES.values()}}


def status_names(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """An order-status column as names: v1 codes (ints, or their text as a reader casting an old
    file to the new schema gives) become ``V1_STATUS_NAMES``; names stay."""
    values = column.to_pylist()
    return pa.array([None if v is None else _NAME_OF_CODE.get(str(v), str(v)) for v in values], pa.string())


def _legacy_values(schema: pa.Schema) -> dict[str, Any]:
    """The spec's ``legacy`` values of the dataset ``schema`` (or a file schema: a subset) belongs to."""
    names = set(schema.names)
    for spec in SPECS:
        if names <= {c.name for c in spec.columns}:
            return {c.name: c.legacy for c in spec.columns if c.legacy is not None}
    return {}


def _dataset(spec: Spec) -> Dataset:
    partition = [p for p in spec.partition if p != "date"]
    return Dataset(
        spec.name, _table(spec), _arrow_schema(spec), spec.record_type, _row_converter(spec), _reader(spec),
        spec.date_column, partition[-1], _FAST_COLUMNS.get(spec.name, _column_converter(spec)), spec,
    )


DATASETS: dict[str, Dataset] = {spec.name: _dataset(spec) for spec in SPECS}
"""Every dataset by name (the SQL table name, and the Parquet dataset directory name)."""

# The SQL tables by name, for readers and tests (``schema.deals``...).
tickers = DATASETS["tickers"].table
book_snapshots = DATASETS["book_snapshots"].table
deals = DATASETS["deals"].table
klines = DATASETS["klines"].table
balances = DATASETS["balances"].table
orders = DATASETS["orders"].table
order_status_changes = DATASETS["order_status_changes"].table
instruments = DATASETS["instruments"].table
fills = DATASETS["fills"].table
feed_events = DATASETS["feed_events"].table
quarantine = DATASETS["quarantine"].table

_BY_TYPE: dict[type, Dataset] = {d.record_type: d for d in DATASETS.values()}


def dataset_for(record: Record) -> Dataset:
    """The dataset a record belongs to; raises TypeError for anything that is not a Record."""
    try:
        return _BY_TYPE[type(record)]
    except KeyError:
        raise TypeError(f"not a storable record: {type(record).__name__}") from None


class Batch(Sequence[Record]):
    """Records of any datasets: a sequence in arrival order, grouped per dataset, converted once.

    The storage writer builds one per flush and hands the same batch to every store, so
    each dataset's Arrow table (:meth:`table`, which both stores derive their rows from) is
    built once. Raises TypeError for anything that is not a storable record.
    """

    __slots__ = ("_records", "_tables", "groups")

    def __init__(self, records: Sequence[Record]) -> None:
        self._records = records
        self.groups: dict[str, list[Record]] = {}  # dataset name -> its records, in order
        self._tables: dict[str, pa.Table] = {}
        groups = self.groups
        by_type: dict[type, list[Record]] = {}
        for record in records:
            kind = type(record)
            group = by_type.get(kind)
            if group is None:
                dataset = _BY_TYPE.get(kind)
                if dataset is None:
                    raise TypeError(f"not a storable record: {kind.__name__}")
                group = by_type[kind] = groups[dataset.name] = []
            group.append(record)

    @classmethod
    def of(cls, records: Sequence[Record]) -> Batch:
        """``records`` as a batch (itself if it is one already)."""
        return records if isinstance(records, Batch) else cls(records)

    @classmethod
    def from_table(cls, name: str, table: pa.Table) -> Batch:
        """A batch of one dataset's rows already in Arrow form (a journal segment being replayed).

        Stores take the table as it is (no records are rebuilt, no second conversion); the
        records are built from it only if something asks for them (a store refusing rows,
        which the writer then isolates one by one). ``table`` is conformed to the dataset's
        schema (rows of an older schema version read as the spec says).
        """
        table = conform(table, DATASETS[name].arrow_schema)
        batch = cls.__new__(cls)
        lazy = _TableRecords(name, table)
        batch._records = lazy
        batch._tables = {name: table}
        batch.groups = {name: lazy}  # type: ignore[dict-item]
        return batch

    @classmethod
    def from_groups(cls, groups: Mapping[str, Sequence[Record] | pa.Table]) -> Batch:
        """A batch of several datasets, each given as its records or as its Arrow table.

        A dataset given as a table stays table-native (as in :meth:`from_table`: the stores take
        the table, records are built only if something asks for them); one given as records is
        as in ``Batch(records)``. Order: dataset by dataset, as given. Raises TypeError for a
        record of another dataset than its group's.
        """
        batch = cls.__new__(cls)
        batch.groups = {}
        batch._tables = {}
        for name, group in groups.items():
            if isinstance(group, pa.Table):
                schema = DATASETS[name].arrow_schema
                table = group if group.schema.equals(schema) else conform(group, schema)
                lazy = _TableRecords(name, table)
                batch._tables[name] = table
                batch.groups[name] = lazy  # type: ignore[assignment]
                continue
            kind = DATASETS[name].record_type
            for record in group:
                if type(record) is not kind:
                    raise TypeError(f"not a {name} record: {type(record).__name__}")
            batch.groups[name] = list(group)
        parts: list[Sequence[Record]] = [g for g in batch.groups.values() if len(g)]
        batch._records = parts[0] if len(parts) == 1 else _Chain(parts)
        return batch

    @property
    def table_native(self) -> bool:
        """Whether some dataset of this batch is held as an Arrow table (records not built)."""
        return any(isinstance(g, _TableRecords) for g in self.groups.values())

    def is_table(self, name: str) -> bool:
        """Whether dataset ``name`` of this batch is held as an Arrow table (records not built)."""
        return isinstance(self.groups.get(name), _TableRecords)

    @classmethod
    def merged(cls, parts: Sequence[Batch]) -> Batch:
        """One batch of ``parts`` (in order). A dataset table-native in any part is concatenated as
        tables (the other parts' tables built for it); if a part cannot build its table, that
        dataset is merged as records instead (rare: the records are then built)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls([])
        if len(parts) == 1:
            return parts[0]
        names = list(dict.fromkeys(n for p in parts for n in p.groups))
        groups: dict[str, Sequence[Record] | pa.Table] = {}
        for name in names:
            holding = [p for p in parts if p.groups.get(name)]
            if any(isinstance(p.groups[name], _TableRecords) for p in holding):
                try:
                    tables = [p.table(name) for p in holding]
                except (pa.ArrowException, ValueError, TypeError, OverflowError, ArithmeticError):
                    pass
                else:
                    groups[name] = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
                    continue
            groups[name] = [r for p in holding for r in p.groups[name]]
        return cls.from_groups(groups)

    def rows(self, name: str) -> list[dict[str, Any]]:
        """One dataset's rows as dicts (:attr:`Dataset.to_row` values): from the records, or
        from the Arrow table of a batch made by :meth:`from_table`.

        Decimals from a table come as their canonical value (``1.5``), not with the
        ``decimal128(38, 18)`` column's 18 fractional digits, so a database column without a
        scale (PostgreSQL ``NUMERIC``) holds what the record path would give it, less only the
        trailing zeros Arrow does not keep."""
        group = self.groups[name]
        if isinstance(group, _TableRecords):
            return table_rows(group.table)
        to_row = DATASETS[name].to_row
        return [to_row(r) for r in group]

    def __len__(self) -> int:
        return len(self._records)

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Record]: ...
    def __getitem__(self, index: int | slice) -> Record | Sequence[Record]:
        return self._records[index]

    def __iter__(self) -> Iterator[Record]:
        return iter(self._records)

    def counts(self) -> dict[str, int]:
        """Rows per dataset name."""
        return {name: len(group) for name, group in self.groups.items()}

    def table(self, name: str) -> pa.Table:
        """The Arrow table of one dataset's records (built on first use, then shared).

        Raises like :meth:`Dataset.to_table` (nothing is cached then).
        """
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = DATASETS[name].to_table(self.groups[name])
        return table


class _Chain(Sequence[Record]):
    """Several groups of records read as one sequence (built from tables only when read)."""

    __slots__ = ("_flat", "parts")

    def __init__(self, parts: list[Sequence[Record]]) -> None:
        self.parts = parts
        self._flat: list[Record] | None = None

    def _all(self) -> list[Record]:
        if self._flat is None:
            self._flat = [r for p in self.parts for r in p]
        return self._flat

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Record]: ...
    def __getitem__(self, index: int | slice) -> Record | Sequence[Record]:
        return self._all()[index]

    def __iter__(self) -> Iterator[Record]:
        return iter(self._all())


def table_rows(table: pa.Table) -> list[dict[str, Any]]:
    """``table``'s rows as dicts, decimals as their canonical value (``1.5``, not the
    ``decimal128(38, 18)`` column's ``1.500000000000000000``)."""
    if not any(pa.types.is_decimal(f.type) for f in table.schema):
        return table.to_pylist()
    columns = {}
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_decimal(field.type):
            columns[field.name] = [None if t is None else Decimal(t) for t in decimal_texts(column)]
        else:
            columns[field.name] = column.to_pylist()
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


class _TableRecords(Sequence[Record]):
    """The records of an Arrow table, built from it on first use only."""

    __slots__ = ("_records", "name", "table")

    def __init__(self, name: str, table: pa.Table) -> None:
        self.name = name
        self.table = table
        self._records: list[Record] | None = None

    def _built(self) -> list[Record]:
        if self._records is None:
            from_row = DATASETS[self.name].from_row
            self._records = [from_row(r) for r in table_rows(self.table)]
        return self._records

    def __len__(self) -> int:
        return self.table.num_rows

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Record]: ...
    def __getitem__(self, index: int | slice) -> Record | Sequence[Record]:
        return self._built()[index]

    def __iter__(self) -> Iterator[Record]:
        return iter(self._built())
