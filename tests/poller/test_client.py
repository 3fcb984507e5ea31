"""The read-only client against httpx.MockTransport: signing, allowlist, error translation."""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

import recorder.poller
from recorder.credentials import Credentials
from recorder.errors import (
    ConfigError,
    DecodeError,
    ErrorClass,
    ExchangeError,
    IpBannedError,
    TransportError,
)
from recorder.poller.client import READ_ENDPOINTS, ReadOnlyClient
from recorder.poller.ratelimit import RateLimiter
from recorder.records import Balance, OrderStatus
from recorder.venues.okex_v1.signing import verify

API_KEY = "c821db84-6fbd-11e4-a9e3-c86000d26d7c"
SECRET = "secretKey-that-must-never-travel"
CREDS = Credentials(API_KEY, SECRET)
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _client(handler: httpx.MockTransport | None = None, **kwargs: object) -> ReadOnlyClient:
    return ReadOnlyClient(
        CREDS,
        rest_url="http://exchange.test/api/v1",
        transport=handler,
        limiter=RateLimiter(),
        clock=lambda: T0,
        **kwargs,  # type: ignore[arg-type]
    )


def _json(obj: object, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(obj).encode())


async def test_private_calls_are_signed_form_posts_without_the_secret() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _json({"result": True, "info": {"funds": {"free": {"btc": "1.5", "usdt": "0"},
                                                         "freezed": {"btc": "0.25"}}}})

    async with _client(httpx.MockTransport(handle)) as client:
        balances = await client.fetch_userinfo()
    assert balances == [
        Balance(venue="okex_v1",
                ts_recv=T0, account="spot", currency="btc", free=Decimal("1.5"), frozen=Decimal("0.25")),
        Balance(venue="okex_v1",
                ts_recv=T0, account="spot", currency="usdt", free=Decimal("0"), frozen=Decimal("0")),
    ]
    (request,) = seen
    assert request.method == "POST"
    assert request.url.path == "/api/v1/userinfo.do"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    body = dict(urllib.parse.parse_qsl(request.content.decode()))
    assert set(body) == {"api_key", "sign"}
    assert body["api_key"] == API_KEY
    assert verify(body, SECRET)
    assert SECRET not in request.content.decode() and SECRET not in str(request.url)
    assert SECRET not in str(request.headers)


async def test_order_history_parameters_are_signed_exactly_as_sent() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        body = dict(urllib.parse.parse_qsl(request.content.decode()))
        assert verify(body, SECRET)
        assert body == {"api_key": API_KEY, "sign": body["sign"], "symbol": "btc_usdt", "status": "1",
                        "current_page": "2", "page_length": "200"}
        return _json({"result": True, "current_page": 2, "page_length": 200, "total": 201, "orders": [
            {"order_id": 7, "symbol": "btc_usdt", "type": "sell", "price": "9000.5", "amount": "0.1",
             "deal_amount": "0.1", "avg_price": "9000.5", "create_date": 1714564800000, "status": 2}]})

    async with _client(httpx.MockTransport(handle)) as client:
        page = await client.fetch_order_history("btc_usdt", 1, 2, 200)
    assert (page.current_page, page.total) == (2, 201)
    got = [(o.order_id, o.status, o.deal_amount) for o in page.orders]
    assert got == [(7, OrderStatus.FILLED, Decimal("0.1"))]


async def test_public_reads_are_unsigned_gets() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.method == "GET"
        assert dict(request.url.params) == {"symbol": "btc_usdt"}
        return _json({"date": "1410431279", "ticker": {"buy": "1", "high": "2", "last": "1", "low": "1",
                                                       "sell": "1.1", "vol": "3"}})

    async with _client(httpx.MockTransport(handle)) as client:
        answer, ts = await client.request("ticker.do", {"symbol": "btc_usdt"})
    assert ts == T0 and isinstance(answer, dict)


@pytest.mark.parametrize(
    "endpoint",
    ["trade.do", "batch_trade.do", "cancel_order.do", "withdraw.do", "cancel_withdraw.do",
     "funds_transfer.do", "/trade.do",
     "userinfo.do/../trade.do", "../trade.do", "http://evil.test/userinfo.do", "USERINFO.DO"],
)
async def test_anything_but_a_read_endpoint_raises_before_sending(endpoint: str) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    async with _client(httpx.MockTransport(handle)) as client:
        with pytest.raises(ConfigError, match="read-only"):
            await client.request(endpoint)


