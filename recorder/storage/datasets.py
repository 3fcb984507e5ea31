"""The one declarative description of every dataset storage keeps.

Per dataset: its columns (name, logical type, nullable, unit/doc), its natural key, its merge
rule, its partition columns and the record type it holds. Everything else is derived from
:data:`SPECS` in :mod:`recorder.storage.schema`: the SQL tables (and so Alembic's target),
the Arrow schemas, the record -> row/columns converters and row -> record readers, the SQL
upserts (:mod:`recorder.storage.sql`), the screen's rules (:mod:`recorder.storage.validate`)
and the analysis de-duplication (:mod:`analysis.load`).

A dataset is added by adding one :class:`Spec` here (and a migration).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recorder.records import (
    Balance,
    BookSnapshot,
    Deal,
    FeedEvent,
    FeedEventKind,
    Fill,
    Instrument,
    Kline,
    KlinePeriod,
    Order,
    OrderStatus,
    OrderStatusChange,
    OrderType,
    QuarantinedFrame,
    Side,
    Ticker,
)
from recorder.storage.codecs import levels_from_json, levels_to_json

__all__ = ["LEGACY_VENUE", "SPECS", "Column", "Kind", "Merge", "Spec"]

LEGACY_VENUE = "okex_v1"
"""The venue of rows written before the ``venue`` column existed (schema revisions 0001-0002)."""


class Kind(enum.Enum):
    """A column's logical type (SQL / Arrow): see docs/storage.md "Representations"."""

    TEXT = "text"  # String(length) or Text / string
    DECIMAL = "decimal"  # NUMERIC (PostgreSQL) or canonical TEXT (SQLite) / decimal128(38, 18)
    TIMESTAMP = "timestamp"  # TIMESTAMP WITH TIME ZONE (SQLite: UTC text) / timestamp(us, UTC)
    INT32 = "int32"
    INT64 = "int64"
    BOOL = "bool"
    BYTES = "bytes"


class Merge(enum.Enum):
    """What happens when a row with a key already stored is written again."""

    KEEP_FIRST = "keep_first"  # ignore the duplicate: the stored row stays
    LAST_SEEN_WINS = "last_seen_wins"  # upsert if the new row's ts_recv >= the stored one's
    SPAN = "span"  # upsert, but a NULL ts_end never reopens a closed span (feed events)
    APPEND = "append"  # no key: always insert (quarantine)


@dataclass(frozen=True, slots=True)
class Column:
    """One column. ``field`` is the record attribute (None: derived, written but not read back);
    ``enum`` stores the enum's value; ``get``/``put`` convert record value <-> stored value where
    that is more than the identity. ``legacy`` fills the column in rows of an older schema
    version that lack it (journal segments, Parquet files, bus messages)."""

    name: str
    kind: Kind
    nullable: bool = False
    doc: str = ""
    length: int | None = None  # TEXT: at most this many characters (SQL String(n)); None = Text
    field: str | None = ""  # "" = the column's name
    enum: type[enum.Enum] | None = None
    get: Callable[[Any], Any] | None = None  # record -> stored value (whole record)
    put: Callable[[Any], Any] | None = None  # stored value -> record field value
    sql_only: bool = False
    legacy: Any = None

    @property
    def attr(self) -> str | None:
        return self.name if self.field == "" else self.field


@dataclass(frozen=True, slots=True)
class Spec:
    """One dataset: its name (SQL table, Parquet directory), record type, columns, key, merge rule.

    ``partition`` names the Parquet partition columns after the dataset name, in path order;
    ``date`` stands for the UTC date of ``date_column``. ``path_checked`` are columns whose
    values must be safe as a file-path component (:func:`recorder.storage.keys.check_path_value`).
    ``dedup_order`` is the column analysis sorts by before keeping one row per key.
    """

    name: str
    record_type: type
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    merge: Merge
    date_column: str
    partition: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()
    path_checked: tuple[str, ...] = ()
    doc: str = ""


_T, _D, _TS = Kind.TEXT, Kind.DECIMAL, Kind.TIMESTAMP


