"""Helpers for the fault suite: configs on disk, `okex-recorder` subprocesses, event-driven waits,
stored rows versus the simulator's ground truth."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads

from recorder.records import FeedEventKind
from recorder.simulator import Simulator
from recorder.simulator.truth import Truth
from recorder.storage import schema
from tests.collector.helpers import (
    expected_snapshots,
    sent_data,
    snapshot_key,
    stored,
    ticker_from_push,
    ticker_key,
)

SYMBOLS = ("btc_usdt", "ltc_btc", "eth_btc")
DEMO_API_KEY = "0d3m0000-okex-4sim-8dem-0acc0un7key00"
DEMO_SECRET = "DEMO-SECRET-0KEX-SIMULATOR-NOT-A-REAL-SECRET"
GAP_KINDS = (FeedEventKind.DISCONNECTED, FeedEventKind.STALL, FeedEventKind.BOOK_RESET,
             FeedEventKind.RESUBSCRIBED)


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any OKEX_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKEX_")}
    env.update(extra)
    return env


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(path: Path, sections: Mapping[str, Mapping[str, object]]) -> Path:
    """Write a TOML configuration of plain sections to ``path``."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def recorder_config(tmp_path: Path, ws_url: str, *, sql_url: str | None = None,
                    rest_url: str = "http://127.0.0.1:1/api/v1", collector: Mapping[str, object] = {},
                    storage: Mapping[str, object] = {}, log_level: str = "info",
                    name: str = "recorder.toml") -> Path:
    """A `run` configuration recording SYMBOLS from ``ws_url`` into ``tmp_path`` (fast timers)."""
    return write_config(tmp_path / name, {
        "exchange": {"ws_url": ws_url, "rest_url": rest_url},
        "collector": {"symbols": list(SYMBOLS), "channels": ["ticker", "depth"], "ping_interval": 1.0,
                      "pong_timeout": 2.0, "stall_timeout": 3.0, "reconnect_initial": 0.05,
                      "reconnect_cap": 0.5, "status_interval": 0.2,
                      "status_file": str(tmp_path / "status.json"), **collector},
        "storage": {"sql_url": sql_url or f"sqlite:///{tmp_path / 'rec.sqlite'}",
                    "parquet_root": str(tmp_path / "parquet"), "spill_dir": str(tmp_path / "spill"),
                    "parquet_journal_dir": str(tmp_path / "pqj"), "flush_interval": 0.5, **storage},
        "log": {"level": log_level},
    })


def start_cli(args: list[str], tmp_path: Path, *, env: Mapping[str, str] | None = None,
              name: str = "run") -> subprocess.Popen[bytes]:
    """Start ``okex-recorder ARGS`` with stdout/stderr going to ``tmp_path/<name>.out|err``."""
    out = open(tmp_path / f"{name}.out", "wb")  # noqa: SIM115 - handed to the child
    err = open(tmp_path / f"{name}.err", "wb")  # noqa: SIM115
    try:
        return subprocess.Popen([sys.executable, "-m", "recorder.cli", *args], stdout=out, stderr=err,
                                env=dict(env) if env is not None else clean_env(), cwd=tmp_path)
    finally:
        out.close()
        err.close()


def run_cli(args: list[str], cwd: Path, *, env: Mapping[str, str] | None = None,
            timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recorder.cli", *args], capture_output=True, text=True,
                          env=dict(env) if env is not None else clean_env(), cwd=cwd, timeout=timeout)


def read_status(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def wait_for(condition: Callable[[], object], *, timeout: float = 60.0, what: str = "condition",
             proc: subprocess.Popen[bytes] | None = None, interval: float = 0.05) -> None:
    """Poll ``condition`` until truthy; fail after ``timeout`` s or when ``proc`` has exited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """SIGTERM (clean stop) and wait; kill if it does not end."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def parquet_rows(root: Path, table: str) -> list[Any]:
    """Every row of one Parquet dataset, rebuilt as records (partition key from the path)."""
    directory = root / table
    if not directory.exists():
        return []
    ds = schema.DATASETS[table]
    data = pads.dataset(directory, format="parquet", partitioning="hive", schema=None)
    rows = data.to_table().to_pylist()
    out = []
    for row in rows:
        row.pop("date", None)
        row[ds.key_column] = str(row[ds.key_column])
        out.append(ds.from_row(row))
    return out


def top_of(levels: Any, depth: int = 20) -> tuple[tuple[Decimal, Decimal], ...]:
    return tuple((Decimal(p), Decimal(a)) for p, a in levels[:depth])


def assert_tickers_exact(truth: Truth, url: str, symbols: tuple[str, ...] = SYMBOLS) -> None:
    """Every ticker push the simulator sent is stored once, exactly, in order."""
    for symbol in symbols:
        assert [ticker_key(t) for t in stored(url, "tickers", symbol=symbol)] == [
            ticker_from_push(d) for d in sent_data(truth, f"ok_sub_spot_{symbol}_ticker")
        ], symbol


def assert_snapshots_exact(truth: Truth, url: str, symbols: tuple[str, ...] = SYMBOLS) -> None:
    """Stored snapshots are exactly the top-20 changes of the books the simulator sent."""
    for symbol in symbols:
        snaps = stored(url, "book_snapshots", symbol=symbol)
        assert [snapshot_key(s) for s in snaps] == expected_snapshots(truth, symbol, 20), symbol


def assert_snapshots_exact_outside_gaps(truth: Truth, url: str, symbols: tuple[str, ...] = SYMBOLS) -> int:
    """Every stored snapshot is a book the simulator sent at that exchange time; every expected one
    that is missing lies inside a recorded gap. Returns how many were missing."""
    events = stored(url, "feed_events", order_by="ts_start")
    margin = timedelta(milliseconds=100)
    missing_total = 0
    for symbol in symbols:
        spans = [(e.ts_start - margin, (e.ts_end or datetime.max.replace(tzinfo=UTC)) + margin)
                 for e in events if e.kind in GAP_KINDS and symbol in e.symbols]
        sent: dict[int, set[object]] = {}
        for book in truth.depth_books(symbol):
            sent.setdefault(book.ts_ms, set()).add((top_of(book.bids), top_of(book.asks)))
        snaps = [snapshot_key(s) for s in stored(url, "book_snapshots", symbol=symbol)]
        assert len(snaps) == len(set(snaps)), f"{symbol}: a snapshot stored twice"
        for ms, top in snaps:
            assert top in sent.get(ms, ()), f"{symbol}: stored snapshot at {ms} was never sent"
        have = set(snaps)
        missing = [ms for ms, top in expected_snapshots(truth, symbol, 20) if (ms, top) not in have]
        for ms in missing:
            at = datetime.fromtimestamp(ms / 1000, UTC)
            assert any(a <= at <= b for a, b in spans), f"{symbol}: snapshot at {at} missing outside any gap"
        missing_total += len(missing)
    return missing_total


def all_bytes_under(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]


async def advance_for(sim: Simulator, seconds: float) -> None:
    """Step the simulator's market by hand (one step every 20 ms) for ``seconds``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        await sim.advance(1)
        await asyncio.sleep(0.02)
