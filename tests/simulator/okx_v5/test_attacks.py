"""Odd client behaviour against the v5 simulator: mixed subscribes, big and binary frames, a live-rate
run with two connections, unsubscribes, percent-encoded signed queries, the thread variant."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from recorder.simulator.okx_v5 import Simulator, SimulatorThread

from .conftest import v5_settings
from .helpers import Book, is_push, okx_checksum, recv, recv_until, signed_get, subscribe


async def test_multi_arg_subscribe_acks_good_args_and_errors_bad_ones(v5sim: Simulator) -> None:
    async with connect(v5sim.public_url) as ws:
        await ws.send(json.dumps({"id": "abc123", "op": "subscribe", "args": [
            {"channel": "tickers", "instId": "BTC-USDT"}, {"channel": "tickers", "instId": "NOPE-USDT"},
            {"channel": "instruments", "instType": "SPOT"}]}))  # fmt: skip
        events = []
        while len(events) < 3:
            msg = await recv(ws)
            if "event" in msg:
                events.append(msg)
        assert [(e["event"], e.get("arg"), e.get("code")) for e in events] == [
            ("subscribe", {"channel": "tickers", "instId": "BTC-USDT"}, None),
            ("error", None, "60018"),
            ("subscribe", {"channel": "instruments", "instType": "SPOT"}, None),
        ]
        assert {e["id"] for e in events} == {"abc123"} and len({e["connId"] for e in events}) == 1
        inst = await recv_until(ws, lambda m: is_push(m, "instruments"))
        assert [i["instId"] for i in inst["data"]] == ["BTC-USDT", "ETH-USDT", "ETH-BTC"]


async def test_oversized_and_binary_frames(v5sim: Simulator) -> None:
    async with connect(v5sim.public_url) as ws:
        await ws.send(b"\x00\x01")
        assert (await recv(ws))["code"] == "60012"
        await ws.send(json.dumps([1, 2]))
        assert (await recv(ws))["code"] == "60012"
        await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "x" * 70_000}]}))
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


@pytest.mark.parametrize(
    "v5_sim_settings", [{"updates_per_second": 40.0, "checksum": "crc32"}], indirect=True
)
async def test_live_rate_two_connections_agree_with_the_truth(v5sim: Simulator) -> None:
    async def follow(conn_books: list[dict[str, Any]]) -> int:
        async with connect(v5sim.public_url) as ws:
            await subscribe(ws, {"channel": "books", "instId": "ETH-BTC"})
            book = Book()
            last = None
            while len(conn_books) < 40:
                msg = await recv_until(ws, lambda m: is_push(m, "books"))
                (data,) = msg["data"]
                if msg["action"] == "snapshot":
                    assert data["prevSeqId"] == -1
                else:
                    assert data["prevSeqId"] == last
                last = data["seqId"]
                book.apply(data, msg["action"] == "snapshot")
                assert data["checksum"] == okx_checksum(*book.sides())
                conn_books.append({"seq": data["seqId"], "book": book.pairs()})
            ack = v5sim.truth.pushes("event:subscribe")
            return ack[-1].connection_id

    a: list[dict[str, Any]] = []
    b: list[dict[str, Any]] = []
    await asyncio.gather(follow(a), follow(b))
    for got in (a, b):
        truth = {t.seq: (t.bids, t.asks) for t in v5sim.book_truth("ETH-BTC")}
        for item in got:
            assert item["book"] == truth[item["seq"]]
    common = {x["seq"] for x in a} & {x["seq"] for x in b}
    assert len(common) > 20  # the same sequence on both connections (§3.2 rule 1)


async def test_unsubscribe_stops_pushes(v5sim: Simulator) -> None:
    async with connect(v5sim.public_url) as ws:
        arg = {"channel": "books", "instId": "BTC-USDT"}
        await subscribe(ws, arg)
        await recv_until(ws, lambda m: is_push(m, "books"))
        await ws.send(json.dumps({"op": "unsubscribe", "args": [arg]}))
        ack = await recv_until(ws, lambda m: m.get("event") == "unsubscribe")
        assert ack["arg"] == arg
        await v5sim.advance(20, "BTC-USDT")
        await ws.send("ping")
        assert await recv(ws) == "pong"
        await ws.send(json.dumps({"op": "unsubscribe", "args": [arg]}))
        assert (await recv(ws))["code"] == "60018"


async def test_signed_query_is_checked_as_sent(v5sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=v5sim.rest_url) as client:
        # percent-encoded value: signed and checked over the raw text, filtered on the decoded value
        path = "/api/v5/trade/orders-history?instType=SPOT&instId=ETH%2DBTC&limit=100"
        r = await signed_get(client, path)
        body = r.json()
        assert r.status_code == 200 and body["code"] == "0"
        assert body["data"] and {o["instId"] for o in body["data"]} == {"ETH-BTC"}


def test_thread_variant_serves_and_runs_hooks() -> None:
    with SimulatorThread(v5_settings()) as sim, httpx.Client(base_url=sim.rest_url) as client:
        before = client.get("/api/v5/market/books?instId=BTC-USDT").json()["data"][0]["seqId"]
        steps = sim.advance(10, "BTC-USDT")
        after = client.get("/api/v5/market/books?instId=BTC-USDT").json()["data"][0]["seqId"]
        assert after > before and len(steps) == 10
        placed = sim.call(sim.sim.place_order, "BTC-USDT", "buy", "100", "0.01")
        assert placed["state"] == "live"


async def test_truth_file(tmp_path: Any) -> None:
    path = tmp_path / "truth.jsonl"
    sim = Simulator(v5_settings(truth_path=path))
    async with sim, connect(sim.public_url) as ws, httpx.AsyncClient(base_url=sim.rest_url) as client:
        await subscribe(ws, {"channel": "books", "instId": "BTC-USDT"})
        snap = (await recv_until(ws, lambda m: is_push(m, "books")))["data"][0]
        await client.get("/api/v5/public/time")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    books = [r for r in rows if r["channel"] == "books:BTC-USDT"]
    assert books[0]["seq"] == snap["seqId"] and books[0]["data"] == snap
    assert [tuple(b) for b in books[0]["book"]["bids"]] == [(lv[0], lv[1]) for lv in snap["bids"]]
    assert any(r["channel"] == "rest:public/time" for r in rows)
    assert any(r["channel"] == "event:subscribe" for r in rows)
