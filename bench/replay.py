"""A firehose exchange for the wire benchmark: ``python -m bench.replay PORT FRAMES_FILE``.

The simulator's market model (Python) produces about 4,500 frames/s for 200 symbols
on this machine, far below what the recorder must absorb, so the wire benchmark
replays a pre-generated stream (:mod:`bench.streams`, one text frame per line)
instead: the server acks every ``addChannel``, answers ``{"event":"ping"}`` with a
pong, and 0.5 s after the first subscription, sends every
frame as fast as the connection takes them (``send`` waits while the socket buffer
is full, so the rate is the receiver's). It prints ``sent N in S`` on stdout when done
and then keeps the connection open until the client leaves.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


async def main(port: int, path: str) -> None:
    with open(path) as f:
        frames = f.read().splitlines()
    started = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        if started.is_set():  # a reconnect after the run: only keep it alive
            frames_left: list[str] = []
        else:
            started.set()
            frames_left = frames
        subscribed = asyncio.Event()

        async def reader() -> None:
            async for raw in ws:
                req = json.loads(raw)
                reqs = req if isinstance(req, list) else [req]
                for r in reqs:
                    if r.get("event") == "ping":
                        await ws.send('{"event":"pong"}')
                    elif r.get("event") == "addChannel":
                        await ws.send(json.dumps([{"binary": 0, "channel": "addChannel",
                                                   "data": {"result": True, "channel": r["channel"]}}]))
                        subscribed.set()

        task = asyncio.create_task(reader())
        try:
            await subscribed.wait()
            await asyncio.sleep(0.5)  # the rest of the subscriptions (sent in one burst)
            if frames_left:
                t0 = time.monotonic()
                for frame in frames_left:
                    await ws.send(frame)
                print(f"sent {len(frames_left)} in {time.monotonic() - t0:.3f}", flush=True)
            await task
        except ConnectionClosed:
            pass
        finally:
            task.cancel()

    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None, max_size=None):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
