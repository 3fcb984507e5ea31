"""Collector test helpers: an in-memory storage writer and a config aimed at the simulator."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from recorder.config import Config, load_config
from recorder.records import Record


class MemoryWriter:
    """A storage writer that keeps every record written (in order); flush/close are counted."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.flushes = 0
        self.closed = threading.Event()
        self.lock = threading.Lock()

    def write(self, records: Sequence[Record]) -> None:
        with self.lock:
            self.records.extend(records)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed.set()

    def of(self, cls: type) -> list[Any]:
        with self.lock:
            return [r for r in self.records if type(r) is cls]


@pytest.fixture
def memory_writer() -> MemoryWriter:
    return MemoryWriter()


def sim_config(
    tmp_path: Path, ws_url: str, rest_url: str = "http://127.0.0.1:1/api/v1", **collector: Any
) -> Config:
    """A config recording from the simulator into ``tmp_path`` (fast timers)."""
    base: dict[str, Any] = {
        "symbols": ["btc_usdt", "ltc_btc", "eth_btc"],
        "channels": ["ticker", "depth"],
        "ping_interval": 1.0,
        "pong_timeout": 2.0,
        "stall_timeout": 3.0,
        "reconnect_initial": 0.05,
        "reconnect_cap": 0.5,
        "status_interval": 0.5,
        "status_file": str(tmp_path / "status.json"),
    }
    base.update(collector)
    return load_config(
        env={},
        overrides={
            "exchange": {"ws_url": ws_url, "rest_url": rest_url},
            "collector": base,
            "storage": {
                "sql_url": f"sqlite:///{tmp_path / 'rec.sqlite'}",
                "parquet_root": str(tmp_path / "parquet"),
                "spill_dir": str(tmp_path / "spill"),
            "parquet_journal_dir": str(tmp_path / "pq-journal"),
                "flush_interval": 0.2,
            },
        },
    )
