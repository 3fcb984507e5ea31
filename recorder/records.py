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
    "Fill",
    "Instrument",
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
    """Kline periods, venue-neutral. The value is what storage keeps (at most 8 characters).

    The v1 periods (``1min`` .. ``week``: :meth:`v1_periods`) carry the OKEx v1 WebSocket name as
    their value; ``rest_name`` is the v1 ``kline.do`` type. The others exist for OKX v5 bars.

    Alignment: a period without a suffix starts at UTC boundaries (v5's ``...utc`` bars and the
    minute/hour bars; v1 klines as the exchange sent them). A ``+8`` period starts at UTC+8
    boundaries (Hong Kong / Beijing time: a ``day+8`` candle opens at 16:00 UTC of the day
    before) — v5's ``6H``, ``12H``, ``1D``, ``2D``, ``3D``, ``5D``, ``1W``, ``1M``, ``3M``. The
    1..4 hour bars are the same in both (8 h is a multiple of them). ``ts_event`` of a
    :class:`Kline` is the period's start as the venue sent it, so the alignment is visible in
    the data too. Weeks start on Monday (v5) and months on the calendar's first day: their
    :attr:`duration` is the longest such period (31 days, 92 days), a bound, not a length.
    """

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
    # OKX v5 (see the class docstring for alignment)
    SEC_1 = "1sec"
    DAY_2 = "2day"
    DAY_5 = "5day"
    MONTH_1 = "month"
    MONTH_3 = "3month"
    HOUR_6_UTC8 = "6hour+8"
    HOUR_12_UTC8 = "12hour+8"
    DAY_1_UTC8 = "day+8"
    DAY_2_UTC8 = "2day+8"
    DAY_3_UTC8 = "3day+8"
    DAY_5_UTC8 = "5day+8"
    WEEK_1_UTC8 = "week+8"
    MONTH_1_UTC8 = "month+8"
    MONTH_3_UTC8 = "3month+8"

    @classmethod
    def v1_periods(cls) -> tuple[KlinePeriod, ...]:
        """The periods OKEx v1 has (``kline_<value>`` channels, ``kline.do``), in order."""
        return _V1_PERIODS

    @property
    def utc8_aligned(self) -> bool:
        """True for periods that start at UTC+8 boundaries (the ``+8`` values)."""
        return self.value.endswith("+8")

    @property
    def rest_name(self) -> str | None:
        """The name ``GET /kline.do`` uses (``1day``, ``1week``); None where REST has none."""
        if self not in _V1_PERIODS:
            return None
        return {"day": "1day", "week": "1week", "3day": None}.get(self.value, self.value)

    @property
    def duration(self) -> timedelta:
        return _PERIOD_DURATION[self]

    @classmethod
    def parse(cls, name: str) -> KlinePeriod:
        """Accept the value, the v1 WebSocket name or the v1 REST name (``1day``, ``1week``)."""
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
    KlinePeriod.SEC_1: timedelta(seconds=1),
    KlinePeriod.DAY_2: timedelta(days=2),
    KlinePeriod.DAY_5: timedelta(days=5),
    KlinePeriod.MONTH_1: timedelta(days=31),
    KlinePeriod.MONTH_3: timedelta(days=92),
    KlinePeriod.HOUR_6_UTC8: timedelta(hours=6),
    KlinePeriod.HOUR_12_UTC8: timedelta(hours=12),
    KlinePeriod.DAY_1_UTC8: timedelta(days=1),
    KlinePeriod.DAY_2_UTC8: timedelta(days=2),
    KlinePeriod.DAY_3_UTC8: timedelta(days=3),
    KlinePeriod.DAY_5_UTC8: timedelta(days=5),
    KlinePeriod.WEEK_1_UTC8: timedelta(weeks=1),
    KlinePeriod.MONTH_1_UTC8: timedelta(days=31),
    KlinePeriod.MONTH_3_UTC8: timedelta(days=92),
}
_V1_PERIODS = (
    KlinePeriod.MIN_1, KlinePeriod.MIN_3, KlinePeriod.MIN_5, KlinePeriod.MIN_15, KlinePeriod.MIN_30,
    KlinePeriod.HOUR_1, KlinePeriod.HOUR_2, KlinePeriod.HOUR_4, KlinePeriod.HOUR_6, KlinePeriod.HOUR_12,
    KlinePeriod.DAY_1, KlinePeriod.DAY_3, KlinePeriod.WEEK_1,
)  # fmt: skip


class Side(enum.Enum):
    """The aggressor side of a deal. WebSocket ``bid`` = BUY, ``ask`` = SELL."""

    BUY = "buy"
    SELL = "sell"


class OrderType(enum.Enum):
    BUY = "buy"
    SELL = "sell"
    BUY_MARKET = "buy_market"
    SELL_MARKET = "sell_market"


