"""Load a recording into pandas, from the SQL database or the Parquet datasets, with one signature.

Every loader is ``load_<dataset>(source, symbols=None, start=None, end=None, *, columns=None,
exact=False, ...)``:

* ``source``: a SQL URL (``"sqlite:///data/recording.sqlite"``,
  ``"postgresql+psycopg://user@host/db"``), a :class:`sqlalchemy.engine.Engine`, or the
  root of the Parquet datasets (``str`` or :class:`~pathlib.Path`, e.g.
  ``"data/parquet"``, or ``"s3://bucket/prefix"`` on S3-compatible storage);
  :func:`open_source` decides, and an already opened :class:`Source` is accepted too.
* ``symbols``: an iterable of market symbols (``"btc_usdt"``) to keep, ``None`` for all.
  For balances it filters *currencies*; for feed events it keeps events that name one
  of the symbols or name none (a connection-wide event).
* ``start`` / ``end``: timezone-aware instants (``datetime``, ``pandas.Timestamp`` or an
  ISO string with an offset, e.g. ``"2024-05-01T00:00Z"``); the range is
  ``start <= t < end`` on the frame's index column. Feed events are spans: those
  overlapping the range are kept (``ts_start < end`` and ``ts_end >= start`` or still open).
  Naive values raise ValueError.
* ``columns``: the subset of value columns to read (the index column is always read).
* ``venues``: venue names (``"okex_v1"``, ``"okx_v5"``) to keep, ``None`` for all. Every
  frame has a ``venue`` column; market frames also ``base`` / ``quote``: upper-case currency
  codes derived from the venue's own symbol (``btc_usdt`` and ``BTC-USDT`` both give
  ``BTC`` / ``USDT``, see :func:`pair_of`), so two venues' data can be put side by side.
* ``exact``: ``False`` (default) gives prices and amounts as float64 (each the float
  nearest the stored decimal); ``True`` keeps them as :class:`decimal.Decimal`
  (``object`` dtype), exactly as recorded.

Filters are pushed down: SQL gets a ``WHERE`` with bound parameters and selects only
the columns asked for; Parquet gets :mod:`pyarrow.dataset` filters on the ``date=`` and
key (``symbol=``, ``currency=``) partitions and on the timestamp, and reads only the
columns asked for.
Both sources go through one Arrow table with the dataset's declared schema
(:data:`recorder.storage.schema.DATASETS`) and one conversion to pandas, so the same
recording gives equal frames from either.

Frames: the index is a UTC ``DatetimeIndex`` (``datetime64[us, UTC]``) named after its
column (``ts_event`` for market data and orders, ``ts_recv`` for balances and status
changes, ``ts_start`` for feed events); rows are sorted by it, then by the dataset's
key. Other timestamps are ``datetime64[us, UTC]`` columns; text is pandas ``str``;
integers ``int64`` (``depth`` ``int32``); order statuses are lower-case
:class:`~recorder.records.OrderStatus` names (``"filled"``). Rows written twice to
Parquet (journal replays, an open candle pushed again, a span written open then
closed) are reduced as the SQL store does: the first copy, or the latest state for
klines, orders and feed events. The column lists are in ``docs/analysis.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import sqlalchemy as sa

from recorder.records import KlinePeriod
from recorder.storage.datasets import Merge
from recorder.storage.fs import is_dir, is_object_store_uri, resolve
from recorder.storage.parquet import open_dataset
from recorder.storage.schema import DATASETS, STATUS_COLUMNS, Dataset, status_names

__all__ = [
    "ParquetSource",
    "Query",
    "Source",
    "SqlSource",
    "load_balances",
    "load_book_levels",
    "load_book_top",
    "load_deals",
    "load_feed_events",
    "load_fills",
    "load_instruments",
    "load_klines",
    "load_order_status_changes",
    "load_orders",
    "load_tickers",
    "open_source",
    "pair_of",
]

TimeLike = datetime | pd.Timestamp | str | None


# --------------------------------------------------------------------------- the query


@dataclass(frozen=True, slots=True)
class Query:
    """What to read from one dataset; built by the loaders, executed by a :class:`Source`.

    ``keys`` filters ``dataset.key_column`` (the ``symbol=`` partition); ``start``/``end``
    bound ``time_column`` (``start <= t < end``); with ``span_end`` set the filter is an
    overlap (``time_column < end`` and (``span_end >= start`` or NULL)). ``equals`` holds
    extra equality filters (column -> value); ``venues`` keeps those venues (the ``venue=`` partition).
    """

    dataset: Dataset
    columns: tuple[str, ...]
    time_column: str
    keys: tuple[str, ...] | None = None
    start: datetime | None = None
    end: datetime | None = None
    span_end: str | None = None
    equals: tuple[tuple[str, object], ...] = ()
    venues: tuple[str, ...] | None = None

    @property
    def arrow_schema(self) -> pa.Schema:
        """The declared Arrow schema restricted to :attr:`columns`, in that order."""
        schema = self.dataset.arrow_schema
        return pa.schema([schema.field(c) for c in self.columns])


class Source(Protocol):
    """Where a recording is read from. ``read`` returns a table with ``query.arrow_schema``."""

    def read(self, query: Query) -> pa.Table: ...


class SqlSource:
    """A recording in a SQL database (SQLite or PostgreSQL), read with SQLAlchemy Core."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, url: str) -> SqlSource:
        """A source for a SQLAlchemy URL (the engine uses no pool beyond this use)."""
        return cls(sa.create_engine(url, poolclass=sa.pool.NullPool))

    def read(self, query: Query) -> pa.Table:
        """Run one ``SELECT`` with bound parameters; return the rows as an Arrow table."""
        table = query.dataset.table
        stmt = sa.select(*(table.c[c] for c in query.columns))
        if query.keys is not None:
            stmt = stmt.where(table.c[query.dataset.key_column].in_(query.keys))
        time = table.c[query.time_column]
        if query.span_end is None:
            if query.start is not None:
                stmt = stmt.where(time >= query.start)
            if query.end is not None:
                stmt = stmt.where(time < query.end)
        else:
            if query.end is not None:
                stmt = stmt.where(time < query.end)
            if query.start is not None:
                span_end = table.c[query.span_end]
                stmt = stmt.where(sa.or_(span_end.is_(None), span_end >= query.start))
        for column, value in query.equals:
            stmt = stmt.where(table.c[column] == value)
        if query.venues is not None:
            stmt = stmt.where(table.c["venue"].in_(query.venues))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        data = {c: [row[i] for row in rows] for i, c in enumerate(query.columns)}
        return pa.Table.from_pydict(data, schema=query.arrow_schema)


