"""Memory: resident memory of ``okex-recorder run`` recording 200 symbols, with and without the memory tuning.

The simulator (a subprocess) serves 200 documented symbols at ``updates_per_second``
steps per symbol; recorders (subprocesses) subscribe ticker + depth + deals for all of
them, side by side in the same run: ``tuned`` (``OKEX_MEMORY_TUNING=1``, opt-in: Arrow on the system
allocator, Arrow's pool released and glibc's heaps trimmed after Parquet rolls,
:mod:`recorder.storage.memory`) and ``untuned`` (``OKEX_MEMORY_TUNING=0``, the default). Both record to
SQLite + Parquet and roll the Parquet journal every ``ROLL_SECONDS`` s, so a short run sees
several rolls (the moments native memory is allocated and freed in bulk).

Every second VmRSS of each recorder is read from ``/proc/<pid>/status``; peak = VmHWM at the
end. Growth = the least-squares slope of RSS over the samples after the warm-up (the first
third of the run, at least 30 s when the run is long enough), in MB per minute. The targets
apply to both (``untuned`` is what users run by default).

Duration: ``OKEX_BENCH_MEMORY_SECONDS`` (default by size: tiny 8 s, small 180 s, full 600 s).
Baseline: the peak RSS of an idle interpreter that imported the project.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench import procs
from bench.harness import BenchResult

DURATIONS = {"tiny": 8.0, "small": 180.0, "full": 600.0}
N_SYMBOLS = 200
RATE = 5.0  # market steps per second per symbol (the simulator's default)
ROLL_SECONDS = 60.0
PEAK_MB, GROWTH_MB_MIN = 300.0, 1.0
VARIANTS = {"tuned": {"OKEX_MEMORY_TUNING": "1"}, "untuned": {"OKEX_MEMORY_TUNING": "0"}}
# Informational (not the default, no target): ``[storage] writer_process = true``, untuned;
# its figures are summed over the recorder and its writer process (``OKEX_BENCH_MEMORY_WRITER_PROCESS=0``
# leaves it out).
WRITER = "writer process"
STORAGE = {WRITER: {"writer_process": True}}


def _slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / den if den else 0.0


def _start(work: Path, ws_url: str, symbols: list[str], seconds: float,
           env: dict[str, str], storage: dict[str, object]) -> subprocess.Popen[bytes]:
    work.mkdir()
    config = procs.recorder_config(work, ws_url, symbols, ["ticker", "depth", "deals"],
                                   parquet_roll_seconds=ROLL_SECONDS, **storage)
    log = open(work / "recorder.log", "wb")  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen([str(procs.BIN / "okex-recorder"), "run", "--config", str(config),
                                 "--duration", str(seconds)], stdout=log, stderr=subprocess.STDOUT,
                                cwd=work, env={**os.environ, **env})
    finally:
        log.close()


def run(size: str) -> BenchResult:
    seconds = procs.env_float("OKEX_BENCH_MEMORY_SECONDS", DURATIONS[size])
    result = BenchResult("memory", size)
    symbols = procs.known_symbols(N_SYMBOLS)
    idle_mb = procs.idle_rss_kb() / 1024
    variants = dict(VARIANTS)
    if os.environ.get("OKEX_BENCH_MEMORY_WRITER_PROCESS", "1") != "0":
        variants[WRITER] = {"OKEX_MEMORY_TUNING": "0"}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    peaks = dict.fromkeys(variants, 0)
    pss_peak = 0
    statuses: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        with procs.Simulator(work, symbols, RATE) as sim:
            recs = {name: _start(work / name.replace(" ", "_"), sim.ws_url, symbols, seconds, env,
                                 STORAGE.get(name, {}))
                    for name, env in variants.items()}
            t0 = time.monotonic()
            while any(p.poll() is None for p in recs.values()):
                for name, rec in recs.items():
                    if rec.poll() is not None:
                        continue
                    try:
                        if name == WRITER:  # the recorder and its writer process, sampled
                            rss, pss = procs.tree_memory_kb(rec.pid)
                            hwm, pss_peak = rss, max(pss_peak, pss)
                        else:
                            rss, hwm = procs.rss_kb(rec.pid)
                    except (OSError, ValueError):
                        continue
                    peaks[name] = max(peaks[name], hwm)
                    samples[name].append((time.monotonic() - t0, rss / 1024))
                time.sleep(1.0)
        for name in variants:
            wdir = work / name.replace(" ", "_")
            if recs[name].returncode != 0:
                log = (wdir / "recorder.log").read_text()[-1500:]
                result.notes.append(f"the {name} recorder exited {recs[name].returncode}: {log}")
            try:
                statuses[name] = json.loads((wdir / "status.json").read_text())
            except (OSError, ValueError):
                result.notes.append(f"no status.json from the {name} recorder")
                statuses[name] = {}
    warm = max(seconds / 3, min(30.0, seconds / 2))
    result.add("idle interpreter + project imported (baseline)", idle_mb, "MB")
    notes = []
    for name in variants:
        after = [(t / 60, mb) for t, mb in samples[name] if warm <= t <= seconds - 1]
        growth = _slope(after)
        peak_mb = peaks[name] / 1024
        if name == WRITER:  # opt-in, informational: two interpreters
            result.add(f"{name}: peak RSS, recorder + writer process (sampled, summed)", peak_mb, "MB")
            result.add(f"{name}: peak PSS, recorder + writer process (shared pages counted once)",
                       pss_peak / 1024, "MB")
            result.add(f"{name}: RSS growth after warm-up (summed)", growth, "MB/min")
        else:
            # the targets hold for both: the default (untuned) is what users run
            result.add(f"{name}: peak RSS (VmHWM)", peak_mb, "MB", "<= 300", peak_mb <= PEAK_MB)
            result.add(f"{name}: RSS growth after warm-up", growth, "MB/min", "< 1", growth < GROWTH_MB_MIN)
        status = statuses[name]
        frames = status.get("frames", {}).get("received", 0)  # type: ignore[attr-defined]
        rows = sum(status.get("rows", {}).get("written", {}).values())  # type: ignore[attr-defined]
        result.add(f"{name}: frames received", frames, "frames")
        result.add(f"{name}: rows written", rows, "rows")
        notes.append(f"{name}: RSS first/last after warm-up {after[0][1] if after else 0:.1f} / "
                     f"{after[-1][1] if after else 0:.1f} MB over {len(after)} samples")
    result.notes.append(
        f"{seconds:.0f} s, {len(variants)} recorders side by side against one simulator "
        f"({N_SYMBOLS} symbols, ticker + "
        f"depth + deals, {RATE:g} steps/s/symbol), Parquet roll every {ROLL_SECONDS:g} s; growth fitted "
        f"after {warm:.0f} s; " + "; ".join(notes))
    return result


if __name__ == "__main__":
    import sys

    from bench.harness import render

    r = run(sys.argv[1] if len(sys.argv) > 1 else "small")
    print(render([r]))
    print("\n".join(r.notes))
