"""A small scripted OKEx v1 WebSocket exchange for fault tests (loopback, free port).

It answers pings with pongs and every ``addChannel`` with its ack, and then runs the
test's ``script(send)`` coroutine for that connection: ``send(channel, data)`` pushes one
``[{"channel": C, "data": D}]`` text frame (``data`` is sent exactly as given: build it
with strings to control every digit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import websockets

Send = Callable[[str, Any], Awaitable[None]]
Script = Callable[[Send], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted_exchange(script: Script) -> AsyncIterator[str]:
    """Serve the script; yields the ``ws://127.0.0.1:PORT`` URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def handler(ws: Any) -> None:
        subscribed = asyncio.Event()

        async def send(channel: str, data: Any) -> None:
            await ws.send(json.dumps([{"channel": channel, "data": data}]))

        async def run_script() -> None:
            await subscribed.wait()
            with contextlib.suppress(websockets.ConnectionClosed):
                await script(send)

        task = asyncio.create_task(run_script())
        tasks.add(task)
        try:
            async for message in ws:
                objs = json.loads(message)
                for obj in objs if isinstance(objs, list) else [objs]:
                    if obj.get("event") == "ping":
                        await ws.send('{"event":"pong"}')
                    elif obj.get("event") == "addChannel":
                        await ws.send(
                            json.dumps(
                                [
                                    {
                                        "binary": 0,
                                        "channel": "addChannel",
                                        "data": {"result": True, "channel": obj["channel"]},
                                    }
                                ]
                            )
                        )
                        subscribed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"
        for task in tasks:
            task.cancel()
