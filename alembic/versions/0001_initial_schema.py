"""Initial schema: market data, account data, feed events, quarantine.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Self-contained on purpose (no import of recorder.storage.schema, which will move
on): exact decimals are NUMERIC on PostgreSQL and canonical plain TEXT on SQLite;
timestamps are TIMESTAMP WITH TIME ZONE (SQLite: ISO text in UTC).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _dec(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Text().with_variant(postgresql.NUMERIC(), "postgresql"), nullable=nullable)


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _symbol() -> sa.Column:
    return sa.Column("symbol", sa.String(length=32), nullable=False)


# table -> indexes (name, columns), created after the table and dropped before it
INDEXES: dict[str, list[tuple[str, list[str]]]] = {
    "tickers": [("ix_tickers_symbol_ts_event", ["symbol", "ts_event"])],
    "book_snapshots": [("ix_book_snapshots_symbol_ts_event", ["symbol", "ts_event"])],
    "deals": [("ix_deals_symbol_ts_event", ["symbol", "ts_event"])],
    "klines": [("ix_klines_symbol_ts_event", ["symbol", "ts_event"])],
    "balances": [("ix_balances_ts_recv", ["ts_recv"])],
    "orders": [("ix_orders_symbol_ts_event", ["symbol", "ts_event"])],
    "order_status_changes": [("ix_order_status_changes_symbol_ts_recv", ["symbol", "ts_recv"])],
    "feed_events": [
        ("ix_feed_events_ts_start", ["ts_start"]),
        ("ix_feed_events_kind_ts_start", ["kind", "ts_start"]),
    ],
    "quarantine": [("ix_quarantine_ts_recv", ["ts_recv"])],
}


def upgrade() -> None:
    op.create_table(
        "tickers",
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
        sa.PrimaryKeyConstraint("symbol", "ts_recv", name=op.f("pk_tickers")),
    )
    op.create_table(
        "book_snapshots",
        _symbol(),
        _ts("ts_event"),
        _ts("ts_recv"),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        _dec("best_bid", nullable=True),
        _dec("best_bid_amount", nullable=True),
        _dec("best_ask", nullable=True),
        _dec("best_ask_amount", nullable=True),
        sa.Column("bids", sa.Text(), nullable=False),
        sa.Column("asks", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "ts_recv", "source", name=op.f("pk_book_snapshots")),
    )
    op.create_table(
        "deals",
        _symbol(),
        sa.Column("tid", sa.BigInteger(), autoincrement=False, nullable=False),
        _dec("price"),
        _dec("amount"),
        sa.Column("side", sa.String(length=8), nullable=False),
        _ts("ts_event"),
        _ts("ts_recv"),
        sa.PrimaryKeyConstraint("symbol", "tid", name=op.f("pk_deals")),
    )
    op.create_table(
        "klines",
        _symbol(),
        sa.Column("period", sa.String(length=8), nullable=False),
        _ts("ts_event"),
        _ts("ts_recv"),
        _dec("open"),
        _dec("high"),
        _dec("low"),
        _dec("close"),
        _dec("volume"),
        sa.PrimaryKeyConstraint("symbol", "period", "ts_event", name=op.f("pk_klines")),
    )
    op.create_table(
        "balances",
        _ts("ts_recv"),
        sa.Column("account", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        _dec("free"),
        _dec("frozen"),
        sa.PrimaryKeyConstraint("account", "currency", "ts_recv", name=op.f("pk_balances")),
    )
    op.create_table(
        "orders",
        sa.Column("order_id", sa.BigInteger(), autoincrement=False, nullable=False),
        _symbol(),
        sa.Column("type", sa.String(length=16), nullable=False),
        _dec("price", nullable=True),
        _dec("amount", nullable=True),
        _dec("deal_amount"),
        _dec("avg_price"),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        _ts("ts_event"),
        _ts("ts_recv"),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_orders")),
    )
    op.create_table(
        "order_status_changes",
        sa.Column("order_id", sa.BigInteger(), autoincrement=False, nullable=False),
        _symbol(),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("previous_status", sa.SmallInteger(), nullable=True),
        _dec("deal_amount"),
        _ts("ts_recv"),
        sa.PrimaryKeyConstraint("order_id", "status", name=op.f("pk_order_status_changes")),
    )
    op.create_table(
        "feed_events",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        _ts("ts_start"),
        _ts("ts_end", nullable=True),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("symbols", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_feed_events")),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _ts("ts_recv"),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
    )
    for table, indexes in INDEXES.items():
        for name, columns in indexes:
            op.create_index(op.f(name), table, columns, unique=False)


def downgrade() -> None:
    for table, indexes in reversed(INDEXES.items()):
        for name, _columns in indexes:
            op.drop_index(op.f(name), table_name=table)
        op.drop_table(table)