class ParquetSource:
    """A recording as Parquet datasets: ``<root>/<dataset>/venue=<v>/date=<d>/<key>=<value>/*.parquet``.

    ``<key>`` is the dataset's key column (``symbol``, ``currency`` for balances,
    ``connection`` for feed events, which have no ``venue=`` level); roots written before
    schema revision 0003 (no ``venue=`` level) read as venue ``okex_v1``; see
    :mod:`recorder.storage.parquet`. Rows still in
    the store's journal (a recording being written) are not visible until rolled over.
    """

    def __init__(self, root: str | Path) -> None:
        self.root: str | Path = root if is_object_store_uri(root) else Path(root)

    def read(self, query: Query) -> pa.Table:
        """Scan one dataset with partition and row filters, reading only ``query.columns``."""
        schema = query.arrow_schema
        fs, base = resolve(self.root)
        if not is_dir(fs, f"{base}/{query.dataset.name}"):
            return schema.empty_table()
        for attempt in range(20):
            dataset = open_dataset(base, query.dataset.name, filesystem=fs)
            try:
                table = dataset.to_table(columns=list(query.columns), filter=self._filter(query))
                break
            except FileNotFoundError:  # listed before a compaction's swap, opened after: list again
                if attempt == 19:
                    raise
        for i, name in enumerate(table.column_names):  # v1 codes in files from before revision 0003
            if name in STATUS_COLUMNS:
                table = table.set_column(i, name, status_names(table.column(i)))
        return table.cast(schema)

    @staticmethod
    def _filter(query: Query) -> ds.Expression | None:
        dataset = query.dataset
        parts: list[ds.Expression] = []
        if query.keys is not None:
            parts.append(ds.field(dataset.key_column).isin(list(query.keys)))
        ts_type = dataset.arrow_schema.field(query.time_column).type
        time = ds.field(query.time_column)
        start = None if query.start is None else pa.scalar(query.start, ts_type)
        end = None if query.end is None else pa.scalar(query.end, ts_type)
        date = ds.field("date")
        # The date= partition is the UTC date of dataset.date_column. Prune with it only
        # where that column bounds the one filtered on.
        same = dataset.date_column == query.time_column
        if query.span_end is None:
            if start is not None:
                parts.append(time >= start)
                # ts_recv >= ts_event, so a lower bound on ts_event bounds ts_recv's date too.
                if same or (dataset.date_column == "ts_recv" and query.time_column == "ts_event"):
                    parts.append(date >= _iso_date(query.start))
            if end is not None:
                parts.append(time < end)
                if same:
                    parts.append(date <= _last_date(query.end))
        else:
            if end is not None:
                parts.append(time < end)
                if same:
                    parts.append(date <= _last_date(query.end))
            if start is not None:
                span_end = ds.field(query.span_end)
                parts.append(span_end.is_null() | (span_end >= start))
        for column, value in query.equals:
            parts.append(ds.field(column) == value)
        if query.venues is not None:
            parts.append(ds.field("venue").isin(list(query.venues)))
        if not parts:
            return None
        expr = parts[0]
        for part in parts[1:]:
            expr = expr & part
        return expr


def _iso_date(value: datetime | None) -> pa.Scalar:
    """The ``date=`` partition value (date32) of a UTC instant."""
    assert value is not None
    return pa.scalar(value.date(), pa.date32())


