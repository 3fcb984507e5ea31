"""Venues: a ``venue`` column in every table and natural key; v5's optional columns; order statuses
as names; the ``instruments`` and ``fills`` tables.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Upgrade (existing rows keep their values):

* ``venue`` (``String(16)``, NOT NULL) in tickers, book_snapshots, deals, klines, balances, orders
  and order_status_changes, first column of each primary key and of the lookup index; existing
  rows get ``okex_v1``. ``feed_events`` and ``quarantine`` get a ``venue`` too (``""`` for existing
  rows: an event of no one venue).
* order statuses become text, the neutral names: -1 cancelled, 0 open, 1 partially_filled,
  2 filled, 3 cancelling, 4 failed, 5 placing (``orders.status``,
  ``order_status_changes.status`` / ``previous_status``).
* new nullable columns: tickers bid_size, ask_size, last_size, open_24h, vol_quote (and buy,
  sell, last, high, low, vol become nullable: a venue's absent value is NULL, never zero);
  book_snapshots seq_id; deals count; klines volume_quote, confirmed; orders raw_status,
  raw_type, client_order_id, ts_updated (and avg_price nullable).
* new tables ``instruments`` (key venue, symbol, ts_recv) and ``fills`` (key venue, bill_id).

Downgrade: the reverse. Rows of venues other than ``okex_v1`` (and feed events / quarantine rows
of another venue) cannot be told apart without the column and are DELETED; instruments and fills
are dropped; a ticker with a NULL price cannot be held by 0002 and is deleted too.

Self-contained on purpose (no import of recorder.storage, which will move on).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

V1 = "okex_v1"
STATUS = {-1: "cancelled", 0: "open", 1: "partially_filled", 2: "filled", 3: "cancelling", 4: "failed",
          5: "placing"}

# table -> (old key, old index (name, columns) or None)
KEYED: dict[str, tuple[list[str], tuple[str, list[str]] | None]] = {
    "tickers": (["symbol", "ts_recv"], ("ix_tickers_symbol_ts_event", ["symbol", "ts_event"])),
    "book_snapshots": (["symbol", "ts_recv", "source"],
                       ("ix_book_snapshots_symbol_ts_event", ["symbol", "ts_event"])),
    "deals": (["symbol", "tid"], ("ix_deals_symbol_ts_event", ["symbol", "ts_event"])),
    "klines": (["symbol", "period", "ts_event"], ("ix_klines_symbol_ts_event", ["symbol", "ts_event"])),
    "balances": (["account", "currency", "ts_recv"], None),
    "orders": (["order_id"], ("ix_orders_symbol_ts_event", ["symbol", "ts_event"])),
    "order_status_changes": (["order_id", "status"],
                             ("ix_order_status_changes_symbol_ts_recv", ["symbol", "ts_recv"])),
}
EVENTS = ("feed_events", "quarantine")
TICKER_PRICES = ("buy", "sell", "last", "high", "low", "vol")


def _dec(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.Text().with_variant(postgresql.NUMERIC(), "postgresql"), nullable=nullable)


def _dec_type() -> sa.types.TypeEngine:
    return sa.Text().with_variant(postgresql.NUMERIC(), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _new_columns(table: str) -> list[sa.Column]:
    """The nullable columns 0003 adds to ``table`` (fresh Column objects each call)."""
    return _NEW_COLUMNS.get(table, lambda: [])()


_NEW_COLUMNS: dict[str, Callable[[], list[sa.Column]]] = {
    "tickers": lambda: [_dec("bid_size"), _dec("ask_size"), _dec("last_size"), _dec("open_24h"),
                        _dec("vol_quote")],
    "book_snapshots": lambda: [sa.Column("seq_id", sa.BigInteger(), nullable=True)],
    "deals": lambda: [sa.Column("count", sa.Integer(), nullable=True)],
    "klines": lambda: [_dec("volume_quote"), sa.Column("confirmed", sa.Boolean(), nullable=True)],
    "orders": lambda: [sa.Column("raw_status", sa.String(length=32), nullable=True),
                       sa.Column("raw_type", sa.String(length=32), nullable=True),
                       sa.Column("client_order_id", sa.String(length=64), nullable=True),
                       _ts("ts_updated", nullable=True)],
}
STATUS_COLUMNS = {"orders": ["status"], "order_status_changes": ["status", "previous_status"]}


def _case(column: str, mapping: dict[object, object]) -> str:
    def lit(v: object) -> str:
        return f"'{v}'" if isinstance(v, str) else str(v)

    whens = " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in mapping.items())
    return f"CASE {column} {whens} END"


def _recreate() -> str:
    return "always" if op.get_context().dialect.name == "sqlite" else "auto"


def upgrade() -> None:
    for table in (*KEYED, *EVENTS):
        default = V1 if table in KEYED else ""
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("venue", sa.String(length=16), nullable=False,
                                       server_default=sa.text(f"'{default}'")))
            for column in _new_columns(table):
                batch.add_column(column)
            for column in STATUS_COLUMNS.get(table, []):
                batch.add_column(sa.Column(f"{column}_name", sa.String(length=16), nullable=True))
    for table, columns in STATUS_COLUMNS.items():
        sets = ", ".join(f"{c}_name = {_case(c, STATUS)}" for c in columns)
        op.execute(f"UPDATE {table} SET {sets}")  # noqa: S608 -- constant names and codes only
    for table, (key, index) in KEYED.items():
        if index is not None:
            op.drop_index(index[0], table_name=table)
        with op.batch_alter_table(table, recreate=_recreate()) as batch:
            batch.alter_column("venue", server_default=None, existing_type=sa.String(length=16),
                               existing_nullable=False)
            batch.drop_constraint(f"pk_{table}", type_="primary")
            for column in STATUS_COLUMNS.get(table, []):
                batch.drop_column(column)
                batch.alter_column(f"{column}_name", new_column_name=column,
                                   existing_type=sa.String(length=16), nullable=column == "previous_status")
            if table == "tickers":
                for column in TICKER_PRICES:
                    batch.alter_column(column, existing_type=_dec_type(), nullable=True)
            if table == "orders":
                batch.alter_column("avg_price", existing_type=_dec_type(), nullable=True)
        with op.batch_alter_table(table, recreate=_recreate()) as batch:
            batch.create_primary_key(f"pk_{table}", ["venue", *key])
        if index is not None:
            name = index[0].replace(f"ix_{table}_", f"ix_{table}_venue_")
            op.create_index(name, table, ["venue", *index[1]], unique=False)
    for table in EVENTS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("venue", server_default=None, existing_type=sa.String(length=16),
                               existing_nullable=False)
    op.create_table(
        "instruments",
        sa.Column("venue", sa.String(length=16), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        _ts("ts_recv"),
        sa.Column("base", sa.String(length=16), nullable=True),
        sa.Column("quote", sa.String(length=16), nullable=True),
        _dec("tick_size", nullable=False),
        _dec("lot_size", nullable=False),
        _dec("min_size"),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("inst_type", sa.String(length=16), nullable=False),
        _ts("ts_listed", nullable=True),
        _ts("ts_expiry", nullable=True),
        sa.PrimaryKeyConstraint("venue", "symbol", "ts_recv", name=op.f("pk_instruments")),
    )
    op.create_index("ix_instruments_venue_symbol_ts_recv", "instruments", ["venue", "symbol", "ts_recv"])
    op.create_table(
        "fills",
        sa.Column("venue", sa.String(length=16), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("bill_id", sa.String(length=64), nullable=False),
        sa.Column("trade_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        _dec("price", nullable=False),
        _dec("amount", nullable=False),
        _dec("fee"),
        sa.Column("fee_currency", sa.String(length=16), nullable=True),
        sa.Column("liquidity", sa.String(length=8), nullable=True),
        _ts("ts_event"),
        _ts("ts_recv"),
        sa.PrimaryKeyConstraint("venue", "bill_id", name=op.f("pk_fills")),
    )
    op.create_index("ix_fills_venue_symbol_ts_event", "fills", ["venue", "symbol", "ts_event"])


def downgrade() -> None:
    op.drop_index("ix_fills_venue_symbol_ts_event", table_name="fills")
    op.drop_table("fills")
    op.drop_index("ix_instruments_venue_symbol_ts_recv", table_name="instruments")
    op.drop_table("instruments")
    for table in EVENTS:
        op.execute(f"DELETE FROM {table} WHERE venue <> '' AND venue <> '{V1}'")  # noqa: S608 -- constants
        with op.batch_alter_table(table) as batch:
            batch.drop_column("venue")
    for table, (key, index) in KEYED.items():
        op.execute(f"DELETE FROM {table} WHERE venue <> '{V1}'")  # noqa: S608 -- constants
        if table == "tickers":
            nulls = " OR ".join(f"{c} IS NULL" for c in TICKER_PRICES)
            op.execute("DELETE FROM tickers WHERE " + nulls)  # noqa: S608 -- constant column names
        if index is not None:
            op.drop_index(index[0].replace(f"ix_{table}_", f"ix_{table}_venue_"), table_name=table)
        for column in STATUS_COLUMNS.get(table, []):
            op.add_column(table, sa.Column(f"{column}_code", sa.SmallInteger(), nullable=True))
        codes = {name: code for code, name in STATUS.items()}
        sets = ", ".join(f"{c}_code = {_case(c, codes)}" for c in STATUS_COLUMNS.get(table, []))
        if sets:
            op.execute(f"UPDATE {table} SET {sets}")  # noqa: S608 -- constant names and codes only
        with op.batch_alter_table(table, recreate=_recreate()) as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.drop_column("venue")
            for column in _new_columns(table):
                batch.drop_column(column.name)
            for column in STATUS_COLUMNS.get(table, []):
                batch.drop_column(column)
                batch.alter_column(f"{column}_code", new_column_name=column, existing_type=sa.SmallInteger(),
                                   nullable=column == "previous_status")
            if table == "tickers":
                for column in TICKER_PRICES:
                    batch.alter_column(column, existing_type=_dec_type(), nullable=False)
            if table == "orders":
                batch.alter_column("avg_price", existing_type=_dec_type(), nullable=False)
        with op.batch_alter_table(table, recreate=_recreate()) as batch:
            batch.create_primary_key(f"pk_{table}", key)
        if index is not None:
            op.create_index(index[0], table, index[1], unique=False)
