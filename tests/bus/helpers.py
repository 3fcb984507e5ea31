"""NATS fixtures for the bus tests: a unique stream on the shared server, or a private server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest

from recorder.storage.bus_config import BusConfig

SHARED_URL = "nats://127.0.0.1:4222"
_SBIN = "/usr/sbin/nats-server"
NATS_SERVER = shutil.which("nats-server") or (_SBIN if os.path.exists(_SBIN) else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class PrivateNats:
    """A ``nats-server -js`` of our own on a free loopback port (stop/start keep its store dir)."""

    def __init__(self, store_dir: Path) -> None:
        assert NATS_SERVER is not None
        self.port = _free_port()
        self.store_dir = store_dir
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not _listening(self.port):
            assert self.proc.poll() is None, "nats-server exited"
            assert time.monotonic() < deadline, "nats-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def require_nats_server() -> None:
    if NATS_SERVER is None:
        pytest.skip("no nats-server binary (install nats-server, e.g. apt-get install nats-server)")


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    require_nats_server()
    server = PrivateNats(tmp_path / "nats-store")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def unique_bus(url: str, **changes: object) -> BusConfig:
    tag = uuid.uuid4().hex[:10]
    base: dict[str, object] = {"url": url, "stream": f"T{tag}", "subject_prefix": f"t{tag}",
                               "max_age": 3600.0, "duplicate_window": 600.0, "publish_timeout": 3.0,
                               "connect_timeout": 1.0}
    base.update(changes)
    return BusConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[BusConfig]:
    """A unique stream and subject prefix on the shared NATS (a private server if it is down)."""
    require_nats_server()
    private: PrivateNats | None = None
    url = SHARED_URL
    if not _listening(4222):
        private = PrivateNats(tmp_path / "nats-store")
        private.start()
        url = private.url
    config = unique_bus(url)
    try:
        yield config
    finally:
        with contextlib.suppress(Exception):
            nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
            with contextlib.suppress(Exception):
                await nc.jetstream().delete_stream(config.stream)
            await nc.close()
        if private is not None:
            private.stop()


async def stream_state(config: BusConfig,
                       durables: tuple[str, ...] = ()) -> tuple[int, dict[str, tuple[int, int]]]:
    """``(messages in the stream, {durable: (num_pending, num_ack_pending)})``."""
    nc = await nats.connect(config.url, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream()
        info = await js.stream_info(config.stream)
        out = {}
        for d in durables:
            ci = await js.consumer_info(config.stream, d)
            out[d] = (ci.num_pending, ci.num_ack_pending)
        return info.state.messages, out
    finally:
        await nc.close()


async def wait_drained(config: BusConfig, durables: tuple[str, ...], timeout: float = 60.0) -> int:
    """Wait until every durable has acknowledged every message; return the stream's message count."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            count, state = await stream_state(config, durables)
        except Exception as exc:  # consumer not created yet, server restarting
            last = exc
        else:
            last = state
            if all(v == (0, 0) for v in state.values()):
                return count
        await asyncio.sleep(0.1)
    raise AssertionError(f"consumers not drained after {timeout} s: {last}")
