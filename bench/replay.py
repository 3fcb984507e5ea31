"""A firehose exchange for the wire benchmark:
``python -m bench.replay PORT FRAMES_FILE [--deflate] [--rate FRAMES_PER_S]``.

The server must never be what limits the benchmark, so it is a raw asyncio protocol
with every data frame pre-encoded: the stream (:mod:`bench.streams`, one text frame per
line) is turned into unmasked server WebSocket frames once at start (text frames, or
with ``--deflate`` binary frames of raw DEFLATE data as OKEx v1 sends them), grouped
into ~64 KiB writes. Flow control: writing stops when the transport's buffer passes its
high-water mark (``pause_writing``) and resumes at ``resume_writing``, so the rate is
the receiver's and memory stays bounded.

It does the handshake (RFC 6455), answers ``addChannel`` with the exchange's ack,
``{"event":"ping"}`` with ``{"event":"pong"}``, WebSocket pings with pongs and a close
with a close; 0.5 s after the first subscription it sends every frame once (to the
first connection only; later connections are just kept alive). It prints ``ready``,
then ``sent N in S max_pause P`` on stdout when the last byte was handed to the socket (``P``:
the longest time, s, writing waited for the receiver to read: its longest reading stall).

``--rate R`` paces the stream instead: frames go out in groups every 10 ms so that R frames
leave per second on average (still never faster than the receiver reads), for latency at a
given load (the wire benchmark's "half the maximum rate").
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import sys
import time
import zlib

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CHUNK = 64 * 1024
HIGH_WATER = 1024 * 1024


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked, final server frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def deflate(payload: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(payload) + c.flush()


SLOT = 0.01  # s between two groups of frames of a paced stream (--rate)


def prebuild(frames: list[bytes], compressed: bool, per_chunk: int | None = None) -> list[bytes]:
    """The frames as ~64 KiB chunks of encoded server frames (``per_chunk``: that many frames each)."""
    chunks: list[bytes] = []
    part: list[bytes] = []
    size = 0
    for f in frames:
        enc = ws_frame(deflate(f), 0x2) if compressed else ws_frame(f, 0x1)
        part.append(enc)
        size += len(enc)
        if (len(part) >= per_chunk) if per_chunk else (size >= _CHUNK):
            chunks.append(b"".join(part))
            part, size = [], 0
    if part:
        chunks.append(b"".join(part))
    return chunks


def _unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


class ReplayProtocol(asyncio.Protocol):
    def __init__(self, server: ReplayServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.handshaken = False
        self.paused = False
        self.chunks: list[bytes] = []
        self.next = 0
        self.t0 = 0.0
        self.started = False
        self.paused_at = 0.0
        self.max_pause = 0.0  # s: the longest time the receiver left the socket full (a reading stall)
        self.timer: asyncio.TimerHandle | None = None  # the next paced group (--rate)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.handshaken:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            del self.buf[:end + 4]
            key = ""
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "sec-websocket-key":
                    key = value.strip()
            accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
            assert self.transport is not None
            self.transport.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                  f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            self.handshaken = True
        while True:
            buf = self.buf
            if len(buf) < 2:
                return
            opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
            pos = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, pos = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, pos = struct.unpack_from("!Q", buf, 2)[0], 10
            masked = buf[1] & 0x80
            if len(buf) < pos + (4 if masked else 0) + n:
                return
            mask = bytes(buf[pos:pos + 4]) if masked else b""
            pos += 4 if masked else 0
            payload = bytes(buf[pos:pos + n])
            del buf[:pos + n]
            if masked:
                payload = _unmask(payload, mask)
            self.message(opcode, payload)

    def message(self, opcode: int, payload: bytes) -> None:
        t = self.transport
        assert t is not None
        if opcode == 0x8:  # close
            t.write(ws_frame(payload[:2], 0x8))
            t.close()
            return
        if opcode == 0x9:
            t.write(ws_frame(payload, 0xA))
            return
        if opcode not in (0x1, 0x2):
            return
        try:
            req = json.loads(payload)
        except ValueError:
            return
        for r in req if isinstance(req, list) else [req]:
            if not isinstance(r, dict):
                continue
            if r.get("event") == "ping":
                t.write(ws_frame(b'{"event":"pong"}'))
            elif r.get("event") == "addChannel":
                data = {"result": True, "channel": r.get("channel")}
                ack = [{"binary": 0, "channel": "addChannel", "data": data}]
                t.write(ws_frame(json.dumps(ack).encode()))
                if not self.started:
                    self.started = True
                    if not self.server.sent:
                        self.server.sent = True
                        self.chunks = self.server.chunks
                        asyncio.get_running_loop().call_later(0.5, self.start)

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.pump()

    def pump(self) -> None:
        t = self.transport
        chunks = self.chunks
        paced = self.server.rate is not None
        while not self.paused and self.next < len(chunks):
            if t is None or t.is_closing():
                return
            if paced:  # group i leaves at t0 + i * SLOT, not before
                wait = self.t0 + self.next * SLOT - time.monotonic()
                if wait > 0:
                    if self.timer is None:
                        self.timer = asyncio.get_running_loop().call_later(wait, self._tick)
                    return
            t.write(chunks[self.next])
            self.next += 1
        if self.next == len(chunks) and chunks:
            print(f"sent {self.server.n_frames} in {time.monotonic() - self.t0:.3f} "
                  f"max_pause {self.max_pause:.3f}", flush=True)
            self.chunks = []

    def _tick(self) -> None:
        self.timer = None
        self.pump()

    def pause_writing(self) -> None:
        self.paused = True
        self.paused_at = time.monotonic()

    def resume_writing(self) -> None:
        self.paused = False
        self.max_pause = max(self.max_pause, time.monotonic() - self.paused_at)
        if self.chunks:
            self.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class ReplayServer:
    def __init__(self, frames: list[bytes], compressed: bool, rate: float | None = None) -> None:
        self.n_frames = len(frames)
        self.rate = rate
        self.chunks = prebuild(frames, compressed, max(1, round(rate * SLOT)) if rate else None)
        self.sent = False


async def main(port: int, path: str, compressed: bool, rate: float | None = None) -> None:
    with open(path, "rb") as f:
        frames = f.read().splitlines()
    server = ReplayServer(frames, compressed, rate)
    srv = await asyncio.get_running_loop().create_server(lambda: ReplayProtocol(server), "127.0.0.1", port)
    async with srv:
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    args = sys.argv[3:]
    pace = float(args[args.index("--rate") + 1]) if "--rate" in args else None
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], "--deflate" in args, pace))
