"""What the poller already knows: the last stored state of each order, the stored fills and
the last stored state of each instrument.

Loaded read-only from the SQL database at start (:func:`load_order_states`,
:func:`load_account_state`), so a restarted poller emits only what changed since the last
stored state: no order, status change, fill or instrument change is lost, none is written
twice (docs/poller.md "Restarts").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa

from recorder.errors import StoreUnavailableError
from recorder.records import Instrument, Order, OrderStatus
from recorder.storage import schema

__all__ = ["OrderState", "StoredAccount", "load_account_state", "load_instrument_states", "load_order_states"]


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


@dataclass(frozen=True, slots=True)
class StoredAccount:
    """What the SQL store holds of one venue's account, for a restart (see :func:`load_account_state`).

    ``orders``: ``order_id -> OrderState``; ``fill_ids``: every stored ``bill_id``;
    ``newest_fill``: the greatest stored fill ``ts_event`` (UTC), None without fills;
    ``instruments``: ``symbol -> Instrument``, the latest stored row of each (``state`` ``"gone"``
    included, so the caller decides).
    """

    orders: Mapping[int, OrderState] = field(default_factory=dict)
    fill_ids: frozenset[str] = frozenset()
    newest_fill: datetime | None = None
    instruments: Mapping[str, Instrument] = field(default_factory=dict)


def load_instrument_states(url_or_engine: str | sa.Engine, venue: str | None = None
                           ) -> dict[tuple[str, str], Instrument]:
    """``(venue, symbol) -> Instrument``: the latest stored row (greatest ``ts_recv``) of each
    instrument, of ``venue`` only when given (read-only; ``state`` ``"gone"`` included).

    A database without an ``instruments`` table gives an empty mapping. Raises
    :class:`~recorder.errors.StoreUnavailableError` when the database cannot be read.
    """
    engine = sa.create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    i = schema.instruments
    latest: dict[tuple[str, str], Instrument] = {}
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(i.name):
                return {}
            from_row = schema.DATASETS[i.name].from_row
            query = sa.select(i).order_by(i.c.ts_recv)
            if venue is not None:
                query = query.where(i.c.venue == venue)
            for row in conn.execute(query).mappings():
                latest[(row["venue"], row["symbol"])] = from_row(row)
        return latest
    except sa.exc.SQLAlchemyError as exc:
        raise StoreUnavailableError(
            f"cannot read the stored instrument states: {type(exc).__name__}") from exc
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def load_account_state(url_or_engine: str | sa.Engine, venue: str) -> StoredAccount:
    """Read ``venue``'s stored orders, fills and instruments (read-only, bound parameters).

    Tables a database does not have yet read as empty. Raises
    :class:`~recorder.errors.StoreUnavailableError` when the database cannot be read.
    """
    engine = sa.create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        orders = load_order_states(engine, venue=venue)
        f = schema.fills
        fill_ids: frozenset[str] = frozenset()
        newest: datetime | None = None
        with engine.connect() as conn:
            if sa.inspect(conn).has_table(f.name):
                fill_ids = frozenset(conn.scalars(sa.select(f.c.bill_id).where(f.c.venue == venue)))
                newest = conn.scalar(sa.select(sa.func.max(f.c.ts_event)).where(f.c.venue == venue))
        latest = {symbol: inst for (_, symbol), inst in load_instrument_states(engine, venue).items()}
        return StoredAccount(orders, fill_ids, newest, latest)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreUnavailableError(f"cannot read the stored account: {type(exc).__name__}") from exc
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()
