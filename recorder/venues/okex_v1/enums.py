"""OKEx v1's own enum values and their neutral counterparts (PROTOCOL.md, "An order").

v1 order status codes: -1 cancelled, 0 open, 1 partially filled, 2 filled,
3 cancelling, 4 failed (``order_history.do`` uses 4 for "cancel in progress"),
5 placing.
"""

from __future__ import annotations

from recorder.records import OrderStatus

__all__ = ["ORDER_STATUS_CODE", "VENUE", "order_status"]

VENUE = "okex_v1"
"""The venue name every v1 record carries."""

_STATUS = {
    -1: OrderStatus.CANCELLED,
    0: OrderStatus.OPEN,
    1: OrderStatus.PARTIALLY_FILLED,
    2: OrderStatus.FILLED,
    3: OrderStatus.CANCELLING,
    4: OrderStatus.FAILED,
    5: OrderStatus.PLACING,
}

ORDER_STATUS_CODE: dict[OrderStatus, int] = {v: k for k, v in _STATUS.items()}
"""Neutral status -> v1 code (the simulator's wire and schema revisions before 0003)."""


def order_status(code: int, *, history: bool = False) -> OrderStatus:
    """The neutral status of v1 code ``code``; raises ``ValueError`` for an unknown code.

    ``history=True`` reads 4 as CANCELLING (``order_history.do`` documents 4 as
    "cancel in progress").
    """
    if history and code == 4:
        return OrderStatus.CANCELLING
    try:
        return _STATUS[code]
    except KeyError:
        raise ValueError(f"unknown order status {code}") from None
