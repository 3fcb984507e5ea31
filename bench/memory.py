"""Memory: resident memory of ``okex-recorder run`` recording 200 symbols from the simulator.

The simulator (a subprocess) serves 200 documented symbols at ``updates_per_second``
steps per symbol; the recorder (a subprocess) subscribes ticker + depth + deals for all
of them and records to SQLite + Parquet. Every second VmRSS of the recorder is read
from ``/proc/<pid>/status``; peak = VmHWM at the end. Growth = the slope (least
squares) of RSS over the samples after the warm-up (the first third of the run, at
least 30 s when the run is long enough), in MB per minute.

Duration: ``OKEX_BENCH_MEMORY_SECONDS`` (default by size: tiny 6 s, small 60 s,
full 600 s). Baseline: the peak RSS of an idle interpreter that imported the project.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from bench import procs
from bench.harness import BenchResult

DURATIONS = {"tiny": 3.0, "small": 60.0, "full": 600.0}
N_SYMBOLS = 200
RATE = 5.0  # market steps per second per symbol (the simulator's default)
PEAK_MB, GROWTH_MB_MIN = 300.0, 1.0


def _slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / den if den else 0.0


def run(size: str) -> BenchResult:
    seconds = procs.env_float("OKEX_BENCH_MEMORY_SECONDS", DURATIONS[size])
    result = BenchResult("memory", size)
    symbols = procs.known_symbols(N_SYMBOLS)
    idle_mb = procs.idle_rss_kb() / 1024
    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        with procs.Simulator(work, symbols, RATE) as sim:
            config = procs.recorder_config(work, sim.ws_url, symbols, ["ticker", "depth", "deals"])
            rec = procs.start_recorder(work, config, seconds)
            t0 = time.monotonic()
            peak_kb = 0
            while rec.poll() is None:
                try:
                    rss, hwm = procs.rss_kb(rec.pid)
                except (OSError, ValueError):
                    break
                peak_kb = max(peak_kb, hwm)
                samples.append((time.monotonic() - t0, rss / 1024))
                time.sleep(1.0)
            rec.wait()
        status = {}
        try:
            status = json.loads((work / "status.json").read_text())
        except (OSError, ValueError):
            result.notes.append("no status.json from the recorder")
    warm = max(seconds / 3, min(30.0, seconds / 2))
    after = [(t / 60, mb) for t, mb in samples if t >= warm and t <= seconds - 1]
    growth = _slope(after)
    peak_mb = peak_kb / 1024
    frames = status.get("frames", {}).get("received", 0)
    rows = sum(status.get("rows", {}).get("written", {}).values())
    result.add("idle interpreter + project imported (baseline)", idle_mb, "MB")
    result.add("recorder peak RSS (VmHWM)", peak_mb, "MB", "<= 300", peak_mb <= PEAK_MB)
    result.add("ratio peak / idle", peak_mb / idle_mb if idle_mb else 0.0, "")
    result.add("RSS growth after warm-up", growth, "MB/min", "< 1", growth < GROWTH_MB_MIN)
    result.add("frames received", frames, "frames")
    result.add("rows written", rows, "rows")
    result.notes.append(
        f"{seconds:.0f} s recording of {N_SYMBOLS} symbols (ticker + depth + deals) at {RATE:g} "
        f"steps/s/symbol; "
        f"{len(samples)} samples, growth fitted over {len(after)} samples after {warm:.0f} s; "
        f"RSS first/last after warm-up: {after[0][1] if after else 0:.1f} / "
        f"{after[-1][1] if after else 0:.1f} MB")
    return result


if __name__ == "__main__":
    import sys

    from bench.harness import render

    r = run(sys.argv[1] if len(sys.argv) > 1 else "small")
    print(render([r]))
    print("\n".join(r.notes))
