"""OKX v5 REST: the read-only endpoint allowlist, request building, response parsing, cursors.

Implements PROTOCOL.md §4 (public market data), §4.0 (envelope), §5 (private read
endpoints), §5.4 (pagination), §6 (signing) and §7.1 (per-endpoint limits). No I/O:
:func:`build_request` gives the exact method, path+query and headers to send;
``parse_*`` take the HTTP status and body received.

Read-only by construction: only the GET endpoints in :data:`ENDPOINTS` can be
built; anything else raises :class:`~recorder.errors.ConfigError`.

Every ``parse_*`` takes the HTTP status and the raw body and raises
:class:`~recorder.errors.ExchangeError` (classified) for a non-zero ``code`` — also for
401/429 answers without ``data`` — and :class:`~recorder.errors.DecodeError` naming the
field for a malformed body. Times are aware UTC datetimes; ``ts_recv`` is the caller's
receive time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from urllib.parse import quote

from recorder.errors import ConfigError, DecodeError, Transport

from . import parse as P
from .errors import exchange_error
from .records import Balance, Candle, Fill, Instrument, Order, Trade, V5Ticker
from .schemas import (
    BalanceData,
    BookData,
    FillData,
    InstrumentData,
    OrderData,
    RestEnvelope,
    TickerData,
    TimeData,
    TradeData,
)
from .signing import V5Credentials, rest_headers

__all__ = [
    "DEFAULT_BASE_URL",
    "ENDPOINTS",
    "Endpoint",
    "PreparedRequest",
    "build_request",
    "next_newer_params",
    "next_older_params",
    "parse_balance",
    "parse_books",
    "parse_candles",
    "parse_data",
    "parse_fills",
    "parse_instruments",
    "parse_orders",
    "parse_server_time_ms",
    "parse_tickers",
    "parse_trades",
]

DEFAULT_BASE_URL = "https://www.okx.com"
"""Every SDK's host; the latest docs say ``https://openapi.okx.com`` (§1, **unconfirmed**): configurable."""

