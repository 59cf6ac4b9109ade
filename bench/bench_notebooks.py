"""Notebook runner speed (SPEC §7): import cost, the papermill floor, phase runs, 80 runs.

Targets: ``import tradebook`` <= 0.5 s; a phase notebook run <= 1.3x a notebook that only
imports the library (the papermill + kernel floor); 80 phase notebooks <= 60 s.

Prints (a) import times, (b) the floor -- tests/notebooks/import_only.ipynb -- through the
papermill CLI and through a warm KernelPool, (c) phase notebooks through the pool (the
real notebooks/<phase>.ipynb when they run here, and tests/notebooks/phase_like.ipynb)
with their ratio to the floor, (d) 80 sequential runs through one pool. Everything runs
in a throw-away project root.

The machine may be shared, so next to wall times it prints CPU seconds per run: ``main``
(this process: ledger rows, papermill, notebook writes) and ``kernel`` (the notebook's
kernel while it ran the notebook; its start-up happened earlier, overlapped). On an idle
machine a run's wall time is about main + kernel.

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
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "notebooks"
PHASES = ("reconcile", "execute", "decide", "report")  # the order of one simulated day
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    wall: float
    main_cpu: float
    kernel_cpu: float | None  # None when the kernel was not a warm spare we could watch

    @property
    def critical(self) -> float:
        return self.main_cpu + (self.kernel_cpu or 0.0)


def proc_cpu(pid: int | None) -> float | None:
    """utime + stime of a live process, from /proc (None if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def import_times(repeat: int) -> None:
    """(a) cumulative import time of tradebook modules, from ``python -X importtime``."""
    print(f"(a) imports (median of {repeat} fresh interpreters, -X importtime cumulative)")
    for module in ("tradebook", "tradebook.context", "tradebook.engine.runner", "papermill"):
        samples = [_importtime(module) for _ in range(repeat)]
        target = "  target <= 0.5 s" if module == "tradebook" else ""
        note = "  (runner process only, once per process; never in a kernel)" if module == "papermill" else ""
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
                       check=True, env={**os.environ, "TRADEBOOK_ROOT": str(root)}, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def watch_retire(pool) -> dict:
    """Record each kernel's CPU time when the runner retires it (it exits right after)."""
    seen: dict = {}
    original = pool.retire

    def retire(km, **kwargs):
        pid = getattr(km.provisioner, "pid", None)
        seen[pid] = proc_cpu(pid)
        return original(km, **kwargs)

    pool.retire = retire
    return seen


def one_run(root: Path, pool, phase: str, notebook: Path | None, clock: list) -> Sample:
    """One run_phase call (ledger rows and all), timed and CPU-accounted."""
    from tradebook.engine.runner import run_phase

    spare = pool.spare_pids[0] if pool.spare_pids else None
    kernel_before = proc_cpu(spare)  # its start-up, done while the previous notebook ran
    start, cpu = time.perf_counter(), time.process_time()
    record = run_phase(phase, root=root, pool=pool, notebook=notebook, now=_tick(clock) if notebook else None)
    wall, main = time.perf_counter() - start, time.process_time() - cpu
    kernel_after = pool.retired_cpu.get(record.kernel_pid) if record.kernel_pid == spare else None
    kernel = kernel_after - kernel_before if kernel_after is not None and kernel_before is not None else None
    return Sample(wall, main, kernel)


def _tick(clock: list) -> datetime:
    clock[0] += timedelta(seconds=1)
    return clock[0]


def summary(samples: list[Sample]) -> str:
    measured = [s for s in samples if s.kernel_cpu is not None] or samples
    kernel = f"{statistics.median(s.kernel_cpu or 0.0 for s in measured):.3f}"
    return (f"wall {statistics.median(s.wall for s in samples):6.3f} s/run   cpu: main "
            f"{statistics.median(s.main_cpu for s in measured):.3f} + kernel {kernel} = "
            f"{statistics.median(s.critical for s in measured):.3f} s/run")


def critical_cpu(samples: list[Sample]) -> float:
    measured = [s for s in samples if s.kernel_cpu is not None] or samples
    return statistics.median(s.critical for s in measured)


def real_phases(root: Path, pool) -> list[str]:
    """Phase notebooks of this checkout that run here (each tried once in the bench root)."""
    from tradebook.engine.runner import run_phase

    usable = []
    for phase in PHASES:
        if not (root / "notebooks" / f"{phase}.ipynb").exists():
            continue
        record = run_phase(phase, root=root, pool=pool, raise_on_failure=False)
        if record.ok:
            usable.append(phase)
        else:
            print(f"    notebooks/{phase}.ipynb fails here ({record.error}); left out")
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
    if args.demo:
        demo()
    print(f"load average {os.getloadavg()[0]:.2f} at end")


def run_benchmarks(root: Path, args: argparse.Namespace) -> None:
    from tradebook.engine.runner import KernelPool

    clock = [datetime(2011, 7, 6, 13, 35, tzinfo=timezone.utc)]
    print("(b) floor: a notebook that only imports tradebook")
    cli = papermill_cli_floor(root, max(3, args.repeat // 2))
    print(f"    papermill CLI (new process, cold kernel)   wall {cli:6.3f} s/run")
    start = time.perf_counter()
    with KernelPool(root, fork=True) as pool:
        pool.retired_cpu = watch_retire(pool)
        first = one_run(root, pool, "reconcile", SAMPLES / "import_only.ipynb", clock)
        print(f"    first run of a process (papermill import, fork server start): wall {first.wall:.2f} s, "
              f"{time.perf_counter() - start:.2f} s with pool start")
        floor = [one_run(root, pool, "reconcile", SAMPLES / "import_only.ipynb", clock) for _ in range(args.repeat)]
        print(f"    warm KernelPool, in-process papermill      {summary(floor)}")
        base = statistics.median(s.wall for s in floor)
        base_cpu = critical_cpu(floor)
        print("(c) phase notebooks through the pool (median; target <= 1.3x floor)")
        phase_rows(root, pool, [("tests/notebooks/phase_like.ipynb", "report", SAMPLES / "phase_like.ipynb")],
                   args.repeat, clock, base, base_cpu)
        phases = real_phases(root, pool)
        phase_rows(root, pool, [(f"notebooks/{p}.ipynb", p, None) for p in phases], max(3, args.repeat // 2),
                   clock, base, base_cpu)
        sequential(root, pool, phases, args.runs, clock)


def phase_rows(root: Path, pool, rows, repeat: int, clock: list, base: float, base_cpu: float) -> None:
    for label, phase, notebook in rows:
        samples = [one_run(root, pool, phase, notebook, clock) for _ in range(repeat)]
        wall = statistics.median(s.wall for s in samples)
        cpu = critical_cpu(samples)
        print(f"    {label:<38} {summary(samples)}  ->  {wall / base:.2f}x floor (wall), {cpu / base_cpu:.2f}x (cpu)")


def sequential(root: Path, pool, phases: list[str], runs: int, clock: list) -> None:
    """(d) ``runs`` notebooks back to back through one pool, as the demo does."""
    what = "notebooks/{%s}" % ",".join(phases) if phases else "tests/notebooks/phase_like.ipynb"
    samples = []
    start = time.perf_counter()
    for k in range(runs):
        if phases:
            samples.append(one_run(root, pool, phases[k % len(phases)], None, clock))
        else:
            samples.append(one_run(root, pool, "report", SAMPLES / "phase_like.ipynb", clock))
    total = time.perf_counter() - start
    walls = sorted(s.wall for s in samples)
    critical = sum(s.critical for s in samples)
    print(f"(d) {runs} sequential runs of {what} through one pool (target: 80 in <= 60 s)")
    print(f"    wall total {total:6.2f} s   per run: mean {total / runs:.3f}  median {statistics.median(walls):.3f}"
          f"  p90 {walls[int(0.9 * (runs - 1))]:.3f}  max {walls[-1]:.3f} s   kernels started: {pool.kernels_started}")
    print(f"    cpu on the critical path (main + kernel while running): {critical:.2f} s total, "
          f"{critical / runs:.3f} s/run -- the idle-machine estimate for the {runs} runs")


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
