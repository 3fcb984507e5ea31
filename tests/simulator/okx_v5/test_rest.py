"""The v5 REST API with plain httpx and raw JSON: shapes, values against the model, signing, limits, pages."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest

from recorder.simulator.market import period_start
from recorder.simulator.okx_v5 import DEMO_API_KEY, DEMO_PASSPHRASE, DEMO_SECRET, Simulator
from recorder.simulator.okx_v5.account import DAY_MS, HOUR_MS
from recorder.simulator.okx_v5.feed import BARS

from .helpers import iso_now, okx_sign, signed_get, signed_headers


@pytest.fixture
async def client(v5sim: Simulator) -> Any:
    async with httpx.AsyncClient(base_url=v5sim.rest_url, timeout=10) as c:
        yield c


def _plain(d: Decimal) -> str:
    return format(d.normalize(), "f")


async def ok(resp: httpx.Response) -> list[Any]:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["code"] == "0" and body["msg"] == "", body
    return body["data"]


async def test_time_and_instruments(v5sim: Simulator, client: httpx.AsyncClient) -> None:
    (t,) = await ok(await client.get("/api/v5/public/time"))
    assert abs(int(t["ts"]) - v5sim.now_ms()) < 5_000
    items = await ok(await client.get("/api/v5/public/instruments?instType=SPOT"))
    assert [i["instId"] for i in items] == ["BTC-USDT", "ETH-USDT", "ETH-BTC"]
    btc = items[0]
    assert (btc["baseCcy"], btc["quoteCcy"], btc["tickSz"], btc["lotSz"], btc["minSz"], btc["state"]) == (
        "BTC",
        "USDT",
        "0.0001",
        "0.00000001",
        "0.001",
        "live",
    )
    assert btc["ctVal"] == "" and btc["expTime"] == "" and isinstance(btc["instIdCode"], int)
    assert await ok(await client.get("/api/v5/public/instruments?instType=SWAP")) == []
    missing = await client.get("/api/v5/public/instruments")
    assert missing.status_code == 400 and missing.json()["code"] == "50014"


async def test_ticker_books_trades_equal_the_model(v5sim: Simulator, client: httpx.AsyncClient) -> None:
    await v5sim.advance(150, "BTC-USDT")
    m = v5sim.market["btc_usdt"]
    assert len(m.trades) > 100
    (t,) = await ok(await client.get("/api/v5/market/ticker?instId=BTC-USDT"))
    bids, asks = m.book(400)
    assert t["instType"] == "SPOT" and t["instId"] == "BTC-USDT"
    assert (t["bidPx"], t["bidSz"], t["askPx"], t["askSz"]) == (
        _plain(bids[0][0]),
        _plain(bids[0][1]),
        _plain(asks[0][0]),
        _plain(asks[0][1]),
    )
    assert t["last"] == _plain(m.last) and t["lastSz"] == _plain(m.trades[-1].amount)
    assert all(isinstance(v, str) for v in t.values())
    tickers = await ok(await client.get("/api/v5/market/tickers?instType=SPOT"))
    assert [x["instId"] for x in tickers] == ["BTC-USDT", "ETH-USDT", "ETH-BTC"] and tickers[0]["last"] == t[
        "last"
    ]

    (book,) = await ok(await client.get("/api/v5/market/books?instId=BTC-USDT&sz=400"))
    assert [(b[0], b[1]) for b in book["bids"]] == [(_plain(p), _plain(a)) for p, a in bids]
    assert [(a[0], a[1]) for a in book["asks"]] == [(_plain(p), _plain(a)) for p, a in asks]
    assert all(lv[2] == "0" and int(lv[3]) >= 1 for lv in book["bids"] + book["asks"])
    assert book["seqId"] == v5sim.feeds["BTC-USDT"].seq_id
    (one,) = await ok(await client.get("/api/v5/market/books?instId=BTC-USDT"))
    assert len(one["bids"]) == len(one["asks"]) == 1  # sz defaults to 1
    assert (await client.get("/api/v5/market/books?instId=BTC-USDT&sz=401")).json()["code"] == "51000"
    assert (await client.get("/api/v5/market/books?instId=XRP-USDT")).json()["code"] == "51001"

    trades = await ok(await client.get("/api/v5/market/trades?instId=BTC-USDT&limit=500"))
    model = list(reversed(m.trades))[:500]
    assert [(x["tradeId"], x["px"], x["sz"], x["side"], x["ts"]) for x in trades] == [
        (str(tr.tid), _plain(tr.price), _plain(tr.amount), tr.side.value, str(tr.ts_ms)) for tr in model
    ]
    assert len(await ok(await client.get("/api/v5/market/trades?instId=BTC-USDT"))) == 100


async def test_candles_pages(v5sim: Simulator, client: httpx.AsyncClient) -> None:
    m = v5sim.market["eth_usdt"]
    now = v5sim.now_ms()
    rows = m.klines[BARS["1H"]]
    expected = [t for t in sorted(rows, reverse=True) if t <= now]
    first = await ok(await client.get("/api/v5/market/candles?instId=ETH-USDT&bar=1H&limit=300"))
    assert [int(r[0]) for r in first] == expected[:300]
    o, h, lo, c, vol = rows[expected[5]]
    assert first[5][1:6] == [_plain(o), _plain(h), _plain(lo), _plain(c), _plain(vol)]
    assert first[5][8] == "1" and first[0][8] == "0" and len(first[0]) == 9
    older = await ok(
        await client.get(f"/api/v5/market/candles?instId=ETH-USDT&bar=1H&after={expected[9]}&limit=5")
    )
    assert [int(r[0]) for r in older] == expected[10:15]
    newer = await ok(await client.get(f"/api/v5/market/candles?instId=ETH-USDT&bar=1H&before={expected[9]}"))
    assert [int(r[0]) for r in newer] == expected[:9]
    default = await ok(await client.get("/api/v5/market/candles?instId=ETH-USDT"))
    assert len(default) == 100 and int(default[0][0]) == period_start(now, BARS["1m"])
    bad = await client.get("/api/v5/market/candles?instId=ETH-USDT&bar=7m")
    assert bad.json()["code"] == "51000"


# ---- signing --------------------------------------------------------------------------------------
async def test_signed_balance_and_auth_errors(v5sim: Simulator, client: httpx.AsyncClient) -> None:
    path = "/api/v5/account/balance?ccy=BTC,USDT"
    (bal,) = await ok(await signed_get(client, path))
    details = {d["ccy"]: d for d in bal["details"]}
    assert set(details) == {"BTC", "USDT"}
    account = v5sim.demo_account
    frozen = account.frozen()
    for ccy, d in details.items():
        cash = account.cash[ccy]
        fz = frozen.get(ccy, Decimal(0))
        assert (d["cashBal"], d["eq"], d["frozenBal"], d["availBal"]) == (
            _plain(cash),
            _plain(cash),
            _plain(fz),
            _plain(cash - fz),
        )
        assert Decimal(d["cashBal"]) == Decimal(d["availBal"]) + Decimal(d["frozenBal"])
        assert d["liab"] == "" and d["upl"] == "0"
    assert bal["imr"] == "" and Decimal(bal["totalEq"]) > 0

    async def code(headers: dict[str, str], p: str = path) -> tuple[int, dict[str, Any]]:
        r = await client.get(p, headers=headers)
        return r.status_code, r.json()

    good = signed_headers(path)
    for missing, expected in (
        ("OK-ACCESS-KEY", "50103"),
        ("OK-ACCESS-PASSPHRASE", "50104"),
        ("OK-ACCESS-SIGN", "50106"),
        ("OK-ACCESS-TIMESTAMP", "50107"),
    ):
        status, body = await code({k: v for k, v in good.items() if k != missing})
        assert (status, body["code"]) == (401, expected) and "data" not in body
    assert (await code(signed_headers(path, ts="1607418537715")))[1]["code"] == "50112"
    assert (await code(signed_headers(path, ts=iso_now(-31_000))))[1]["code"] == "50102"
    assert (await code(signed_headers(path, ts=iso_now(+31_000))))[1]["code"] == "50102"
    assert (await code(signed_headers(path, ts=iso_now(-20_000))))[0] == 200
    assert (await code(signed_headers(path, key="nope")))[1] == {
        "msg": 'Invalid "OK-ACCESS-KEY".',
        "code": "50111",
    }
    assert (await code(signed_headers(path, passphrase="wrong")))[1]["code"] == "50105"
    assert (await code(signed_headers(path, secret="not-the-secret")))[1]["code"] == "50113"
    # The signature covers the query string exactly as sent: a reordered query fails.
    h = signed_headers("/api/v5/trade/orders-history?instType=SPOT&limit=5")
    assert (await code(h, "/api/v5/trade/orders-history?limit=5&instType=SPOT"))[1]["code"] == "50113"
    assert (await code(h, "/api/v5/trade/orders-history?instType=SPOT&limit=5"))[0] == 200
    # No secret in any answer.
    for entry in v5sim.truth.pushes():
        text = repr(entry.data)
        assert DEMO_SECRET not in text and DEMO_PASSPHRASE not in text


async def test_clock_skew_gives_50102_unless_the_server_offset_is_used(
    v5sim: Simulator, client: httpx.AsyncClient
) -> None:
    v5sim.set_clock_skew(-90_000)  # the exchange's clock is 90 s behind ours
    path = "/api/v5/account/balance"
    r = await signed_get(client, path)
    assert (r.status_code, r.json()["code"]) == (401, "50102")
    (t,) = await ok(await client.get("/api/v5/public/time"))
    local = int(iso_now_ms())
    offset = int(t["ts"]) - local
    assert -95_000 < offset < -85_000
    assert (await signed_get(client, path, ts=iso_now(offset))).status_code == 200


def iso_now_ms() -> int:
    from datetime import UTC, datetime

    return int(datetime.now(UTC).timestamp() * 1000)


# ---- rate limits ------------------------------------------------------------------------------
@pytest.mark.parametrize("v5_sim_settings", [{"rate_window": 60.0}], indirect=True)
async def test_rate_limit_per_endpoint(v5sim: Simulator, client: httpx.AsyncClient) -> None:
    statuses = [(await client.get("/api/v5/public/time")).status_code for _ in range(12)]
    assert statuses == [200] * 10 + [429] * 2
    r = await client.get("/api/v5/public/time")
    assert r.json() == {"msg": "Too Many Requests", "code": "50011"}
    assert (await client.get("/api/v5/market/ticker?instId=BTC-USDT")).status_code == 200  # own bucket
    codes = [(await signed_get(client, "/api/v5/account/balance")).status_code for _ in range(11)]
    assert codes == [200] * 10 + [429]
    v5sim.reset_rate_limits()
    assert (await client.get("/api/v5/public/time")).status_code == 200


async def test_429_storm(v5sim: Simulator, client: httpx.AsyncClient) -> None:
    v5sim.rate_limit_storm(requests=3)
    got = [(await client.get("/api/v5/market/ticker?instId=BTC-USDT")).status_code for _ in range(4)]
    assert got == [429, 429, 429, 200]


# ---- orders and fills ---------------------------------------------------------------------------
async def _walk(client: httpx.AsyncClient, base: str, key: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = ""
    while True:
        path = base + (f"&after={after}" if after else "")
        page = await ok(await signed_get(client, path))
        assert len(page) <= 100
        out += page
        if len(page) < 100:
            return out
        after = page[-1][key]


async def test_order_history_windows_and_cursor_pages(v5sim: Simulator, client: httpx.AsyncClient) -> None:
    account = v5sim.demo_account
    now = v5sim.now_ms()
    week = await _walk(client, "/api/v5/trade/orders-history?instType=SPOT", "ordId")
    ids = [int(o["ordId"]) for o in week]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids)) and len(ids) > 100
    expected = [
        o
        for o in sorted(account.orders.values(), key=lambda o: -o.ord_id)
        if not o.is_open
        and o.u_time >= now - 7 * DAY_MS
        and not (o.state == "canceled" and not o.acc_fill_sz and o.u_time < now - 2 * HOUR_MS)
    ]
    assert ids == [o.ord_id for o in expected]
    by_id = {o.ord_id: o for o in expected}
    for o in week:
        model = by_id[int(o["ordId"])]
        assert (o["state"], o["accFillSz"], o["sz"], o["px"], o["side"], o["cTime"], o["uTime"]) == (
            model.state,
            _plain(model.acc_fill_sz),
            _plain(model.sz),
            _plain(model.px),
            model.side,
            str(model.c_time),
            str(model.u_time),
        )
        assert o["avgPx"] == ("" if not model.acc_fill_sz else _plain(model.avg_px))
        assert o["tdMode"] == "cash" and o["instType"] == "SPOT" and o["clOrdId"] == ""
    # Unfilled cancels within 2 h are there, older ones are not (§5.2).
    states = {(o["state"], o["accFillSz"]) for o in week}
    assert ("canceled", "0") in states and "filled" in {st for st, _ in states}
    unfilled = [o for o in account.orders.values() if o.state == "canceled" and not o.acc_fill_sz]
    assert any(o.u_time >= now - 2 * HOUR_MS for o in unfilled)
    assert any(o.u_time < now - 2 * HOUR_MS for o in unfilled)
    assert all(
        int(o["uTime"]) >= now - 2 * HOUR_MS
        for o in week
        if o["state"] == "canceled" and o["accFillSz"] == "0"
    )

    archive = await _walk(client, "/api/v5/trade/orders-history-archive?instType=SPOT", "ordId")
    assert len(archive) > len(week) and set(ids) <= {int(o["ordId"]) for o in archive}
    assert min(int(o["uTime"]) for o in archive) < now - 7 * DAY_MS

    # before = newer than the cursor; nearest records first taken, still newest first.
    cursor = ids[50]
    newer = await ok(
        await signed_get(client, f"/api/v5/trade/orders-history?instType=SPOT&before={cursor}&limit=10")
    )
    assert [int(o["ordId"]) for o in newer] == ids[40:50]
    filtered = await ok(
        await signed_get(client, "/api/v5/trade/orders-history?instType=SPOT&instId=ETH-BTC&state=filled")
    )
    assert filtered and all(o["instId"] == "ETH-BTC" and o["state"] == "filled" for o in filtered)

    missing = await signed_get(client, "/api/v5/trade/orders-history")
    assert (missing.status_code, missing.json()["code"]) == (400, "50014")
    assert (await signed_get(client, "/api/v5/trade/orders-history?instType=SPOT&limit=101")).json()[
        "code"
    ] == "51000"


async def test_pending_orders_and_fills(v5sim: Simulator, client: httpx.AsyncClient) -> None:
    account = v5sim.demo_account
    pending = await ok(await signed_get(client, "/api/v5/trade/orders-pending"))
    assert [int(o["ordId"]) for o in pending] == [o.ord_id for o in account.open_orders()]
    assert {o["state"] for o in pending} == {"live", "partially_filled"}
    placed = v5sim.place_order("ETH-BTC", "buy", "0.03", "0.5")
    pending2 = await ok(await signed_get(client, "/api/v5/trade/orders-pending?instId=ETH-BTC"))
    assert pending2[0]["ordId"] == placed["ordId"] and pending2[0]["state"] == "live"
    v5sim.fill_order(placed["ordId"], "0.2")
    v5sim.fill_order(placed["ordId"], "0.3", "0.0299")
    (one,) = await ok(await signed_get(client, f"/api/v5/trade/order?instId=ETH-BTC&ordId={placed['ordId']}"))
    assert (one["state"], one["accFillSz"], one["avgPx"], one["fillPx"], one["fillSz"]) == (
        "filled",
        "0.5",
        "0.02994",
        "0.0299",
        "0.3",
    )
    now = v5sim.now_ms()
    fills = await ok(await signed_get(client, "/api/v5/trade/fills?limit=100"))
    expected = [f for f in sorted(account.fills, key=lambda f: -f.bill_id) if f.ts >= now - 3 * DAY_MS][:100]
    assert [f["billId"] for f in fills] == [str(f.bill_id) for f in expected]
    assert fills[0]["ordId"] == placed["ordId"] and (fills[0]["fillPx"], fills[0]["fillSz"]) == (
        "0.0299",
        "0.3",
    )
    assert fills[0]["fee"] == "-0.00024" and fills[0]["feeCcy"] == "ETH" and fills[0]["subType"] == "1"
    hist = await _walk(client, "/api/v5/trade/fills-history?instType=SPOT", "billId")
    assert len(hist) == len([f for f in account.fills if f.ts >= now - 90 * DAY_MS]) > len(fills)
    (bal,) = await ok(await signed_get(client, "/api/v5/account/balance?ccy=ETH"))
    assert bal["details"][0]["cashBal"] == _plain(account.cash["ETH"])
    assert account.cash["ETH"] == Decimal("40") + Decimal("0.5") - Decimal("0.0004")


async def test_unknown_endpoint_and_method(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v5/trade/cancel-everything")
    assert r.status_code == 404
    assert (await client.post("/api/v5/market/ticker?instId=BTC-USDT")).status_code == 405


def test_demo_credentials_documented() -> None:
    assert okx_sign(DEMO_SECRET, "x") and DEMO_API_KEY and DEMO_PASSPHRASE


async def test_429_storm_http_200_form(v5sim: Simulator, client: httpx.AsyncClient) -> None:
    v5sim.rate_limit_storm(requests=1, http_status=200)
    r = await client.get("/api/v5/public/time")
    assert r.status_code == 200 and r.json()["code"] == "50011" and r.json()["data"] == []
    assert (await client.get("/api/v5/public/time")).json()["code"] == "0"


async def test_storm_for_seconds_then_recovers(v5sim: Simulator, client: httpx.AsyncClient) -> None:
    v5sim.rate_limit_storm(seconds=0.5)
    assert (await client.get("/api/v5/public/time")).status_code == 429
    deadline = asyncio.get_running_loop().time() + 10
    while (await client.get("/api/v5/public/time")).status_code == 429:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.1)


async def test_environment_header_50101(v5sim: Simulator, client: httpx.AsyncClient) -> None:
    path = "/api/v5/account/balance"
    demo = {**signed_headers(path), "x-simulated-trading": "1"}
    r = await client.get(path, headers=demo)
    assert (r.status_code, r.json()["code"]) == (401, "50101")
    live = {**signed_headers(path), "x-simulated-trading": "0"}  # what python-okx sends with flag "0"
    assert (await client.get(path, headers=live)).json()["code"] == "0"


@pytest.mark.parametrize("v5_sim_settings", [{"before_page": "latest"}], indirect=True)
async def test_before_page_modes(v5sim: Simulator, client: httpx.AsyncClient) -> None:
    ids = [o.ord_id for o in v5sim.demo_account.finished_orders(v5sim.now_ms(), 7 * DAY_MS)]
    path = f"/api/v5/trade/orders-history?instType=SPOT&before={ids[50]}&limit=10"
    latest = await ok(await signed_get(client, path))
    assert [int(o["ordId"]) for o in latest] == ids[:10]  # the latest, not the nearest
    starts = [
        int(r[0]) for r in await ok(await client.get("/api/v5/market/candles?instId=BTC-USDT&limit=300"))
    ]
    rows = await ok(await client.get(f"/api/v5/market/candles?instId=BTC-USDT&before={starts[20]}&limit=5"))
    assert [int(r[0]) for r in rows] == starts[:5]  # candles: before alone returns the latest


async def test_malformed_login_is_not_echoed(v5sim: Simulator) -> None:
    import json

    from websockets.asyncio.client import connect

    async with connect(v5sim.private_url) as ws:
        await ws.send('{"op": "login", "args": [{"passphrase": "' + DEMO_PASSPHRASE + '", }')
        err = json.loads(await ws.recv())
        assert err["code"] == "60012" and DEMO_PASSPHRASE not in err["msg"]
