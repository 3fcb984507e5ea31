"""Faults on demand (docs/simulator.md "Faults"), switchable while the simulator runs.

:class:`Faults` holds the current :class:`~recorder.simulator.settings.FaultSettings`
(replace them with :meth:`Faults.update`), the stall switch and the seeded RNG that
decides rate-based faults. It also builds the broken frames. Thread-safe.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
import zlib
from typing import Any

from recorder.simulator.settings import FaultSettings, FrameFault

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"


class Faults:
    """The live fault switches of one simulator."""

    def __init__(self, settings: FaultSettings, *, seed: int) -> None:
        self._lock = threading.Lock()
        self._settings = settings
        self._rng = random.Random(f"okex-sim:{seed}:faults")
        self._count = settings.frame_fault_count
        self._stalled_until: float | None = None

    @property
    def settings(self) -> FaultSettings:
        """The current fault settings."""
        return self._settings

    def update(self, **changes: Any) -> FaultSettings:
        """Replace some fault settings now (validated), e.g. ``update(rest_5xx_rate=1.0)``.

        Raises :class:`~recorder.errors.ConfigError` for a bad value and TypeError for an unknown name.
        """
        with self._lock:
            if isinstance(changes.get("frame_fault"), str):
                changes["frame_fault"] = FrameFault(changes["frame_fault"])
            self._settings = dataclasses.replace(self._settings, **changes)
            if "frame_fault_count" in changes:
                self._count = self._settings.frame_fault_count
            return self._settings

    def reset(self) -> None:
        """All faults off, no stall."""
        with self._lock:
            self._settings = FaultSettings()
            self._count = 0
            self._stalled_until = None

    def inject_frames(self, kind: FrameFault | str, count: int = 1) -> None:
        """Send one broken frame of ``kind`` before each of the next ``count`` data pushes."""
        self.update(frame_fault=FrameFault(kind), frame_fault_count=count)

    def stall(self, seconds: float | None = None) -> None:
        """Stop pushing and stop answering pings (sockets stay open) for ``seconds`` or until resume()."""
        with self._lock:
            self._stalled_until = float("inf") if seconds is None else time.monotonic() + seconds

    def resume(self) -> None:
        """End a stall."""
        with self._lock:
            self._stalled_until = None

    @property
    def stalled(self) -> bool:
        until = self._stalled_until
        return until is not None and time.monotonic() < until

    # ---- decisions -----------------------------------------------------------------------------
    def take_frame_fault(self) -> FrameFault | None:
        """Whether to send a broken frame before the next data push, and which."""
        with self._lock:
            kind = self._settings.frame_fault
            if kind is None:
                return None
            if self._count > 0:
                self._count -= 1
                return kind
            if self._settings.frame_fault_rate and self._rng.random() < self._settings.frame_fault_rate:
                return kind
            return None

    def take_rest_fault(self) -> int | None:
        """None, 10002 (answer ``{"result": false, "error_code": 10002}``) or an HTTP 5xx status."""
        with self._lock:
            s = self._settings
            if s.rest_5xx_rate and self._rng.random() < s.rest_5xx_rate:
                return self._rng.choice((500, 502, 503))
            if s.rest_error_rate and self._rng.random() < s.rest_error_rate:
                return 10002
            return None

    def broken_frame(self, kind: FrameFault, good: bytes, *, compress: bool) -> bytes | str:
        """The broken frame for ``kind``; ``good`` is the real push's JSON text (UTF-8)."""
        with self._lock:
            if kind is FrameFault.BAD_DEFLATE:
                # BFINAL=1, BTYPE=11 (reserved): no inflater accepts it.
                return b"\xff" + self._rng.randbytes(15)
            if kind is FrameFault.MALFORMED_JSON:
                text = good[: max(1, len(good) // 3)] + b',,"}{]'
            elif kind is FrameFault.TRUNCATED:
                text = good
            else:  # OVERSIZED: valid JSON, poorly compressible padding
                size = self._settings.oversized_bytes
                pad = "".join(self._rng.choice(_ALPHABET) for _ in range(min(size, 64)))
                pad = (
                    (pad * (size // len(pad) + 1))[:size]
                    if not compress
                    else "".join(self._rng.choices(_ALPHABET, k=size * 4 // 3))
                )
                text = b'[{"channel":"oversized","data":{"padding":"' + pad.encode() + b'"}}]'
        if compress:
            c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
            data = c.compress(text) + c.flush(zlib.Z_FULL_FLUSH)
            return data[: max(1, len(data) // 2)] if kind is FrameFault.TRUNCATED else data
        if kind is FrameFault.TRUNCATED:
            text = text[: max(1, len(text) // 2)]
        return text.decode("utf-8", "replace")
