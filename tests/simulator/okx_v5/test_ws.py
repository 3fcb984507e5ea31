"""The v5 WebSocket URLs with plain websockets and raw JSON: books by seqId, checksum, faults, login."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect

from recorder.simulator.okx_v5 import DEMO_API_KEY, DEMO_PASSPHRASE, DEMO_SECRET, Simulator

from .helpers import Book, is_push, okx_checksum, okx_sign, recv, recv_until, subscribe

BOOKS = {"channel": "books", "instId": "BTC-USDT"}


async def _drain_books(ws: Any, n: int, book: Book, *, check_crc: bool) -> list[dict[str, Any]]:
    """Receive ``n`` books messages, apply them, check the links (and checksums); return their data."""
    out = []
    last_seq: int | None = None
    while len(out) < n:
        msg = await recv_until(ws, lambda m: is_push(m, "books"))
        (data,) = msg["data"]
        snapshot = msg["action"] == "snapshot"
        if snapshot:
            assert data["prevSeqId"] == -1
        else:
            assert data["prevSeqId"] == last_seq
        last_seq = data["seqId"]
        book.apply(data, snapshot)
        bids, asks = book.sides()
        if check_crc:
            assert data["checksum"] == okx_checksum(bids, asks)
        else:
            assert data["checksum"] == 0
        out.append(data)
    return out


@pytest.mark.parametrize("v5_sim_settings", [{"checksum": "crc32"}, {"checksum": "zero"}], indirect=True)
async def test_books_snapshot_updates_equal_the_truth(v5sim: Simulator) -> None:
    async with connect(v5sim.public_url) as ws:
        await subscribe(ws, BOOKS)
        ack = await recv(ws)
        assert ack["event"] == "subscribe" and ack["arg"] == BOOKS and len(ack["connId"]) == 8
        book = Book()
        (snap,) = await _drain_books(ws, 1, book, check_crc=v5sim.settings.checksum == "crc32")
        assert len(snap["bids"]) <= 400 and len(snap["asks"]) <= 400 and len(snap["bids"]) > 300
        assert all(isinstance(lv[0], str) and lv[2] == "0" for lv in snap["bids"] + snap["asks"])
        truth = v5sim.book_truth("BTC-USDT")
        assert book.pairs() == (truth[-1].bids, truth[-1].asks) and truth[-1].seq == snap["seqId"]
        await v5sim.advance(60, "BTC-USDT")
        # replay: every update's book equals the exchange's book at that message
        truth = v5sim.book_truth("BTC-USDT")
        assert len(truth) > 40
        replay = Book()
        replay.apply(snap, True)
        for t in truth[1:]:
            msg = await recv_until(ws, lambda m: is_push(m, "books"))
            (data,) = msg["data"]
            assert msg["action"] == "update" and data["seqId"] == t.seq
            replay.apply(data, False)
            assert replay.pairs() == (t.bids, t.asks)
            bids, asks = replay.sides()
            assert data["checksum"] == (okx_checksum(bids, asks) if v5sim.settings.checksum == "crc32" else 0)
        model_bids, model_asks = v5sim.market["btc_usdt"].book(400)
        assert len(replay.bids) == len(model_bids) and len(replay.asks) == len(model_asks)


async def test_sequence_gap_checksum_fault_and_reset(v5sim: Simulator) -> None:
    async with connect(v5sim.public_url) as ws:
        await subscribe(ws, BOOKS)
        await recv(ws)
        snap = (await recv_until(ws, lambda m: is_push(m, "books")))["data"][0]
        last = snap["seqId"]
        v5sim.inject_gap("BTC-USDT")
        steps = await v5sim.advance(5, "BTC-USDT")
        assert any(s.changes for s in steps)
        msg = (await recv_until(ws, lambda m: is_push(m, "books")))["data"][0]
        assert msg["prevSeqId"] != last and msg["prevSeqId"] > last  # one update was not sent
        faults = v5sim.truth.faults()
        assert [f.kind for f in faults] == ["sequence_gap"]
        # a resubscribe gives a fresh snapshot equal to the exchange's book
        await ws.send(json.dumps({"op": "unsubscribe", "args": [BOOKS]}))
        await ws.send(json.dumps({"op": "subscribe", "args": [BOOKS]}))
        snap2 = (await recv_until(ws, lambda m: is_push(m, "books") and m["action"] == "snapshot"))["data"][0]
        book = Book()
        book.apply(snap2, True)
        truth = v5sim.book_truth("BTC-USDT")[-1]
        assert book.pairs() == (truth.bids, truth.asks) and snap2["seqId"] == truth.seq

        v5sim.inject_bad_checksum("BTC-USDT")
        await v5sim.advance(5, "BTC-USDT")
        bad = (await recv_until(ws, lambda m: is_push(m, "books")))["data"][0]
        book.apply(bad, False)
        assert bad["checksum"] != 0 and bad["checksum"] != okx_checksum(*book.sides())

        before = v5sim.feeds["BTC-USDT"].seq_id
        v5sim.reset_sequence("BTC-USDT", 3)
        await v5sim.advance(10, "BTC-USDT")
        reset = await recv_until(ws, lambda m: is_push(m, "books") and m["data"][0]["seqId"] == 3)
        assert reset["data"][0]["prevSeqId"] == before and reset["data"][0]["seqId"] == 3
        after = (await recv_until(ws, lambda m: is_push(m, "books")))["data"][0]
        assert after["prevSeqId"] == 3 and after["seqId"] > 3


@pytest.mark.parametrize("v5_sim_settings", [{"book_heartbeat": 0.3}], indirect=True)
async def test_book_heartbeat(v5sim: Simulator) -> None:
    async with connect(v5sim.public_url) as ws:
        await subscribe(ws, BOOKS, {"channel": "books5", "instId": "BTC-USDT"})
        snap = (await recv_until(ws, lambda m: is_push(m, "books")))["data"][0]
        hb = await recv_until(ws, lambda m: is_push(m, "books"), timeout=10)
        data = hb["data"][0]
        assert hb["action"] == "update" and data["asks"] == [] and data["bids"] == []
        assert data["seqId"] == data["prevSeqId"] == snap["seqId"]
        b5 = await recv_until(ws, lambda m: is_push(m, "books5"))
        assert (
            "action" not in b5 and len(b5["data"][0]["bids"]) == 5 and b5["data"][0]["instId"] == "BTC-USDT"
        )


async def test_books5_bbo_tickers_trades_equal_the_truth(v5sim: Simulator) -> None:
    inst = "ETH-USDT"
    args = [{"channel": c, "instId": inst} for c in ("books5", "bbo-tbt", "tickers", "trades")]
    async with connect(v5sim.public_url) as ws:
        await subscribe(ws, *args)
        got: list[dict[str, Any]] = []
        acks = 0
        while acks < 4:
            msg = await recv(ws)
            acks += msg.get("event") == "subscribe"
            if "data" in msg:
                got.extend({"channel": msg["arg"]["channel"], **d} for d in msg["data"])
        await v5sim.advance(80, inst)
        await ws.send("ping")  # frames leave in order: everything pushed before the pong is in
        while (msg := await recv(ws)) != "pong":
            if "data" in msg:
                got.extend({"channel": msg["arg"]["channel"], **d} for d in msg["data"])
        truth = [
            {"channel": p.channel.split(":")[0], **p.data}
            for p in v5sim.truth.pushes()
            if p.channel.endswith(f":{inst}")
        ]
        assert got == truth
        kinds = {g["channel"] for g in got}
        assert kinds == {"books5", "bbo-tbt", "tickers", "trades"}
        trades = [g for g in got if g["channel"] == "trades"]
        assert all(int(t["count"]) >= 1 and isinstance(t["seqId"], int) for t in trades)
        bbo = [g for g in got if g["channel"] == "bbo-tbt"][-1]
        bids, asks = v5sim.market["eth_usdt"].book(1)
        assert (bbo["bids"][0][0], bbo["asks"][0][0]) == (
            format(bids[0][0].normalize(), "f"),
            format(asks[0][0].normalize(), "f"),
        )
        ticker = [g for g in got if g["channel"] == "tickers"][-1]
        assert ticker["bidPx"] == bbo["bids"][0][0] and ticker["askPx"] == bbo["asks"][0][0]


@pytest.mark.parametrize("v5_sim_settings", [{"candle_interval": 0.1}], indirect=True)
async def test_candles_and_trades_all_on_business(v5sim: Simulator) -> None:
    async with connect(v5sim.business_url) as ws:
        await subscribe(
            ws, {"channel": "candle1m", "instId": "BTC-USDT"}, {"channel": "trades-all", "instId": "BTC-USDT"}
        )
        await recv_until(ws, lambda m: m.get("event") == "subscribe" and m["arg"]["channel"] == "trades-all")
        await v5sim.advance(40, "BTC-USDT")
        candle = await recv_until(ws, lambda m: is_push(m, "candle1m"))
        row = candle["data"][0]
        assert len(row) == 9 and row[8] in ("0", "1") and all(isinstance(x, str) for x in row)
        truth_rows = [p.data for p in v5sim.truth.pushes("candle1m:BTC-USDT")]
        assert row in truth_rows
        m = v5sim.market["btc_usdt"]
        o, h, lo, c, vol = m.klines[v5sim.kline_period("1m")][int(row[0])]
        latest = (await recv_until(ws, lambda x: is_push(x, "candle1m") and x["data"][0][0] == row[0]))[
            "data"
        ][0]
        assert latest[1:6] == [format(v.normalize(), "f") for v in (o, h, lo, c, vol)]
        trades_all = [p.data for p in v5sim.truth.pushes("trades-all:BTC-USDT")]
        assert trades_all and all("count" not in t for t in trades_all)
        assert [t["tradeId"] for t in trades_all] == sorted((t["tradeId"] for t in trades_all), key=int)
        # public channels are refused on /business
        await subscribe(ws, {"channel": "tickers", "instId": "BTC-USDT"})
        err = await recv_until(ws, lambda x: x.get("event") == "error")
        assert err["code"] == "64002"


async def test_subscribe_errors(v5sim: Simulator) -> None:
    async with connect(v5sim.public_url) as ws:
        await ws.send('{"op": "subscribe", "argss": [}')
        assert (await recv(ws))["code"] == "60012"
        await ws.send(
            json.dumps({"id": "77", "op": "subscribe", "args": [{"channel": "ticker", "instId": "BTC-USDT"}]})
        )
        err = await recv(ws)
        assert (err["event"], err["code"], err["id"]) == ("error", "60018", "77") and "arg" not in err
        assert "channel:ticker,instId:BTC-USDT" in err["msg"]
        await subscribe(ws, {"channel": "books", "instId": "DOGE-USDT"})
        assert (await recv(ws))["code"] == "60018"
        await subscribe(ws, {"channel": "candle1m", "instId": "BTC-USDT"})
        assert (await recv(ws))["code"] == "64001"
        await subscribe(ws, {"channel": "books-l2-tbt", "instId": "BTC-USDT"})
        assert (await recv(ws))["code"] == "64003"
        await ws.send(json.dumps({"op": "subscrib", "args": [BOOKS]}))
        assert (await recv(ws))["code"] == "60019"
        v5sim.refuse_subscription("tickers", "BTC-USDT", "60018")
        await subscribe(ws, {"channel": "tickers", "instId": "BTC-USDT"})
        assert (await recv(ws))["code"] == "60018"
        await subscribe(ws, {"channel": "tickers", "instId": "BTC-USDT"})
        assert (await recv(ws))["event"] == "subscribe"


@pytest.mark.parametrize("v5_sim_settings", [{"ws_requests_per_hour": 3}], indirect=True)
async def test_request_limit_60014(v5sim: Simulator) -> None:
    async with connect(v5sim.public_url) as ws:
        for _ in range(3):
            await subscribe(ws, {"channel": "instruments", "instType": "SPOT"})
        events = [m for m in [await recv(ws) for _ in range(6)] if "event" in m]
        assert [e["event"] for e in events] == ["subscribe"] * 3
        await subscribe(ws, {"channel": "instruments", "instType": "SPOT"})
        err = await recv_until(ws, lambda m: m.get("event") == "error")
        assert err["code"] == "60014"


def _login_args(ts: str | None = None, secret: str = DEMO_SECRET, passphrase: str = DEMO_PASSPHRASE,
                key: str = DEMO_API_KEY) -> str:  # fmt: skip
    ts = ts or str(int(time.time()))
    return json.dumps(
        {
            "op": "login",
            "args": [
                {
                    "apiKey": key,
                    "passphrase": passphrase,
                    "timestamp": ts,
                    "sign": okx_sign(secret, ts + "GET/users/self/verify"),
                }
            ],
        }
    )


async def test_login_private_channels(v5sim: Simulator) -> None:
    async with connect(v5sim.private_url) as ws:
        await subscribe(ws, {"channel": "account"})
        assert (await recv(ws))["code"] == "60011"
        for args, code in (
            (_login_args(secret="x"), "60007"),
            (_login_args(passphrase="x"), "60024"),
            (_login_args(key="x"), "60005"),
            (_login_args(ts=str(int(time.time()) - 60)), "60006"),
            (_login_args(ts="soon"), "60004"),
        ):
            await ws.send(args)
            assert (await recv(ws))["code"] == code
        await ws.send(_login_args(ts=f"{time.time():.3f}"))  # decimal seconds are accepted too
        ok = await recv(ws)
        assert (ok["event"], ok["code"], ok["msg"]) == ("login", "0", "")
        await ws.send(_login_args())
        assert (await recv(ws))["code"] == "60031"
        await subscribe(ws, {"channel": "account"}, {"channel": "orders", "instType": "SPOT"})
        bal = await recv_until(ws, lambda m: is_push(m, "account"))
        details = {d["ccy"]: d for d in bal["data"][0]["details"]}
        assert details["USDT"]["cashBal"] == format(v5sim.demo_account.cash["USDT"].normalize(), "f")
        placed = v5sim.place_order("BTC-USDT", "buy", "6000", "0.01")
        pushed: dict[str, Any] = {}
        while len(pushed) < 2:
            msg = await recv_until(ws, lambda m: is_push(m, "orders") or is_push(m, "account"))
            pushed[msg["arg"]["channel"]] = msg
        order, bal2 = pushed["orders"], pushed["account"]
        assert order["data"][0]["ordId"] == placed["ordId"] and order["data"][0]["state"] == "live"
        usdt = next(d for d in bal2["data"][0]["details"] if d["ccy"] == "USDT")
        assert float(usdt["frozenBal"]) > float(details["USDT"]["frozenBal"])
    async with connect(v5sim.public_url) as ws:
        await subscribe(ws, {"channel": "account"})
        assert (await recv(ws))["code"] == "60018"


async def test_ping_pong_and_connid(v5sim: Simulator) -> None:
    async with connect(v5sim.public_url) as ws:
        await ws.send("ping")
        assert await asyncio.wait_for(ws.recv(), 5) == "pong"


@pytest.mark.parametrize("v5_sim_settings", [{"idle_timeout": 1.5}], indirect=True)
async def test_idle_close_4004_and_pings_keep_alive(v5sim: Simulator) -> None:
    async with connect(v5sim.public_url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4004
    async with connect(v5sim.public_url) as ws:
        for _ in range(15):  # 15 x 0.2 s > 1.5 s: the pings keep it open
            await ws.send("ping")
            assert await asyncio.wait_for(ws.recv(), 5) == "pong"
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("v5_sim_settings", [{"idle_timeout": 0.6, "pings_keep_alive": False}], indirect=True)
async def test_idle_close_when_pings_do_not_count(v5sim: Simulator) -> None:
    async with connect(v5sim.public_url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            for _ in range(50):
                await ws.send("ping")
                await asyncio.wait_for(ws.recv(), 5)
                await asyncio.sleep(0.1)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4004


@pytest.mark.parametrize("v5_sim_settings", [{"notice_close_code": 4099}], indirect=True)
async def test_notice_then_close(v5sim: Simulator) -> None:
    async with connect(v5sim.public_url) as pub, connect(v5sim.business_url) as biz:
        await subscribe(pub, {"channel": "tickers", "instId": "BTC-USDT"})
        await recv(pub)
        await subscribe(biz, {"channel": "candle1m", "instId": "BTC-USDT"})
        await recv(biz)
        assert v5sim.notice(close_after=0.3) == 1  # not on /business by default
        notice = await recv_until(pub, lambda m: m.get("event") == "notice")
        assert notice["code"] == "64008" and "service upgrade" in notice["msg"]
        with pytest.raises(websockets.ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(pub.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4099
        assert biz.state is websockets.State.OPEN
    import httpx

    async with httpx.AsyncClient(base_url=v5sim.rest_url) as c:
        status = (await c.get("/api/v5/system/status")).json()["data"]
        assert status[0]["state"] == "ongoing" and status[0]["serviceType"] == "0"


async def test_drop_and_stall(v5sim: Simulator) -> None:
    async with connect(v5sim.public_url) as ws:
        await subscribe(ws, {"channel": "tickers", "instId": "BTC-USDT"})
        await recv(ws)
        assert v5sim.drop_connections() == 1
        with pytest.raises(websockets.ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is None  # no close frame: an abrupt drop
    async with connect(v5sim.public_url) as ws:
        await subscribe(ws, BOOKS)
        snap = (await recv_until(ws, lambda m: is_push(m, "books")))["data"][0]
        v5sim.stall()
        await v5sim.advance(20, "BTC-USDT")
        await ws.send("ping")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)
        v5sim.faults.resume()
        await v5sim.advance(5, "BTC-USDT")
        msg = (await recv_until(ws, lambda m: is_push(m, "books")))["data"][0]
        assert msg["prevSeqId"] != snap["seqId"]  # what was not sent during the stall is a gap
        await ws.send("ping")
        await recv_until(ws, lambda m: m == "pong")


async def test_instrument_state_change_and_status_channel(v5sim: Simulator) -> None:
    import httpx

    async with connect(v5sim.public_url) as ws:
        await subscribe(ws, {"channel": "instruments", "instType": "SPOT"}, {"channel": "status"})
        first = await recv_until(ws, lambda m: is_push(m, "instruments"))
        assert {i["state"] for i in first["data"]} == {"live"}
        await recv_until(ws, lambda m: m.get("event") == "subscribe" and m["arg"]["channel"] == "status")
        v5sim.set_instrument_state("ETH-BTC", "suspend")
        change = await recv_until(ws, lambda m: is_push(m, "instruments"))
        assert [(i["instId"], i["state"]) for i in change["data"]] == [("ETH-BTC", "suspend")]
        v5sim.notice(close_after=30)
        status = await recv_until(ws, lambda m: is_push(m, "status"))
        assert status["data"][0]["state"] == "ongoing" and status["data"][0]["serviceType"] == "0"
        notice = await recv_until(ws, lambda m: m.get("event") == "notice")
        assert notice["code"] == "64008"
    async with httpx.AsyncClient(base_url=v5sim.rest_url) as client:
        data = (await client.get("/api/v5/public/instruments?instType=SPOT&instId=ETH-BTC")).json()["data"]
        assert data[0]["state"] == "suspend"


async def test_candle_close_pushed_once_with_confirm(v5sim: Simulator) -> None:
    """A fake clock crosses a minute: the closed candle comes once more with confirm "1", then not again."""
    from datetime import timedelta

    from recorder.simulator.okx_v5.server import Simulator as Sim

    base = v5sim.clock()
    start = base.replace(second=50, microsecond=0)
    now = [start]
    sim = Sim(v5sim.settings.replace(candle_interval=3600.0), clock=lambda: now[0])  # pushes by hand
    async with sim, connect(sim.business_url) as ws:
        await subscribe(ws, {"channel": "candle1m", "instId": "BTC-USDT"})
        first = await recv_until(ws, lambda m: is_push(m, "candle1m"))
        ts0 = first["data"][0][0]
        assert first["data"][0][8] == "0"
        now[0] = start + timedelta(seconds=15)  # into the next minute, no trade there yet
        sim.push_candles()
        closed = await recv_until(ws, lambda m: is_push(m, "candle1m"))
        assert closed["data"][0][0] == ts0 and closed["data"][0][8] == "1"
        sim.push_candles()
        sim.push_candles()
        await ws.send("ping")
        rest = []
        while (msg := await recv(ws)) != "pong":
            rest.append(msg)
        assert rest == []  # nothing more until the new minute has a trade
        await sim.advance(30, "BTC-USDT")
        sim.push_candles()
        forming = await recv_until(ws, lambda m: is_push(m, "candle1m"))
        assert int(forming["data"][0][0]) == int(ts0) + 60_000 and forming["data"][0][8] == "0"


@pytest.mark.parametrize("v5_sim_settings", [{"tbt_allowed": True}], indirect=True)
async def test_tbt_books_when_the_tier_allows(v5sim: Simulator) -> None:
    async with connect(v5sim.public_url) as ws:
        await subscribe(ws, {"channel": "books-l2-tbt", "instId": "BTC-USDT"})
        snap = await recv_until(ws, lambda m: is_push(m, "books-l2-tbt"))
        assert snap["action"] == "snapshot" and snap["data"][0]["prevSeqId"] == -1
        await v5sim.advance(10, "BTC-USDT")
        upd = await recv_until(ws, lambda m: is_push(m, "books-l2-tbt"))
        assert upd["action"] == "update" and upd["data"][0]["prevSeqId"] == snap["data"][0]["seqId"]
        await subscribe(ws, {"channel": "books50-l2-tbt", "instId": "BTC-USDT"})
        assert (await recv_until(ws, lambda m: m.get("event") == "error"))["code"] == "60018"
