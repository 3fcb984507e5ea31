"""Feed events and quarantined frames carry the id of the collector that made them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

Adds the nullable ``collector`` column (``String(64)``, the collector's ``collector.id``) to
``feed_events`` and ``quarantine``. Rows recorded before stay NULL: analysis counts them as
one collector. Downgrading drops the column (and the ids in it).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("feed_events", "quarantine")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("collector", sa.String(length=64), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("collector")