def _last_date(end: datetime | None) -> pa.Scalar:
    """The last ``date=`` partition an exclusive ``end`` can need (midnight needs the day before)."""
    assert end is not None
    return _iso_date(end - timedelta(microseconds=1))


def open_source(source: Source | sa.Engine | str | Path) -> Source:
    """The :class:`Source` for a SQL URL, an Engine, or a Parquet root directory.

    ``"s3://bucket/prefix"`` is a Parquet root on S3-compatible storage (endpoint and
    credentials as the recorder takes them, see :mod:`recorder.storage.fs`); any other
    string containing ``"://"`` is a SQLAlchemy URL; any other string or Path is a local
    Parquet root (it need not exist yet: missing datasets read as empty; an existing
    *file* raises ValueError, e.g. an SQLite path given without ``sqlite:///``). A Source
    is returned as is.
    """
    if isinstance(source, SqlSource | ParquetSource):
        return source
    if isinstance(source, sa.Engine):
        return SqlSource(source)
    if is_object_store_uri(source):
        return ParquetSource(str(source))
    if isinstance(source, str) and "://" in source:
        return SqlSource.from_url(source)
    if isinstance(source, str | Path):
        if Path(source).is_file():  # e.g. "data/recording.sqlite": read as a Parquet root, it was empty
            raise ValueError(f"{str(source)!r} is a file, not a Parquet root directory; for an SQLite "
                             f"database pass its URL, e.g. 'sqlite:///{source}'")
        return ParquetSource(source)
    if callable(getattr(source, "read", None)):
        return source
    raise TypeError(f"not a recording source: {type(source).__name__}")


# --------------------------------------------------------------------------- arguments


def _instant(value: TimeLike, name: str) -> datetime | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        raise ValueError(f"{name}={value!r} has no timezone; pass UTC (e.g. '2024-05-01T00:00Z')")
    return ts.tz_convert("UTC").to_pydatetime()


def _keys(symbols: Iterable[str] | str | None) -> tuple[str, ...] | None:
    if symbols is None:
        return None
    if isinstance(symbols, str):
        return (symbols,)
    return tuple(symbols)


# --------------------------------------------------------------------------- arrow -> pandas

_TRAILING_ZEROS = re.compile(r"\.?0+$")


def _exact_decimals(array: pa.ChunkedArray) -> list[Decimal | None]:
    """Decimal objects without the scale's trailing zeros (``1.5``, not ``1.500000000000000000``)."""
    text = pc.cast(array, pa.string())
    out: list[Decimal | None] = []
    for value in text.to_pylist():
        if value is None:
            out.append(None)
        else:
            out.append(Decimal(_TRAILING_ZEROS.sub("", value) if "." in value else value))
    return out


_FAST_SCALE = 8
"""Decimals with at most this many digits after the point (all OKEx prices and amounts)
take the integer route of :func:`_decimal_floats`; others the text route."""
_POW10 = tuple(10.0**k for k in range(23))  # exact binary64 values
_EXACT = 2**53  # integers up to this magnitude are exact binary64 values


