"""OKX v5 REST records -> the venue-neutral records of :mod:`recorder.records` (docs/venues/okx_v5.md).

Sans-I/O: the signed REST poller (:mod:`recorder.poller.okx_v5`) fetches with
:mod:`.rest` and maps here, per the table of ``docs/venues/okx_v5.md``:

* ``Balance`` -> neutral ``Balance`` with ``account = "trading"`` (v5 unified account),
  ``free = availBal``, ``frozen = frozenBal`` (``None`` sent as ``""`` becomes 0);
* ``Order`` -> neutral ``Order``: ``order_id`` as int (19-digit numeric string),
  ``state`` -> :class:`~recorder.records.OrderStatus` (``live`` OPEN, ``partially_filled``
  PARTIALLY_FILLED, ``filled`` FILLED, ``canceled``/``mmp_canceled`` CANCELLED), raw state
  kept in ``raw_status``, ``ordType`` in ``raw_type``; ``type`` from ``side`` + market or not;
  ``ts_event`` = ``cTime``, ``ts_updated`` = ``uTime`` (all UTC);
* ``Fill`` -> neutral ``Fill``: ``liquidity`` ``maker`` (``execType`` ``M``) / ``taker`` (``T``);
* ``Instrument`` -> neutral ``Instrument`` (``symbol`` = ``instId``, e.g. ``BTC-USDT``).
"""

from __future__ import annotations

from decimal import Decimal

from recorder import records as N

from .records import VENUE, Balance, Fill, Instrument, Order, OrderState, Side

__all__ = [
    "ACCOUNT",
    "STATUS_OF",
    "neutral_balance",
    "neutral_fill",
    "neutral_instrument",
    "neutral_order",
    "neutral_status",
]

ACCOUNT = "trading"
"""``Balance.account`` of every v5 balance (the unified trading account, ``/api/v5/account/balance``)."""

STATUS_OF: dict[OrderState, N.OrderStatus] = {
    OrderState.LIVE: N.OrderStatus.OPEN,
    OrderState.PARTIALLY_FILLED: N.OrderStatus.PARTIALLY_FILLED,
    OrderState.FILLED: N.OrderStatus.FILLED,
    OrderState.CANCELED: N.OrderStatus.CANCELLED,
    OrderState.MMP_CANCELED: N.OrderStatus.CANCELLED,
}
"""v5 ``state`` (§5.2) -> neutral status."""

_MARKET_TYPES = frozenset({"market", "optimal_limit_ioc"})
_ZERO = Decimal(0)


def neutral_status(state: OrderState) -> N.OrderStatus:
    """The neutral status of a v5 order ``state``."""
    return STATUS_OF[state]


def neutral_balance(b: Balance) -> N.Balance:
    """One currency of the trading account: ``free`` = available, ``frozen`` = frozen (0 when ``""``)."""
    return N.Balance(
        venue=VENUE,
        ts_recv=b.ts_recv,
        account=ACCOUNT,
        currency=b.currency,
        free=b.available if b.available is not None else _ZERO,
        frozen=b.frozen if b.frozen is not None else _ZERO,
    )


def neutral_order(o: Order) -> N.Order:
    """A v5 order as the neutral ``Order`` (see the module docstring for the mapping)."""
    market = o.order_type in _MARKET_TYPES
    if o.side is Side.BUY:
        type_ = N.OrderType.BUY_MARKET if market else N.OrderType.BUY
    else:
        type_ = N.OrderType.SELL_MARKET if market else N.OrderType.SELL
    return N.Order(
        venue=VENUE,
        order_id=int(o.order_id),
        symbol=o.instrument,
        type=type_,
        price=o.price,
        amount=o.size,
        deal_amount=o.filled_size if o.filled_size is not None else _ZERO,
        avg_price=o.avg_price,
        status=neutral_status(o.state),
        ts_event=o.ts_created,
        ts_recv=o.ts_recv,
        raw_status=o.state.value,
        raw_type=o.order_type,
        client_order_id=o.client_order_id,
        ts_updated=o.ts_updated,
    )


_LIQUIDITY = {"M": "maker", "T": "taker"}


def neutral_fill(f: Fill) -> N.Fill:
    """A v5 fill as the neutral ``Fill``; ``bill_id`` is required (it is the fill's unique id)."""
    return N.Fill(
        venue=VENUE,
        symbol=f.instrument,
        bill_id=f.bill_id or f"trade:{f.trade_id}",
        trade_id=f.trade_id,
        order_id=int(f.order_id),
        side=N.Side.BUY if f.side is Side.BUY else N.Side.SELL,
        price=f.price,
        amount=f.size,
        fee=f.fee,
        fee_currency=f.fee_ccy,
        liquidity=_LIQUIDITY.get(f.liquidity or "", f.liquidity),
        ts_event=f.ts_event,
        ts_recv=f.ts_recv,
    )


def neutral_instrument(i: Instrument) -> N.Instrument:
    """A v5 instrument as the neutral ``Instrument`` (state kept raw)."""
    return N.Instrument(
        venue=VENUE,
        symbol=i.instrument,
        ts_recv=i.ts_recv,
        base=i.base,
        quote=i.quote,
        tick_size=i.tick_size,
        lot_size=i.lot_size,
        min_size=i.min_size,
        state=i.state,
        inst_type=i.inst_type,
        ts_listed=i.list_time,
        ts_expiry=i.exp_time,
    )
