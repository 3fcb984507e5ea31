"""Keeping the resident memory of a long recording flat: Arrow's pool and glibc's heap after Parquet rolls.

Python's own objects do not grow over a recording (tracemalloc is flat); resident memory grew
because of native memory that was freed but not given back to the system: a Parquet roll is the
one moment a lot of Arrow buffers and Python objects are allocated and freed at once
(bench/README.md "Memory"). Two measures, both on by default:

* :func:`configure` (called once where the storage writer is opened, in every process that writes
  Parquet) makes Arrow allocate from the system allocator (``pyarrow.system_memory_pool()``)
  instead of its bundled mimalloc, which keeps freed segments mapped for reuse;
* :func:`release` (called by the Parquet store after each roll) asks Arrow's pool to release
  unused memory and glibc to return the free pages of its heaps (``malloc_trim(0)``), where the
  C library is glibc.

Both are opt-in: ``OKEX_MEMORY_TUNING=1`` in the environment turns them on (the memory
benchmark measures the difference in one run). On by default they made the writer fall behind
the feed with frequent small S3 rolls (tests/faults/test_s3_sigkill.py), so they stay off until
that is understood; Arrow's unused memory is still released after rolls, at most every 10 s.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable

import pyarrow as pa

__all__ = ["configure", "enabled", "release"]


def enabled() -> bool:
    """True when ``OKEX_MEMORY_TUNING=1`` is set (opt-in: with Arrow on the system allocator the
    writer kept up less well with small, frequent S3 rolls; see bench/README.md)."""
    return os.environ.get("OKEX_MEMORY_TUNING", "0").strip() == "1"


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)  # glibc only (musl, macOS: absent)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _load_trim()


def configure() -> None:
    """Make the system allocator Arrow's default pool (idempotent). No-op when tuning is off."""
    if enabled() and pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())


_last_release = -float("inf")


def release(min_interval: float = 10.0) -> None:
    """Give freed native memory back to the system: Arrow's pool, then glibc's heaps.

    At most once per ``min_interval`` s (monotonic): ``malloc_trim`` walks the whole heap, and
    with small roll sizes (``parquet_roll_rows``) rolls come many times a second, where trimming
    after each one made the writer fall behind the feed.
    """
    global _last_release
    now = time.monotonic()
    if now - _last_release < min_interval:
        return
    _last_release = now
    pa.default_memory_pool().release_unused()
    if enabled() and _TRIM is not None:
        _TRIM(0)
