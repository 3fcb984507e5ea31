"""Ground truth: what the simulator really sent (docs/simulator.md "Ground truth").

Every object of every WebSocket frame sent is recorded as a :class:`TruthPush`
(connection id, channel, data, exchange timestamp, send time); a depth push also
carries the full book after it (all levels, strings, bids highest first, asks
lowest first). Broken frames sent by the fault injector are :class:`TruthFault`.
Kept in memory (bounded) and optionally appended as JSON lines to a file.
Thread-safe: tests may read it from another thread while the simulator runs.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import msgspec

BookLevels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class TruthPush:
    connection_id: int
    channel: str
    data: Any
    ts_ms: int  # the data's exchange timestamp, or the send time when the data has none
    sent_at: datetime
    seq: int | None = None  # the market step of the symbol that produced it
    bids: BookLevels | None = None  # depth pushes only: the full book after this push
    asks: BookLevels | None = None


@dataclass(frozen=True, slots=True)
class TruthFault:
    connection_id: int
    kind: str
    size: int
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class DepthBook:
    """The full book after one depth push on one connection."""

    ts_ms: int
    bids: BookLevels
    asks: BookLevels
    connection_id: int
    seq: int | None


class Truth:
    """The bounded in-memory record (and optional JSON-lines file) of everything sent."""

    def __init__(self, *, memory: int, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._pushes: deque[TruthPush] = deque(maxlen=memory or 1)
        self._faults: deque[TruthFault] = deque(maxlen=max(memory, 1))
        self._keep = memory > 0
        self.path = path
        self._file: IO[bytes] | None = path.open("ab") if path is not None else None
        self.enabled = self._keep or self._file is not None

    def record(self, pushes: Iterable[TruthPush]) -> None:
        with self._lock:
            for push in pushes:
                if self._keep:
                    self._pushes.append(push)
                if self._file is not None:
                    row = {
                        "type": "push",
                        "connection_id": push.connection_id,
                        "channel": push.channel,
                        "ts_ms": push.ts_ms,
                        "sent_at": push.sent_at.isoformat(),
                        "seq": push.seq,
                        "data": push.data,
                    }
                    if push.bids is not None:
                        row["book"] = {"bids": push.bids, "asks": push.asks}
                    self._file.write(msgspec.json.encode(row) + b"\n")

    def record_fault(self, fault: TruthFault) -> None:
        with self._lock:
            if self._keep:
                self._faults.append(fault)
            if self._file is not None:
                row = {
                    "type": "fault",
                    "connection_id": fault.connection_id,
                    "kind": fault.kind,
                    "size": fault.size,
                    "sent_at": fault.sent_at.isoformat(),
                }
                self._file.write(msgspec.json.encode(row) + b"\n")

    def pushes(self, channel: str | None = None, *, connection_id: int | None = None) -> list[TruthPush]:
        """Recorded pushes in send order, optionally of one channel and/or one connection."""
        with self._lock:
            items = list(self._pushes)
        return [
            p
            for p in items
            if (channel is None or p.channel == channel)
            and (connection_id is None or p.connection_id == connection_id)
        ]

    def depth_books(self, symbol: str, *, connection_id: int | None = None) -> list[DepthBook]:
        """For every ``ok_sub_spot_<symbol>_depth`` push, in order: the full book after it."""
        return [
            DepthBook(p.ts_ms, p.bids or (), p.asks or (), p.connection_id, p.seq)
            for p in self.pushes(f"ok_sub_spot_{symbol}_depth", connection_id=connection_id)
        ]

    def faults(self, *, connection_id: int | None = None) -> list[TruthFault]:
        """Broken frames sent by the fault injector, in order."""
        with self._lock:
            items = list(self._faults)
        return [f for f in items if connection_id is None or f.connection_id == connection_id]

    def clear(self) -> None:
        with self._lock:
            self._pushes.clear()
            self._faults.clear()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
