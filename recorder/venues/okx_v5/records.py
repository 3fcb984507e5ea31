"""Typed outputs of the OKX v5 core: what :mod:`.parse` and :mod:`.session` hand out.

Until issue 14 makes ``recorder.records`` venue-neutral, the v5 core defines its
own frozen dataclasses; ``docs/venues/okx_v5.md`` maps each to the neutral
records. Conventions (PROTOCOL.md §0, §8.1):

* ``venue`` is always ``"okx_v5"``; ``instrument`` is the venue's id (``BTC-USDT``).
* Two clocks, both timezone-aware UTC :class:`~datetime.datetime`: ``ts_event``
  (the exchange's ms timestamp, exact) and ``ts_recv`` (local receive time, given
  by the caller).
* Prices, sizes, fees: :class:`~decimal.Decimal` built from the received string;
  v5's empty string (absent) becomes ``None``, never zero.
* Book levels: ``(price_ticks, size_units, order_count)`` integers, fixed point
  scaled by the instrument's tick-size and lot-size decimals (see
  :class:`~recorder.venues.okx_v5.book.Scale`); ``size_units == 0`` in an
  increment deletes the level.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from .channels import ChannelArg

__all__ = [
    "VENUE",
    "Balance",
    "BookGap",
    "BookLevel",
    "BookSnapshot",
    "BookUpdate",
    "Candle",
    "ChannelConnCount",
    "ErrorEvent",
    "Fill",
    "ForeignPush",
    "GapReason",
    "Instrument",
    "LoginAck",
    "Notice",
    "Order",
    "OrderState",
    "Pong",
    "PongTimeout",
    "RejectedItem",
    "ServerPing",
    "Side",
    "SubscribeAck",
    "Trade",
    "UnsubscribeAck",
    "V5Ticker",
]

VENUE = "okx_v5"
"""The venue name every record carries."""

BookLevel = tuple[int, int, int | None]
"""``(price_ticks, size_units, order_count)``; ``order_count`` None when the level has none."""


class Side(enum.Enum):
    """Taker side of a trade, side of an order or fill (§3.3, §5.2)."""

    BUY = "buy"
    SELL = "sell"


class OrderState(enum.Enum):
    """Order ``state`` (§5.2): ``filled``, ``canceled`` and ``mmp_canceled`` are terminal."""

    LIVE = "live"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    MMP_CANCELED = "mmp_canceled"

    @property
    def is_terminal(self) -> bool:
        return self in (OrderState.FILLED, OrderState.CANCELED, OrderState.MMP_CANCELED)


class GapReason(enum.Enum):
    """Why a book was dropped (§3.2 sequence rules 6, checksum step 6; §2.6 notice)."""

    SEQUENCE = "sequence"  # prevSeqId != last seqId
    NO_SNAPSHOT = "no_snapshot"  # an update before any snapshot
    CHECKSUM = "checksum"  # a non-zero checksum did not match
    DECODE = "decode"  # an increment could not be decoded (the frame is quarantined)
    CROSSED = "crossed"  # best bid >= best ask after a snapshot or update (never stored)
    SUBSCRIBE_ERROR = "subscribe_error"  # the exchange refused the subscription
    PLANNED = "planned"  # notice 64008: service upgrade
    CONNECTION = "connection"  # connection lost / pong timeout


@dataclass(frozen=True, slots=True)
class V5Ticker:
    """A ``tickers`` push or REST ticker (§3.1, §4.1).

    Volumes (SPOT): ``volume_24h`` in base currency, ``quote_volume_24h`` in quote currency.
    """

    instrument: str
    ts_event: datetime
    ts_recv: datetime
    last: Decimal | None
    last_size: Decimal | None
    bid: Decimal | None
    bid_size: Decimal | None
    ask: Decimal | None
    ask_size: Decimal | None
    open_24h: Decimal | None
    high_24h: Decimal | None
    low_24h: Decimal | None
    volume_24h: Decimal | None
    quote_volume_24h: Decimal | None
    sod_utc0: Decimal | None
    sod_utc8: Decimal | None
    inst_type: str | None = None
    venue: str = VENUE


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """A whole book (§3.2): a ``snapshot`` action, a ``books5``/``bbo-tbt`` push, or the local book.

    ``bids`` best (highest) first, ``asks`` best (lowest) first. ``seq_id`` None when the
    channel sends none. ``price_decimals``/``size_decimals`` give the fixed-point scale.
    """

    instrument: str
    channel: str
    ts_event: datetime
    ts_recv: datetime
    seq_id: int | None
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    price_decimals: int
    size_decimals: int
    venue: str = VENUE


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """An ``update`` action (an increment, §3.2): changed levels, ``size_units == 0`` deletes.

    ``is_heartbeat``: ``seq_id == prev_seq_id`` with no levels (rule 4). ``is_sequence_reset``:
    ``seq_id < prev_seq_id`` accepted as the documented reset after maintenance (rule 5).
    """

    instrument: str
    channel: str
    ts_event: datetime
    ts_recv: datetime
    seq_id: int
    prev_seq_id: int
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    price_decimals: int
    size_decimals: int
    checksum: int | None = None
    venue: str = VENUE

    @property
    def is_heartbeat(self) -> bool:
        return self.seq_id == self.prev_seq_id and not self.bids and not self.asks

    @property
    def is_sequence_reset(self) -> bool:
        return self.seq_id < self.prev_seq_id


@dataclass(frozen=True, slots=True)
class BookGap:
    """The local book of ``(channel, instrument)`` was dropped (§3.2 rule 6, checksum step 6); nothing
    is valid until a new snapshot.

    The session queues an unsubscribe + subscribe of that arg when ``resubscribe`` is True.
    """

    instrument: str
    channel: str
    ts_recv: datetime
    reason: GapReason
    detail: str
    resubscribe: bool
    venue: str = VENUE


@dataclass(frozen=True, slots=True)
class Trade:
    """A ``trades``/``trades-all`` push or REST trade (§3.3, §4.3). ``trade_id`` is the last id of an
    aggregate of ``count`` fills on ``trades``; ``count`` None where the channel sends none."""

    instrument: str
    trade_id: str
    price: Decimal
    size: Decimal
    side: Side
    ts_event: datetime
    ts_recv: datetime
    count: int | None = None
    source: str | None = None
    seq_id: int | None = None
    venue: str = VENUE


@dataclass(frozen=True, slots=True)
class Candle:
    """One candle row (§3.4, §4.4). ``ts_event`` is the candle's **open** time.

    ``volume``: base currency (SPOT); ``volume_ccy``: quote; ``volume_ccy_quote`` and
    ``confirmed`` are None for the older 7-element rows.
    """

    instrument: str
    bar: str
    ts_event: datetime
    ts_recv: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal | None
    volume_ccy: Decimal | None
    volume_ccy_quote: Decimal | None
    confirmed: bool | None
    venue: str = VENUE


@dataclass(frozen=True, slots=True)
class Instrument:
    """One instrument (§4.5, §3.5). ``state`` is kept raw (``live``, ``suspend``, ``preopen``,
    ``test``, ``expired``, ...); times None when v5 sends ``""``."""

    instrument: str
    inst_type: str
    base: str | None
    quote: str | None
    tick_size: Decimal
    lot_size: Decimal
    min_size: Decimal | None
    state: str
    list_time: datetime | None
    exp_time: datetime | None
    ts_recv: datetime
    venue: str = VENUE


@dataclass(frozen=True, slots=True)
class Balance:
    """One currency of one account (§5.1). ``ts_event`` is that currency's ``uTime`` (None if ``""``)."""

    currency: str
    cash: Decimal | None
    available: Decimal | None
    frozen: Decimal | None
    order_frozen: Decimal | None
    equity: Decimal | None
    equity_usd: Decimal | None
    ts_event: datetime | None
    ts_recv: datetime
    venue: str = VENUE


