"""Sweep speed (SPEC §7, SWP-2): the SMA grid against vectorbt, and the swing sweep on 1, 2 workers and Ray.

1. The SMA grid: fast 5..50 step 5 × slow 20..200 step 10 (fast < slow: 174 pairs) on
   AAPL GOOG IBM MSFT, each pair and symbol its own 10-share, 100k portfolio, signals at
   the close, fills at the next open. tradebook's vectorised grid and vectorbt, warm
   (median of in-run repeats, data loaded), side by side in this process; the ratio
   tradebook / vectorbt (<= 1.0: tradebook as fast or faster). tradebook's final values
   are checked against one-at-a-time ``run_reference`` runs (must be identical).
2. The swing strategy with the full gate, 100 parameter sets over 2000-2013: 1 local
   worker, 2 local workers (process pool), and a local 2-CPU Ray instance; speed-ups
   and whether the rows are identical.

    .venv/bin/python bench/bench_sweep.py [--runs N] [--skip-scaling]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

from bench_backtest import median_time  # run as a script from bench/, like its neighbours

SWING_GRID = {"rsi_entry": [20, 25, 30, 35, 40], "max_hold_days": [5, 10, 15, 20],
              "trend_sma": [50, 100, 150, 200, 250]}  # 100 sets


COLD = ("import time; t = time.perf_counter(); from tradebook.marketdata import load_bars; "
        "from tradebook.research.grid import sma_grid; g = sma_grid(load_bars(['AAPL', 'GOOG', 'IBM', 'MSFT'])); "
        "print(len(g), f'{time.perf_counter() - t:.3f}')")


def cold_process() -> float:
    """Wall time of a whole new `python -c` process: import, load the bars, run the grid, print."""
    import subprocess

    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", COLD], check=True, capture_output=True, cwd=Path(__file__).parents[1])
    return time.perf_counter() - t


def vectorbt_grid(bars, pairs):
    """The same grid the idiomatic vectorbt way: one wide frame, MA crossovers, from_signals at the next open."""
    import pandas as pd
    import vectorbt as vbt

    close = bars.pivot(index="date", columns="symbol", values="close")
    close.index = pd.to_datetime(close.index)
    opens = bars.pivot(index="date", columns="symbol", values="open")
    opens.index = close.index
    fast, slow = [f for f, _ in pairs], [s for _, s in pairs]

    def run():
        fast_ma = vbt.MA.run(close, fast, short_name="fast")
        slow_ma = vbt.MA.run(close, slow, short_name="slow")
        entries, exits = fast_ma.ma_crossed_above(slow_ma), fast_ma.ma_crossed_below(slow_ma)
        pf = vbt.Portfolio.from_signals(close, entries.vbt.fshift(1), exits.vbt.fshift(1), price=opens, size=10,
                                        init_cash=100_000.0, freq="1D")
        return pf.final_value()
    return run


def sma_section(runs: int) -> None:
    from tradebook.research import backtest
    from tradebook.marketdata import load_bars
    from tradebook.research.grid import sma_grid, sma_pairs

    bars = load_bars(list(backtest.REFERENCE_SYMBOLS))
    pairs = sma_pairs()
    first = time.perf_counter()
    grid = sma_grid(bars, pairs)
    first = time.perf_counter() - first
    ours, grid = median_time(lambda: sma_grid(bars, pairs), runs)
    loop_s, reference = median_time(lambda: one_at_a_time(bars, pairs), 1)
    same = sum(a == b for a, b in zip(grid["final_value"], reference))
    print(f"SMA grid: {len(pairs)} pairs x {bars['symbol'].nunique()} symbols = {len(grid)} portfolios, "
          f"{int(grid['fills'].sum()):,} fills")
    print(f"  tradebook warm        {ours * 1000:8.1f} ms   (first call in this process {first * 1000:.0f} ms)")
    print(f"  tradebook new process {cold_process():8.2f} s    (python -c: import, load bars, grid, print)")
    print(f"  one-at-a-time loop    {loop_s * 1000:8.1f} ms   (run_reference per pair and symbol)")
    print(f"  final values identical to one-at-a-time runs: {same}/{len(grid)}"
          + ("" if same == len(grid) else "   <-- MISMATCH"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import vectorbt
    except ImportError:
        print("  vectorbt              not installed (pip install 'tradebook[bench]'): no ratio, tradebook figure only")
        return
    run = vectorbt_grid(bars, pairs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cold = time.perf_counter()
        theirs = run()
        cold = time.perf_counter() - cold
        theirs_s, theirs = median_time(run, runs)
    agree = _agreement(grid, theirs)
    print(f"  vectorbt {vectorbt.__version__:<8} warm  {theirs_s * 1000:8.1f} ms   (first call, numba compiling: "
          f"{cold:.1f} s); final values within 1e-6 of tradebook: {agree}/{len(grid)}")
    print(f"  ratio tradebook / vectorbt warm: {ours / theirs_s:.2f}   (<= 1.0: tradebook as fast or faster)")


def one_at_a_time(bars, pairs) -> list[float]:
    """run_reference per (symbol, pair), in sma_grid's row order: the equality reference."""
    from tradebook.research import backtest

    out = []
    for symbol, frame in bars.groupby("symbol", sort=True):
        frame = frame.reset_index(drop=True)
        for fast, slow in pairs:
            r = backtest.run_reference([symbol], fast=fast, slow=slow, size=10, cash=100_000.0, bars=frame)
            out.append(float(r.equity["equity"].iloc[-1]))
    return out


