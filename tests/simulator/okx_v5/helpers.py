"""Raw v5 helpers for the tests: plain websockets/httpx + JSON, written from PROTOCOL.md (v5) alone.

Independent of recorder/simulator/okx_v5/wire.py on purpose: signing and the checksum are written out
again here, so a shared mistake cannot make both sides agree.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from recorder.simulator.okx_v5 import DEMO_API_KEY, DEMO_PASSPHRASE, DEMO_SECRET

TIMEOUT = 10.0


def okx_sign(secret: str, prehash: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), prehash.encode(), hashlib.sha256).digest()).decode()


def okx_checksum(bids: list[list[str]], asks: list[list[str]]) -> int:
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts += bids[i][:2]
        if i < len(asks):
            parts += asks[i][:2]
    v = zlib.crc32(":".join(parts).encode()) & 0xFFFFFFFF
    return v - (1 << 32) if v >= (1 << 31) else v


def iso_now(offset_ms: int = 0) -> str:
    ms = int(datetime.now(UTC).timestamp() * 1000) + offset_ms
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def signed_headers(path_qs: str, *, key: str = DEMO_API_KEY, secret: str = DEMO_SECRET,
                   passphrase: str = DEMO_PASSPHRASE, ts: str | None = None) -> dict[str, str]:  # fmt: skip
    ts = ts if ts is not None else iso_now()
    return {"OK-ACCESS-KEY": key, "OK-ACCESS-SIGN": okx_sign(secret, ts + "GET" + path_qs),
            "OK-ACCESS-TIMESTAMP": ts, "OK-ACCESS-PASSPHRASE": passphrase,
            "Content-Type": "application/json"}  # fmt: skip


async def signed_get(client: httpx.AsyncClient, path_qs: str, **kw: Any) -> httpx.Response:
    return await client.get(path_qs, headers=signed_headers(path_qs, **kw))


async def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> Any:
    frame = await asyncio.wait_for(ws.recv(), timeout)
    return frame if frame == "pong" else json.loads(frame)


async def recv_until(ws: ClientConnection, pred: Callable[[Any], bool], timeout: float = TIMEOUT) -> Any:
    async def loop() -> Any:
        while True:
            msg = await recv(ws, timeout)
            if pred(msg):
                return msg

    return await asyncio.wait_for(loop(), timeout)


async def subscribe(ws: ClientConnection, *args: dict[str, str]) -> None:
    await ws.send(json.dumps({"op": "subscribe", "args": list(args)}))


def is_push(msg: Any, channel: str, inst_id: str | None = None) -> bool:
    return (isinstance(msg, dict) and "data" in msg and msg.get("arg", {}).get("channel") == channel
            and (inst_id is None or msg["arg"].get("instId") == inst_id))  # fmt: skip


class Book:
    """A local v5 book: snapshot replaces, size "0" deletes, strings kept as received."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, list[str]] = {}
        self.asks: dict[Decimal, list[str]] = {}

    def apply(self, data: dict[str, Any], snapshot: bool) -> None:
        if snapshot:
            self.bids.clear()
            self.asks.clear()
        for side, levels in (("bids", self.bids), ("asks", self.asks)):
            for lv in data[side]:
                p = Decimal(lv[0])
                if Decimal(lv[1]) == 0:
                    levels.pop(p, None)
                else:
                    levels[p] = lv

    def sides(self) -> tuple[list[list[str]], list[list[str]]]:
        bids = [self.bids[p] for p in sorted(self.bids, reverse=True)]
        asks = [self.asks[p] for p in sorted(self.asks)]
        return bids, asks

    def pairs(self) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
        bids, asks = self.sides()
        return tuple((b[0], b[1]) for b in bids), tuple((a[0], a[1]) for a in asks)
