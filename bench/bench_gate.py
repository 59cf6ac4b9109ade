"""Gate speed (SPEC §7): 10,000 intents against 1,000 positions, target <= 0.2 s.

Prints the median of a few runs. Each run builds a fresh PortfolioView from the
holdings and gates every intent through one GateRun (accepted orders update the
view and the counters, as in an execute run). The correlation index is built once
per correlation map (as in a run); its one-off cost is printed separately.

    .venv/bin/python bench/bench_gate.py [--intents N] [--positions N] [--runs N] [--profile]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from datetime import datetime, timedelta, timezone

from tradebook.broker.base import Quote
from tradebook.safety.gate import GateContext, GateRun, ProposedOrder
from tradebook.safety.portfolio_view import Holding, PortfolioView
from tradebook.safety.rules import CorrelationMap, correlation_index
from tradebook.params import Params

SECTORS = [f"S{k}" for k in range(12)]
TIERS = ["TIER1", "TIER2", "TIER3"]


def build(n_intents: int, n_positions: int, seed: int = 1):
    """Params, holdings, quotes, correlations and intents for one benchmark scenario."""
    rng = random.Random(seed)
    now = datetime(2012, 6, 4, 13, 40, tzinfo=timezone.utc)
    universe = [f"SYM{k:05d}" for k in range(int(n_positions * 1.2))]
    held, fresh = universe[:n_positions], universe[n_positions:]
    equity = 20_000_000.0
    params = Params(
        symbols=universe[:4], max_concurrent_positions=n_positions + 100,
        orders_per_run=n_intents, orders_per_day=n_intents, cooldown_minutes_per_ticker=0,
        symbol_tiers={s: TIERS[i % 3] for i, s in enumerate(universe)},
        symbol_sectors={s: SECTORS[i % len(SECTORS)] for i, s in enumerate(universe)},
    )
    prices = {s: rng.uniform(20, 400) for s in universe}
    holdings = {s: Holding(round(6_000 / prices[s], 3), prices[s]) for s in held}
    quotes = {s: Quote(s, p * 0.9998, p * 1.0002, now, day_open=p * 0.995, prev_close=p * 0.99)
              for s, p in prices.items()}
    corr = CorrelationMap(((a, b), rng.uniform(-0.2, 0.95)) for a, b in
                          ((rng.choice(universe), rng.choice(universe)) for _ in range(20 * len(universe))) if a != b)
    intents = []
    for k in range(n_intents):
        if rng.random() < 0.3:
            sym = rng.choice(held)
            side, qty = "sell", holdings[sym].qty * rng.choice([0.5, 1.0])
        else:
            sym = rng.choice(universe if rng.random() < 0.8 else fresh)
            side, qty = "buy", round(rng.uniform(1_000, 9_000) / prices[sym], 3)
        px = prices[sym] * (1.001 if side == "buy" else 0.999)
        intents.append(ProposedOrder(f"i{k}", sym, side, qty, px, kind="ENTRY" if side == "buy" else "EXIT",
                                     limit_price=px, decision_price=prices[sym],
                                     decision_time=now - timedelta(hours=rng.uniform(0.1, 20))))
    base = GateContext(now=now, params=params, quotes=quotes, correlations=corr)
    return params, equity, holdings, base, intents


def one_run(params, equity, holdings, base, intents) -> tuple[float, float, int]:
    """Wall and CPU seconds to gate every intent once (view build included), and how many passed.

    CPU time is printed too: on a shared machine wall time includes waiting for a core.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    view = PortfolioView(equity, equity * 2.0, dict(holdings), params.symbol_tiers, params.symbol_sectors)
    run = GateRun(view, base)
    passed = sum(run.check(order).passed for order in intents)
    return time.perf_counter() - t0, time.process_time() - c0, passed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--intents", type=int, default=10_000)
    ap.add_argument("--positions", type=int, default=1_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--profile", action="store_true", help="print a cProfile of one run")
    args = ap.parse_args()
    params, equity, holdings, base, intents = build(args.intents, args.positions)
    t0 = time.perf_counter()
    correlation_index(base.correlations, params.correlation_limit)
    index_s = time.perf_counter() - t0
    times, cpu, passed = [], [], 0
    for _ in range(args.runs):
        seconds, cpu_seconds, passed = one_run(params, equity, holdings, base, intents)
        times.append(seconds)
        cpu.append(cpu_seconds)
    print(f"gate: {args.intents} intents x {args.positions} positions: {statistics.median(times):.3f} s "
          f"(median of {args.runs}; min {min(times):.3f} s; cpu median {statistics.median(cpu):.3f} s; "
          f"{passed} passed; target <= 0.2 s; load average {os.getloadavg()[0]:.1f})")
    print(f"gate: correlation index over {len(base.correlations)} pairs, built once: {index_s:.3f} s")
    if args.profile:
        import cProfile
        import pstats

        cProfile.runctx("one_run(params, equity, holdings, base, intents)", globals(),
                        {"one_run": one_run, "params": params, "equity": equity, "holdings": holdings,
                         "base": base, "intents": intents}, "/tmp/bench_gate.prof")
        pstats.Stats("/tmp/bench_gate.prof").sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
