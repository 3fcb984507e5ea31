"""The interpreter's cyclic garbage collector in a recording process.

A recording process allocates a few hundred thousand container objects a second (records,
level tuples, Arrow and SQL bind rows) that live until the next flush (about a second) and then
die by reference counting; almost none of them is part of a reference cycle. With CPython's
default thresholds (700, 10, 10) those short-lived objects survive the young collections, reach
the oldest generation and trigger a *full* collection every few seconds, and a full collection
walks every object of the process: the modules of SQLAlchemy, pyarrow, the WebSocket client and
the books. Measured in ``okex-recorder run`` under the ``wire`` benchmark (bench/README.md "Where
the CPU time goes"): the collector took 0.81-1.14 s of CPU per 100,000 frames, all of it holding
the interpreter lock; with this policy 0.49-0.64 s (3-5 % of the process's CPU).

:func:`configure`, called once when the process has imported and opened everything and before
it starts recording (``okex-recorder run``, the writer process), does two things:

* ``gc.freeze()``: the objects alive then (modules, classes, configuration, open stores) move to
  the permanent generation, which no collection walks again;
* ``gc.set_threshold(700, 10, 100)``: the young generations as by default, but a full
  collection only after 100 (not 10) collections of the middle one.

Nothing about what is stored changes, only when the collector runs: reference counting still
frees every acyclic object at once, and cycles are still collected (the young generations as
often as before; the oldest one less often). ``OKEX_GC_TUNING=0`` in the environment leaves the
interpreter's defaults (the benchmarks measure both in one run).
"""

from __future__ import annotations

import gc
import os

__all__ = ["THRESHOLDS", "configure", "enabled"]

THRESHOLDS = (700, 10, 100)
"""``gc.set_threshold`` arguments :func:`configure` sets (CPython's defaults: 700, 10, 10)."""


def enabled() -> bool:
    """False when ``OKEX_GC_TUNING=0`` is set in the environment (on by default)."""
    return os.environ.get("OKEX_GC_TUNING", "1").strip() != "0"


def configure() -> bool:
    """Collect once, freeze what is alive, set :data:`THRESHOLDS`. Returns whether it did (see
    :func:`enabled`). Call it once, after startup, before the hot loop; calling it again freezes
    what was allocated since (harmless)."""
    if not enabled():
        return False
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    return True
