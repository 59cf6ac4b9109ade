"""SimBroker call costs: median wall ms per call on a fresh state in a temp dir.

Run: .venv/bin/python bench/bench_sim.py   (prints figures, asserts nothing)
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from tradebook.broker.base import OrderRequest
from tradebook.broker.sim.broker import SimBroker
from tradebook.broker.sim.store import SimStore

SYMBOLS = ["AAPL", "GOOG", "IBM", "MSFT"]


def timed(label: str, fn, n: int = 60, before=None) -> None:
    """Print median/p90 wall ms and mean CPU ms of ``fn(i)`` over ``n`` calls (``before(i)`` untimed).

    CPU time is shown too because wall time on a busy machine mostly measures the queue.
    """
    samples, cpu = [], 0.0
    for i in range(n):
        if before:
            before(i)
        c0, t0 = time.process_time(), time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t0) * 1e3)
        cpu += (time.process_time() - c0) * 1e3 / n
    samples.sort()
    print(f"  {label:38s} wall median {statistics.median(samples):6.2f} ms  p90 {samples[int(n * 0.9)]:6.2f} ms"
          f"  cpu {cpu:6.2f} ms")


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        sim = SimBroker(Path(tmp) / "sim.duckdb")
        sim.quotes(SYMBOLS)
        print(f"first call (calendar + bars + new state): {(time.perf_counter() - t0) * 1e3:.0f} ms")
        session = sim.first_session_on_or_after(sim.now().date())
        sim.advance_to(session.open + timedelta(minutes=5))
        print("per call, market open, 0 -> 60 resting limit orders:")
        other = SimBroker(Path(tmp) / "sim.duckdb")

        def foreign_write(i: int) -> None:
            """A write as another process would do it: this process has no snapshot of the result."""
            other.seed_position("MSFT", i + 1, 25.0)
            SimStore._snapshots.clear()
        timed("clock() after another process wrote", lambda i: sim.clock(), before=foreign_write)
        timed("clock() (state unchanged: snapshot)", lambda i: sim.clock())
        timed("account()", lambda i: sim.account())
        timed("positions()", lambda i: sim.positions())
        timed("quotes(4 symbols)", lambda i: sim.quotes(SYMBOLS))
        timed("get_order(unknown)", lambda i: sim.get_order("nope"))
        timed("submit(limit, rests)", lambda i: sim.submit(
            OrderRequest("IBM", "buy", Decimal(1), f"l-{i}", limit_price=Decimal(100))))
        timed("submit(market, fills)", lambda i: sim.submit(
            OrderRequest("AAPL", "buy", Decimal(1), f"m-{i}", order_type="market")))
        timed("open_orders() with 60 open", lambda i: sim.open_orders())
        timed("daily_bars(4 symbols, 1 year)", lambda i: sim.daily_bars(
            SYMBOLS, session.day - timedelta(days=365), session.day))
        timed("advance_to(+1 min), 60 open", lambda i: sim.advance_to(
            session.open + timedelta(minutes=6 + i)))
        t0 = time.perf_counter()
        sim.advance_to(session.open + timedelta(days=30))
        print(f"  advance_to(+30 days, 60 day orders expire): {(time.perf_counter() - t0) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
