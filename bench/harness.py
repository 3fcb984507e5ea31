"""What every benchmark returns, and how results are printed and saved."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass
class Figure:
    metric: str
    value: float
    unit: str
    target: str = ""  # e.g. ">= 0.5"
    ok: bool | None = None  # None: no target


@dataclass
class BenchResult:
    name: str
    size: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: str, value: float, unit: str, target: str = "", ok: bool | None = None) -> None:
        self.figures.append(Figure(metric, value, unit, target, ok))


def _fmt(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def render(results: list[BenchResult]) -> str:
    """One Markdown table for all results."""
    lines = ["| benchmark | metric | value | unit | target | met |", "|---|---|---:|---|---|---|"]
    for r in results:
        for f in r.figures:
            met = "" if f.ok is None else ("yes" if f.ok else "**no**")
            lines.append(f"| {r.name} | {f.metric} | {_fmt(f.value)} | {f.unit} | {f.target} | {met} |")
    return "\n".join(lines)


def save(result: BenchResult, results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``<results_dir>/<name>.json`` (figures, notes, machine, time)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{result.name}.json"
    doc = {
        **asdict(result),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": __import__("os").cpu_count()},
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


@contextmanager
def run_process_gc() -> Iterator[None]:
    """The garbage-collector policy of an ``okex-recorder run`` process
    (:func:`recorder.gc_policy.configure`: freeze what is alive, fewer full collections) for what runs
    inside, then the interpreter's previous settings again. In-process benchmarks run the recorder
    *and* its floor inside it, so both get what the recorder process gets; ``OKEX_GC_TUNING=0``
    leaves the defaults for both (as it does for ``run``)."""
    import gc

    from recorder import gc_policy

    thresholds = gc.get_threshold()
    applied = gc_policy.configure()
    try:
        yield
    finally:
        if applied:
            gc.unfreeze()
            gc.set_threshold(*thresholds)