def _decimal_text_floats(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """float64 via the decimal text, parsed correctly rounded by Arrow (NaN for null)."""
    text = pc.cast(array, pa.string())
    return np.asarray(pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _decimal_floats(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The float64 nearest each decimal of ``column`` (NaN for null), computed exactly.

    For a decimal128 of scale ``S``, each value is the 128-bit integer ``U = v * 10**S``.
    With ``s = min(S, 8)`` and ``d = 10**(S - s)``, ``m = |U| / d`` is computed in
    uint64 numpy arithmetic (``2**64 = Q*d + R``, so ``U = d*(hi*Q + lo//d) + hi*R +
    lo%d``). Where the division is exact and ``m <= 2**53``, ``m`` and ``10**s`` are
    exact binary64 values, so the IEEE division ``m / 10**s`` is the correctly rounded
    value: the same float as parsing the decimal text. Every other value (more than 8
    decimals, or huge) takes the text route. A direct decimal128 -> float64 cast is
    not used: it can be an ulp off (and Arrow's 128-bit arithmetic is slower).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    kind = column.type
    n = len(column)
    if not n or not isinstance(kind, pa.Decimal128Type) or kind.scale < 0 or kind.scale - _FAST_SCALE > 11:
        return _decimal_text_floats(column)
    scale = min(kind.scale, _FAST_SCALE)
    words = np.frombuffer(column.buffers()[1], dtype=np.uint64, count=2 * (column.offset + n))
    words = words[2 * column.offset:]
    lo, hi = words[0::2], words[1::2].view(np.int64)
    negative = hi < 0
    if negative.any():  # |U| in two's complement: invert and add one
        carry = (lo == 0).astype(np.int64)
        lo = np.where(negative, ~lo + np.uint64(1), lo)
        hi = np.where(negative, ~hi + carry, hi)
    d = 10 ** (kind.scale - scale)
    hi_max = (_EXACT * d) >> 64  # a larger high word cannot give m <= 2**53
    fast = (hi >= 0) & (hi <= hi_max)
    high = np.where(fast, hi, 0).astype(np.uint64)
    if d == 1:
        m, exact = lo, fast & (high == 0)
    else:
        q_, r_ = divmod(2**64, d)
        divisor = np.uint64(d)
        low_q = lo // divisor
        t = high * np.uint64(r_) + (lo - low_q * divisor)  # < 2**56 for the rows kept
        t_q = t // divisor
        m = high * np.uint64(q_) + low_q + t_q
        exact = fast & (t == t_q * divisor)
    exact &= m <= np.uint64(_EXACT)
    out = m.astype(np.float64) / _POW10[scale]
    np.negative(out, out=out, where=negative)
    if column.null_count:
        valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        out[~valid] = np.nan
        exact |= ~valid
    if not exact.all():
        slow = ~exact
        out[slow] = _decimal_text_floats(column.filter(pa.array(slow)))
    return out


def _to_pandas(table: pa.Table, exact: bool, take: np.ndarray | None = None) -> pd.DataFrame:
    """One conversion for both sources: decimals -> float64 (or Decimal), the rest Arrow's default.

    ``take``: the row positions to keep, in the frame's order (None: all, as read).
    """
    data: dict[str, object] = {}
    indices = None if take is None else pa.array(take, pa.int64())
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_decimal(kind) and not exact:
            floats = _decimal_floats(column)
            data[name] = floats if take is None else floats[take]
            continue
        if indices is not None:
            column = column.take(indices)
        if pa.types.is_decimal(kind):
            data[name] = pd.Series(_exact_decimals(column), dtype="object")
        else:
            data[name] = column.to_pandas()
    rows = table.num_rows if take is None else len(take)
    return pd.DataFrame(data, index=pd.RangeIndex(rows))


# --------------------------------------------------------------------------- order and de-duplication


def _sort_codes(column: pa.ChunkedArray) -> np.ndarray | None:
    """int64 codes of ``column`` that order like its values; None if it has nulls or another type."""
    if column.null_count:
        return None
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_integer(kind):
        return np.asarray(column.cast(pa.int64()).to_numpy(), dtype=np.int64)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        encoded = pc.dictionary_encode(column).combine_chunks()
        dictionary = encoded.dictionary
        rank = np.empty(len(dictionary), dtype=np.int64)
        rank[np.asarray(pc.sort_indices(dictionary).to_numpy())] = np.arange(len(dictionary))
        return rank[np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)]
    return None


def _lex_sorted(keys: Sequence[np.ndarray]) -> bool:
    """Whether the rows are in non-decreasing lexicographic order of ``keys``."""
    equal: np.ndarray | None = None
    for key in keys:
        after, before = key[1:], key[:-1]
        less = after < before
        if (less if equal is None else less & equal).any():
            return False
        same = after == before
        equal = same if equal is None else equal & same
        if not equal.any():
            return True
    return True


def _lex_order(keys: Sequence[np.ndarray]) -> np.ndarray:
    """Stable lexicographic argsort by ``keys`` (first key first).

    An argsort of the first key (timsort: fast on the sorted runs partitions give),
    then only the rows tied on it are ordered by the other keys.
    """
    order = np.argsort(keys[0], kind="stable")
    if len(keys) == 1 or len(order) < 2:
        return order
    first = keys[0][order]
    tie = first[1:] == first[:-1]
    if not tie.any():
        return order
    tied = np.zeros(len(order), dtype=bool)
    tied[1:] |= tie
    tied[:-1] |= tie
    positions = np.flatnonzero(tied)
    rows = order[positions]  # grouped by the first key already, in stable order
    order[positions] = rows[np.lexsort([key[rows] for key in reversed(keys)])]
    return order


def _unique_rows(keys: Sequence[np.ndarray]) -> bool:
    """Whether no two rows share the tuple ``keys`` (cheap proof, or False when unsure).

    Rows as read split into runs strictly increasing in ``keys`` (a file, a partition);
    if the runs' key ranges are pairwise disjoint, every tuple is unique.
    """
    n = len(keys[0])
    if n < 2:
        return True
    greater = np.zeros(n - 1, dtype=bool)
    equal = np.ones(n - 1, dtype=bool)
    for key in keys:
        after, before = key[1:], key[:-1]
        greater |= equal & (after > before)
        equal &= after == before
    starts = np.concatenate(([0], np.flatnonzero(~greater) + 1))
    if len(starts) > max(64, n // 64):
        return False  # not the shape of a recording: let the general path decide
    ends = np.concatenate((starts[1:] - 1, [n - 1]))
    firsts = [key[starts] for key in keys]
    by_first = np.lexsort(list(reversed(firsts)))
    lo = [key[starts][by_first] for key in keys]
    hi = [key[ends][by_first] for key in keys]
    # each run must end strictly before the next one (in start order) begins
    before = np.zeros(len(starts) - 1, dtype=bool)
    tied = np.ones(len(starts) - 1, dtype=bool)
    for a, b in zip(hi, lo, strict=True):
        before |= tied & (a[:-1] < b[1:])
        tied &= a[:-1] == b[1:]
    return bool(before.all())


def _packed(keys: Sequence[np.ndarray]) -> np.ndarray | None:
    """One int64 per row ordering like the tuple ``keys`` (mixed radix), or None if it cannot fit."""
    lows = [int(key.min()) for key in keys]
    spans = [int(key.max()) - low + 1 for key, low in zip(keys, lows, strict=True)]
    total = 1
    for span in spans:
        total *= span
    if total >= 2**62:
        return None
    packed = keys[0] - lows[0]
    for key, low, span in zip(keys[1:], lows[1:], spans[1:], strict=True):
        packed = packed * span + (key - low)
    return packed


def _first_of_each(keys: Sequence[np.ndarray]) -> np.ndarray | None:
    """Positions (ascending) of the first row, as read, of each distinct tuple ``keys``;
    None when every tuple is unique (all rows)."""
    packed = _packed(keys)
    if packed is not None:
        if not (np.diff(np.sort(packed)) == 0).any():
            return None
        order = np.argsort(packed, kind="stable")  # ties keep the order read
        ordered = packed[order]
        new = np.empty(len(order), dtype=bool)
        new[0] = True
        new[1:] = ordered[1:] != ordered[:-1]
        return np.sort(order[new])
    order = np.lexsort(list(reversed(keys)))  # stable: ties keep the order read
    same = np.ones(len(order) - 1, dtype=bool)
    for key in keys:
        ordered = key[order]
        same &= ordered[1:] == ordered[:-1]
    if not same.any():
        return None
    return np.sort(order[np.concatenate(([True], ~same))])


def _fast_rows(table: pa.Table, spec: _Spec) -> np.ndarray | bool | None:
    """The rows to take, in frame order, computed in numpy: the first copy of each
    ``spec.key`` (as read), sorted by the index then the key. None: all rows, already
    in order. False: not applicable (nulls in a key, unsupported type, ``latest`` rule)."""
    if spec.latest is not None:
        return False
    codes: dict[str, np.ndarray] = {}
    for name in dict.fromkeys((spec.index, *spec.key)):
        code = _sort_codes(table.column(name))
        if code is None:
            return False
        codes[name] = code
    dedupe = [codes[k] for k in spec.key]
    order_keys = [codes[spec.index], *[codes[k] for k in spec.key if k != spec.index]]
    keep = None if _unique_rows(dedupe) else _first_of_each(dedupe)
    if keep is None:
        return None if _lex_sorted(order_keys) else _lex_order(order_keys)
    return keep[_lex_order([key[keep] for key in order_keys])]


@dataclass(frozen=True, slots=True)
class _Spec:
    """How one dataset becomes a frame: its index, the columns that identify a row, dedupe rule."""

    name: str
    index: str
    key: tuple[str, ...]  # the SQL primary key
    latest: str | None = None  # keep the row with the greatest value of this column per key


_INDEX = {
    "tickers": "ts_event", "book_snapshots": "ts_event", "deals": "ts_event", "klines": "ts_event",
    "balances": "ts_recv", "orders": "ts_event", "order_status_changes": "ts_recv",
    "instruments": "ts_recv", "fills": "ts_event", "feed_events": "ts_start",
}
"""The frame's index column per dataset (an analysis choice; everything else comes from the spec)."""

_LATEST = {Merge.LAST_SEEN_WINS: "ts_recv", Merge.SPAN: "ts_end"}


def _spec(name: str) -> _Spec:
    """The de-duplication of one dataset, from the storage spec (:mod:`recorder.storage.datasets`):
    its natural key, and for the merge rules that keep the latest state, the column that orders it."""
    dataset = DATASETS[name]
    return _Spec(name, _INDEX[name], dataset.key, _LATEST.get(dataset.merge))


_SPECS = {name: _spec(name) for name in _INDEX}

DERIVED = ("base", "quote")
"""Columns derived from ``symbol`` by every market loader: upper-case currency codes."""

_PAIR = re.compile(r"([A-Za-z0-9]+)[-_/]([A-Za-z0-9]+)(?:[-_].*)?")


def pair_of(symbol: str) -> tuple[str | None, str | None]:
    """``(base, quote)`` upper-case currency codes of a venue's instrument id, e.g.
    ``btc_usdt`` (okex v1) and ``BTC-USDT`` (okx v5) both give ``("BTC", "USDT")``;
    ``(None, None)`` for an id of another shape."""
    match = _PAIR.fullmatch(symbol)
    if match is None:
        return None, None
    return match.group(1).upper(), match.group(2).upper()


def _add_pair(frame: pd.DataFrame, wanted: Sequence[str]) -> None:
    pairs = {s: pair_of(s) for s in pd.unique(frame["symbol"])} if len(frame) else {}
    for i, column in enumerate(DERIVED):
        if column in wanted:
            values = [pairs[s][i] for s in frame["symbol"]]
            frame[column] = pd.Series(values, index=frame.index, dtype="object")


def _load(
    source: Source | sa.Engine | str | Path,
    name: str,
    symbols: Iterable[str] | str | None,
    start: TimeLike,
    end: TimeLike,
    columns: Sequence[str] | None,
    exact: bool,
    *,
    default_columns: Sequence[str] | None = None,
    span_end: str | None = None,
    equals: tuple[tuple[str, object], ...] = (),
    filter_keys: bool = True,
    venues: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    spec = _SPECS[name]
    dataset = DATASETS[name]
    stored = [c for c in dataset.arrow_schema.names if c != spec.index]
    derived = [c for c in DERIVED if "symbol" in stored and c not in stored]
    # the columns of earlier releases first (their positions unchanged), then venue, base, quote
    venue = ["venue"] if "venue" in stored else []
    available = [*(c for c in stored if c != "venue"), *venue, *derived]
    wanted = list(default_columns if default_columns is not None else available)
    if columns is not None:
        unknown = sorted(set(columns) - set(available))
        if unknown:
            raise ValueError(f"{name} has no column(s) {unknown}; it has {available}")
        wanted = list(columns)
    pair = [c for c in wanted if c in derived]
    read = [c for c in wanted if c not in derived]
    if pair and "symbol" not in read:
        read.append("symbol")
    needed = [spec.index, *read]
    for extra in (*spec.key, spec.latest, span_end):
        if extra is not None and extra not in needed:
            needed.append(extra)
    query = Query(
        dataset=dataset,
        columns=tuple(needed),
        time_column=spec.index,
        keys=_keys(symbols) if filter_keys else None,
        start=_instant(start, "start"),
        end=_instant(end, "end"),
        span_end=span_end,
        equals=equals,
        venues=_keys(venues),
    )
    table = open_source(source).read(query)
    rows = _fast_rows(table, spec) if table.num_rows else None
    if rows is False:
        frame = _to_pandas(table, exact)
        frame = _dedupe(frame, spec)
        frame = frame.sort_values([spec.index, *[k for k in spec.key if k != spec.index]], kind="stable")
    else:
        frame = _to_pandas(table.select([spec.index, *read]), exact, rows)  # type: ignore[arg-type]
    frame = frame.set_index(spec.index)
    if pair:
        _add_pair(frame, pair)
    return frame[wanted]


def _dedupe(frame: pd.DataFrame, spec: _Spec) -> pd.DataFrame:
    if len(frame) == 0:
        return frame
    key = list(spec.key)
    if spec.latest is None:
        return frame.drop_duplicates(key, keep="first")
    # NaT sorts first, so a closed span (ts_end set) wins over its open copy.
    ordered = frame.sort_values([*key, spec.latest], kind="stable", na_position="first")
    return ordered.drop_duplicates(key, keep="last")


# --------------------------------------------------------------------------- loaders


def load_tickers(
    source: Source | sa.Engine | str | Path,
    symbols: Iterable[str] | str | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    columns: Sequence[str] | None = None,
    exact: bool = False,
    venues: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """Ticker pushes. Index ``ts_event``; columns ``symbol``, ``ts_recv``, ``buy``, ``sell``,
    ``last``, ``high``, ``low``, ``vol``, ``change``, ``day_high``, ``day_low`` (float64,
    NaN where not sent). ``buy``/``sell`` are the best bid/ask. See the module docstring
    for the arguments."""
    return _load(source, "tickers", symbols, start, end, columns, exact, venues=venues)


_TOP_RENAME = {
    "best_bid": "bid_price",
    "best_bid_amount": "bid_amount",
    "best_ask": "ask_price",
    "best_ask_amount": "ask_amount",
}


def load_book_top(
    source: Source | sa.Engine | str | Path,
    symbols: Iterable[str] | str | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    columns: Sequence[str] | None = None,
    exact: bool = False,
    venues: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """Top of book of each snapshot (no level lists read). Index ``ts_event``; columns
    ``symbol``, ``ts_recv``, ``source`` (the channel the book was kept from, ``"depth"``,
    ``"depth_5"``...), ``depth`` (int32, levels on the fuller side), ``bid_price``,
    ``bid_amount``, ``ask_price``, ``ask_amount`` (float64; NaN for an empty side).
    ``columns`` uses these names."""
    names = ["symbol", "ts_recv", "source", "depth", *_TOP_RENAME, "venue", "base", "quote", "seq_id"]
    inverse = {v: k for k, v in _TOP_RENAME.items()}
    stored = None if columns is None else [inverse.get(c, c) for c in columns]
    frame = _load(source, "book_snapshots", symbols, start, end, stored, exact, default_columns=names,
                  venues=venues)
    return frame.rename(columns=_TOP_RENAME)


def load_book_levels(
    source: Source | sa.Engine | str | Path,
    symbols: Iterable[str] | str | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    depth: int | None = None,
    exact: bool = False,
    venues: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """Every level of every snapshot, long (tidy): one row per ``(snapshot, side, level)``.

    Index ``ts_event``; columns ``symbol``, ``ts_recv``, ``source``, ``side`` (``"bid"``
    or ``"ask"``), ``level`` (int64, 0 = best), ``price``, ``amount`` (float64, or
    Decimal with ``exact``). Rows of a snapshot are bids (best first) then asks (best
    first). ``depth`` keeps only the best ``depth`` levels per side. One snapshot is the
    rows sharing ``(symbol, ts_event, ts_recv, source)``; pivot for a wide frame, e.g.
    ``levels.pivot_table(index=["ts_event", "symbol"], columns=["side", "level"],
    values="price")``.
    """
    if depth is not None and depth < 1:
        raise ValueError("depth must be at least 1")
    snaps = _load(
        source, "book_snapshots", symbols, start, end, None, False,
        default_columns=["venue", "symbol", "ts_recv", "source", "bids", "asks"], venues=venues,
    )
    index: list[int] = []
    sides: list[str] = []
    levels: list[int] = []
    prices: list[str] = []
    amounts: list[str] = []
    for row_number, (bids, asks) in enumerate(zip(snaps["bids"], snaps["asks"], strict=True)):
        for side, text in (("bid", bids), ("ask", asks)):
            parsed = json.loads(text)
            if depth is not None:
                parsed = parsed[:depth]
            n = len(parsed)
            index.extend([row_number] * n)
            sides.extend([side] * n)
            levels.extend(range(n))
            prices.extend(p for p, _ in parsed)
            amounts.extend(a for _, a in parsed)
    positions = np.asarray(index, dtype="int64")
    meta = snaps.reset_index()[["ts_event", "venue", "symbol", "ts_recv", "source"]].iloc[positions]
    frame = meta.reset_index(drop=True)
    frame["side"] = pd.Series(sides, dtype="str")
    frame["level"] = np.asarray(levels, dtype="int64")
    if exact:
        frame["price"] = pd.Series([Decimal(p) for p in prices], dtype="object")
        frame["amount"] = pd.Series([Decimal(a) for a in amounts], dtype="object")
    else:
        frame["price"] = pc.cast(pa.array(prices, pa.string()), pa.float64()).to_numpy(zero_copy_only=False)
        frame["amount"] = pc.cast(pa.array(amounts, pa.string()), pa.float64()).to_numpy(zero_copy_only=False)
    return frame.set_index("ts_event")


def load_deals(
    source: Source | sa.Engine | str | Path,
    symbols: Iterable[str] | str | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    columns: Sequence[str] | None = None,
    exact: bool = False,
    venues: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """Trades. Index ``ts_event`` (rebuilt from the exchange's whole seconds); columns
    ``symbol``, ``tid`` (int64), ``price``, ``amount`` (float64), ``side`` (aggressor,
    ``"buy"``/``"sell"``), ``ts_recv``. Sorted by time, then symbol, then ``tid``."""
    return _load(source, "deals", symbols, start, end, columns, exact, venues=venues)


def load_klines(
    source: Source | sa.Engine | str | Path,
    symbols: Iterable[str] | str | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    period: KlinePeriod | str | None = None,
    columns: Sequence[str] | None = None,
    exact: bool = False,
    venues: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """Candles, the last pushed state of each. Index ``ts_event`` (the period's start);
    columns ``symbol``, ``period`` (``"1min"``...), ``ts_recv``, ``open``, ``high``,
    ``low``, ``close``, ``volume`` (float64). ``period`` (a :class:`KlinePeriod` or its
    WebSocket/REST name) keeps one period."""
    equals: tuple[tuple[str, object], ...] = ()
    if period is not None:
        value = period.value if isinstance(period, KlinePeriod) else KlinePeriod.parse(period).value
        equals = (("period", value),)
    return _load(source, "klines", symbols, start, end, columns, exact, equals=equals, venues=venues)


def load_balances(
    source: Source | sa.Engine | str | Path,
    symbols: Iterable[str] | str | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    columns: Sequence[str] | None = None,
    exact: bool = False,
    venues: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """Balance polls. Index ``ts_recv``; columns ``account`` (``"spot"``/``"wallet"``),
    ``currency``, ``free``, ``frozen`` (float64). ``symbols`` filters currencies."""
    return _load(source, "balances", symbols, start, end, columns, exact, venues=venues)


def load_orders(
    source: Source | sa.Engine | str | Path,
    symbols: Iterable[str] | str | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    columns: Sequence[str] | None = None,
    exact: bool = False,
    venues: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """Orders, the last seen state of each. Index ``ts_event`` (creation time); columns
    ``order_id`` (int64), ``symbol``, ``type`` (``"buy"``, ``"sell"``, ``"buy_market"``,
    ``"sell_market"``), ``price``, ``amount`` (float64, NaN where the order type has
    none), ``deal_amount``, ``avg_price``, ``status`` (``"open"``, ``"filled"``...),
    ``ts_recv`` (when that state was seen)."""
    return _load(source, "orders", symbols, start, end, columns, exact, venues=venues)


def load_order_status_changes(
    source: Source | sa.Engine | str | Path,
    symbols: Iterable[str] | str | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    columns: Sequence[str] | None = None,
    exact: bool = False,
    venues: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """Order status transitions. Index ``ts_recv`` (first seen in ``status``); columns
    ``order_id`` (int64), ``symbol``, ``status``, ``previous_status`` (names as in
    :func:`load_orders`; None when the order was first seen), ``deal_amount``."""
    frame = _load(source, "order_status_changes", symbols, start, end, columns, exact, venues=venues)
    if "previous_status" in frame.columns:  # None (not NaN) for a first sight
        column = frame["previous_status"].astype("object")
        frame["previous_status"] = column.where(column.notna(), None)
    return frame


def load_feed_events(
    source: Source | sa.Engine | str | Path,
    symbols: Iterable[str] | str | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    columns: Sequence[str] | None = None,
    exact: bool = False,
    venues: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """Feed events (spans and instants), the latest state of each. Index ``ts_start``;
    columns ``event_id``, ``kind`` (``"disconnected"``...), ``ts_end`` (NaT while open),
    ``connection``, ``symbols`` (tuple of str, empty for connection-wide events),
    ``channel``, ``detail``, ``collector`` (the collector's id; None in rows recorded
    before schema revision 0002, also in older Parquet files without the column). Spans
    overlapping ``[start, end)`` are kept; ``symbols`` keeps events naming one of them or
    naming none; ``venues`` keeps events of those venues and of no one venue (``venue`` ``""``)."""
    wanted = None if columns is None else list(dict.fromkeys([*columns, "symbols"]))
    frame = _load(
        source, "feed_events", None, start, end, wanted, exact, span_end="ts_end", filter_keys=False,
        venues=None if venues is None else ("", *(_keys(venues) or ())),
    )
    frame["symbols"] = pd.Series(
        [tuple(s.split(",")) if s else () for s in frame["symbols"]], index=frame.index, dtype="object"
    )
    if "collector" in frame.columns:  # None (not NaN) where unknown, also when every row is
        frame["collector"] = frame["collector"].astype("object").where(frame["collector"].notna(), None)
    keys = _keys(symbols)
    if keys is not None:
        keep = [not named or bool(set(named) & set(keys)) for named in frame["symbols"]]
        frame = frame[np.asarray(keep, dtype=bool)]
    return frame if columns is None else frame[list(columns)]


def load_instruments(
    source: Source | sa.Engine | str | Path,
    symbols: Iterable[str] | str | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    columns: Sequence[str] | None = None,
    exact: bool = False,
    venues: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """Instrument reference data, one row per observed change. Index ``ts_recv``; columns
    ``venue``, ``symbol``, ``base``, ``quote`` (upper-case codes as the venue sent them),
    ``tick_size`` (quote currency), ``lot_size``, ``min_size`` (base currency), ``state``
    (``"live"``, ``"suspend"``...), ``inst_type``, ``ts_listed``, ``ts_expiry``.

    The recorder writes a state only when it changed since the last one stored, but recordings
    made before it did (the collector and the account poller each stored the state they saw first
    in a run), or by a ``run`` and a ``poll`` side by side, can hold the same state more than
    once: a row equal to the previous one of its venue and symbol (in the columns loaded) is not a
    change and is left out."""
    frame = _load(source, "instruments", symbols, start, end, columns, exact, venues=venues)
    return _changes_only(frame)


def _changes_only(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (index ``ts_recv``) without the rows equal to their venue and symbol's previous row."""
    keys = [c for c in ("venue", "symbol") if c in frame.columns]
    values = [c for c in frame.columns if c not in keys]
    if frame.empty or not keys or not values:
        return frame
    ordered = frame.sort_index(kind="stable")
    before = ordered.groupby(keys, sort=False, dropna=False)[values].shift()
    now = ordered[values]
    same = (now.eq(before) | (now.isna() & before.isna())).all(axis=1)
    return ordered[~same.to_numpy()]


def load_fills(
    source: Source | sa.Engine | str | Path,
    symbols: Iterable[str] | str | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    *,
    columns: Sequence[str] | None = None,
    exact: bool = False,
    venues: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """The account's fills. Index ``ts_event``; columns ``venue``, ``symbol``, ``bill_id``,
    ``trade_id``, ``order_id`` (int64), ``side``, ``price`` (quote currency), ``amount`` (base
    currency), ``fee`` (signed, negative = charged), ``fee_currency``, ``liquidity``
    (``"maker"``/``"taker"``), ``ts_recv``, ``base``, ``quote``."""
    return _load(source, "fills", symbols, start, end, columns, exact, venues=venues)
