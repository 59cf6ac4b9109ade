"""Run every bench/bench_*.py in turn, each in its own interpreter, and print its output.

Each script prints its own figures against its SPEC §7 target; this runner only adds a
header, the script's wall time and exit status, and a summary. Exit status is non-zero
when any script failed (a benchmark that crashes is a bug, not a slow result).

    .venv/bin/python bench/run_all.py [-k substring] [--timeout SECONDS]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def scripts(pattern: str | None) -> list[Path]:
    """bench_*.py in name order, optionally only those whose name contains ``pattern``."""
    found = sorted(BENCH.glob("bench_*.py"))
    return [p for p in found if pattern is None or pattern in p.name]


def run(script: Path, timeout: float) -> tuple[int, float]:
    """Run one script with this interpreter; its output goes straight to ours."""
    print(f"=== {script.name} " + "=" * max(0, 60 - len(script.name)), flush=True)
    start = time.perf_counter()
    try:
        code = subprocess.run([sys.executable, str(script)], cwd=BENCH.parent, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        print(f"!!! {script.name} did not finish within {timeout:.0f} s", flush=True)
        code = -1
    wall = time.perf_counter() - start
    print(f"--- {script.name}: exit {code}, {wall:.1f} s", flush=True)
    return code, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="pattern", help="only scripts whose file name contains this")
    parser.add_argument("--timeout", type=float, default=900.0, help="per-script limit in seconds")
    args = parser.parse_args()
    chosen = scripts(args.pattern)
    if not chosen:
        print(f"no bench_*.py scripts in {BENCH} match {args.pattern!r}", file=sys.stderr)
        return 2
    print(f"{len(chosen)} benchmark scripts, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}")
    results = {script.name: run(script, args.timeout) for script in chosen}
    print("=== summary " + "=" * 54)
    for name, (code, wall) in results.items():
        print(f"    {name:<32} {'ok' if code == 0 else f'FAILED (exit {code})':<18} {wall:7.1f} s")
    return 0 if all(code == 0 for code, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
