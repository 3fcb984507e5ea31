"""The storage schema, defined once: SQL tables and, beside each, its Parquet (Arrow) schema.

Every record type of :mod:`recorder.records` has one *dataset*: a SQL table in
:data:`metadata` and an explicit :class:`pyarrow.Schema` with the same columns,
joined by one converter (:attr:`Dataset.to_row`) that both stores use. A test
checks the two schemas column by column, so they cannot drift apart.

Representations (see ``docs/storage.md``):

* **Decimals** are exact everywhere. SQL: :class:`ExactDecimal` is ``NUMERIC``
  (unconstrained, so nothing is rounded) on PostgreSQL and ``TEXT`` holding the
  canonical plain string (``0.00000001``, never ``1E-8``; no trailing zeros after
  the point) on SQLite; both read back as :class:`~decimal.Decimal`. On SQLite,
  compare numerically with ``CAST(col AS REAL)``. Arrow: ``decimal128(38, 18)``
  (up to 20 integer and 18 fractional digits; pyarrow refuses, rather than rounds,
  anything else).
* **Timestamps** are timezone-aware UTC. SQL: :class:`UtcDateTime` is
  ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL and the fixed-width ISO text
  ``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC, sorts correctly) on SQLite; both read back
  tz-aware UTC. Arrow: ``timestamp("us", tz="UTC")``.
* **Enums** are stored as their values (``"buy"``, ``"depth_5"``, ``"1min"``; order
  statuses as their small integers).
* **Book levels** are JSON text ``[["price", "amount"], ...]`` (plain decimal strings,
  best level first) in both stores, beside queryable top-of-book columns.

Partitions (Parquet): every dataset is partitioned by the UTC date of
:attr:`Dataset.date_column` and by the value of :attr:`Dataset.key_column`
(``<key_column>=<value>``): the symbol for market data and orders, the *currency*
for balances, the *connection* for feed events and quarantined frames.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, overload

import msgspec
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from recorder.records import (
    Balance,
    BookSnapshot,
    Deal,
    FeedEvent,
    FeedEventKind,
    Kline,
    KlinePeriod,
    Level,
    Order,
    OrderStatus,
    OrderStatusChange,
    OrderType,
    QuarantinedFrame,
    Record,
    Side,
    Ticker,
)

__all__ = [
    "ARROW_DECIMAL",
    "ARROW_TIMESTAMP",
    "DATASETS",
    "Batch",
    "Dataset",
    "ExactDecimal",
    "RowLike",
    "UtcDateTime",
    "balances",
    "book_snapshots",
    "conform",
    "dataset_for",
    "deals",
    "feed_events",
    "klines",
    "levels_from_json",
    "levels_to_json",
    "metadata",
    "order_status_changes",
    "orders",
    "plain_decimal",
    "quarantine",
    "tickers",
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


# --------------------------------------------------------------------------- column types


def plain_decimal(value: Decimal) -> str:
    """The canonical plain string of a finite Decimal: no exponent, no trailing fractional zeros.

    ``Decimal("1E-8")`` -> ``"0.00000001"``; ``Decimal("1.50")`` -> ``"1.5"``;
    ``Decimal("100")`` -> ``"100"``. Raises ValueError for NaN and infinities.
    """
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


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
        return plain_decimal(value)

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
        if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"expected a timezone-aware datetime, got {value!r}")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _symbol() -> sa.Column[str]:
    return sa.Column("symbol", sa.String(32), nullable=False)


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, UtcDateTime(), nullable=nullable)


def _dec(name: str, nullable: bool = False) -> sa.Column[Decimal]:
    return sa.Column(name, ExactDecimal(), nullable=nullable)


# --------------------------------------------------------------------------- tables
# Keys: replaying the same records (e.g. from the journal after an outage) writes nothing
# twice. Conflicts are "do nothing" except where noted as upsert (see recorder.storage.sql).

tickers = sa.Table(
    "tickers",
    metadata,
    _symbol(),
    _ts("ts_event"),
    _ts("ts_recv"),
    _dec("buy"),
    _dec("sell"),
    _dec("last"),
    _dec("high"),
    _dec("low"),
    _dec("vol"),
    _dec("change", nullable=True),
    _dec("day_high", nullable=True),
    _dec("day_low", nullable=True),
    sa.PrimaryKeyConstraint("symbol", "ts_recv"),
    sa.Index("ix_tickers_symbol_ts_event", "symbol", "ts_event"),
)

book_snapshots = sa.Table(
    "book_snapshots",
    metadata,
    _symbol(),
    _ts("ts_event"),
    _ts("ts_recv"),
    sa.Column("source", sa.String(16), nullable=False),  # ChannelKind value: depth, depth_5, ...
    sa.Column("depth", sa.Integer, nullable=False),  # levels on the fuller side
    _dec("best_bid", nullable=True),
    _dec("best_bid_amount", nullable=True),
    _dec("best_ask", nullable=True),
    _dec("best_ask_amount", nullable=True),
    sa.Column("bids", sa.Text, nullable=False),  # JSON [["price", "amount"], ...], best first
    sa.Column("asks", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("symbol", "ts_recv", "source"),
    sa.Index("ix_book_snapshots_symbol_ts_event", "symbol", "ts_event"),
)

deals = sa.Table(
    "deals",
    metadata,
    _symbol(),
    sa.Column("tid", sa.BigInteger, nullable=False, autoincrement=False),
    _dec("price"),
    _dec("amount"),
    sa.Column("side", sa.String(8), nullable=False),  # Side value: buy, sell
    _ts("ts_event"),
    _ts("ts_recv"),
    sa.PrimaryKeyConstraint("symbol", "tid"),
    sa.Index("ix_deals_symbol_ts_event", "symbol", "ts_event"),
)

klines = sa.Table(  # upsert: the open candle is pushed repeatedly, the last write wins
    "klines",
    metadata,
    _symbol(),
    sa.Column("period", sa.String(8), nullable=False),  # KlinePeriod value: 1min, ..., day, week
    _ts("ts_event"),  # the period's start
    _ts("ts_recv"),
    _dec("open"),
    _dec("high"),
    _dec("low"),
    _dec("close"),
    _dec("volume"),
    sa.PrimaryKeyConstraint("symbol", "period", "ts_event"),
    sa.Index("ix_klines_symbol_ts_event", "symbol", "ts_event"),
)

balances = sa.Table(
    "balances",
    metadata,
    _ts("ts_recv"),
    sa.Column("account", sa.String(16), nullable=False),  # spot | wallet
    sa.Column("currency", sa.String(16), nullable=False),
    _dec("free"),
    _dec("frozen"),
    sa.PrimaryKeyConstraint("account", "currency", "ts_recv"),
    sa.Index("ix_balances_ts_recv", "ts_recv"),
)

orders = sa.Table(  # upsert by order_id: one row per order, its current state
    "orders",
    metadata,
    sa.Column("order_id", sa.BigInteger, nullable=False, autoincrement=False),
    _symbol(),
    sa.Column("type", sa.String(16), nullable=False),  # OrderType value
    _dec("price", nullable=True),
    _dec("amount", nullable=True),
    _dec("deal_amount"),
    _dec("avg_price"),
    sa.Column("status", sa.SmallInteger, nullable=False),  # OrderStatus value (-1 .. 5)
    _ts("ts_event"),  # create_date
    _ts("ts_recv"),  # when this state was seen
    sa.PrimaryKeyConstraint("order_id"),
    sa.Index("ix_orders_symbol_ts_event", "symbol", "ts_event"),
)

order_status_changes = sa.Table(
    "order_status_changes",
    metadata,
    sa.Column("order_id", sa.BigInteger, nullable=False, autoincrement=False),
    _symbol(),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("previous_status", sa.SmallInteger, nullable=True),
    _dec("deal_amount"),
    _ts("ts_recv"),
    sa.PrimaryKeyConstraint("order_id", "status"),
    sa.Index("ix_order_status_changes_symbol_ts_recv", "symbol", "ts_recv"),
)

feed_events = sa.Table(  # upsert by event_id: a span is written open, then again closed
    "feed_events",
    metadata,
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),  # FeedEventKind value
    _ts("ts_start"),
    _ts("ts_end", nullable=True),  # NULL while the span is open
    sa.Column("connection", sa.String(64), nullable=False),
    sa.Column("symbols", sa.Text, nullable=False),  # comma-separated, "" for none
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("collector", sa.String(64), nullable=True),  # collector.id; NULL before revision 0002
    sa.PrimaryKeyConstraint("event_id"),
    sa.Index("ix_feed_events_ts_start", "ts_start"),
    sa.Index("ix_feed_events_kind_ts_start", "kind", "ts_start"),
)

quarantine = sa.Table(  # plain insert; ``id`` exists in SQL only
    "quarantine",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True, info={"sql_only": True}),
    _ts("ts_recv"),
    sa.Column("connection", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("collector", sa.String(64), nullable=True),  # collector.id; NULL before revision 0002
    sa.Index("ix_quarantine_ts_recv", "ts_recv"),
)


# --------------------------------------------------------------------------- converters


def _level_text(value: Decimal) -> str:
    # str() is the fast path and exact; only exponent forms (1E-8) and non-finite values go the long way.
    text = str(value)
    if "E" in text or "N" in text or "I" in text:
        return plain_decimal(value)
    return text


def _levels_to_json_slowly(levels: tuple[Level, ...]) -> str:
    t = _level_text
    return "[" + ",".join([f'["{t(p)}","{t(a)}"]' for p, a in levels]) + "]"


_levels_encoder = msgspec.json.Encoder(decimal_format="string")


def levels_to_json(levels: tuple[Level, ...]) -> str:
    """``((price, amount), ...)`` -> ``'[["price","amount"],...]'``: exact decimals without exponent.

    Digits are kept as given (``1.50`` stays ``"1.50"``); ``1E-8`` becomes ``"0.00000001"``.
    Raises ValueError for NaN and infinities.
    """
    # The hot path of a book snapshot: msgspec writes str() of every value at C level; then
    # one look for the letters only exponents (E), NaN (N) and Infinity (I) produce.
    text = _levels_encoder.encode(levels).decode()
    if "E" in text or "N" in text or "I" in text:
        return _levels_to_json_slowly(levels)
    return text


def levels_from_json(text: str) -> tuple[Level, ...]:
    """Inverse of :func:`levels_to_json`."""
    return tuple((Decimal(p), Decimal(a)) for p, a in json.loads(text))


def _ticker_row(r: Ticker) -> dict[str, Any]:
    return {
        "symbol": r.symbol, "ts_event": r.ts_event, "ts_recv": r.ts_recv,
        "buy": r.buy, "sell": r.sell, "last": r.last, "high": r.high, "low": r.low, "vol": r.vol,
        "change": r.change, "day_high": r.day_high, "day_low": r.day_low,
    }


_TICKER_FIELDS = (
    "symbol", "ts_event", "ts_recv", "buy", "sell", "last", "high", "low", "vol",
    "change", "day_high", "day_low",
)


def _ticker_from(row: RowLike) -> Ticker:
    return Ticker(venue="okex_v1", **{k: row[k] for k in _TICKER_FIELDS})


def _book_row(r: BookSnapshot) -> dict[str, Any]:
    bids, asks = r.bids, r.asks
    bb = bids[0] if bids else (None, None)
    ba = asks[0] if asks else (None, None)
    return {
        "symbol": r.symbol, "ts_event": r.ts_event, "ts_recv": r.ts_recv, "source": r.source,
        "depth": max(len(bids), len(asks)),
        "best_bid": bb[0], "best_bid_amount": bb[1], "best_ask": ba[0], "best_ask_amount": ba[1],
        "bids": levels_to_json(bids), "asks": levels_to_json(asks),
    }


def _book_from(row: RowLike) -> BookSnapshot:
    return BookSnapshot(venue="okex_v1",
        symbol=row["symbol"], ts_event=row["ts_event"], ts_recv=row["ts_recv"],
        bids=levels_from_json(row["bids"]), asks=levels_from_json(row["asks"]),
        source=row["source"],
    )


def _deal_row(r: Deal) -> dict[str, Any]:
    return {
        "symbol": r.symbol, "tid": r.tid, "price": r.price, "amount": r.amount, "side": r.side.value,
        "ts_event": r.ts_event, "ts_recv": r.ts_recv,
    }


def _deal_from(row: RowLike) -> Deal:
    return Deal(venue="okex_v1",
        symbol=row["symbol"], tid=row["tid"], price=row["price"], amount=row["amount"],
        side=Side(row["side"]), ts_event=row["ts_event"], ts_recv=row["ts_recv"],
    )


def _kline_row(r: Kline) -> dict[str, Any]:
    return {
        "symbol": r.symbol, "period": r.period.value, "ts_event": r.ts_event, "ts_recv": r.ts_recv,
        "open": r.open, "high": r.high, "low": r.low, "close": r.close, "volume": r.volume,
    }


def _kline_from(row: RowLike) -> Kline:
    return Kline(venue="okex_v1",
        symbol=row["symbol"], period=KlinePeriod(row["period"]), ts_event=row["ts_event"],
        ts_recv=row["ts_recv"], open=row["open"], high=row["high"], low=row["low"],
        close=row["close"], volume=row["volume"],
    )


def _balance_row(r: Balance) -> dict[str, Any]:
    return {"ts_recv": r.ts_recv, "account": r.account, "currency": r.currency, "free": r.free,
            "frozen": r.frozen}


def _balance_from(row: RowLike) -> Balance:
    return Balance(venue="okex_v1", ts_recv=row["ts_recv"], account=row["account"], currency=row["currency"],
                   free=row["free"], frozen=row["frozen"])


STATUS_CODE: dict[OrderStatus, int] = {
    OrderStatus.CANCELLED: -1, OrderStatus.OPEN: 0, OrderStatus.PARTIALLY_FILLED: 1, OrderStatus.FILLED: 2,
    OrderStatus.CANCELLING: 3, OrderStatus.FAILED: 4, OrderStatus.PLACING: 5,
}
"""How the ``status`` columns (schema revisions 0001-0002) hold an :class:`OrderStatus`: a small integer."""
_STATUS_OF_CODE = {code: status for status, code in STATUS_CODE.items()}


def order_status(code: int) -> OrderStatus:
    """The :class:`OrderStatus` a stored ``status`` code stands for (see :data:`STATUS_CODE`)."""
    return _STATUS_OF_CODE[code]


def _order_row(r: Order) -> dict[str, Any]:
    return {
        "order_id": r.order_id, "symbol": r.symbol, "type": r.type.value, "price": r.price,
        "amount": r.amount, "deal_amount": r.deal_amount, "avg_price": r.avg_price,
        "status": STATUS_CODE[r.status], "ts_event": r.ts_event, "ts_recv": r.ts_recv,
    }


def _order_from(row: RowLike) -> Order:
    return Order(venue="okex_v1",
        order_id=row["order_id"], symbol=row["symbol"], type=OrderType(row["type"]),
        price=row["price"], amount=row["amount"], deal_amount=row["deal_amount"],
        avg_price=row["avg_price"], status=order_status(row["status"]), ts_event=row["ts_event"],
        ts_recv=row["ts_recv"],
    )


def _status_change_row(r: OrderStatusChange) -> dict[str, Any]:
    prev = r.previous_status
    return {
        "order_id": r.order_id, "symbol": r.symbol, "status": STATUS_CODE[r.status],
        "previous_status": None if prev is None else STATUS_CODE[prev], "deal_amount": r.deal_amount,
        "ts_recv": r.ts_recv,
    }


def _status_change_from(row: RowLike) -> OrderStatusChange:
    prev = row["previous_status"]
    return OrderStatusChange(venue="okex_v1",
        order_id=row["order_id"], symbol=row["symbol"], status=order_status(row["status"]),
        previous_status=None if prev is None else order_status(prev), deal_amount=row["deal_amount"],
        ts_recv=row["ts_recv"],
    )


def _feed_event_row(r: FeedEvent) -> dict[str, Any]:
    return {
        "event_id": r.event_id, "kind": r.kind.value, "ts_start": r.ts_start, "ts_end": r.ts_end,
        "connection": r.connection, "symbols": ",".join(r.symbols), "channel": r.channel,
        "detail": r.detail, "collector": r.collector,
    }


def _feed_event_from(row: RowLike) -> FeedEvent:
    symbols = row["symbols"]
    return FeedEvent(
        event_id=row["event_id"], kind=FeedEventKind(row["kind"]), ts_start=row["ts_start"],
        ts_end=row["ts_end"], connection=row["connection"],
        symbols=tuple(symbols.split(",")) if symbols else (), channel=row["channel"],
        detail=row["detail"], collector=row.get("collector"),
    )


def _quarantine_row(r: QuarantinedFrame) -> dict[str, Any]:
    return {"ts_recv": r.ts_recv, "connection": r.connection, "reason": r.reason,
            "channel": r.channel, "payload": r.payload, "collector": r.collector}


def _quarantine_from(row: RowLike) -> QuarantinedFrame:
    return QuarantinedFrame(ts_recv=row["ts_recv"], connection=row["connection"], reason=row["reason"],
                            channel=row["channel"], payload=bytes(row["payload"]),
                            collector=row.get("collector"))


# Column-wise converters (records -> {column: values}) for the high-volume datasets: the
# same values as ``to_row``, built one column at a time instead of one dict per record.

Columns = dict[str, list[Any]]


def _attribute_columns(names: Sequence[str], enums: Sequence[str] = ()) -> Callable[[Sequence[Any]], Columns]:
    def columns(records: Sequence[Any]) -> Columns:
        out = {name: list(map(attrgetter(name), records)) for name in names}
        for name in enums:
            out[name] = [v.value for v in out[name]]
        return out

    return columns


_NO_LEVEL = (None, None)


def _book_columns(records: Sequence[BookSnapshot]) -> Columns:
    bids = [r.bids for r in records]
    asks = [r.asks for r in records]
    best_bids = [b[0] if b else _NO_LEVEL for b in bids]
    best_asks = [a[0] if a else _NO_LEVEL for a in asks]
    return {
        "symbol": [r.symbol for r in records], "ts_event": [r.ts_event for r in records],
        "ts_recv": [r.ts_recv for r in records], "source": [r.source for r in records],
        "depth": [max(len(b), len(a)) for b, a in zip(bids, asks, strict=True)],
        "best_bid": [b[0] for b in best_bids], "best_bid_amount": [b[1] for b in best_bids],
        "best_ask": [a[0] for a in best_asks], "best_ask_amount": [a[1] for a in best_asks],
        "bids": list(map(levels_to_json, bids)), "asks": list(map(levels_to_json, asks)),
    }


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
    """One kind of record in both stores: its SQL table, its Arrow schema, and the converters.

    ``to_row(record)`` gives a dict keyed by column name with Python values (Decimal,
    aware UTC datetime, enum *values*, str, int, bytes), usable as SQL bind
    parameters and as Arrow input alike; ``from_row(mapping)`` rebuilds the record.
    ``date_column`` holds the datetime whose UTC date is the Parquet ``date=``
    partition; ``key_column`` names the second partition (``<key_column>=<value>``).
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
        """The value of the row's second partition: its symbol, currency or connection."""
        return str(row[self.key_column])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in ``schema``: its columns in that order, cast, nullable columns it lacks added as nulls.

    For rows written by an older schema version (e.g. Parquet files, journal segments or bus
    messages from before the ``collector`` column of revision 0002). Columns ``schema`` does not
    name are dropped. Raises KeyError for a missing non-nullable column and pyarrow's
    ``ArrowInvalid`` / ``ArrowTypeError`` for a column that cannot be cast.
    """
    if table.column_names == schema.names:
        return table.cast(schema)
    names = set(table.column_names)
    columns = []
    for f in schema:
        if f.name in names:
            columns.append(table.column(f.name))
        elif f.nullable:
            columns.append(pa.nulls(table.num_rows, f.type))
        else:
            raise KeyError(f"column {f.name!r} missing (and not nullable)")
    return pa.Table.from_arrays(columns, names=schema.names).cast(schema)


def _arrow(*fields: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(name, kind, nullable=nullable) for name, kind, nullable in fields])


_S, _TS, _D = pa.string(), ARROW_TIMESTAMP, ARROW_DECIMAL

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "tickers", tickers,
            _arrow(("symbol", _S, False), ("ts_event", _TS, False), ("ts_recv", _TS, False),
                   ("buy", _D, False), ("sell", _D, False), ("last", _D, False), ("high", _D, False),
                   ("low", _D, False), ("vol", _D, False), ("change", _D, True),
                   ("day_high", _D, True), ("day_low", _D, True)),
            Ticker, _ticker_row, _ticker_from, "ts_event", "symbol", _attribute_columns(_TICKER_FIELDS),
        ),
        Dataset(
            "book_snapshots", book_snapshots,
            _arrow(("symbol", _S, False), ("ts_event", _TS, False), ("ts_recv", _TS, False),
                   ("source", _S, False), ("depth", pa.int32(), False),
                   ("best_bid", _D, True), ("best_bid_amount", _D, True),
                   ("best_ask", _D, True), ("best_ask_amount", _D, True),
                   ("bids", _S, False), ("asks", _S, False)),
            BookSnapshot, _book_row, _book_from, "ts_event", "symbol", _book_columns,
        ),
        Dataset(
            "deals", deals,
            _arrow(("symbol", _S, False), ("tid", pa.int64(), False), ("price", _D, False),
                   ("amount", _D, False), ("side", _S, False), ("ts_event", _TS, False),
                   ("ts_recv", _TS, False)),
            Deal, _deal_row, _deal_from, "ts_event", "symbol",
            _attribute_columns(("symbol", "tid", "price", "amount", "side", "ts_event", "ts_recv"),
                               enums=("side",)),
        ),
        Dataset(
            "klines", klines,
            _arrow(("symbol", _S, False), ("period", _S, False), ("ts_event", _TS, False),
                   ("ts_recv", _TS, False), ("open", _D, False), ("high", _D, False),
                   ("low", _D, False), ("close", _D, False), ("volume", _D, False)),
            Kline, _kline_row, _kline_from, "ts_event", "symbol",
        ),
        Dataset(
            "balances", balances,
            _arrow(("ts_recv", _TS, False), ("account", _S, False), ("currency", _S, False),
                   ("free", _D, False), ("frozen", _D, False)),
            Balance, _balance_row, _balance_from, "ts_recv", "currency",
        ),
        Dataset(
            "orders", orders,
            _arrow(("order_id", pa.int64(), False), ("symbol", _S, False), ("type", _S, False),
                   ("price", _D, True), ("amount", _D, True), ("deal_amount", _D, False),
                   ("avg_price", _D, False), ("status", pa.int16(), False), ("ts_event", _TS, False),
                   ("ts_recv", _TS, False)),
            Order, _order_row, _order_from, "ts_recv", "symbol",
        ),
        Dataset(
            "order_status_changes", order_status_changes,
            _arrow(("order_id", pa.int64(), False), ("symbol", _S, False), ("status", pa.int16(), False),
                   ("previous_status", pa.int16(), True), ("deal_amount", _D, False),
                   ("ts_recv", _TS, False)),
            OrderStatusChange, _status_change_row, _status_change_from, "ts_recv", "symbol",
        ),
        Dataset(
            "feed_events", feed_events,
            _arrow(("event_id", _S, False), ("kind", _S, False), ("ts_start", _TS, False),
                   ("ts_end", _TS, True), ("connection", _S, False), ("symbols", _S, False),
                   ("channel", _S, False), ("detail", _S, False), ("collector", _S, True)),
            FeedEvent, _feed_event_row, _feed_event_from, "ts_start", "connection",
        ),
        Dataset(
            "quarantine", quarantine,
            _arrow(("ts_recv", _TS, False), ("connection", _S, False), ("reason", _S, False),
                   ("channel", _S, False), ("payload", pa.binary(), False), ("collector", _S, True)),
            QuarantinedFrame, _quarantine_row, _quarantine_from, "ts_recv", "connection",
        ),
    )
}
"""Every dataset by name (the SQL table name, and the Parquet dataset directory name)."""

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
