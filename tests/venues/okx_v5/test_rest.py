"""REST request building and response parsing (PROTOCOL.md §4, §5, §6, §7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from recorder.errors import (
    ConfigError,
    DecodeError,
    ErrorClass,
    ExchangeError,
    is_auth_failure,
    is_rate_limit,
)
from recorder.venues.okx_v5 import rest
from recorder.venues.okx_v5.signing import V5Credentials

from .frames import (
    REST_BALANCE,
    REST_BOOKS,
    REST_ERROR_51000,
    REST_INVALID_SIGN,
    REST_TIME,
    REST_TOO_MANY,
    SECRET_A,
    SIGNING_VECTORS,
)
from .test_parse import FILL, ORDER

RECV = datetime(2026, 11, 30, tzinfo=UTC)
R1_MS = int(datetime(2020, 12, 8, 9, 8, 57, 715000, tzinfo=UTC).timestamp() * 1000)
CREDS = V5Credentials("api-key-123456789", SECRET_A, "PASSPHRASE-xyz")


def test_public_request_is_unsigned() -> None:
    req = rest.build_request("/api/v5/market/books", {"instId": "BTC-USDT", "sz": 400})
    assert (req.method, req.path, dict(req.headers)) == (
        "GET",
        "/api/v5/market/books?instId=BTC-USDT&sz=400",
        {},
    )
    assert req.url() == "https://www.okx.com/api/v5/market/books?instId=BTC-USDT&sz=400"
    assert (
        req.url("https://openapi.okx.com/")
        == "https://openapi.okx.com/api/v5/market/books?instId=BTC-USDT&sz=400"
    )


def test_r1_and_r2_requests_are_signed_as_documented() -> None:
    r1 = rest.build_request("/api/v5/account/balance", {"ccy": "BTC"}, credentials=CREDS, epoch_ms=R1_MS)
    assert r1.path == "/api/v5/account/balance?ccy=BTC"
    assert r1.headers["OK-ACCESS-SIGN"] == SIGNING_VECTORS["R1"][2]
    assert r1.headers["OK-ACCESS-TIMESTAMP"] == "2020-12-08T09:08:57.715Z"
    r2 = rest.build_request(
        "/api/v5/trade/orders-history",
        {"instType": "SPOT", "instId": "BTC-USDT", "ordType": "", "limit": "100"},
        credentials=CREDS,
        epoch_ms=R1_MS,
    )
    assert r2.path == "/api/v5/trade/orders-history?instType=SPOT&instId=BTC-USDT&limit=100"  # empty skipped
    assert r2.headers["OK-ACCESS-SIGN"] == SIGNING_VECTORS["R2"][2]


def test_prepared_request_repr_hides_headers() -> None:
    req = rest.build_request("/api/v5/account/balance", {}, credentials=CREDS, epoch_ms=R1_MS)
    for text in (repr(req), str(req)):
        assert "PASSPHRASE-xyz" not in text and "api-key-123456789" not in text
        assert req.headers["OK-ACCESS-SIGN"] not in text


def test_query_encoding_keeps_commas_and_escapes_the_rest() -> None:
    req = rest.build_request("/api/v5/account/balance", {"ccy": "BTC,ETH"}, credentials=CREDS, epoch_ms=R1_MS)
    assert req.path == "/api/v5/account/balance?ccy=BTC,ETH"
    req = rest.build_request("/api/v5/public/instruments", {"instType": "SPOT", "instId": "A&B=C"})
    assert req.path == "/api/v5/public/instruments?instType=SPOT&instId=A%26B%3DC"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v5/trade/order-algo",
        "/api/v5/trade/cancel-order",
        "/api/v5/account/set-leverage",
        "/api/v5/asset/withdrawal",
        "/api/v5/market/ticker/",
    ],
)
def test_non_allowlisted_endpoints_cannot_be_built(path: str) -> None:
    with pytest.raises(ConfigError, match="not an allowed"):
        rest.build_request(path, {}, credentials=CREDS, epoch_ms=R1_MS)


def test_private_endpoint_needs_credentials_and_time() -> None:
    with pytest.raises(ConfigError, match="private"):
        rest.build_request("/api/v5/account/balance")
    with pytest.raises(ConfigError, match="limit"):
        rest.build_request("/api/v5/trade/fills", {"limit": 101}, credentials=CREDS, epoch_ms=R1_MS)


def test_allowlist_is_read_only_with_documented_limits() -> None:
    assert all(p.startswith("/api/v5/") for p in rest.ENDPOINTS)
    assert rest.ENDPOINTS["/api/v5/account/balance"].limit == 10
    assert rest.ENDPOINTS["/api/v5/system/status"].window_s == 5
    assert {p for p, e in rest.ENDPOINTS.items() if e.private} == {
        "/api/v5/account/balance",
        "/api/v5/trade/orders-pending",
        "/api/v5/trade/orders-history",
        "/api/v5/trade/orders-history-archive",
        "/api/v5/trade/order",
        "/api/v5/trade/fills",
        "/api/v5/trade/fills-history",
    }


def test_error_envelopes() -> None:
    with pytest.raises(ExchangeError) as e1:
        rest.parse_tickers(200, REST_ERROR_51000, RECV)
    assert e1.value.code == 51000 and e1.value.error_class is ErrorClass.BAD_REQUEST
    assert "Parameter instId error" in str(e1.value)
    with pytest.raises(ExchangeError) as e2:
        rest.parse_balance(401, REST_INVALID_SIGN, RECV)
    assert is_auth_failure(e2.value) and "secret" in str(e2.value)
    with pytest.raises(ExchangeError) as e3:
        rest.parse_orders(429, REST_TOO_MANY, RECV)
    assert is_rate_limit(e3.value)
    # HTTP 200 with 50011 too
    with pytest.raises(ExchangeError) as e4:
        rest.parse_orders(200, '{"code":"50011","msg":"Rate limit reached.","data":[]}', RECV)
    assert is_rate_limit(e4.value)
    # old answers: code as a JSON number
    with pytest.raises(ExchangeError) as e5:
        rest.parse_orders(401, '{"code":50105,"msg":"wrong"}', RECV)
    assert e5.value.code == 50105 and "passphrase" in str(e5.value)
    assert rest.parse_server_time_ms(200, '{"code":0,"msg":"","data":[{"ts":"5"}]}') == 5


def test_non_json_bodies() -> None:
    with pytest.raises(ExchangeError) as e:
        rest.parse_orders(429, "<html>Too many</html>", RECV)
    assert is_rate_limit(e.value)
    with pytest.raises(ExchangeError) as e2:
        rest.parse_orders(502, "Bad gateway", RECV)
    assert e2.value.error_class is ErrorClass.RETRY_LATER
    with pytest.raises(DecodeError):
        rest.parse_orders(200, "nonsense", RECV)
    with pytest.raises(DecodeError, match="data"):
        rest.parse_orders(200, '{"code":"0","msg":""}', RECV)
    with pytest.raises(DecodeError, match="code"):
        rest.parse_orders(200, '{"msg":""}', RECV)


def test_books_balance_time_examples() -> None:
    (b,) = rest.parse_books(200, REST_BOOKS)
    assert (b.asks, b.bids, b.seqId, b.checksum) == (
        [["41006.8", "0.60038921", "0", "1"]],
        [["41006.3", "0.30178218", "0", "2"]],
        3235851742,
        None,
    )
    (bal,) = rest.parse_balance(200, REST_BALANCE, RECV)
    assert bal.currency == "USDT" and bal.cash == Decimal("4850.43")
    assert rest.parse_server_time_ms(200, REST_TIME) == 1597026383085
    with pytest.raises(DecodeError, match="empty"):
        rest.parse_server_time_ms(200, '{"code":"0","msg":"","data":[]}')


def page_of(n: int, start: int) -> str:
    return json.dumps(
        {"code": "0", "msg": "", "data": [{**ORDER, "ordId": str(start - i)} for i in range(n)]}
    )


def test_pagination_walks_backwards_and_polls_forwards() -> None:
    path = "/api/v5/trade/orders-history"
    params = {"instType": "SPOT"}
    page1 = rest.parse_orders(200, page_of(100, 1000), RECV)
    nxt = rest.next_older_params(path, params, page1)
    assert nxt == {"instType": "SPOT", "after": "901", "limit": "100"}
    page2 = rest.parse_orders(200, page_of(40, 900), RECV)
    assert rest.next_older_params(path, nxt, page2) is None
    assert rest.next_newer_params(path, params, page1[0]) == {
        "instType": "SPOT",
        "before": "1000",
        "limit": "100",
    }
    assert rest.next_newer_params(path, {"after": "5", "instType": "SPOT"}, None) == {
        "instType": "SPOT",
        "limit": "100",
    }


def test_fill_cursor_is_bill_id() -> None:
    body = json.dumps({"code": "0", "msg": "", "data": [FILL]})
    fills = rest.parse_fills(200, body, RECV)
    assert rest.next_newer_params("/api/v5/trade/fills", {}, fills[0])["before"] == "680800019754098688"
    with pytest.raises(ConfigError):
        rest.next_older_params("/api/v5/account/balance", {}, fills)
    with pytest.raises(ConfigError):
        rest.next_newer_params("/api/v5/trade/orders-history", {}, fills[0])


def test_candles_and_trades_rest() -> None:
    body = json.dumps(
        {
            "code": "0",
            "msg": "",
            "data": [
                [
                    "1597026383085",
                    "8533.02",
                    "8553.74",
                    "8527.17",
                    "8548.26",
                    "45247",
                    "529.5858061",
                    "5529.5858061",
                    "0",
                ],
                ["1597026323085", "8533", "8553", "8527", "8548", "1", "2", "3", "1"],
            ],
        }
    )
    c = rest.parse_candles(200, body, "BTC-USDT", "1m", RECV)
    assert [x.confirmed for x in c] == [False, True]
    assert rest.next_older_params("/api/v5/market/candles", {"instId": "BTC-USDT"}, c, limit=2) == {
        "instId": "BTC-USDT",
        "after": "1597026323085",
        "limit": "2",
    }
    tbody = json.dumps(
        {
            "code": "0",
            "msg": "",
            "data": [
                {
                    "instId": "BTC-USDT",
                    "tradeId": "9",
                    "px": "1",
                    "sz": "2",
                    "side": "sell",
                    "source": "0",
                    "ts": "3",
                }
            ],
        }
    )
    (t,) = rest.parse_trades(200, tbody, RECV)
    assert (t.trade_id, t.count) == ("9", None)


def test_no_secret_in_any_text_the_core_produces() -> None:
    key, secret, passphrase = "KEY-0123456789abcdef", "SECRET-fedcba9876543210", "PASS-phrase-42"
    creds = V5Credentials(key, secret, passphrase)
    req = rest.build_request("/api/v5/trade/fills", {"instType": "SPOT"}, credentials=creds, epoch_ms=R1_MS)
    texts = [repr(creds), str(creds), repr(req), str(req)]
    for body, status in ((REST_INVALID_SIGN, 401), ('{"code":"50105","msg":"x"}', 401), (REST_TOO_MANY, 429)):
        with pytest.raises(ExchangeError) as info:
            rest.parse_fills(status, body, RECV)
        texts += [str(info.value), repr(info.value), str(info.value.context)]
    for text in texts:
        for value in (key, secret, passphrase):
            assert value not in text
