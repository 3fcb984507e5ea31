"""Independent v5 clients against the simulator: ccxt's ``okx`` class and OKX's own SDK ``python-okx``.

Their answers must equal the simulator's truth (the REST answers it recorded) and its model. This
proves the simulator speaks v5 the way real clients expect (signing included: the private calls are
signed by the clients' own code, checked by the simulator's HMAC check).

Pointing them at loopback uses only supported options, no patching:

* ccxt: the constructor's ``urls={"api": {"rest": "http://127.0.0.1:PORT"}}`` replaces the
  ``https://{hostname}`` template that every okx REST call goes through (``okx.sign``), and
  ``options={"fetchMarkets": {"types": ["spot"]}}`` limits ``load_markets`` to SPOT (the simulator has
  only SPOT instruments; other types would answer an empty list anyway). With credentials set,
  ``load_markets`` also calls the signed ``GET /api/v5/asset/currencies``, which the simulator serves.
* python-okx: every API class takes ``domain=`` (the httpx ``base_url``) and ``flag="0"`` (live
  trading: header ``x-simulated-trading: 0``). Pass the other arguments by keyword: the positional
  ``use_server_time`` slot is deprecated and warns.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt_async
import pytest
from okx import Account as OkxAccount
from okx import MarketData as OkxMarket
from okx import PublicData as OkxPublic
from okx import Trade as OkxTrade

from recorder.simulator.okx_v5 import DEMO_API_KEY, DEMO_PASSPHRASE, DEMO_SECRET, Simulator
from recorder.simulator.okx_v5.account import DAY_MS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:okx")


def f(x: Decimal | str) -> float:
    return float(Decimal(x))


def last_rest(sim: Simulator, endpoint: str) -> Any:
    """The data of the last answer the simulator sent for ``endpoint`` (its truth)."""
    pushes = sim.truth.pushes(f"rest:{endpoint}")
    assert pushes, endpoint
    body = pushes[-1].data
    assert body["code"] == "0"
    return body["data"]


@pytest.fixture
async def exchange(v5sim: Simulator) -> AsyncIterator[Any]:
    ex = ccxt_async.okx({
        "apiKey": DEMO_API_KEY, "secret": DEMO_SECRET, "password": DEMO_PASSPHRASE,
        "urls": {"api": {"rest": v5sim.rest_url}},
        "options": {"fetchMarkets": {"types": ["spot"]}},
    })  # fmt: skip
    try:
        await ex.load_markets()
        yield ex
    finally:
        await ex.close()


async def test_ccxt_public_market_data(v5sim: Simulator, exchange: Any) -> None:
    assert sorted(exchange.markets) == ["BTC/USDT", "ETH/BTC", "ETH/USDT"]
    market = exchange.market("ETH/BTC")
    assert market["id"] == "ETH-BTC" and market["precision"]["price"] == f("0.00000001")
    assert market["limits"]["amount"]["min"] == f("0.001")
    await v5sim.advance(120)
    m = v5sim.market["btc_usdt"]

    t = await exchange.fetch_ticker("BTC/USDT")
    (sent,) = last_rest(v5sim, "market/ticker")
    assert (t["bid"], t["bidVolume"], t["ask"], t["askVolume"], t["last"], t["high"], t["low"], t["open"],
            t["baseVolume"], t["quoteVolume"], t["timestamp"]) == (
        f(sent["bidPx"]), f(sent["bidSz"]), f(sent["askPx"]), f(sent["askSz"]), f(sent["last"]),
        f(sent["high24h"]), f(sent["low24h"]), f(sent["open24h"]), f(sent["vol24h"]), f(sent["volCcy24h"]),
        int(sent["ts"]))  # fmt: skip
    bids, asks = m.book(400)
    assert (t["bid"], t["ask"], t["last"]) == (f(bids[0][0]), f(asks[0][0]), f(m.last))

    ob = await exchange.fetch_order_book("BTC/USDT", 400)
    assert [lv[:2] for lv in ob["bids"]] == [[f(p), f(a)] for p, a in bids]
    assert [lv[:2] for lv in ob["asks"]] == [[f(p), f(a)] for p, a in asks]
    (sent_book,) = last_rest(v5sim, "market/books")
    assert ob["timestamp"] == int(sent_book["ts"]) and len(ob["bids"]) == len(sent_book["bids"])

    trades = await exchange.fetch_trades("BTC/USDT", limit=100)
    model = sorted(m.trades, key=lambda x: x.tid)[-100:]
    assert [(x["id"], x["price"], x["amount"], x["side"], x["timestamp"]) for x in trades] == [
        (str(x.tid), f(x.price), f(x.amount), x.side.value, x.ts_ms) for x in model
    ]

    candles = await exchange.fetch_ohlcv("BTC/USDT", "1m", limit=100)
    rows = v5sim.market["btc_usdt"].klines[v5sim.kline_period("1m")]
    starts = sorted(t for t in rows if t <= v5sim.now_ms())[-100:]
    assert candles == [[t, *(f(v) for v in rows[t])] for t in starts]
    sent_rows = last_rest(v5sim, "market/candles")
    assert [c[0] for c in candles] == sorted(int(r[0]) for r in sent_rows)


async def test_ccxt_signed_balance_and_orders(v5sim: Simulator, exchange: Any) -> None:
    account = v5sim.demo_account
    v5sim.place_order("ETH-BTC", "sell", "0.05", "1.5")
    balance = await exchange.fetch_balance()
    frozen = account.frozen()
    for ccy, cash in account.cash.items():
        fz = frozen.get(ccy, Decimal(0))
        assert (balance[ccy]["total"], balance[ccy]["free"], balance[ccy]["used"]) == (
            f(cash),
            f(cash - fz),
            f(fz),
        )
    assert balance["ETH"]["used"] >= 1.5

    open_orders = await exchange.fetch_open_orders()
    model_open = account.open_orders()
    assert sorted(o["id"] for o in open_orders) == sorted(str(o.ord_id) for o in model_open)
    by_id = {str(o.ord_id): o for o in model_open}
    for o in open_orders:
        mo = by_id[o["id"]]
        assert (
            o["status"],
            o["price"],
            o["amount"],
            o["filled"],
            o["remaining"],
            o["side"],
            o["timestamp"],
        ) == (
            "open",
            f(mo.px or 0),
            f(mo.sz),
            f(mo.acc_fill_sz),
            f(mo.sz - mo.acc_fill_sz),
            mo.side,
            mo.c_time,
        )

    now = v5sim.now_ms()
    finished = account.finished_orders(now, 7 * DAY_MS)
    for fetch, state, status in (
        (exchange.fetch_closed_orders, "filled", "closed"),
        (exchange.fetch_canceled_orders, "canceled", "canceled"),
    ):
        got = await fetch()  # ccxt asks orders-history with state=filled / state=canceled
        model = [o for o in finished if o.state == state][:100]
        assert len(model) > 5
        assert sorted(o["id"] for o in got) == sorted(str(o.ord_id) for o in model)
        by_id2 = {str(o.ord_id): o for o in model}
        for o in got:
            mo = by_id2[o["id"]]
            assert o["status"] == status and o["symbol"] == mo.inst_id.replace("-", "/")
            assert (o["filled"], o["amount"], o["price"], o["timestamp"]) == (
                f(mo.acc_fill_sz),
                f(mo.sz),
                f(mo.px or 0),
                mo.c_time,
            )
            assert o["average"] == (None if mo.avg_px is None else f(mo.avg_px))
            if mo.fee:
                assert o["fee"] == {"cost": -f(mo.fee), "currency": mo.fee_ccy}
        sent = last_rest(v5sim, "trade/orders-history")
        assert [o["ordId"] for o in sent] == [str(o.ord_id) for o in model]


async def test_ccxt_sees_auth_errors(v5sim: Simulator) -> None:
    import ccxt

    ex = ccxt_async.okx({"apiKey": DEMO_API_KEY, "secret": "wrong", "password": DEMO_PASSPHRASE,
                         "urls": {"api": {"rest": v5sim.rest_url}}})  # fmt: skip
    try:
        with pytest.raises(ccxt.AuthenticationError):
            await ex.private_get_account_balance()
        ex.secret = DEMO_SECRET
        ex.password = "wrong-passphrase"
        with pytest.raises(ccxt.AuthenticationError):
            await ex.private_get_account_balance()
    finally:
        await ex.close()


async def test_python_okx_market_and_account(v5sim: Simulator) -> None:
    await v5sim.advance(60)
    url = v5sim.rest_url
    creds = {"api_key": DEMO_API_KEY, "api_secret_key": DEMO_SECRET, "passphrase": DEMO_PASSPHRASE}

    def run() -> dict[str, Any]:
        market = OkxMarket.MarketAPI(flag="0", domain=url)
        public = OkxPublic.PublicAPI(flag="0", domain=url)
        acc = OkxAccount.AccountAPI(flag="0", domain=url, **creds)
        trade = OkxTrade.TradeAPI(flag="0", domain=url, **creds)
        try:
            out: dict[str, Any] = {
                "ticker": market.get_ticker("ETH-USDT"),
                "tickers": market.get_tickers("SPOT"),
                "books": market.get_orderbook("ETH-USDT", sz="400"),
                "trades": market.get_trades("ETH-USDT", limit="200"),
                "candles": market.get_candlesticks("ETH-USDT", bar="5m", limit="50"),
                "instruments": public.get_instruments("SPOT"),
                "time": public.get_system_time(),
                "balance": acc.get_account_balance(),
                "pending": trade.get_order_list(instType="SPOT"),
                "fills": trade.get_fills(instType="SPOT"),
            }
            history: list[dict[str, Any]] = []
            after = ""
            while True:
                page = trade.get_orders_history_archive("SPOT", after=after, limit="100")
                assert page["code"] == "0", page
                history += page["data"]
                if len(page["data"]) < 100:
                    break
                after = page["data"][-1]["ordId"]
            out["archive"] = history
            return out
        finally:
            for c in (market, public, acc, trade):
                c.close()

    got = await asyncio.to_thread(run)
    for key in (
        "ticker",
        "tickers",
        "books",
        "trades",
        "candles",
        "instruments",
        "balance",
        "pending",
        "fills",
    ):
        assert got[key]["code"] == "0", got[key]
    # What the SDK returned is exactly what the simulator recorded as sent ...
    assert got["ticker"]["data"] == last_rest(v5sim, "market/ticker")
    assert got["books"]["data"] == last_rest(v5sim, "market/books")
    assert got["balance"]["data"] == last_rest(v5sim, "account/balance")
    # ... and that equals the model.
    m = v5sim.market["eth_usdt"]
    bids, asks = m.book(400)
    book = got["books"]["data"][0]
    plain = [(format(p.normalize(), "f"), format(a.normalize(), "f")) for p, a in bids]
    assert [(lv[0], lv[1]) for lv in book["bids"]] == plain
    assert [f(lv[0]) for lv in book["asks"]] == [f(p) for p, _ in asks]
    assert got["ticker"]["data"][0]["last"] == format(m.last.normalize(), "f")
    assert [x["tradeId"] for x in got["trades"]["data"]] == [str(t.tid) for t in reversed(m.trades)][:200]
    rows = m.klines[v5sim.kline_period("5m")]
    starts = sorted((t for t in rows if t <= v5sim.now_ms()), reverse=True)[:50]
    assert [int(r[0]) for r in got["candles"]["data"]] == starts
    assert [f(x) for x in got["candles"]["data"][3][1:6]] == [f(v) for v in rows[starts[3]]]
    assert [i["instId"] for i in got["instruments"]["data"]] == ["BTC-USDT", "ETH-USDT", "ETH-BTC"]

    account = v5sim.demo_account
    details = {d["ccy"]: d for d in got["balance"]["data"][0]["details"]}
    assert {c: Decimal(d["cashBal"]) for c, d in details.items()} == {
        c: v for c, v in account.cash.items() if v
    }
    assert [o["ordId"] for o in got["pending"]["data"]] == [str(o.ord_id) for o in account.open_orders()]
    now = v5sim.now_ms()
    assert [x["billId"] for x in got["fills"]["data"]] == [
        str(x.bill_id) for x in account.recent_fills(now, 3 * DAY_MS)
    ][:100]
    assert [o["ordId"] for o in got["archive"]] == [
        str(o.ord_id) for o in account.finished_orders(now, 90 * DAY_MS)
    ]
    assert len(got["archive"]) > 100