T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One allowed GET endpoint: ``limit`` requests per ``window_s`` seconds keyed by ``keyed_by`` (§7.1),
    whether it is signed, and its pagination cursor field (§5.4) if any."""

    path: str
    limit: int
    window_s: float
    keyed_by: str
    private: bool
    cursor: str | None = None


ENDPOINTS: dict[str, Endpoint] = {
    e.path: e
    for e in (
        Endpoint("/api/v5/market/ticker", 20, 2, "ip", False),
        Endpoint("/api/v5/market/tickers", 20, 2, "ip", False),
        Endpoint("/api/v5/market/books", 40, 2, "ip", False),
        Endpoint("/api/v5/market/trades", 100, 2, "ip", False),
        Endpoint("/api/v5/market/history-trades", 20, 2, "ip", False, "tradeId"),
        Endpoint("/api/v5/market/candles", 40, 2, "ip", False, "ts"),
        Endpoint("/api/v5/market/history-candles", 20, 2, "ip", False, "ts"),
        Endpoint("/api/v5/public/instruments", 20, 2, "ip+instType", False),
        Endpoint("/api/v5/public/time", 10, 2, "ip", False),
        Endpoint("/api/v5/system/status", 1, 5, "ip", False),
        Endpoint("/api/v5/account/balance", 10, 2, "user", True),
        Endpoint("/api/v5/trade/orders-pending", 60, 2, "user", True, "ordId"),
        Endpoint("/api/v5/trade/orders-history", 40, 2, "user", True, "ordId"),
        Endpoint("/api/v5/trade/orders-history-archive", 20, 2, "user", True, "ordId"),
        Endpoint("/api/v5/trade/order", 60, 2, "user+instId", True),
        Endpoint("/api/v5/trade/fills", 60, 2, "user", True, "billId"),
        Endpoint("/api/v5/trade/fills-history", 10, 2, "user", True, "billId"),
    )
}
"""The read-only allowlist with the limits of §7.1 (``orders-pending``: the latest docs' 60; older 20)."""

MAX_PAGE_LIMIT = 100
"""``limit`` maximum of the history endpoints (§5.4)."""


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """What to send (§6): always GET; ``path`` includes ``?query`` exactly as signed.

    ``repr`` hides the headers (they hold the key, passphrase and signature).
    """

    method: str
    path: str
    headers: Mapping[str, str]
    endpoint: Endpoint

    def __repr__(self) -> str:
        return f"PreparedRequest({self.method} {self.path})"

    def url(self, base_url: str = DEFAULT_BASE_URL) -> str:
        return base_url.rstrip("/") + self.path


def build_query(params: Mapping[str, str | int]) -> str:
    """``a=1&b=2`` in insertion order, empty values skipped (as python-okx), values percent-encoded
    except ``,`` and ``-`` (§6: the server must see the string that was signed)."""
    return "&".join(
        f"{quote(str(k), safe='')}={quote(str(v), safe=',-_.')}" for k, v in params.items() if str(v) != ""
    )


def build_request(
    path: str,
    params: Mapping[str, str | int] | None = None,
    *,
    credentials: V5Credentials | None = None,
    epoch_ms: int | None = None,
    simulated_trading: bool = False,
) -> PreparedRequest:
    """A GET request for an allowlisted endpoint (§4, §5), signed when it is private (§6).

    ``epoch_ms``: local time plus the measured clock offset (required for private
    endpoints). Raises :class:`~recorder.errors.ConfigError` for a path not in
    :data:`ENDPOINTS`, a private endpoint without credentials/time, or a ``limit`` > 100.
    """
    endpoint = ENDPOINTS.get(path)
    if endpoint is None:
        raise ConfigError(f"{path!r} is not an allowed read-only OKX v5 endpoint")
    params = dict(params or {})
    if "limit" in params and endpoint.cursor and int(params["limit"]) > MAX_PAGE_LIMIT:
        raise ConfigError(f"limit {params['limit']} > {MAX_PAGE_LIMIT} for {path}")
    query = build_query(params)
    full = f"{path}?{query}" if query else path
    headers: dict[str, str] = {}
    if endpoint.private:
        if credentials is None or epoch_ms is None:
            raise ConfigError(f"{path} is a private endpoint: credentials and epoch_ms are required")
        headers = rest_headers(
            credentials, "GET", full, "", epoch_ms=epoch_ms, simulated_trading=simulated_trading
        )
    elif simulated_trading:
        headers = {"x-simulated-trading": "1"}
    return PreparedRequest("GET", full, headers, endpoint)


def check_envelope(status: int, body: bytes | str, *, context: str = "") -> RestEnvelope:
    """The envelope of a REST answer (§4.0) when ``code`` is ``0``.

    Raises :class:`~recorder.errors.ExchangeError` (classified: 429/50011 rate limit,
    50111/50113/50105 auth, ...) for any other code, also without ``data``; a body
    that is not a v5 envelope raises DecodeError (or, for HTTP 429/5xx,
    a classified ExchangeError with the HTTP status as code context).
    """
    try:
        env = P.decode_rest_envelope(body)
    except DecodeError:
        if status == 429:
            raise exchange_error(50011, Transport.REST, http_status=status, context=context) from None
        if status >= 500:
            raise exchange_error(50001, Transport.REST, http_status=status, context=context) from None
        raise
    if str(env.code) != "0":
        raise exchange_error(env.code, Transport.REST, msg=env.msg, http_status=status, context=context)
    return env


def parse_data(status: int, body: bytes | str, type_: type[T], *, context: str = "") -> list[T]:
    """``data`` of a successful answer as ``list[type_]``; raises ExchangeError or DecodeError."""
    env = check_envelope(status, body, context=context)
    if not env.data:
        raise DecodeError(f"okx_v5 REST {context}: field 'data' missing in a code 0 answer", sample=body)
    return P.decode_data(env.data, type_, context or "REST")


def parse_tickers(status: int, body: bytes | str, ts_recv: datetime) -> list[V5Ticker]:
    """``/market/ticker(s)`` (§4.1)."""
    return [P.parse_ticker(d, ts_recv) for d in parse_data(status, body, TickerData, context="tickers")]


def parse_books(status: int, body: bytes | str) -> list[BookData]:
    """``/market/books`` (§4.2) as wire items; feed them to :class:`~.book.OrderBook` with the scale."""
    return parse_data(status, body, BookData, context="books")


def parse_trades(status: int, body: bytes | str, ts_recv: datetime) -> list[Trade]:
    """``/market/trades``, ``history-trades`` (§4.3); newest first as received."""
    return [P.parse_trade(d, ts_recv) for d in parse_data(status, body, TradeData, context="trades")]


def parse_candles(
    status: int, body: bytes | str, instrument: str, bar: str, ts_recv: datetime
) -> list[Candle]:
    """``/market/candles``, ``history-candles`` (§4.4)."""
    rows = parse_data(status, body, list, context="candles")
    return [P.parse_candle(r, instrument, bar, ts_recv) for r in rows]


def parse_instruments(status: int, body: bytes | str, ts_recv: datetime) -> list[Instrument]:
    """``/public/instruments`` (§4.5)."""
    return [
        P.parse_instrument(d, ts_recv)
        for d in parse_data(status, body, InstrumentData, context="instruments")
    ]


def parse_server_time_ms(status: int, body: bytes | str) -> int:
    """``/public/time`` (§4.6) as ms since the epoch."""
    items = parse_data(status, body, TimeData, context="time")
    if not items:
        raise DecodeError("okx_v5 REST time: 'data' is empty", sample=body)
    return P.parse_server_time(items[0])


def parse_balance(status: int, body: bytes | str, ts_recv: datetime) -> list[Balance]:
    """``/account/balance`` (§5.1): one Balance per currency of every account item."""
    items = parse_data(status, body, BalanceData, context="balance")
    return [b for d in items for b in P.parse_balances(d, ts_recv)]


def parse_orders(status: int, body: bytes | str, ts_recv: datetime) -> list[Order]:
    """``orders-pending``, ``orders-history(-archive)``, ``order`` (§5.2)."""
    return [P.parse_order(d, ts_recv) for d in parse_data(status, body, OrderData, context="orders")]


def parse_fills(status: int, body: bytes | str, ts_recv: datetime) -> list[Fill]:
    """``fills``, ``fills-history`` (§5.3)."""
    return [P.parse_fill(d, ts_recv) for d in parse_data(status, body, FillData, context="fills")]


def _cursor_of(item: Order | Fill | Trade | Candle, field: str) -> str:
    if field == "ordId" and isinstance(item, Order):
        return item.order_id
    if field == "billId" and isinstance(item, Fill):
        if item.bill_id is None:
            raise DecodeError("field 'fill.billId' is empty: cannot paginate")
        return item.bill_id
    if field == "tradeId" and isinstance(item, Trade):
        return item.trade_id
    if field == "ts" and isinstance(item, Candle):
        return str((item.ts_event - _EPOCH) // timedelta(milliseconds=1))
    raise ConfigError(f"cursor field {field!r} does not apply to {type(item).__name__}")


def next_older_params(
    path: str,
    params: Mapping[str, str | int],
    page: Sequence[Order | Fill | Trade | Candle],
    *,
    limit: int = MAX_PAGE_LIMIT,
) -> dict[str, str | int] | None:
    """Params for the next page walking **backwards** (§5.4): ``after`` = the last (oldest) item's
    cursor of this newest-first page; None when the page was shorter than ``limit`` (the end)."""
    endpoint = ENDPOINTS.get(path)
    if endpoint is None or endpoint.cursor is None:
        raise ConfigError(f"{path!r} has no pagination cursor")
    if len(page) < limit or not page:
        return None
    out = {k: v for k, v in params.items() if k != "before"}
    out["after"] = _cursor_of(page[-1], endpoint.cursor)
    out["limit"] = str(limit)
    return out


def next_newer_params(
    path: str,
    params: Mapping[str, str | int],
    newest_stored: Order | Fill | Trade | Candle | None,
    *,
    limit: int = MAX_PAGE_LIMIT,
) -> dict[str, str | int]:
    """Params to poll **forwards** (§5.4): ``before`` = the newest cursor already stored (none at first)."""
    endpoint = ENDPOINTS.get(path)
    if endpoint is None or endpoint.cursor is None:
        raise ConfigError(f"{path!r} has no pagination cursor")
    out = {k: v for k, v in params.items() if k not in ("before", "after")}
    if newest_stored is not None:
        out["before"] = _cursor_of(newest_stored, endpoint.cursor)
    out["limit"] = str(limit)
    return out
