"""Processes for the over-the-wire benchmarks: the simulator and the recorder as subprocesses.

Helpers: a free loopback port, the simulator started with a TOML settings file,
``okex-recorder run`` with a TOML config, resident memory of a process read from
``/proc/<pid>/status``, and a bare WebSocket client that only counts frames (the
baseline: what loopback + the simulator deliver without any processing).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recorder.venues.okex_v1.pairs import pairs

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def known_symbols(n: int) -> list[str]:
    """``n`` documented symbols (the simulator only serves known pairs), stable order."""
    names = sorted(pairs())
    if n > len(names):
        raise ValueError(f"only {len(names)} known symbols")
    return names[:n]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def write_toml(path: Path, doc: dict[str, Any]) -> Path:
    """Write a (two-level) TOML document: top-level scalars, then one table per dict value."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for key, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"\n[{key}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_port(port: int, timeout: float = 120.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something listens on the loopback ``port``; fail at once when ``proc`` exits first.
    The bound is generous: a loaded machine can take a while to start an interpreter and its imports."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the process meant to listen on 127.0.0.1:{port} exited ({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def terminate(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM ``proc`` and wait up to 10 s, then SIGKILL it; nothing if it has ended already."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Simulator:
    """``okex-recorder simulate`` in a subprocess (its own core), with the given settings."""

    def __init__(self, workdir: Path, symbols: Sequence[str], rate: float, **settings: Any) -> None:
        self.ws_port, self.rest_port = free_port(), free_port()
        doc = {"seed": 1, "symbols": list(symbols), "updates_per_second": rate, "truth_memory": 0,
               "account_activity": False, "ws_port": self.ws_port, "rest_port": self.rest_port, **settings}
        self.config = write_toml(workdir / "simulator.toml", doc)
        self.log = open(workdir / "simulator.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([str(BIN / "okex-recorder"), "simulate", "--config", str(self.config)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_port(self.ws_port, proc=self.proc)
            wait_port(self.rest_port, proc=self.proc)
        except BaseException:
            self.stop()
            raise

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws/v1"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}/api/v1"

    def stop(self) -> None:
        terminate(self.proc)
        self.log.close()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def recorder_config(workdir: Path, ws_url: str, symbols: Sequence[str], channels: Sequence[str],
                    **storage: Any) -> Path:
    """A recorder TOML config writing everything under ``workdir`` (status every second)."""
    doc = {
        "exchange": {"ws_url": ws_url},
        "collector": {"symbols": list(symbols), "channels": list(channels),
                      "status_interval": 1.0, "status_file": workdir / "status.json"},
        "storage": {"sql_url": f"sqlite:///{workdir / 'rec.sqlite'}", "parquet_root": workdir / "parquet",
                    "spill_dir": workdir / "spill", **storage},
        # A replayed, pre-generated stream: its exchange times are not "now", so the
        # plausibility windows (which would quarantine every record) are off.
        "plausibility": {"enabled": False},
        "log": {"level": "WARNING"},
    }
    return write_toml(workdir / "recorder.toml", doc)


def start_recorder(workdir: Path, config: Path, duration: float) -> subprocess.Popen[bytes]:
    """``okex-recorder run --config CONFIG --duration S`` (output in ``workdir/recorder.log``)."""
    log = open(workdir / "recorder.log", "wb")  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen([str(BIN / "okex-recorder"), "run", "--config", str(config),
                                 "--duration", str(duration)], stdout=log, stderr=subprocess.STDOUT,
                                cwd=workdir)
    finally:
        log.close()


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in kB, from /proc/<pid>/status."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, v = line.split(":", 1)
                values[key] = int(v.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/<pid>/task/*/children; vanished ones skipped)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                continue
    return out


def tree_memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB summed over ``pid`` and its descendants (/proc/<pid>/smaps_rollup).

    PSS shares each page between the processes that map it, so the sum counts shared
    libraries once; RSS counts them in every process."""
    rss = pss = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return rss, pss


def idle_rss_kb() -> int:
    """Peak RSS of a fresh interpreter that imported the project (collector, storage, pyarrow)."""
    code = ("import recorder.collector.app, recorder.storage.sql, recorder.storage.parquet, "
            "recorder.storage.writer, recorder.venues.okex_v1.parse, os;"
            "print(open(f'/proc/{os.getpid()}/status').read())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def _bare_count(ws_url: str, channels: Sequence[str], seconds: float) -> tuple[int, float]:
    from websockets.asyncio.client import connect

    async with connect(ws_url, ping_interval=None, max_size=None, compression=None) as ws:
        for ch in channels:
            await ws.send(json.dumps({"event": "addChannel", "channel": ch}))
        n = 0
        start = time.monotonic()
        end = start + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            n += 1
        return n, time.monotonic() - start


def bare_client_rate(ws_url: str, channels: Sequence[str], seconds: float) -> tuple[int, float]:
    """Frames a bare websockets client receives in ``seconds`` (subscribed to ``channels``), and the time."""
    return asyncio.run(_bare_count(ws_url, channels, seconds))


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default