class OrderStatus(enum.Enum):
    """An order's state, venue-neutral. Each venue package maps its own codes to these
    (okex v1: -1..5, PROTOCOL.md "An order"; okx v5: ``live``, ``canceled``...) and keeps
    the raw value in :attr:`Order.raw_status`.
    """

    CANCELLED = "cancelled"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLING = "cancelling"
    FAILED = "failed"
    PLACING = "placing"

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
    SEQUENCE_BREAK = "sequence_break"  # gap: a book update did not link (seqId) -> fresh snapshot
    CHECKSUM_MISMATCH = "checksum_mismatch"  # gap: a book failed the venue checksum -> fresh snapshot
    PLANNED_DISCONNECT = "planned_disconnect"  # gap: the venue announced maintenance -> reconnected
    SHUTDOWN = "shutdown"  # instant: clean stop


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticker:
    """One ticker push or REST ticker answer.

    ``buy``/``sell`` are the best bid/ask price (quote currency), ``vol`` the rolling
    24 h volume in base currency. Fields a venue did not send (v5's empty string) are
    None, never zero. ``bid_size``/``ask_size``/``last_size`` are base-currency amounts,
    ``vol_quote`` the 24 h volume in quote currency, ``open_24h`` the price 24 h ago.
    """

    venue: str
    symbol: str
    ts_event: datetime
    ts_recv: datetime
    buy: Decimal | None
    sell: Decimal | None
    last: Decimal | None
    high: Decimal | None
    low: Decimal | None
    vol: Decimal | None
    change: Decimal | None = None
    day_high: Decimal | None = None
    day_low: Decimal | None = None
    bid_size: Decimal | None = None
    ask_size: Decimal | None = None
    last_size: Decimal | None = None
    open_24h: Decimal | None = None
    vol_quote: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DepthUpdate:
    """One depth push as received: a full book or an increment (``kind`` says which channel).

    ``bids`` and ``asks`` are the levels exactly as sent (any order); an amount of
    zero deletes a level of an incremental book.
    """

    venue: str
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
    venue's name of the channel the book was kept from (v1 ``depth``, ``depth_5``...;
    v5 ``books``, ``books5``, ``bbo-tbt``). ``seq_id`` is the venue's sequence number
    of the last update applied (v5 ``seqId``), None where the venue has none.
    """

    venue: str
    symbol: str
    ts_event: datetime
    ts_recv: datetime
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    source: str = "depth"
    seq_id: int | None = None

    @property
    def best_bid(self) -> Level | None:
        return self.bids[0] if self.bids else None

    @property
    def best_ask(self) -> Level | None:
        return self.asks[0] if self.asks else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Deal:
    """One trade. v1: ``ts_event`` is reconstructed from the exchange's ``HH:MM:SS`` (UTC+8).

    ``count`` is the number of fills the venue aggregated into this trade (v5), else None.
    """

    venue: str
    symbol: str
    tid: int
    price: Decimal
    amount: Decimal
    side: Side
    ts_event: datetime
    ts_recv: datetime
    count: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Kline:
    """One candle; ``ts_event`` is the period's start. Pushes of an open candle repeat it.

    ``volume`` is in base currency, ``volume_quote`` in quote currency (None where the
    venue does not send it). ``confirmed`` is True once the venue says the candle is
    closed (v5 ``confirm``), None where the venue does not say.
    """

    venue: str
    symbol: str
    period: KlinePeriod
    ts_event: datetime
    ts_recv: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    volume_quote: Decimal | None = None
    confirmed: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Balance:
    """One currency's balance at one poll. ``account`` is the venue's account name
    (v1 ``spot`` for userinfo or ``wallet``; v5 ``trading`` or ``funding``)."""

    venue: str
    ts_recv: datetime
    account: str
    currency: str
    free: Decimal
    frozen: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """An order as last seen. ``price`` is None for market sells; ``amount`` for market buys.

    ``raw_status`` / ``raw_type`` keep the venue's own values (v1 ``2``, v5 ``filled``;
    v5 ``post_only``) beside the neutral :class:`OrderStatus` / :class:`OrderType`.
    ``avg_price`` is None where the venue sends nothing for an unfilled order (v5).
    """

    venue: str
    order_id: int
    symbol: str
    type: OrderType
    price: Decimal | None
    amount: Decimal | None
    deal_amount: Decimal
    avg_price: Decimal | None
    status: OrderStatus
    ts_event: datetime  # the order's create_date
    ts_recv: datetime  # when this state was seen
    raw_status: str | None = None
    raw_type: str | None = None
    client_order_id: str | None = None
    ts_updated: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderStatusChange:
    """An order was first seen in ``status`` at ``ts_recv``."""

    venue: str
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
    venue: str = ""  # "" for events of no one venue (a store outage, a shutdown)

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
    venue: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Instrument:
    """Reference data of one instrument as seen at ``ts_recv`` (v5 ``/api/v5/public/instruments``).

    ``base``/``quote`` are currency codes (upper case, e.g. ``BTC``/``USDT``);
    ``tick_size`` is the price increment (quote currency), ``lot_size`` the amount
    increment and ``min_size`` the smallest order (base currency). ``state`` is the
    venue's own state (v5 ``live``, ``suspend``, ``preopen``, ``test``).
    """

    venue: str
    symbol: str
    ts_recv: datetime
    base: str | None
    quote: str | None
    tick_size: Decimal
    lot_size: Decimal
    min_size: Decimal | None
    state: str
    inst_type: str = "SPOT"
    ts_listed: datetime | None = None
    ts_expiry: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """One fill of one of the account's orders (v5 ``/api/v5/trade/fills``).

    ``price`` in quote currency, ``amount`` in base currency; ``fee`` is signed as the
    venue sends it (negative = charged) in ``fee_currency``; ``liquidity`` is ``maker``
    or ``taker`` (None if not sent). ``bill_id`` is the venue's unique id of the fill.
    """

    venue: str
    symbol: str
    bill_id: str
    trade_id: str
    order_id: int
    side: Side
    price: Decimal
    amount: Decimal
    fee: Decimal | None
    fee_currency: str | None
    liquidity: str | None
    ts_event: datetime
    ts_recv: datetime


Record = (
    Ticker | BookSnapshot | Deal | Kline | Balance | Order | OrderStatusChange | Instrument | Fill
    | FeedEvent | QuarantinedFrame
)
"""Anything the storage writer accepts."""

RecordSink = Callable[[Sequence[Record]], None]
"""Where producers (collector connections, the poller) hand their records: an enqueue."""


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
