"""Raw-protocol helpers for the simulator's tests: plain websockets + zlib + JSON, no project client code."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from websockets.asyncio.client import ClientConnection

TIMEOUT = 10.0


def md5_sign(params: dict[str, str], secret: str) -> str:
    """The seed document's rule, written out independently of recorder.venues.okex_v1.signing."""
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


@contextlib.contextmanager
def serving(argv: list[str]) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """Run a simulator command line (``argv`` after the interpreter) until it prints its "Ctrl-C" line.

    Yields the process and the lines printed so far; on leaving, a process still running is killed
    and its pipes closed (a test stops it itself to check its exit code).
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
