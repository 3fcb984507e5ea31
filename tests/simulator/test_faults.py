"""Each fault mode, switched on at run time, observed with a plain client."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import zlib

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from recorder.errors import ConfigError
from recorder.simulator import FrameFault, Simulator, SimulatorSettings
from tests.simulator.helpers import recv

pytestmark = pytest.mark.faults

DEPTH = "ok_sub_spot_ltc_btc_depth"


@pytest.fixture
def simulator_settings(
    request: pytest.FixtureRequest, simulator_settings: SimulatorSettings
) -> SimulatorSettings:
    return dataclasses.replace(simulator_settings, updates_per_second=0, **getattr(request, "param", {}))


async def _subscribe(ws: object, channel: str = DEPTH) -> None:
    await ws.send(json.dumps({"event": "addChannel", "channel": channel}))  # type: ignore[attr-defined]
    await recv(ws)  # type: ignore[arg-type]


async def test_close_after_n_messages(simulator: Simulator) -> None:
    simulator.faults.update(close_after_messages=3)
    async with connect(simulator.ws_url) as ws:
        await _subscribe(ws)
        await simulator.advance(10, "ltc_btc")
        got = []
        with pytest.raises(ConnectionClosed):
            while True:
                got.append(await recv(ws))
        assert len(got) == 3
        assert ws.close_code == 1011
        assert [m[0]["data"] for m in got] == [p.data for p in simulator.truth.pushes(DEPTH)]


async def test_close_every_t_seconds(simulator: Simulator) -> None:
    simulator.faults.update(close_every_seconds=0.3)
    loop = asyncio.get_running_loop()
    async with connect(simulator.ws_url) as ws:
        start = loop.time()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert 0.25 <= loop.time() - start < 5
        assert ws.close_code == 1011


async def test_stall_stops_pushes_and_pongs_but_keeps_the_socket(simulator: Simulator) -> None:
    async with connect(simulator.ws_url) as ws:
        await _subscribe(ws)
        await recv(ws)
        simulator.stall()
        await simulator.advance(5, "ltc_btc")
        await ws.send('{"event":"ping"}')
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)
        assert simulator.connection_count == 1
        simulator.faults.resume()
        await ws.send('{"event":"ping"}')
        assert await recv(ws) == {"event": "pong"}


async def test_drop_connections_closes_every_socket(simulator: Simulator) -> None:
    async with connect(simulator.ws_url) as a, connect(simulator.ws_url) as b:
        await a.send('{"event":"ping"}')
        await recv(a)
        await b.send('{"event":"ping"}')
        await recv(b)
        assert simulator.drop_connections() == 2
        for ws in (a, b):
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("kind", [FrameFault.MALFORMED_JSON, FrameFault.TRUNCATED, FrameFault.BAD_DEFLATE])
async def test_broken_frames_come_before_the_real_push(
    simulator: Simulator, kind: FrameFault, compress: bool
) -> None:
    async with connect(simulator.ws_url) as ws:
        await ws.send(
            json.dumps({"event": "addChannel", "channel": DEPTH, "binary": "1" if compress else "0"})
        )
        await asyncio.wait_for(ws.recv(), 10)
        simulator.faults.inject_frames(kind, count=2)
        await simulator.advance(3, "ltc_btc")
        frames = [
            await asyncio.wait_for(ws.recv(), 10) for _ in range(6)
        ]  # full book, 3 increments, 2 broken
        faults = simulator.truth.faults()
        assert [f.kind for f in faults] == [kind.value, kind.value]
        broken, good = [], []
        for frame in frames:
            try:
                data = frame
                if isinstance(frame, bytes):
                    data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(frame)
                good.append(json.loads(data))
            except (zlib.error, ValueError):
                broken.append(frame)
        assert len(broken) == 2
        if kind is FrameFault.BAD_DEFLATE:
            assert all(isinstance(b, bytes) for b in broken)
        assert [g[0]["data"] for g in good] == [p.data for p in simulator.truth.pushes(DEPTH)]


async def test_oversized_frame_exceeds_the_client_limit(simulator: Simulator) -> None:
    simulator.faults.update(frame_fault=FrameFault.OVERSIZED, frame_fault_count=1, oversized_bytes=300_000)
    async with connect(simulator.ws_url, max_size=100_000) as ws:
        await _subscribe(ws)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        assert info.value.sent is not None and info.value.sent.code == 1009  # message too big
    assert simulator.truth.faults()[0].size > 300_000


async def test_frame_fault_rate_is_seeded(simulator: Simulator) -> None:
    simulator.faults.update(frame_fault=FrameFault.MALFORMED_JSON, frame_fault_rate=0.5)
    async with connect(simulator.ws_url) as ws:
        await _subscribe(ws)
        await simulator.advance(40, "ltc_btc")
        await ws.send('{"event":"ping"}')
        frames = []
        while frames[-1:] != ['{"event":"pong"}']:
            frames.append(await asyncio.wait_for(ws.recv(), 10))
        faults = simulator.truth.faults()
        assert 5 < len(faults) < 36
        assert len(frames) == len(simulator.truth.pushes(DEPTH)) + len(faults) + 1


async def test_rest_error_and_5xx_rates(simulator: Simulator) -> None:
    url = f"{simulator.rest_url}/ticker.do"
    async with httpx.AsyncClient(timeout=10) as client:
        simulator.faults.update(rest_error_rate=1.0)
        r = await client.get(url, params={"symbol": "ltc_btc"})
        assert (r.status_code, r.json()) == (200, {"result": False, "error_code": 10002})
        simulator.faults.update(rest_error_rate=0.0, rest_5xx_rate=1.0)
        r = await client.get(url, params={"symbol": "ltc_btc"})
        assert r.status_code in (500, 502, 503)
        simulator.faults.update(rest_5xx_rate=0.0)
        assert "ticker" in (await client.get(url, params={"symbol": "ltc_btc"})).json()


async def test_added_latency_on_rest_and_websocket(simulator: Simulator) -> None:
    loop = asyncio.get_running_loop()
    simulator.faults.update(rest_latency=0.3, ws_latency=0.3)
    async with httpx.AsyncClient(timeout=10) as client:
        start = loop.time()
        await client.get(f"{simulator.rest_url}/ticker.do", params={"symbol": "ltc_btc"})
        assert loop.time() - start >= 0.3
    async with connect(simulator.ws_url) as ws:
        start = loop.time()
        await ws.send('{"event":"ping"}')
        assert await recv(ws) == {"event": "pong"}
        assert loop.time() - start >= 0.3


def test_bad_fault_values_are_rejected(simulator_settings: SimulatorSettings) -> None:
    from recorder.simulator.faults import Faults

    faults = Faults(simulator_settings.faults, seed=1)
    with pytest.raises(ConfigError, match="rest_5xx_rate"):
        faults.update(rest_5xx_rate=2.0)
    with pytest.raises(TypeError):
        faults.update(no_such_fault=1)
