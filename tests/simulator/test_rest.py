"""The REST endpoint, spoken to with plain httpx and raw JSON."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from recorder.records import OrderStatus
from recorder.simulator import DEMO_API_KEY, DEMO_SECRET, RateLimits, Simulator, SimulatorSettings
from tests.simulator.helpers import md5_sign


@pytest.fixture
def simulator_settings(
    request: pytest.FixtureRequest, simulator_settings: SimulatorSettings
) -> SimulatorSettings:
    changes = {"updates_per_second": 0, **getattr(request, "param", {})}
    return dataclasses.replace(simulator_settings, **changes)


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


def _dec(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


async def _private(client: httpx.AsyncClient, sim: Simulator, endpoint: str, **params: str) -> Any:
    body = {"api_key": DEMO_API_KEY, **params}
    body["sign"] = md5_sign(body, DEMO_SECRET)
    r = await client.post(f"{sim.rest_url}/{endpoint}", data=body)
    assert r.status_code == 200
    return _dec(r.text)


def test_documented_signature_vectors() -> None:
    params = {
        "api_key": "c821db84-6fbd-11e4-a9e3-c86000d26d7c",
        "symbol": "btc_cny",
        "type": "buy",
        "price": "680",
        "amount": "1.0",
    }
    assert md5_sign(params, "secretKey") == "305C4C9942D0D48EDFA4601D50FB6602"
    assert md5_sign({"api_key": params["api_key"]}, "secretKey") == "E866BBB88E0E685D3F4BBC2723E2CAF9"


async def test_ticker_shape_and_values(simulator: Simulator, client: httpx.AsyncClient) -> None:
    r = await client.get(f"{simulator.rest_url}/ticker.do", params={"symbol": "btc_usdt"})
    body = r.json()
    t = simulator.market["btc_usdt"].ticker()
    assert set(body) == {"date", "ticker"}
    assert isinstance(body["date"], str) and abs(int(body["date"]) - time.time()) < 60
    assert body["ticker"] == {
        "buy": str(t.buy.normalize()),
        "high": format(t.high.normalize(), "f"),
        "last": format(t.last.normalize(), "f"),
        "low": format(t.low.normalize(), "f"),
        "sell": format(t.sell.normalize(), "f"),
        "vol": format(t.vol.normalize(), "f"),
    }


async def test_depth_lists_asks_highest_first_as_json_numbers(
    simulator: Simulator, client: httpx.AsyncClient
) -> None:
    r = await client.get(f"{simulator.rest_url}/depth.do", params={"symbol": "ltc_btc", "size": "7"})
    body = _dec(r.text)
    bids, asks = simulator.market["ltc_btc"].book(7)
    assert body["bids"] == [[p, a] for p, a in bids]
    assert body["asks"] == [[p, a] for p, a in reversed(asks)]
    assert body["asks"][0][0] > body["asks"][-1][0]
    assert all(isinstance(x, Decimal) for lvl in body["asks"] for x in lvl)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"symbol": "ltc_btc", "size": "0"}, 10008),
        ({"symbol": "ltc_btc", "size": "201"}, 10008),
        ({"symbol": "ltc_btc", "size": "x"}, 10008),
        ({"symbol": "xrp_btc"}, 10008),
        ({}, 10000),
    ],
)
async def test_depth_rejects_bad_parameters(
    simulator: Simulator, client: httpx.AsyncClient, params: dict[str, str], code: int
) -> None:
    r = await client.get(f"{simulator.rest_url}/depth.do", params=params)
    assert (r.status_code, r.json()) == (200, {"result": False, "error_code": code})


async def test_trades_since_tid(simulator: Simulator, client: httpx.AsyncClient) -> None:
    await simulator.advance(200, "eth_btc")
    r = await client.get(f"{simulator.rest_url}/trades.do", params={"symbol": "eth_btc"})
    latest = _dec(r.text)
    assert len(latest) == 60
    known = list(simulator.market["eth_btc"].trades)
    assert [t["tid"] for t in latest] == [t.tid for t in known[-60:]]
    assert latest[-1] == {
        "date": known[-1].ts_ms // 1000,
        "date_ms": known[-1].ts_ms,
        "price": known[-1].price,
        "amount": known[-1].amount,
        "tid": known[-1].tid,
        "type": known[-1].side.value,
    }
    since = known[-10].tid
    r = await client.get(f"{simulator.rest_url}/trades.do", params={"symbol": "eth_btc", "since": str(since)})
    assert [t["tid"] for t in r.json()] == [t.tid for t in known[-9:]]


async def test_kline_uses_rest_period_names(simulator: Simulator, client: httpx.AsyncClient) -> None:
    rows = simulator.market["btc_usdt"].kline_rows
    from recorder.records import KlinePeriod

    r = await client.get(
        f"{simulator.rest_url}/kline.do", params={"symbol": "btc_usdt", "type": "1day", "size": "3"}
    )
    expected = [[k.ts_ms, k.open, k.high, k.low, k.close, k.volume] for k in rows(KlinePeriod.DAY_1, size=3)]
    assert _dec(r.text) == expected
    since = expected[1][0]
    r = await client.get(
        f"{simulator.rest_url}/kline.do", params={"symbol": "btc_usdt", "type": "1day", "since": str(since)}
    )
    assert [row[0] for row in r.json()] == [row[0] for row in expected[1:]]
    for bad in ("day", "3day", "2min"):
        r = await client.get(f"{simulator.rest_url}/kline.do", params={"symbol": "btc_usdt", "type": bad})
        assert r.json() == {"result": False, "error_code": 10008}


async def test_tickers_lists_every_symbol(simulator: Simulator, client: httpx.AsyncClient) -> None:
    body = (await client.get(f"{simulator.rest_url}/tickers.do")).json()
    assert [t["symbol"] for t in body["tickers"]] == list(simulator.market.symbols)


async def test_userinfo_shows_free_and_frozen_funds(simulator: Simulator, client: httpx.AsyncClient) -> None:
    body = await _private(client, simulator, "userinfo.do")
    acct = simulator.demo_account
    funds = body["info"]["funds"]
    assert body["result"] is True
    assert {c: Decimal(v) for c, v in funds["free"].items()} == {c: acct.free[c] for c in acct.currencies()}
    assert {c: Decimal(v) for c, v in funds["freezed"].items()} == {
        c: acct.freezed[c] for c in acct.currencies()
    }
    assert any(Decimal(v) > 0 for v in funds["freezed"].values())  # the seeded open orders
    wallet = await _private(client, simulator, "wallet_info.do")
    assert set(wallet["info"]["funds"]) == {"free", "holds"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, 10000),
        ({"api_key": DEMO_API_KEY}, 10000),
        ({"api_key": "unknown-key", "sign": "0" * 32}, 10006),
        ({"api_key": DEMO_API_KEY, "sign": "0" * 32}, 10007),
    ],
)
async def test_private_endpoints_check_key_and_signature(
    simulator: Simulator, client: httpx.AsyncClient, body: dict[str, str], code: int
) -> None:
    r = await client.post(f"{simulator.rest_url}/userinfo.do", data=body)
    assert (r.status_code, r.json()) == (200, {"result": False, "error_code": code})


async def test_signature_must_cover_every_parameter(simulator: Simulator, client: httpx.AsyncClient) -> None:
    body = {"api_key": DEMO_API_KEY, "symbol": "ltc_btc", "order_id": "-1"}
    body["sign"] = md5_sign({"api_key": DEMO_API_KEY}, DEMO_SECRET)  # signed without symbol/order_id
    r = await client.post(f"{simulator.rest_url}/order_info.do", data=body)
    assert r.json() == {"result": False, "error_code": 10007}
    ok = await _private(client, simulator, "order_info.do", symbol="ltc_btc", order_id="-1")
    assert ok["result"] is True


async def test_orders_lifecycle_trade_fill_cancel(simulator: Simulator, client: httpx.AsyncClient) -> None:
    placed = await _private(
        client, simulator, "trade.do", symbol="ltc_btc", type="buy", price="0.0081", amount="3.5"
    )
    oid = placed["order_id"]
    info = await _private(client, simulator, "order_info.do", symbol="ltc_btc", order_id=str(oid))
    (order,) = info["orders"]
    assert {
        k: order[k]
        for k in (
            "order_id",
            "orders_id",
            "symbol",
            "type",
            "price",
            "amount",
            "deal_amount",
            "avg_price",
            "status",
        )
    } == {
        "order_id": oid,
        "orders_id": oid,
        "symbol": "ltc_btc",
        "type": "buy",
        "price": Decimal("0.0081"),
        "amount": Decimal("3.5"),
        "deal_amount": 0,
        "avg_price": 0,
        "status": 0,
    }
    simulator.fill_order(oid, "1.5", "0.008")
    open_orders = await _private(client, simulator, "order_info.do", symbol="ltc_btc", order_id="-1")
    mine = [o for o in open_orders["orders"] if o["order_id"] == oid]
    assert mine[0]["status"] == 1 and mine[0]["deal_amount"] == Decimal("1.5")
    assert mine[0]["avg_price"] == Decimal("0.008")
    assert all(o["status"] in (0, 1) for o in open_orders["orders"])
    cancelled = await _private(client, simulator, "cancel_order.do", symbol="ltc_btc", order_id=str(oid))
    assert cancelled == {"result": True, "order_id": str(oid)}
    again = await _private(client, simulator, "cancel_order.do", symbol="ltc_btc", order_id=str(oid))
    assert again == {"result": False, "error_code": 10050}
    listed = await _private(
        client, simulator, "orders_info.do", symbol="ltc_btc", type="1", order_id=str(oid)
    )
    assert [(o["order_id"], o["status"]) for o in listed["orders"]] == [(oid, -1)]
    too_much = await _private(
        client, simulator, "trade.do", symbol="ltc_btc", type="buy", price="1", amount="900"
    )
    assert too_much == {"result": False, "error_code": 10010}
    market = await _private(client, simulator, "trade.do", symbol="ltc_btc", type="buy_market", price="1")
    assert market == {"result": False, "error_code": 1216}


async def test_order_history_pages_and_keeps_only_two_days(
    simulator: Simulator, client: httpx.AsyncClient
) -> None:
    acct = simulator.demo_account
    now_ms = int(time.time() * 1000)
    for symbol in simulator.market.symbols:
        for status in (0, 1):
            wanted = sorted(
                (
                    o
                    for o in acct.orders.values()
                    if o.symbol == symbol
                    and o.is_open == (status == 0)
                    and o.create_ms >= now_ms - 2 * 86_400_000 + 60_000
                ),
                key=lambda o: (o.create_ms, o.order_id),
                reverse=True,
            )
            got: list[int] = []
            page = 1
            while True:
                body = await _private(
                    client,
                    simulator,
                    "order_history.do",
                    symbol=symbol,
                    status=str(status),
                    current_page=str(page),
                    page_length="2",
                )
                assert body["result"] is True and body["current_page"] == page and body["page_length"] == 2
                assert body["total"] == len(wanted)
                got.extend(o["order_id"] for o in body["orders"])
                if not body["orders"]:
                    break
                page += 1
            assert got == [o.order_id for o in wanted]
    old = [o for o in acct.orders.values() if o.create_ms < now_ms - 2 * 86_400_000]
    assert old  # the seeded history has older orders, which are not served
    statuses = {o.status for o in acct.orders.values()}
    assert {OrderStatus.CANCELLED, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED} <= statuses
    bad = await _private(
        client,
        simulator,
        "order_history.do",
        symbol="ltc_btc",
        status="0",
        current_page="1",
        page_length="201",
    )
    assert bad == {"result": False, "error_code": 10008}
    missing = await _private(client, simulator, "order_history.do", symbol="ltc_btc", status="0")
    assert missing == {"result": False, "error_code": 10000}


@pytest.mark.parametrize(
    "simulator_settings",
    [{"rate_limits": RateLimits(endpoint_requests=4, account_requests=2, endpoint_window=30.0)}],
    indirect=True,
)
async def test_per_endpoint_rate_limits_answer_10001(simulator: Simulator, client: httpx.AsyncClient) -> None:
    codes = []
    for _ in range(6):
        r = await client.get(f"{simulator.rest_url}/ticker.do", params={"symbol": "ltc_btc"})
        codes.append(r.json().get("error_code"))
    assert codes == [None] * 4 + [10001, 10001]
    r = await client.get(f"{simulator.rest_url}/depth.do", params={"symbol": "ltc_btc"})  # another endpoint
    assert "asks" in r.json()
    account = [(await _private(client, simulator, "userinfo.do")).get("error_code") for _ in range(3)]
    assert account == [None, None, 10001]


@pytest.mark.parametrize(
    "simulator_settings",
    [{"rate_limits": RateLimits(ip_requests=5, ip_window=30.0, ban_seconds=0.5)}],
    indirect=True,
)
async def test_past_the_ip_limit_answers_403_for_the_ban_period(
    simulator: Simulator, client: httpx.AsyncClient
) -> None:
    url = f"{simulator.rest_url}/depth.do"
    statuses = [
        (await client.get(url, params={"symbol": "ltc_btc", "size": "1"})).status_code for _ in range(7)
    ]
    assert statuses == [200] * 5 + [403, 403]
    r = await client.post(f"{simulator.rest_url}/userinfo.do", data={})
    assert r.status_code == 403
    await asyncio.sleep(0.6)
    simulator.rest._ip_windows.clear()  # the 5-per-30-s window itself is still full
    assert (await client.get(url, params={"symbol": "ltc_btc", "size": "1"})).status_code == 200
