"""Raw-protocol helpers for the simulator's tests: plain websockets + zlib + JSON, no project client code."""

from __future__ import annotations

import asyncio
import hashlib
import json
import zlib
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from websockets.asyncio.client import ClientConnection

TIMEOUT = 10.0


def md5_sign(params: dict[str, str], secret: str) -> str:
    """The seed document's rule, written out independently of recorder.okex.signing."""
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign")
    return hashlib.md5(f"{payload}&secret_key={secret}".encode(), usedforsecurity=False).hexdigest().upper()


def decode(frame: str | bytes) -> Any:
    """A text frame as JSON, or a binary frame inflated (raw DEFLATE) then JSON."""
    if isinstance(frame, bytes):
        frame = zlib.decompressobj(-zlib.MAX_WBITS).decompress(frame).decode()
    return json.loads(frame)


async def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> Any:
    return decode(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws: ClientConnection, pred: Callable[[Any], bool], timeout: float = TIMEOUT) -> Any:
    """Receive until a message satisfies ``pred``; returns it."""

    async def loop() -> Any:
        while True:
            msg = decode(await ws.recv())
            if pred(msg):
                return msg

    return await asyncio.wait_for(loop(), timeout)


def channel_of(msg: Any) -> set[str]:
    if isinstance(msg, list):
        return {o.get("channel", "") for o in msg if isinstance(o, dict)}
    return set()


def book_apply(book: dict[str, dict[Decimal, Decimal]], data: dict[str, Any]) -> None:
    for side in ("bids", "asks"):
        for price, amount in data[side]:
            p, a = Decimal(price), Decimal(amount)
            if a == 0:
                book[side].pop(p, None)
            else:
                book[side][p] = a


def book_levels(book: dict[str, dict[Decimal, Decimal]]) -> tuple[list[tuple[Decimal, Decimal]], ...]:
    bids = sorted(book["bids"].items(), reverse=True)
    asks = sorted(book["asks"].items())
    return bids, asks


def truth_levels(levels: Any) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(a)) for p, a in levels]