@dataclass(frozen=True, slots=True)
class Order:
    """One order (§5.2). ``price`` None for market orders; ``avg_price`` None if nothing filled.
    ``fee`` negative = charged. ``order_type`` and ``category`` are v5's raw values. ``size`` is in
    base currency except for SPOT market buys, where ``target_ccy`` (``tgtCcy``: ``quote_ccy``,
    the default for buys, or ``base_ccy``) says the unit; None when v5 sends ``""``."""

    instrument: str
    order_id: str
    client_order_id: str | None
    side: Side
    order_type: str
    state: OrderState
    price: Decimal | None
    size: Decimal | None
    filled_size: Decimal | None
    avg_price: Decimal | None
    fee: Decimal | None
    fee_ccy: str | None
    category: str | None
    target_ccy: str | None
    ts_created: datetime
    ts_updated: datetime
    ts_recv: datetime
    venue: str = VENUE


@dataclass(frozen=True, slots=True)
class Fill:
    """One fill (§5.3). ``ts_event`` is ``fillTime``; ``liquidity`` is ``execType`` (``T``/``M``) raw;
    ``bill_id`` is the pagination cursor. ``fee`` negative = charged, positive = rebate."""

    instrument: str
    trade_id: str
    order_id: str
    bill_id: str | None
    price: Decimal
    size: Decimal
    side: Side
    liquidity: str | None
    fee: Decimal | None
    fee_ccy: str | None
    ts_event: datetime
    ts_recv: datetime
    venue: str = VENUE