def test_the_allowlist_is_exactly_the_read_endpoints() -> None:
    assert frozenset({
        "userinfo.do", "wallet_info.do", "order_info.do", "orders_info.do", "order_history.do",
        "ticker.do", "depth.do", "trades.do", "kline.do",
    }) == READ_ENDPOINTS


def test_no_trading_or_withdrawal_code_path_exists_in_the_poller_package() -> None:
    root = Path(recorder.poller.__file__).parent
    forbidden = re.compile(r"trade\.do|cancel_order|batch_trade|withdraw|funds_transfer|cancel_withdraw")
    sources = sorted(root.rglob("*.py"))
    assert len(sources) >= 6
    for path in sources:
        assert not forbidden.search(path.read_text("utf-8")), path
    public = {name for name in dir(ReadOnlyClient) if not name.startswith("_")}
    assert public == {"aclose", "fetch_open_orders", "fetch_order", "fetch_order_history",
                      "fetch_userinfo", "fetch_wallet_info", "limiter", "request"}


@pytest.mark.parametrize(
    ("code", "error_class", "text"),
    [
        (10001, ErrorClass.RATE_LIMITED, "frequency"),
        (10002, ErrorClass.RETRY_LATER, None),
        (10006, ErrorClass.AUTH, None),
        (10007, ErrorClass.AUTH, None),
    ],
)
async def test_error_answers_become_typed_exchange_errors(code: int, error_class: ErrorClass,
                                                         text: str | None) -> None:
    transport = httpx.MockTransport(lambda r: _json({"result": False, "error_code": code}))
    async with _client(transport) as client:
        with pytest.raises(ExchangeError) as info:
            await client.fetch_userinfo()
    assert info.value.code == code and info.value.error_class is error_class
    assert info.value.message_en and str(code) in str(info.value)
    if text:
        assert text in info.value.message_en.lower()
    assert SECRET not in str(info.value) and API_KEY not in str(info.value)


async def test_http_403_is_an_ip_ban() -> None:
    async with _client(httpx.MockTransport(lambda r: httpx.Response(403))) as client:
        with pytest.raises(IpBannedError):
            await client.fetch_userinfo()


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_http_5xx_is_a_transport_error(status: int) -> None:
    async with _client(httpx.MockTransport(lambda r: httpx.Response(status))) as client:
        with pytest.raises(TransportError, match=f"HTTP {status}") as info:
            await client.fetch_userinfo()
    assert not isinstance(info.value, IpBannedError)


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("timed out"), httpx.ConnectError("refused")])
async def test_network_failures_are_transport_errors_without_parameters(exc: httpx.HTTPError) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise exc

    async with _client(httpx.MockTransport(handle)) as client:
        with pytest.raises(TransportError) as info:
            await client.fetch_open_orders("btc_usdt")
    message = str(info.value)
    assert "order_info.do" in message
    assert API_KEY not in message and "sign" not in message and SECRET not in message


async def test_a_body_that_is_not_json_is_a_decode_error() -> None:
    async with _client(httpx.MockTransport(lambda r: httpx.Response(200, content=b"<html>"))) as client:
        with pytest.raises(DecodeError):
            await client.fetch_userinfo()


def test_repr_masks_the_credentials() -> None:
    client = _client()
    assert SECRET not in repr(client) and API_KEY not in repr(client)
    assert "c821…6d7c" in repr(client)


async def test_a_network_error_names_the_endpoint_once_in_the_retry_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    """``order_info.do btc_usdt: network error (ConnectError); retrying in …``: the endpoint once, not
    ``order_info.do btc_usdt: order_info.do: network error`` (the error's own text starts with it)."""
    from recorder.poller.loop import PollLoop

    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused")
        return _json({"result": True, "orders": []})

    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    loop = PollLoop(venue="okex_v1", sink=lambda records: None, limiter=RateLimiter(),
                    auth_message=str, sleep=sleep, label="OKEx")
    async with _client(httpx.MockTransport(handle)) as client:
        with caplog.at_level(logging.WARNING, "recorder.poller"):
            orders = await loop.call("order_info.do btc_usdt", None,
                                     lambda: client.fetch_open_orders("btc_usdt"))
    assert orders == []
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"order_info.do btc_usdt: network error (ConnectError); retrying in {slept[0]:.2f} s"]
