"""Run the benchmarks: ``python -m bench [--size tiny|small|full] [--only a,b]``.

Each benchmark prints its figures, and the run ends with one table of all of them;
results are written as JSON under ``bench/results/`` (unless ``--no-save``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.harness import BenchResult, render, save

BENCHMARKS = ["ingest", "stages", "wire", "memory", "rest_sync", "analysis_load", "storage_cost", "bus",
              "peer"]
OPTIONAL = {"peer"}  # run by default only when available() says so (peer: the cryptofeed extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--size", choices=["tiny", "small", "full"], default="full")
    parser.add_argument("--only", default="", help="comma-separated names: " + ", ".join(BENCHMARKS))
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/*.json")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or BENCHMARKS
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    results: list[BenchResult] = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name} ({args.size})", flush=True)
        why_not = module.available() if name in OPTIONAL else None
        if why_not:
            print(f"   skipped: {why_not}", flush=True)
            continue
        result: BenchResult = module.run(args.size)
        print(render([result]), flush=True)
        for note in result.notes:
            print(f"   note: {note}")
        if not args.no_save:
            save(result)
        results.append(result)
    print("\n" + render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
