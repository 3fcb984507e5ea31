"""Baseline clients for the wire benchmark: raw asyncio WebSocket readers of the replay server.

* ``count``: parses frame headers and counts frames (what loopback and the server deliver).
* ``decode``: also inflates binary (DEFLATE) frames and decodes every frame with msgspec
  into the honest floor's Structs, then drops the result (what reading + decoding costs,
  storing nothing).

Both subscribe like the recorder (one ``addChannel`` per channel) and return the frame
rate from the first data frame to the last.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
import zlib

from bench.honest_floor import _deals, _depth, _push_list, _ticker


def _client_frame(payload: bytes) -> bytes:
    n = len(payload)  # masked with a zero key: the payload is unchanged
    head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0x80 | 126, n)
    return head + b"\x00\x00\x00\x00" + payload


def _decode(payload: bytes) -> None:
    for push in _push_list.decode(payload):
        ch = push.channel
        if ch.endswith("_ticker"):
            _ticker.decode(push.data)
        elif ch.endswith("_deals"):
            _deals.decode(push.data)
        elif "_depth" in ch:
            _depth.decode(push.data)


class _Reader(asyncio.Protocol):
    def __init__(self, total: int, acks: int, decode: bool, done: asyncio.Future[tuple[int, float]]) -> None:
        self.total, self.acks, self.decode, self.done = total, acks, decode, done
        self.buf = bytearray()
        self.handshaken = False
        self.n = 0
        self.first = 0.0

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            del buf[:end + 4]
            self.handshaken = True
        pos, size, n = 0, len(buf), self.n
        decode = self.decode
        while size - pos >= 2:
            b0, length = buf[pos], buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = struct.unpack_from("!Q", buf, pos + 2)[0]
                start = pos + 10
            end = start + length
            if end > size:
                break
            if decode:
                payload = bytes(buf[start:end])
                if b0 & 0x0F == 0x2:
                    payload = zlib.decompressobj(-zlib.MAX_WBITS).decompress(payload)
                _decode(payload)
            n += 1
            if n == self.acks + 1:  # the first data frame (the acks come before the data)
                self.first = time.perf_counter()
            pos = end
        del buf[:pos]
        self.n = n
        if n >= self.total and not self.done.done():
            self.done.set_result((n, time.perf_counter() - self.first))


async def _read(port: int, channels: list[str], n_frames: int, decode: bool) -> float:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, float]] = loop.create_future()
    total = n_frames + len(channels)  # the acks come too
    transport, _ = await loop.create_connection(lambda: _Reader(total, len(channels), decode, done),
                                                "127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    transport.write((f"GET /ws/v1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                     ).encode())
    transport.write(b"".join(_client_frame(json.dumps({"event": "addChannel", "channel": ch}).encode())
                             for ch in channels))
    try:
        n, seconds = await asyncio.wait_for(done, max(60.0, n_frames / 5_000))
    finally:
        transport.close()
    return (n - len(channels) - 1) / seconds if seconds > 0 else 0.0


def read_rate(port: int, channels: list[str], n_frames: int, decode: bool) -> float:
    """Frames per second a raw client reads (and with ``decode``, inflates + msgspec-decodes)."""
    return asyncio.run(_read(port, channels, n_frames, decode))
