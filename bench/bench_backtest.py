"""Backtest speed (SPEC §7): tradebook vs backtrader on the same data and rules.

Reference rules: SMA(20/50) crossover, 100 shares, next-bar-open fills, AAPL GOOG IBM
MSFT 2000–2013 (the parity test's rule set). Prints, for each engine, the median
in-run time (data already loaded, as when a person re-runs a notebook cell) and the
ratio; then tradebook's cold process (``python -c``: import, load bars, run, print
results) and, for information, the swing strategy with the full gate.
Targets: >= 10x faster than backtrader, <= 0.1 s in-run, <= 3 s cold.

    .venv/bin/python bench/bench_backtest.py [--runs N]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

COLD = ("import time; t = time.perf_counter(); import tradebook.research.backtest as backtest; "
        "r = backtest.run_reference(); trades = r.trades(); "
        "print(len(trades), trades[-1], f'{time.perf_counter() - t:.3f}')")


def median_time(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def cold_process(runs: int) -> tuple[float, float, str]:
    """(median wall time of the whole process, median in-process time, last output line)."""
    walls, inner, line = [], [], ""
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", COLD], capture_output=True, text=True, check=True, cwd=REPO)
        walls.append(time.perf_counter() - t)
        line = proc.stdout.strip().splitlines()[-1]
        inner.append(float(line.rsplit(" ", 1)[1]))
    return statistics.median(walls), statistics.median(inner), line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    from test_backtest_parity import run_backtrader

    from tradebook.research import backtest
    from tradebook.marketdata import load_bars
    from tradebook.params import Params

    bars = load_bars(list(backtest.REFERENCE_SYMBOLS))
    ours_s, ours = median_time(lambda: backtest.run_reference(bars=bars).trades(), args.runs)
    theirs_s, theirs = median_time(lambda: run_backtrader(bars), max(1, args.runs // 2))
    same = "identical" if len(ours) == len(theirs) and all(
        a[:4] == b[:4] and abs(a[4] - b[4]) < 1e-6 for a, b in zip(ours, theirs)) else "DIFFERENT"
    print(f"SMA(20/50) x {len(backtest.REFERENCE_SYMBOLS)} symbols, {len(bars):,} bars, {len(ours)} fills ({same})")
    print(f"  tradebook in-run   {ours_s * 1000:8.1f} ms   (target <= 100 ms)")
    print(f"  backtrader in-run  {theirs_s * 1000:8.1f} ms")
    print(f"  ratio              {theirs_s / ours_s:8.1f} x  (target >= 10 x)")
    wall, inner, line = cold_process(max(1, args.runs // 2))
    print(f"  tradebook cold     {wall:8.2f} s    (whole `python -c` process: import, load, run, print; target <= 3 s;"
          f" {inner:.2f} s inside)")
    swing_s, result = median_time(lambda: backtest.run_strategy(Params(), bars=bars), max(1, args.runs // 2))
    print(f"swing strategy + full gate, 2000-2013: {swing_s * 1000:.0f} ms in-run "
          f"({result.stats['fills']} fills, {result.stats['rejections']} gate rejections)")


if __name__ == "__main__":
    main()
