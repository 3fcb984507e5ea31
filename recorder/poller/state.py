"""What the poller already knows about orders: the last stored state of each.

Loaded read-only from the SQL database at start (:func:`load_order_states`), so a
restarted poller emits only what changed since the last stored state: no order
or status change is lost, none is written twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

from recorder.errors import StoreUnavailableError
from recorder.records import Order, OrderStatus
from recorder.storage import schema

__all__ = ["OrderState", "load_order_states"]


@dataclass(frozen=True, slots=True)
class OrderState:
    """The last known state of one order."""

    status: OrderStatus
    deal_amount: Decimal
    avg_price: Decimal | None

    @classmethod
    def of(cls, order: Order) -> OrderState:
        return cls(order.status, order.deal_amount, order.avg_price)

    def is_superseded_by(self, order: Order) -> bool:
        """True when ``order`` is news: a different state that is not older than this one.

        A final status never goes back to a non-final one and the filled amount
        never shrinks: an answer claiming so was taken before the one already
        seen (two endpoints read at slightly different moments) and is ignored.
        """
        if (order.status, order.deal_amount, order.avg_price) == (
            self.status, self.deal_amount, self.avg_price
        ):
            return False
        if self.status.is_final and not order.status.is_final:
            return False
        return order.deal_amount >= self.deal_amount


def load_order_states(
    url_or_engine: str | sa.Engine, symbols: Iterable[str] | None = None, *, venue: str | None = None
) -> dict[int, OrderState]:
    """Read ``order_id -> OrderState`` from the ``orders`` table (read-only, bound parameters).

    ``symbols`` restricts the load to those symbols, ``venue`` to that venue's orders (the
    ``venue`` column, schema revision 0003). A database that has no
    ``orders`` table yet gives an empty mapping. Raises
    :class:`~recorder.errors.StoreUnavailableError` when the database cannot be read.
    """
    engine = sa.create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    t = schema.orders
    query = sa.select(t.c.order_id, t.c.status, t.c.deal_amount, t.c.avg_price)
    if symbols is not None:
        query = query.where(t.c.symbol.in_(list(symbols)))
    if venue is not None:
        query = query.where(t.c.venue == venue)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(t.name):
                return {}
            return {
                int(row.order_id): OrderState(OrderStatus(row.status), row.deal_amount, row.avg_price)
                for row in conn.execute(query)
            }
    except sa.exc.SQLAlchemyError as exc:
        raise StoreUnavailableError(f"cannot read known orders: {type(exc).__name__}") from exc
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()