def _venue() -> Column:
    return Column("venue", _T, length=16, doc="venue name: okex_v1, okx_v5", legacy=LEGACY_VENUE)


def _symbol() -> Column:
    return Column("symbol", _T, length=32, doc="the venue's own instrument id (btc_usdt, BTC-USDT)")


def _event_venue() -> Column:
    return Column("venue", _T, length=16, doc='venue name; "" = no one venue', legacy="")


def _dec(name: str, doc: str, nullable: bool = False) -> Column:
    return Column(name, _D, nullable, doc)


def _ts(name: str, doc: str, nullable: bool = False) -> Column:
    return Column(name, _TS, nullable, doc)


_NONE_LEVEL = (None, None)


def _best(side: str, i: int) -> Callable[[Any], Any]:
    def get(r: Any) -> Any:
        levels = getattr(r, side)
        return levels[0][i] if levels else None

    return get


SPECS: tuple[Spec, ...] = (
    Spec(
        "tickers", Ticker,
        (
            _venue(), _symbol(),
            _ts("ts_event", "exchange time (UTC)"), _ts("ts_recv", "local receive time (UTC)"),
            _dec("buy", "best bid price, quote currency", True),
            _dec("sell", "best ask price, quote currency", True),
            _dec("last", "last trade price, quote currency", True),
            _dec("high", "24 h high, quote currency", True),
            _dec("low", "24 h low, quote currency", True),
            _dec("vol", "24 h volume, base currency", True),
            _dec("change", "24 h change, quote currency", True),
            _dec("day_high", "day high, quote currency", True),
            _dec("day_low", "day low, quote currency", True),
            _dec("bid_size", "best bid amount, base currency", True),
            _dec("ask_size", "best ask amount, base currency", True),
            _dec("last_size", "last trade amount, base currency", True),
            _dec("open_24h", "price 24 h ago, quote currency", True),
            _dec("vol_quote", "24 h volume, quote currency", True),
        ),
        key=("venue", "symbol", "ts_recv"), merge=Merge.KEEP_FIRST, date_column="ts_event",
        partition=("venue", "date", "symbol"), indexes=(("venue", "symbol", "ts_event"),),
        path_checked=("venue", "symbol"),
    ),
    Spec(
        "book_snapshots", BookSnapshot,
        (
            _venue(), _symbol(),
            _ts("ts_event", "exchange time (UTC)"), _ts("ts_recv", "local receive time (UTC)"),
            Column("source", _T, length=16,
                   doc="the venue's channel: depth, depth_5, books, books5, bbo-tbt"),
            Column("depth", Kind.INT32, field=None, doc="levels on the fuller side",
                   get=lambda r: max(len(r.bids), len(r.asks))),
            Column("best_bid", _D, True, "quote currency", field=None, get=_best("bids", 0)),
            Column("best_bid_amount", _D, True, "base currency", field=None, get=_best("bids", 1)),
            Column("best_ask", _D, True, "quote currency", field=None, get=_best("asks", 0)),
            Column("best_ask_amount", _D, True, "base currency", field=None, get=_best("asks", 1)),
            Column("bids", _T, doc='JSON [["price","amount"],...], best first',
                   get=lambda r: levels_to_json(r.bids), put=levels_from_json),
            Column("asks", _T, doc='JSON [["price","amount"],...], best first',
                   get=lambda r: levels_to_json(r.asks), put=levels_from_json),
            Column("seq_id", Kind.INT64, True, "the venue's sequence number of the last update (v5 seqId)"),
        ),
        key=("venue", "symbol", "ts_recv", "source"), merge=Merge.KEEP_FIRST, date_column="ts_event",
        partition=("venue", "date", "symbol"), indexes=(("venue", "symbol", "ts_event"),),
        path_checked=("venue", "symbol"),
    ),
    Spec(
        "deals", Deal,
        (
            _venue(), _symbol(),
            Column("tid", Kind.INT64, doc="the venue's trade id"),
            _dec("price", "quote currency"), _dec("amount", "base currency"),
            Column("side", _T, length=8, enum=Side, doc="aggressor side: buy, sell"),
            _ts("ts_event", "exchange time (UTC)"), _ts("ts_recv", "local receive time (UTC)"),
            Column("count", Kind.INT32, True, "fills aggregated into this trade (v5)"),
        ),
        key=("venue", "symbol", "tid"), merge=Merge.KEEP_FIRST, date_column="ts_event",
        partition=("venue", "date", "symbol"), indexes=(("venue", "symbol", "ts_event"),),
        path_checked=("venue", "symbol"),
    ),
    Spec(
        "klines", Kline,
        (
            _venue(), _symbol(),
            Column("period", _T, length=8, enum=KlinePeriod, doc="1min, ..., day, week"),
            _ts("ts_event", "the period's start (UTC)"), _ts("ts_recv", "local receive time (UTC)"),
            _dec("open", "quote currency"), _dec("high", "quote currency"), _dec("low", "quote currency"),
            _dec("close", "quote currency"), _dec("volume", "base currency"),
            _dec("volume_quote", "quote currency", True),
            Column("confirmed", Kind.BOOL, True, "the venue says the candle is closed (v5 confirm)"),
        ),
        key=("venue", "symbol", "period", "ts_event"), merge=Merge.LAST_SEEN_WINS, date_column="ts_event",
        partition=("venue", "date", "symbol"), indexes=(("venue", "symbol", "ts_event"),),
        path_checked=("venue", "symbol"), doc="the open candle is pushed repeatedly: the last seen wins",
    ),
    Spec(
        "balances", Balance,
        (
            _venue(), _ts("ts_recv", "poll time (UTC)"),
            Column("account", _T, length=16, doc="v1 spot | wallet; v5 trading | funding"),
            Column("currency", _T, length=16, doc="currency code as the venue spells it"),
            _dec("free", "in that currency"), _dec("frozen", "in that currency"),
        ),
        key=("venue", "account", "currency", "ts_recv"), merge=Merge.KEEP_FIRST, date_column="ts_recv",
        partition=("venue", "date", "currency"), indexes=(("ts_recv",),), path_checked=("venue",),
    ),
    Spec(
        "orders", Order,
        (
            _venue(),
            Column("order_id", Kind.INT64, doc="the venue's order id"),
            _symbol(),
            Column("type", _T, length=16, enum=OrderType, doc="buy, sell, buy_market, sell_market"),
            _dec("price", "quote currency; NULL for market orders", True),
            _dec("amount", "base currency; NULL for market buys", True),
            _dec("deal_amount", "filled, base currency"),
            _dec("avg_price", "quote currency; NULL if the venue sends none", True),
            Column("status", _T, length=16, enum=OrderStatus, doc="open, partially_filled, filled, ..."),
            _ts("ts_event", "the order's creation (UTC)"), _ts("ts_recv", "when this state was seen (UTC)"),
            Column("raw_status", _T, True, "the venue's own status value", length=32),
            Column("raw_type", _T, True, "the venue's own order type", length=32),
            Column("client_order_id", _T, True, "the client's order id", length=64),
            _ts("ts_updated", "the venue's last update time (UTC)", True),
        ),
        key=("venue", "order_id"), merge=Merge.LAST_SEEN_WINS, date_column="ts_recv",
        partition=("venue", "date", "symbol"), indexes=(("venue", "symbol", "ts_event"),),
        path_checked=("venue", "symbol"), doc="one row per order, its last seen state",
    ),
    Spec(
        "order_status_changes", OrderStatusChange,
        (
            _venue(),
            Column("order_id", Kind.INT64, doc="the venue's order id"),
            _symbol(),
            Column("status", _T, length=16, enum=OrderStatus, doc="the new status"),
            Column("previous_status", _T, True, "the status before; NULL for a first sight",
                   length=16, enum=OrderStatus),
            _dec("deal_amount", "filled, base currency"),
            _ts("ts_recv", "when the status was first seen (UTC)"),
        ),
        key=("venue", "order_id", "status"), merge=Merge.KEEP_FIRST, date_column="ts_recv",
        partition=("venue", "date", "symbol"), indexes=(("venue", "symbol", "ts_recv"),),
        path_checked=("venue", "symbol"),
    ),
    Spec(
        "instruments", Instrument,
        (
            _venue(), _symbol(), _ts("ts_recv", "when this state was seen (UTC)"),
            Column("base", _T, True, "base currency code (upper case)", length=16),
            Column("quote", _T, True, "quote currency code (upper case)", length=16),
            _dec("tick_size", "price increment, quote currency"),
            _dec("lot_size", "amount increment, base currency"),
            _dec("min_size", "smallest order, base currency", True),
            Column("state", _T, length=16, doc="the venue's state: live, suspend, preopen, test"),
            Column("inst_type", _T, length=16, doc="SPOT, ..."),
            _ts("ts_listed", "listing time (UTC)", True),
            _ts("ts_expiry", "expiry time (UTC)", True),
        ),
        key=("venue", "symbol", "ts_recv"), merge=Merge.KEEP_FIRST, date_column="ts_recv",
        partition=("venue", "date", "symbol"), indexes=(("venue", "symbol", "ts_recv"),),
        path_checked=("venue", "symbol"), doc="reference data: one row per observed change",
    ),
    Spec(
        "fills", Fill,
        (
            _venue(), _symbol(),
            Column("bill_id", _T, length=64, doc="the venue's unique id of the fill"),
            Column("trade_id", _T, length=64, doc="the venue's trade id"),
            Column("order_id", Kind.INT64, doc="the venue's order id"),
            Column("side", _T, length=8, enum=Side, doc="buy, sell"),
            _dec("price", "quote currency"), _dec("amount", "base currency"),
            _dec("fee", "signed as the venue sends it (negative = charged), in fee_currency", True),
            Column("fee_currency", _T, True, "currency code of the fee", length=16),
            Column("liquidity", _T, True, "maker | taker", length=8),
            _ts("ts_event", "exchange time (UTC)"), _ts("ts_recv", "local receive time (UTC)"),
        ),
        key=("venue", "bill_id"), merge=Merge.KEEP_FIRST, date_column="ts_event",
        partition=("venue", "date", "symbol"), indexes=(("venue", "symbol", "ts_event"),),
        path_checked=("venue", "symbol"),
    ),
    Spec(
        "feed_events", FeedEvent,
        (
            Column("event_id", _T, length=64, doc="unique id of the span"),
            Column("kind", _T, length=24, enum=FeedEventKind, doc="FeedEventKind value"),
            _ts("ts_start", "span start (UTC)"), _ts("ts_end", "span end (UTC); NULL while open", True),
            Column("connection", _T, length=64, doc="collector connection, rest, or a store's name"),
            Column("symbols", _T, doc='comma-separated, "" for none',
                   get=lambda r: ",".join(r.symbols), put=lambda s: tuple(s.split(",")) if s else ()),
            Column("channel", _T, doc="the channel concerned"),
            Column("detail", _T, doc="free text"),
            Column("collector", _T, True, "collector.id; NULL before revision 0002", length=64),
            _event_venue(),
        ),
        key=("event_id",), merge=Merge.SPAN, date_column="ts_start", partition=("date", "connection"),
        indexes=(("ts_start",), ("kind", "ts_start")), doc="a span is written open, then again closed",
    ),
    Spec(
        "quarantine", QuarantinedFrame,
        (
            Column("id", Kind.INT32, field=None, sql_only=True, doc="serial id (SQL only)"),
            _ts("ts_recv", "local receive time (UTC)"),
            Column("connection", _T, length=64,
                   doc="collector connection, rest, storage (the storage writer) or bus (a bus writer)"),
            Column("reason", _T, doc="why it could not be decoded or stored"),
            Column("channel", _T, doc="the channel (or dataset, or bus subject) concerned"),
            Column("payload", Kind.BYTES, put=bytes,
                   doc="the raw frame (or bus message; a row: its values as JSON), at most 64 KiB"),
            Column("collector", _T, True, "collector.id; NULL before revision 0002", length=64),
            _event_venue(),
        ),
        key=(), merge=Merge.APPEND, date_column="ts_recv", partition=("date", "connection"),
        indexes=(("ts_recv",),),
    ),
)
"""Every dataset, in the fixed order tables are written in one transaction."""
