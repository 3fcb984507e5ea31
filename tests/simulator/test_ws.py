"""The WebSocket endpoint, spoken to with a plain websockets client and raw JSON."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import zlib
from decimal import Decimal

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from recorder.simulator import DEMO_API_KEY, DEMO_SECRET, Simulator, SimulatorSettings
from recorder.simulator.wire import exchange_hhmmss
from tests.simulator.helpers import (
    book_apply,
    book_levels,
    channel_of,
    decode,
    md5_sign,
    recv,
    recv_until,
    truth_levels,
)


@pytest.fixture
def simulator_settings(
    request: pytest.FixtureRequest, simulator_settings: SimulatorSettings
) -> SimulatorSettings:
    # No clock: tests drive the market with sim.advance() so every push is known.
    return dataclasses.replace(simulator_settings, updates_per_second=0, **getattr(request, "param", {}))


def _ack(channel: str) -> list[dict[str, object]]:
    return [{"binary": 0, "channel": "addChannel", "data": {"result": True, "channel": channel}}]


async def test_add_channel_json_is_acked_and_first_depth_push_is_the_full_book(simulator: Simulator) -> None:
    ch = "ok_sub_spot_btc_usdt_depth"
    async with connect(simulator.ws_url) as ws:
        await ws.send(json.dumps({"event": "addChannel", "channel": ch}))
        assert await recv(ws) == _ack(ch)
        first = await recv(ws)
        assert [o["channel"] for o in first] == [ch]
        data = first[0]["data"]
        bids, asks = simulator.market["btc_usdt"].book()
        assert [[Decimal(p), Decimal(a)] for p, a in data["bids"]] == [[p, a] for p, a in bids]
        # asks are sent highest first, as documented for depth
        assert [[Decimal(p), Decimal(a)] for p, a in data["asks"]] == [[p, a] for p, a in reversed(asks)]
        assert all(isinstance(x, str) for lvl in data["bids"] + data["asks"] for x in lvl)
        assert isinstance(data["timestamp"], int)
        assert 100 < len(data["bids"]) <= 200


async def test_single_quoted_request_and_list_of_requests_are_accepted(simulator: Simulator) -> None:
    async with connect(simulator.ws_url) as ws:
        await ws.send("{'event':'addChannel','channel':'ok_sub_spot_ltc_btc_deals'}")
        assert await recv(ws) == _ack("ok_sub_spot_ltc_btc_deals")
        chans = ["ok_sub_spot_eth_btc_deals", "ok_sub_spot_eth_btc_kline_1min"]
        await ws.send(json.dumps([{"event": "addChannel", "channel": c} for c in chans]))
        assert [await recv(ws), await recv(ws)] == [_ack(c) for c in chans]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            '{"event":"addChannel","channel":"ok_sub_spot_btc_usdt_nonsense"}',
            [{"binary": 0, "channel": "ok_sub_spot_btc_usdt_nonsense", "success": False, "errorcode": 10015}],
        ),
        (
            '{"event":"addChannel","channel":"ok_sub_spot_xrp_usdt_ticker"}',
            [{"binary": 0, "channel": "ok_sub_spot_xrp_usdt_ticker", "success": False, "errorcode": 10015}],
        ),
        (
            '{"event":"addChannel","channel":"ok_sub_spot_btc_usdt_order"}',
            [{"binary": 0, "channel": "ok_sub_spot_btc_usdt_order", "success": False, "errorcode": 10017}],
        ),
        (
            '{"event":"addChannel"}',
            [{"binary": 0, "channel": "addChannel", "success": False, "errorcode": 10000}],
        ),
        ('{"event":"addChannel",', [{"binary": 0, "channel": "", "success": False, "errorcode": 20107}]),
        (
            '{"event":"subscribe","channel":"x"}',
            [{"binary": 0, "channel": "subscribe", "success": False, "errorcode": 20103}],
        ),
        ("[1]", [{"binary": 0, "channel": "", "success": False, "errorcode": 20101}]),
        (
            '{"event":"login","parameters":{"api_key":"nobody","sign":"ABC"}}',
            [{"binary": 0, "channel": "login", "success": False, "errorcode": 10005}],
        ),
        (
            '{"event":"login","parameters":{"api_key":"' + DEMO_API_KEY + '","sign":"0123"}}',
            [{"binary": 0, "channel": "login", "success": False, "errorcode": 10005}],
        ),
        ('{"event":"login"}', [{"binary": 0, "channel": "login", "success": False, "errorcode": 10000}]),
    ],
)
async def test_error_acks_carry_the_documented_websocket_codes(
    simulator: Simulator, raw: str, expected: object
) -> None:
    async with connect(simulator.ws_url) as ws:
        await ws.send(raw)
        assert await recv(ws) == expected


async def test_ping_is_answered_with_pong(simulator: Simulator) -> None:
    async with connect(simulator.ws_url) as ws:
        await ws.send('{"event":"ping"}')
        assert await recv(ws) == {"event": "pong"}


async def test_login_then_order_and_balance_pushes_follow_fills(simulator: Simulator) -> None:
    async with connect(simulator.ws_url) as ws:
        await ws.send(
            json.dumps(
                {
                    "event": "login",
                    "parameters": {
                        "api_key": DEMO_API_KEY,
                        "sign": md5_sign({"api_key": DEMO_API_KEY}, DEMO_SECRET),
                    },
                }
            )
        )
        assert await recv(ws) == [{"channel": "login", "data": {"result": True}}]
        order = simulator.place_order("ltc_btc", "buy", "0.008", "2")
        placed = await recv(ws)
        assert [o["channel"] for o in placed] == ["ok_sub_spot_ltc_btc_order", "ok_sub_spot_ltc_btc_balance"]
        assert placed[0]["data"]["orderId"] == order.order_id
        assert placed[0]["data"]["status"] == 0
        assert placed[0]["data"]["tradeAmount"] == "2"
        assert placed[0]["data"]["tradeUnitPrice"] == "0.008"
        acct = simulator.demo_account
        assert placed[1]["data"]["info"]["freezed"]["btc"] == str(acct.freezed["btc"].normalize())
        simulator.fill_order(order.order_id, "0.5")
        filled = await recv(ws)
        assert filled[0]["data"]["completedTradeAmount"] == "0.5"
        assert filled[0]["data"]["status"] == 1
        assert Decimal(filled[1]["data"]["info"]["free"]["ltc"]) == acct.free["ltc"]


async def test_binary_request_switches_to_raw_deflate_frames(simulator: Simulator) -> None:
    ch = "ok_sub_spot_eth_btc_ticker"
    async with connect(simulator.ws_url) as ws:
        await ws.send(json.dumps({"event": "addChannel", "channel": ch, "binary": "1"}))
        ack = await asyncio.wait_for(ws.recv(), 10)
        assert isinstance(ack, bytes)
        assert json.loads(zlib.decompressobj(-zlib.MAX_WBITS).decompress(ack)) == _ack(ch)
        ticker = decode(await asyncio.wait_for(ws.recv(), 10))
        sent = simulator.truth.pushes(ch)[-1]
        assert ticker == [{"channel": ch, "data": sent.data}]
        assert set(sent.data) == {
            "buy",
            "sell",
            "last",
            "high",
            "low",
            "vol",
            "change",
            "dayHigh",
            "dayLow",
            "timestamp",
        }


@pytest.mark.parametrize("simulator_settings", [dict(compress_always=True)], indirect=True)
async def test_compress_always_sends_every_frame_deflated(simulator: Simulator) -> None:
    async with connect(simulator.ws_url) as ws:
        await ws.send('{"event":"ping"}')
        pong = await asyncio.wait_for(ws.recv(), 10)
        assert isinstance(pong, bytes)
        assert decode(pong) == {"event": "pong"}


async def test_incremental_depth_replayed_equals_ground_truth_after_every_push(simulator: Simulator) -> None:
    symbol = "ltc_btc"
    ch = f"ok_sub_spot_{symbol}_depth"
    async with connect(simulator.ws_url) as ws:
        await ws.send(json.dumps({"event": "addChannel", "channel": ch}))
        await recv(ws)
        await simulator.advance(300, symbol)
        truth = simulator.truth.depth_books(symbol)
        assert len(truth) > 250
        book: dict[str, dict[Decimal, Decimal]] = {"bids": {}, "asks": {}}
        for i, expected in enumerate(truth):
            msg = await recv(ws)
            assert channel_of(msg) == {ch}
            data = msg[0]["data"]
            if i == 0:
                assert data["bids"] and data["asks"]
            else:
                assert len(data["bids"]) + len(data["asks"]) < 20  # an increment, not the book
            book_apply(book, data)
            bids, asks = book_levels(book)
            assert bids == truth_levels(expected.bids), f"push {i}"
            assert asks == truth_levels(expected.asks), f"push {i}"
            assert len(bids) <= 200 and len(asks) <= 200
            assert bids[0][0] < asks[0][0]
        final_bids, final_asks = simulator.market[symbol].book()
        assert book_levels(book) == (final_bids, final_asks)


async def test_full_depth_channels_send_the_top_levels_only_when_they_change(simulator: Simulator) -> None:
    ch = "ok_sub_spot_btc_usdt_depth_5"
    async with connect(simulator.ws_url) as ws:
        await ws.send(json.dumps({"event": "addChannel", "channel": ch}))
        await recv(ws)
        await simulator.advance(60, "btc_usdt")
        pushes = simulator.truth.pushes(ch)
        assert 1 < len(pushes) <= 61
        tops = [(tuple(map(tuple, p.data["bids"])), tuple(map(tuple, p.data["asks"]))) for p in pushes]
        assert all(a != b for a, b in itertools.pairwise(tops))  # only changes are pushed
        for p in pushes:
            assert len(p.data["bids"]) == 5 and len(p.data["asks"]) == 5
            received = await recv(ws)
            assert received == [{"channel": ch, "data": p.data}]


async def test_deals_and_klines_carry_the_trades(simulator: Simulator) -> None:
    deals, kline = "ok_sub_spot_eth_btc_deals", "ok_sub_spot_eth_btc_kline_1min"
    async with connect(simulator.ws_url) as ws:
        await ws.send(json.dumps([{"event": "addChannel", "channel": c} for c in (deals, kline)]))
        await recv(ws)
        await recv(ws)
        steps = await simulator.advance(100, "eth_btc")
        trades = [t for s in steps for t in s.trades]
        assert trades
        got: list[list[str]] = []
        while len(got) < len(trades):
            msg = await recv(ws)
            for obj in msg:
                if obj["channel"] == deals:
                    got.extend(obj["data"])
                else:
                    row = obj["data"][0]
                    assert len(row) == 6 and all(isinstance(x, str) for x in row)
        expected = [
            [
                str(t.tid),
                str(t.price.normalize()),
                format(t.amount.normalize(), "f"),
                exchange_hhmmss(t.ts_ms),
                "bid" if t.side.value == "buy" else "ask",
            ]
            for t in trades
        ]
        assert [[g[0], str(Decimal(g[1]).normalize()), g[2], g[3], g[4]] for g in got] == expected
        tids = [int(g[0]) for g in got]
        assert tids == sorted(tids) and len(set(tids)) == len(tids)


async def test_remove_channel_stops_pushes(simulator: Simulator) -> None:
    ch = "ok_sub_spot_ltc_btc_depth"
    async with connect(simulator.ws_url) as ws:
        await ws.send(json.dumps({"event": "addChannel", "channel": ch}))
        await recv(ws)
        await recv(ws)
        await ws.send(json.dumps({"event": "removeChannel", "channel": ch}))
        assert await recv(ws) == [
            {"binary": 0, "channel": "removeChannel", "data": {"result": True, "channel": ch}}
        ]
        await simulator.advance(20, "ltc_btc")
        await ws.send('{"event":"ping"}')
        assert await recv(ws) == {"event": "pong"}  # nothing was pushed in between


@pytest.mark.parametrize("simulator_settings", [dict(ping_timeout=0.5)], indirect=True)
async def test_connection_without_ping_is_closed_and_pinging_keeps_it_open(simulator: Simulator) -> None:
    loop = asyncio.get_running_loop()
    async with connect(simulator.ws_url) as quiet, connect(simulator.ws_url) as chatty:
        start = loop.time()
        while loop.time() - start < 1.2:
            await chatty.send('{"event":"ping"}')
            assert await recv(chatty) == {"event": "pong"}
            await asyncio.sleep(0.1)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(quiet.recv(), 10)
        assert quiet.close_code == 1000
        await chatty.send('{"event":"ping"}')
        assert await recv(chatty) == {"event": "pong"}


async def test_unknown_path_is_refused(simulator: Simulator) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus):
        async with connect(simulator.ws_url.replace("/ws/v1", "/nope")):
            pass
    async with connect(simulator.ws_url.replace("/ws/v1", "/websocket")) as ws:
        await ws.send('{"event":"ping"}')
        assert await recv(ws) == {"event": "pong"}


async def test_same_seed_gives_the_same_stream() -> None:
    settings = SimulatorSettings(seed=7, symbols=("ltc_btc",), updates_per_second=0, account_activity=False)
    streams = []
    for _ in range(2):
        async with Simulator(settings) as sim, connect(sim.ws_url) as ws:
            await ws.send(
                json.dumps(
                    [
                        {"event": "addChannel", "channel": c}
                        for c in ("ok_sub_spot_ltc_btc_depth", "ok_sub_spot_ltc_btc_deals")
                    ]
                )
            )
            await recv(ws)
            await recv(ws)
            await sim.advance(50)
            msgs = []
            n = len({(p.seq, p.channel) for p in sim.truth.pushes() if p.seq is not None})
            while len(msgs) < n:
                msg = await recv_until(ws, lambda m: isinstance(m, list))
                msgs.extend(o for o in msg)
            for o in msgs:
                if isinstance(o["data"], dict):
                    o["data"].pop("timestamp", None)
                else:
                    for d in o["data"]:
                        d[3] = ""  # wall-clock time of the deal
            streams.append(msgs)
    assert streams[0] == streams[1]
    assert len(streams[0]) > 50