@dataclass(frozen=True, slots=True)
class SubscribeAck:
    """``{"event":"subscribe","arg":...}`` (§2.2)."""

    arg: ChannelArg
    request_id: str | None
    conn_id: str | None
    ts_recv: datetime


@dataclass(frozen=True, slots=True)
class UnsubscribeAck:
    """``{"event":"unsubscribe","arg":...}`` (§2.2)."""

    arg: ChannelArg
    request_id: str | None
    conn_id: str | None
    ts_recv: datetime


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """``{"event":"error","code":...,"msg":...}`` (§2.2, §2.5). ``args`` are the args of the
    request with that ``id`` when the session can attribute it (empty otherwise). ``code`` is
    None when the server sent none (an empty or missing ``code``): no code is made up."""

    code: int | None
    msg: str
    request_id: str | None
    conn_id: str | None
    args: tuple[ChannelArg, ...]
    ts_recv: datetime


@dataclass(frozen=True, slots=True)
class LoginAck:
    """``{"event":"login","code":"0"}`` (§2.5)."""

    conn_id: str | None
    ts_recv: datetime


@dataclass(frozen=True, slots=True)
class Notice:
    """``{"event":"notice","code":"64008"}`` (§2.6): the server closes this connection soon
    (about 60 s) for a service upgrade; open a new one, subscribe, then drop this one."""

    code: int
    msg: str
    conn_id: str | None
    ts_recv: datetime


@dataclass(frozen=True, slots=True)
class ChannelConnCount:
    """``channel-conn-count`` / ``channel-conn-count-error`` (§2.6); private channels only."""

    event: str
    channel: str
    count: int | None
    conn_id: str | None
    ts_recv: datetime


@dataclass(frozen=True, slots=True)
class Pong:
    """The text ``pong`` (§2.1)."""

    ts_recv: datetime


@dataclass(frozen=True, slots=True)
class ServerPing:
    """The text ``ping`` sent by the server: keep-alive; the session queued ``pong`` in answer."""

    ts_recv: datetime


@dataclass(frozen=True, slots=True)
class ForeignPush:
    """A push whose ``arg`` (channel, instId) was never subscribed on this connection: not taken
    (it would mix a stream into a dataset whose gaps say nothing about it). ``payload`` is the
    frame as received (UTF-8)."""

    channel: str
    instrument: str
    payload: bytes
    ts_recv: datetime


@dataclass(frozen=True, slots=True)
class PongTimeout:
    """No ``pong`` within the configured time after our ``ping`` (§2.1): treat the connection as dead."""

    ping_sent: datetime
    now: datetime


@dataclass(frozen=True, slots=True)
class RejectedItem:
    """One item of a push's ``data`` array that could not be decoded or holds an impossible value;
    the other items of the push are decoded as usual (each item is its own record).

    ``payload`` is the push cut down to that item: ``{"arg": ..., "data": [item]}`` (UTF-8 JSON).
    """

    channel: str
    instrument: str
    reason: str
    payload: bytes
    ts_recv: datetime
