"""A small scripted OKEx v1 exchange on loopback: a few dozen lines of ``websockets`` server.

Each test gives it a ``script``: an async function ``(exchange, ws, request) -> None`` called
for every client request object (``addChannel``, ``removeChannel``, ``ping``...), which
answers however the test wants (odd frame orders, refusals, odd pongs). Tickers and depth
increments are pushed by the test through :meth:`Exchange.push`. The same port answers
``GET /api/v1/depth.do`` with :attr:`Exchange.rest_depth` (the book audit's REST call).
Everything sent is kept in :attr:`Exchange.sent` (channel, data) for the assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

Script = Callable[["Exchange", ServerConnection, dict[str, Any]], Awaitable[None]]


def ack(channel: str, event: str = "addChannel") -> dict[str, Any]:
    return {"binary": 0, "channel": event, "data": {"result": True, "channel": channel}}


class Exchange:
    """The scripted server; ``async with Exchange(script) as ex`` listens on 127.0.0.1:<free port>."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections: list[ServerConnection] = []
        self.subscribed: dict[ServerConnection, set[str]] = {}
        self.requests: list[dict[str, Any]] = []
        self.sent: list[tuple[str, Any]] = []
        self.rest_depth: dict[str, Any] | None = None  # None: depth.do answers 503
        self.rest_calls = 0
        self._server: Server | None = None
        self.port = 0

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v1"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    async def __aenter__(self) -> Exchange:
        self._server = await serve(
            self._handler, "127.0.0.1", 0, process_request=self._http, ping_interval=None
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        if "depth.do" not in request.path:
            return None  # a WebSocket handshake
        self.rest_calls += 1
        if self.rest_depth is None:
            return Response(503, "Service Unavailable", Headers(), b"")
        body = json.dumps(self.rest_depth).encode()
        return Response(
            HTTPStatus.OK,
            "OK",
            Headers({"Content-Type": "application/json", "Content-Length": str(len(body))}),
            body,
        )

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        self.subscribed[ws] = set()
        try:
            async for raw in ws:
                doc = json.loads(raw)
                for req in doc if isinstance(doc, list) else [doc]:
                    self.requests.append(req)
                    await self.script(self, ws, req)
        except ConnectionClosed:
            pass
        finally:
            self.subscribed.pop(ws, None)

    async def send(self, ws: ServerConnection, objs: list[Any] | dict[str, Any] | str) -> None:
        """Send one frame (a list of objects, one object, or raw text), recording the data pushes."""
        if not isinstance(objs, str):
            for obj in objs if isinstance(objs, list) else [objs]:
                if (
                    isinstance(obj, dict)
                    and str(obj.get("channel", "")).startswith("ok_sub_spot_")
                    and "data" in obj
                ):
                    self.sent.append((obj["channel"], obj["data"]))
            objs = json.dumps(objs)
        await ws.send(objs)

    async def push(self, channel: str, data: Any) -> None:
        """Push ``data`` on ``channel`` to every connection subscribed to it."""
        for ws, channels in list(self.subscribed.items()):
            if channel in channels:
                with contextlib.suppress(ConnectionClosed):
                    await self.send(ws, [{"channel": channel, "data": data}])


async def standard(ex: Exchange, ws: ServerConnection, req: dict[str, Any]) -> None:
    """The usual answers: pong, ack then subscribe, removeChannel ack."""
    event, channel = req.get("event"), req.get("channel", "")
    if event == "ping":
        await ex.send(ws, {"event": "pong"})
    elif event == "addChannel":
        ex.subscribed[ws].add(channel)
        await ex.send(ws, [ack(channel)])
    elif event == "removeChannel":
        ex.subscribed[ws].discard(channel)
        await ex.send(ws, [ack(channel, "removeChannel")])


async def until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
