"""Notebook runner speed (SPEC §7): import cost, the papermill floor, phase runs, 80 runs.

Targets: ``import tradebook`` <= 0.5 s; a phase notebook run <= 1.3x a notebook that only
imports the library (the papermill + kernel floor); 80 phase notebooks <= 60 s.

Prints (a) import times, (b) the floor -- tests/notebooks/import_only.ipynb -- through the
papermill CLI and through a warm KernelPool, (c) phase notebooks through the pool (the
real notebooks/<phase>.ipynb when present, else tests/notebooks/phase_like.ipynb) and
their ratio to the floor, (d) 80 sequential runs through one pool. Everything runs in a
throw-away project root. The machine may be shared: the load average is printed too.

    .venv/bin/python bench/bench_notebooks.py [--runs 80] [--repeat 7] [--demo]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "notebooks"
PHASES = ("reconcile", "execute", "decide", "report")  # the order of one simulated day


def import_times(repeat: int) -> None:
    """(a) cumulative import time of tradebook modules, from ``python -X importtime``."""
    print("(a) imports (median of %d fresh interpreters, -X importtime cumulative)" % repeat)
    for module in ("tradebook", "tradebook.context", "tradebook.runner", "papermill"):
        samples = [_importtime(module) for _ in range(repeat)]
        target = "  target <= 0.5 s" if module == "tradebook" else ""
        note = "  (runner process only, once)" if module == "papermill" else ""
        print(f"    import {module:<18} {statistics.median(samples):6.3f} s{target}{note}")


def _importtime(module: str) -> float:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                          capture_output=True, text=True, check=True)
    for line in reversed(done.stderr.splitlines()):
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1e6
    raise RuntimeError(f"no importtime line for {module}")


def papermill_cli_floor(root: Path, repeat: int) -> float:
    """(b1) ``papermill import_only.ipynb out.ipynb``: a new process and a cold kernel each time."""
    papermill = Path(sys.executable).with_name("papermill")
    samples = []
    for k in range(repeat):
        start = time.perf_counter()
        subprocess.run([str(papermill), str(SAMPLES / "import_only.ipynb"), str(root / f"cli-{k}.ipynb"),
                        "--no-progress-bar", "--log-level", "ERROR", "--cwd", str(root)],
                       check=True, env={**os.environ, "TRADEBOOK_ROOT": str(root)})
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def time_runs(root: Path, pool, notebook: Path | None, phase: str, repeat: int, clock: list) -> list[float]:
    """Wall time of ``repeat`` run_phase calls (ledger rows and all), after one warm-up run."""
    from tradebook.runner import run_phase

    samples = []
    for k in range(repeat + 1):
        start = time.perf_counter()
        run_phase(phase, root=root, pool=pool, notebook=notebook, now=_tick(clock) if notebook else None)
        if k:
            samples.append(time.perf_counter() - start)
    return samples


def _tick(clock: list) -> datetime:
    clock[0] += timedelta(seconds=1)
    return clock[0]


def real_phases(root: Path, pool) -> list[str]:
    """Phase notebooks of this checkout that run here (each tried once in the bench root)."""
    from tradebook.runner import run_phase

    usable = []
    for phase in PHASES:
        if not (root / "notebooks" / f"{phase}.ipynb").exists():
            continue
        record = run_phase(phase, root=root, pool=pool, raise_on_failure=False)
        if record.ok:
            usable.append(phase)
        else:
            print(f"    notebooks/{phase}.ipynb fails here ({record.error}); using the sample instead")
    return usable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=80, help="sequential runs for (d)")
    parser.add_argument("--repeat", type=int, default=7, help="samples per median")
    parser.add_argument("--demo", action="store_true", help="also time `tradebook demo --days 20`")
    args = parser.parse_args()
    print(f"bench_notebooks: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} at start")
    import_times(args.repeat)
    root = Path(tempfile.mkdtemp(prefix="tb-bench-"))
    try:
        shutil.copytree(REPO / "params", root / "params")
        if (REPO / "notebooks").is_dir():
            shutil.copytree(REPO / "notebooks", root / "notebooks")
        run_benchmarks(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


def run_benchmarks(root: Path, args: argparse.Namespace) -> None:
    from tradebook.runner import KernelPool

    clock = [datetime(2011, 7, 6, 13, 35, tzinfo=timezone.utc)]
    cli = papermill_cli_floor(root, max(3, args.repeat // 2))
    print("(b) floor: a notebook that only imports tradebook")
    print(f"    papermill CLI (new process, cold kernel)  {cli:6.3f} s/run")
    start = time.perf_counter()
    with KernelPool(root) as pool:
        floor = time_runs(root, pool, SAMPLES / "import_only.ipynb", "reconcile", args.repeat, clock)
        first = time.perf_counter() - start - sum(floor)
        print(f"    warm KernelPool, in-process papermill      {statistics.median(floor):6.3f} s/run "
              f"(first run incl. papermill import + pool start: {first:.2f} s)")
        base = statistics.median(floor)
        print("(c) phase notebooks through the pool (median; target <= 1.3x floor)")
        sample = time_runs(root, pool, SAMPLES / "phase_like.ipynb", "report", args.repeat, clock)
        print(f"    tests/notebooks/phase_like.ipynb          {statistics.median(sample):6.3f} s/run "
              f"= {statistics.median(sample) / base:.2f}x floor")
        phases = real_phases(root, pool)
        for phase in phases:
            runs = time_runs(root, pool, None, phase, max(3, args.repeat // 2), clock)
            print(f"    notebooks/{phase + '.ipynb':<31} {statistics.median(runs):6.3f} s/run "
                  f"= {statistics.median(runs) / base:.2f}x floor")
        sequential(root, pool, phases, args.runs, clock)
    if args.demo:
        demo()


def sequential(root: Path, pool, phases: list[str], runs: int, clock: list) -> None:
    """(d) ``runs`` notebooks back to back through one pool, as the demo does."""
    from tradebook.runner import run_phase

    what = "notebooks/{%s}" % ",".join(phases) if phases else "tests/notebooks/phase_like.ipynb"
    samples = []
    start = time.perf_counter()
    for k in range(runs):
        one = time.perf_counter()
        if phases:
            run_phase(phases[k % len(phases)], root=root, pool=pool)
        else:
            run_phase("report", root=root, pool=pool, notebook=SAMPLES / "phase_like.ipynb", now=_tick(clock))
        samples.append(time.perf_counter() - one)
    total = time.perf_counter() - start
    samples.sort()
    print(f"(d) {runs} sequential runs of {what} through one pool (target: 80 in <= 60 s)")
    print(f"    total {total:6.2f} s   per run: mean {total / runs:.3f}  median {statistics.median(samples):.3f}"
          f"  p90 {samples[int(0.9 * (runs - 1))]:.3f}  max {samples[-1]:.3f} s   kernels started: {pool.kernels_started}")


def demo() -> None:
    """(e) the real thing: `tradebook demo --days 20` in its own project root."""
    root = Path(tempfile.mkdtemp(prefix="tb-demo-"))
    try:
        shutil.copytree(REPO / "params", root / "params")
        shutil.copytree(REPO / "notebooks", root / "notebooks")
        start = time.perf_counter()
        done = subprocess.run([str(Path(sys.executable).with_name("tradebook")), "demo", "--days", "20"],
                              cwd=root, capture_output=True, text=True)
        wall = time.perf_counter() - start
        count = len(list((root / "runs").rglob("*.ipynb")))
        print(f"(e) tradebook demo --days 20: {wall:.1f} s wall, {count} notebooks under runs/, "
              f"exit {done.returncode} (target <= 60 s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
