"""The signed, read-only REST client (PROTOCOL.md "REST", "Signing").

:class:`ReadOnlyClient` can reach the read endpoints in :data:`READ_ENDPOINTS`
and nothing else: there is no method, parameter or code path that places or
cancels an order or moves money, and a request for any other path raises before a byte is
sent. Private calls are ``POST`` with a form-encoded body carrying ``api_key``
and ``sign`` (never the secret); public ones are ``GET``.

Errors are translated once, here: an error answer becomes the typed
:class:`~recorder.errors.ExchangeError` (via :func:`recorder.venues.okex_v1.rest.check_result`),
HTTP 403 :class:`~recorder.errors.IpBannedError`, HTTP 5xx, timeouts and network
failures :class:`~recorder.errors.TransportError`, an unreadable body
:class:`~recorder.errors.DecodeError`. No message names a request parameter.
Every call first waits for the (process-wide) :class:`RateLimiter`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import datetime

import httpx

from recorder.credentials import Credentials
from recorder.errors import ConfigError, DecodeError, IpBannedError, TransportError
from recorder.poller.ratelimit import RateLimiter, process_limiter
from recorder.records import Balance, Order, utc_now
from recorder.venues.okex_v1 import rest
from recorder.venues.okex_v1.parse import decode_json
from recorder.venues.okex_v1.signing import signed_params

__all__ = ["DEFAULT_REST_URL", "PRIVATE_READ_ENDPOINTS", "READ_ENDPOINTS", "ReadEndpoint", "ReadOnlyClient"]

DEFAULT_REST_URL = "https://www.okex.com/api/v1"


class ReadEndpoint(enum.Enum):
    """Every endpoint the recorder may call: reads only."""

    USERINFO = "userinfo.do"
    WALLET_INFO = "wallet_info.do"
    ORDER_INFO = "order_info.do"
    ORDERS_INFO = "orders_info.do"
    ORDER_HISTORY = "order_history.do"
    TICKER = "ticker.do"
    DEPTH = "depth.do"
    TRADES = "trades.do"
    KLINE = "kline.do"

    @property
    def is_private(self) -> bool:
        return self in PRIVATE_READ_ENDPOINTS


PRIVATE_READ_ENDPOINTS = frozenset(
    {
        ReadEndpoint.USERINFO,
        ReadEndpoint.WALLET_INFO,
        ReadEndpoint.ORDER_INFO,
        ReadEndpoint.ORDERS_INFO,
        ReadEndpoint.ORDER_HISTORY,
    }
)
READ_ENDPOINTS: frozenset[str] = frozenset(e.value for e in ReadEndpoint)
"""The allowlist, as paths relative to the REST root."""


def _endpoint(name: object) -> ReadEndpoint:
    if isinstance(name, ReadEndpoint):
        return name
    try:
        return ReadEndpoint(name)
    except ValueError:
        raise ConfigError(
            f"{name!r:.40} is not a read endpoint: the recorder's REST client is read-only "
            f"(allowed: {', '.join(sorted(READ_ENDPOINTS))})"
        ) from None


class ReadOnlyClient:
    """Signed read-only access to the OKEx v1 REST API.

    ``transport`` is the httpx seam (tests pass ``httpx.MockTransport``);
    ``limiter`` defaults to the process-wide one; ``clock`` stamps ``ts_recv``.
    Use as an async context manager, or call :meth:`aclose`.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        rest_url: str = DEFAULT_REST_URL,
        timeout: float = 10.0,
        limiter: RateLimiter | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._credentials = credentials
        self._limiter = limiter if limiter is not None else process_limiter()
        self._clock = clock
        self._http = httpx.AsyncClient(
            base_url=rest_url.rstrip("/") + "/",
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "okex-recorder"},
        )

    def __repr__(self) -> str:
        return f"ReadOnlyClient({self._http.base_url!s}, {self._credentials!r})"

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    async def __aenter__(self) -> ReadOnlyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    # --- the one request path ------------------------------------------------------------------

    async def request(self, endpoint: ReadEndpoint | str, params: Mapping[str, str] | None = None
                      ) -> tuple[object, datetime]:
        """Call a read endpoint; return the decoded, checked JSON answer and its receive time.

        Raises :class:`ConfigError` (before sending) for anything not in
        :data:`READ_ENDPOINTS`; :class:`ExchangeError`, :class:`IpBannedError`,
        :class:`TransportError` or :class:`DecodeError` as described in the module.
        """
        ep = _endpoint(endpoint)
        await self._limiter.acquire(ep.value)
        fields = {k: str(v) for k, v in (params or {}).items()}
        try:
            if ep.is_private:
                body = signed_params(fields, self._credentials.api_key, self._credentials.secret)
                response = await self._http.post(ep.value, data=body)
            else:
                response = await self._http.get(ep.value, params=fields)
            content = response.content
        except httpx.TimeoutException as exc:
            raise TransportError(f"{ep.value}: timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise TransportError(f"{ep.value}: network error ({type(exc).__name__})") from exc
        ts_recv = self._clock()
        status = response.status_code
        if status == 403:
            raise IpBannedError(f"{ep.value}: HTTP 403: the IP is banned for a while (requests too fast)")
        if status >= 500:
            raise TransportError(f"{ep.value}: HTTP {status}")
        if status != 200:
            raise DecodeError(f"{ep.value}: unexpected HTTP {status}", sample=content[:200])
        answer = decode_json(content)
        rest.check_result(answer, ep.value)
        return answer, ts_recv

    # --- typed reads ---------------------------------------------------------------------------

    async def fetch_userinfo(self) -> list[Balance]:
        """``userinfo.do``: the spot balances, one per currency."""
        answer, ts = await self.request(ReadEndpoint.USERINFO)
        return rest.parse_userinfo(answer, ts)

    async def fetch_wallet_info(self) -> list[Balance]:
        """``wallet_info.do``: the wallet balances, one per currency."""
        answer, ts = await self.request(ReadEndpoint.WALLET_INFO)
        return rest.parse_wallet_info(answer, ts)

    async def fetch_open_orders(self, symbol: str) -> list[Order]:
        """``order_info.do`` with ``order_id=-1``: every open order of ``symbol``."""
        answer, ts = await self.request(ReadEndpoint.ORDER_INFO, {"symbol": symbol, "order_id": "-1"})
        return rest.parse_orders(answer, ts)

    async def fetch_order(self, symbol: str, order_id: int) -> list[Order]:
        """``order_info.do`` for one order id."""
        params = {"symbol": symbol, "order_id": str(order_id)}
        answer, ts = await self.request(ReadEndpoint.ORDER_INFO, params)
        return rest.parse_orders(answer, ts)

    async def fetch_order_history(
        self, symbol: str, status: int, page: int, page_length: int = 200
    ) -> rest.OrderHistoryPage:
        """``order_history.do``: one page (1-based) of ``symbol``'s orders with ``status`` 0 or 1."""
        if status not in (0, 1):
            raise ConfigError(f"order_history.do status must be 0 (open) or 1 (filled), got {status!r}")
        params = {
            "symbol": symbol,
            "status": str(status),
            "current_page": str(page),
            "page_length": str(page_length),
        }
        answer, ts = await self.request(ReadEndpoint.ORDER_HISTORY, params)
        return rest.parse_order_history(answer, ts)
