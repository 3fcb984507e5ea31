"""Background account activity and the ground-truth JSON-lines file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from recorder.simulator import DEMO_API_KEY, DEMO_SECRET, Simulator
from tests.fixtures.simulator import fast_settings
from tests.simulator.helpers import md5_sign, recv, recv_until


@pytest.mark.parametrize(
    "simulator_settings", [{"account_activity": True, "account_activity_interval": 0.05}], indirect=True
)
async def test_background_activity_places_orders_and_pushes_them(simulator: Simulator) -> None:
    before = set(simulator.demo_account.orders)
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
        await recv(ws)
        msg = await recv_until(ws, lambda m: isinstance(m, list) and m[0]["channel"].endswith("_order"))
    oid = msg[0]["data"]["orderId"]
    assert oid in simulator.demo_account.orders
    assert set(simulator.demo_account.orders) - before


async def test_truth_file_holds_every_push_with_books(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    settings = fast_settings(updates_per_second=0, truth_path=path)
    async with Simulator(settings) as sim, connect(sim.ws_url) as ws:
        await ws.send('{"event":"addChannel","channel":"ok_sub_spot_ltc_btc_depth"}')
        await recv(ws)
        await sim.advance(5, "ltc_btc")
        for _ in range(6):
            await recv(ws)
        await asyncio.sleep(0)
        in_memory = sim.truth.pushes("ok_sub_spot_ltc_btc_depth")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    depth = [r for r in rows if r["channel"] == "ok_sub_spot_ltc_btc_depth"]
    assert [r["data"] for r in depth] == [p.data for p in in_memory]
    assert [r["book"]["bids"] for r in depth] == [[list(lvl) for lvl in p.bids or ()] for p in in_memory]
