"""A small scripted OKX v5 exchange on loopback: a few dozen lines of ``websockets`` server.

Each test gives a ``script``: ``async (exchange, ws, op, request_id, arg) -> None`` called for
every ``subscribe``/``unsubscribe`` arg (the ``instruments`` subscription is answered here with
the instruments' ``tickSz``/``lotSz``), which answers however the test wants: updates before the
snapshot, sequence resets, heartbeats, wrong checksums, error events, notices, odd numbers.
``ping`` is answered with ``pong`` unless ``answer_pings=False`` (a silent server); a ``pong``
(the client's answer to a script's ``ping``) is only kept.
Everything received is kept in :attr:`V5Exchange.received`.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

Script = Callable[["V5Exchange", ServerConnection, str, str, dict[str, str]], Awaitable[None]]
TS = "1764460800000"  # 2025-11-30T00:00:00Z


def checksum(bids: list[list[str]], asks: list[list[str]]) -> int:
    """PROTOCOL.md §3.2 written out again (bid i, ask i, top 25, CRC32 as signed int32)."""
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts += bids[i][:2]
        if i < len(asks):
            parts += asks[i][:2]
    v = zlib.crc32(":".join(parts).encode()) & 0xFFFFFFFF
    return v - (1 << 32) if v >= (1 << 31) else v


def book_msg(arg: dict[str, str], action: str, bids: list[list[str]], asks: list[list[str]], seq: int,
             prev: int, cs: int = 0, ts: str = TS) -> str:  # fmt: skip
    item = {"asks": asks, "bids": bids, "ts": ts, "checksum": cs, "prevSeqId": prev, "seqId": seq}
    return json.dumps({"arg": arg, "action": action, "data": [item]})


class V5Exchange:
    """``async with V5Exchange(script) as ex``: listens on 127.0.0.1:<free port> (every path)."""

    def __init__(self, script: Script, *, instruments: tuple[str, ...] = ("BTC-USDT",), tick: str = "0.1",
                 lot: str = "0.00000001", answer_pings: bool = True) -> None:  # fmt: skip
        self.script = script
        self.instruments = instruments
        self.tick, self.lot = tick, lot
        self.answer_pings = answer_pings
        self.received: list[str] = []
        self.connections: list[ServerConnection] = []
        self.state: dict[str, Any] = {}
        self._server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v5/public"

    @property
    def business_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v5/business"

    async def __aenter__(self) -> V5Exchange:
        self._server = await serve(self._handler, "127.0.0.1", 0, ping_interval=None)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @staticmethod
    def ack(op: str, rid: str, arg: dict[str, str]) -> str:
        return json.dumps({"id": rid, "event": op, "arg": arg, "connId": "5c0a1d01"})

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        with contextlib.suppress(ConnectionClosed):
            async for text in ws:
                assert isinstance(text, str)
                self.received.append(text)
                if text == "ping":
                    if self.answer_pings:
                        await ws.send("pong")
                    continue
                if text == "pong":  # the answer to a ping of the script's
                    continue
                req = json.loads(text)
                op, rid = req["op"], req.get("id", "")
                for arg in req["args"]:
                    if op == "subscribe" and arg["channel"] == "instruments":
                        await ws.send(self.ack(op, rid, arg))
                        data = [{"instType": "SPOT", "instId": i, "baseCcy": i.split("-")[0],
                                 "quoteCcy": i.split("-")[1], "tickSz": self.tick, "lotSz": self.lot,
                                 "minSz": "0.00001", "state": "live", "listTime": "1606468572000",
                                 "expTime": ""} for i in self.instruments]  # fmt: skip
                        await ws.send(json.dumps({"arg": arg, "data": data}))
                    else:
                        await self.script(self, ws, op, rid, arg)