def _agreement(grid, theirs) -> int:
    """vectorbt differs from backtrader's crossover rule at exact ties, so a few pairs may differ."""
    key = {(int(f), int(s), str(sym)): v for (f, s, sym), v in theirs.items()}
    return sum(abs(key[(r.fast, r.slow, r.symbol)] - r.final_value) < 1e-6 for r in grid.itertuples())


def scaling_section() -> None:
    from tradebook.research import table
    from tradebook.research.sweep import sweep

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        common = dict(db=db, progress=False)
        print(f"swing strategy + full gate, {_count(SWING_GRID)} parameter sets, AAPL GOOG IBM MSFT 2000-2013")
        one = _timed(lambda: sweep("swing", SWING_GRID, name="w1", workers=1, **common))
        two = _timed(lambda: sweep("swing", SWING_GRID, name="w2", workers=2, **common))
        print(f"  1 local worker        {one:7.2f} s   ({one / _count(SWING_GRID) * 1000:.0f} ms per set)")
        print(f"  2 local workers       {two:7.2f} s   speed-up 1 -> 2 workers: {one / two:.2f} x")
        ray_s = _ray(lambda: sweep("swing", SWING_GRID, name="ray", ray="local", **common))
        if ray_s is not None:
            print(f"  Ray, 2 local workers  {ray_s:7.2f} s   process pool / Ray: {two / ray_s:.2f} x "
                  f"(> 1: Ray faster)")
        names = ["w1", "w2"] + (["ray"] if ray_s is not None else [])
        frames = [table.results(db, n)[list(table.RESULT_COLUMNS)] for n in names]
        same = all(f.equals(frames[0]) for f in frames[1:])
        print(f"  rows identical across {', '.join(names)}: {'yes' if same else 'NO'}")


def _ray(fn):
    try:
        import ray
    except ImportError:
        print("  Ray                   not installed (pip install 'tradebook[sweep]'): no Ray figure")
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_research_ray import start_local_ray  # retries Ray's start-up race on a loaded machine

    t = time.perf_counter()
    start_local_ray()
    print(f"  (local Ray instance started in {time.perf_counter() - t:.1f} s, not counted below)")
    try:
        return _timed(fn)
    finally:
        ray.shutdown()


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _count(grid) -> int:
    n = 1
    for values in grid.values():
        n *= len(values)
    return n


def main() -> None:
    import os

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-scaling", action="store_true", help="only the SMA grid")
    args = ap.parse_args()
    print(f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} (other work on the machine skews the "
          "scaling figures)")
    sma_section(args.runs)
    if not args.skip_scaling:
        scaling_section()


if __name__ == "__main__":
    sys.exit(main())
