"""The typed records every part of okex-recorder exchanges.

Decoded messages become these frozen dataclasses; storage writes them, analysis
reads what storage wrote. Prices and amounts are :class:`decimal.Decimal` (exact);
every timestamp is a timezone-aware UTC :class:`datetime.datetime`. Market
records carry two clocks: ``ts_event`` (the exchange's time) and ``ts_recv``
(local receive time).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

__all__ = [
    "UTC",
    "Balance",
    "BookSnapshot",
    "ChannelKind",
    "Deal",
    "DepthUpdate",
    "FeedEvent",
    "FeedEventKind",
    "Kline",
    "KlinePeriod",
    "Level",
    "Order",
    "OrderStatus",
    "OrderStatusChange",
    "OrderType",
    "QuarantinedFrame",
    "Record",
    "RecordSink",
    "Side",
    "Ticker",
    "utc_now",
]

Level = tuple[Decimal, Decimal]
"""One order-book level: ``(price, amount)``."""


class ChannelKind(enum.Enum):
    """The kinds of ``ok_sub_spot_<symbol>_<kind>`` channels (PROTOCOL.md, WebSocket)."""

    TICKER = "ticker"
    DEPTH = "depth"  # incremental, up to 200 levels
    DEPTH_5 = "depth_5"  # full top-5 book each push
    DEPTH_10 = "depth_10"
    DEPTH_20 = "depth_20"
    DEALS = "deals"
    KLINE = "kline"  # the period is carried separately
    ORDER = "order"  # after login
    BALANCE = "balance"  # after login

    @property
    def full_depth(self) -> int | None:
        """Levels per side of a full-book channel (5, 10, 20), else None."""
        return {"depth_5": 5, "depth_10": 10, "depth_20": 20}.get(self.value)


class KlinePeriod(enum.Enum):
    """Kline periods. The value is the WebSocket name; ``rest_name`` is the ``kline.do`` type."""

    MIN_1 = "1min"
    MIN_3 = "3min"
    MIN_5 = "5min"
    MIN_15 = "15min"
    MIN_30 = "30min"
    HOUR_1 = "1hour"
    HOUR_2 = "2hour"
    HOUR_4 = "4hour"
    HOUR_6 = "6hour"
    HOUR_12 = "12hour"
    DAY_1 = "day"
    DAY_3 = "3day"
    WEEK_1 = "week"

    @property
    def rest_name(self) -> str | None:
        """The name ``GET /kline.do`` uses (``1day``, ``1week``); None where REST has none."""
        return {"day": "1day", "week": "1week", "3day": None}.get(self.value, self.value)

    @property
    def duration(self) -> timedelta:
        return _PERIOD_DURATION[self]

    @classmethod
    def parse(cls, name: str) -> KlinePeriod:
        """Accept the WebSocket name or the REST name (``1day``, ``1week``)."""
        try:
            return cls(_REST_ALIASES.get(name, name))
        except ValueError:
            raise ValueError(f"unknown kline period {name!r}") from None


_REST_ALIASES = {"1day": "day", "1week": "week"}
_PERIOD_DURATION = {
    KlinePeriod.MIN_1: timedelta(minutes=1),
    KlinePeriod.MIN_3: timedelta(minutes=3),
    KlinePeriod.MIN_5: timedelta(minutes=5),
    KlinePeriod.MIN_15: timedelta(minutes=15),
    KlinePeriod.MIN_30: timedelta(minutes=30),
    KlinePeriod.HOUR_1: timedelta(hours=1),
    KlinePeriod.HOUR_2: timedelta(hours=2),
    KlinePeriod.HOUR_4: timedelta(hours=4),
    KlinePeriod.HOUR_6: timedelta(hours=6),
    KlinePeriod.HOUR_12: timedelta(hours=12),
    KlinePeriod.DAY_1: timedelta(days=1),
    KlinePeriod.DAY_3: timedelta(days=3),
    KlinePeriod.WEEK_1: timedelta(weeks=1),
}


class Side(enum.Enum):
    """The aggressor side of a deal. WebSocket ``bid`` = BUY, ``ask`` = SELL."""

    BUY = "buy"
    SELL = "sell"


class OrderType(enum.Enum):
    BUY = "buy"
    SELL = "sell"
    BUY_MARKET = "buy_market"
    SELL_MARKET = "sell_market"


class OrderStatus(enum.IntEnum):
    """Order status codes (PROTOCOL.md, "An order").

    ``order_history.do`` documents 4 for "cancel in progress"; the REST parser maps
    that endpoint's 4 to CANCELLING.
    """

    CANCELLED = -1
    OPEN = 0
    PARTIALLY_FILLED = 1
    FILLED = 2
    CANCELLING = 3
    FAILED = 4
    PLACING = 5

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.CANCELLED, OrderStatus.FILLED, OrderStatus.FAILED)


class FeedEventKind(enum.Enum):
    """What happened to the feed. Each event is a time span: ``ts_start`` .. ``ts_end``."""

    CONNECTED = "connected"  # instant: a connection opened (ts_end == ts_start)
    DISCONNECTED = "disconnected"  # gap: connection lost -> first good data after reconnect
    RESUBSCRIBED = "resubscribed"  # gap: channels resubscribed (e.g. after a crossed book)
    BOOK_RESET = "book_reset"  # gap: book thrown away -> next full push
    CROSSED_BOOK = "crossed_book"  # instant: a crossed book was detected (never stored)
    STALL = "stall"  # gap: no data / no pong within the window
    SUBSCRIBE_ERROR = "subscribe_error"  # instant: an error ack for a subscription
    SUBSCRIBE_REFUSED = "subscribe_refused"  # gap: a refused subscription -> its first data (retried)
    BOOK_AUDIT_FAILED = "book_audit_failed"  # span: last good book -> failed REST audit
    AUDIT_UNAVAILABLE = "audit_unavailable"  # span: the book audit's REST endpoint could not be reached
    MALFORMED_FRAME = "malformed_frame"  # instant: a frame that could not be decoded
    BAN = "ban"  # gap: REST calls stopped because of HTTP 403
    AUTH_FAILURE = "auth_failure"  # instant: credentials rejected, polling stopped
    RATE_LIMITED = "rate_limited"  # instant: the exchange answered 10001
    STORE_OUTAGE = "store_outage"  # gap: a store could not be written
    SHUTDOWN = "shutdown"  # instant: clean stop


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticker:
    """One ticker push (``ok_sub_spot_X_ticker``) or ``ticker.do`` answer."""

    symbol: str
    ts_event: datetime
    ts_recv: datetime
    buy: Decimal
    sell: Decimal
    last: Decimal
    high: Decimal
    low: Decimal
    vol: Decimal
    change: Decimal | None = None
    day_high: Decimal | None = None
    day_low: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DepthUpdate:
    """One depth push as received: a full book or an increment (``kind`` says which channel).

    ``bids`` and ``asks`` are the levels exactly as sent (any order); an amount of
    zero deletes a level of an incremental book.
    """

    symbol: str
    kind: ChannelKind
    ts_event: datetime
    ts_recv: datetime
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BookSnapshot:
    """The top of an order book at one moment.

    ``bids`` best (highest) first, ``asks`` best (lowest) first. ``source`` is the
    channel the book was kept from (DEPTH or DEPTH_5/10/20).
    """

    symbol: str
    ts_event: datetime
    ts_recv: datetime
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    source: ChannelKind = ChannelKind.DEPTH

    @property
    def best_bid(self) -> Level | None:
        return self.bids[0] if self.bids else None

    @property
    def best_ask(self) -> Level | None:
        return self.asks[0] if self.asks else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Deal:
    """One trade. ``ts_event`` is reconstructed from the exchange's ``HH:MM:SS`` (UTC+8)."""

    symbol: str
    tid: int
    price: Decimal
    amount: Decimal
    side: Side
    ts_event: datetime
    ts_recv: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Kline:
    """One candle; ``ts_event`` is the period's start. Pushes of an open candle repeat it."""

    symbol: str
    period: KlinePeriod
    ts_event: datetime
    ts_recv: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Balance:
    """One currency's balance at one poll. ``account`` is ``spot`` (userinfo) or ``wallet``."""

    ts_recv: datetime
    account: str
    currency: str
    free: Decimal
    frozen: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """An order as last seen. ``price`` is None for market sells; ``amount`` for market buys."""

    order_id: int
    symbol: str
    type: OrderType
    price: Decimal | None
    amount: Decimal | None
    deal_amount: Decimal
    avg_price: Decimal
    status: OrderStatus
    ts_event: datetime  # the order's create_date
    ts_recv: datetime  # when this state was seen


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderStatusChange:
    """An order was first seen in ``status`` at ``ts_recv``."""

    order_id: int
    symbol: str
    status: OrderStatus
    previous_status: OrderStatus | None
    deal_amount: Decimal
    ts_recv: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedEvent:
    """A span of time in which the feed was not (fully) watched, or an instant worth noting.

    ``ts_end`` is None while the span is still open; instants have ``ts_end == ts_start``.
    ``connection`` names the collector connection (or ``rest``), ``symbols`` those affected.
    ``collector`` is the id of the collector process that saw it (``collector.id``, default
    ``<hostname>-<pid>``), stamped by its storage writer; None in recordings made before the
    column existed (schema revision 0002).
    """

    kind: FeedEventKind
    ts_start: datetime
    ts_end: datetime | None
    connection: str
    symbols: tuple[str, ...] = ()
    channel: str = ""
    detail: str = ""
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    collector: str | None = None

    @property
    def duration(self) -> timedelta | None:
        return None if self.ts_end is None else self.ts_end - self.ts_start


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantinedFrame:
    """A frame (or one object of it) that could not be decoded, kept for later inspection.

    ``collector`` is the id of the collector process that received it (see :class:`FeedEvent`).
    """

    ts_recv: datetime
    connection: str
    reason: str
    payload: bytes  # the raw frame as received (binary frames still compressed), at most 64 KiB
    channel: str = ""
    collector: str | None = None


Record = (
    Ticker | BookSnapshot | Deal | Kline | Balance | Order | OrderStatusChange | FeedEvent | QuarantinedFrame
)
"""Anything the storage writer accepts."""

RecordSink = Callable[[Sequence[Record]], None]
"""Where producers (collector connections, the poller) hand their records: an enqueue."""


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
