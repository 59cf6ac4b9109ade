"""Reconcile speed (SPEC §7): 5,000 broker positions vs the ledger, target <= 0.5 s.

A fake broker (ours, in this file) answers with 5,000 positions; the ledger is a real
DuckDB file. Two scenarios, median of a few runs each, every run on a fresh copy:

- in sync: 5,000 positions equal on both sides (fetch, read, diff; nothing written);
- divergent: 1,500 actions (500 backfills, 500 corrections, 500 external closes),
  confirmed by the second check and written in one transaction (positions, trades,
  closed_today, 1,500 events, an incident, an alert and the REDUCE_ONLY trip).

    .venv/bin/python bench/bench_reconcile.py [--positions N] [--runs N]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from tradebook.broker.base import Account, Clock, Position
from tradebook.context import Context
from tradebook.params import load_params
from tradebook.phases.reconcile import run_reconcile

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2012, 6, 4, 13, 10, tzinfo=timezone.utc)


class FakeBroker:
    """Only what reconcile asks for: positions, open orders, order look-ups, the clock, the account."""

    name = "bench"

    def __init__(self, positions: list[Position]):
        self._positions = positions

    def positions(self) -> list[Position]:
        return list(self._positions)

    def open_orders(self) -> list:
        return []

    def get_order(self, client_order_id: str):
        return None

    def account(self) -> Account:
        # reconcile records the start-of-day equity (BRK-1/2) before comparing positions
        return Account(equity=1e9, cash=1e9, buying_power=1e9, last_equity=1e9)

    def clock(self) -> Clock:
        return Clock(NOW, True, NOW + timedelta(days=1), NOW + timedelta(hours=7))

    def calendar(self, start: date, end: date) -> list:
        return []


def build(root: Path, n: int, divergent: bool) -> tuple[Context, FakeBroker]:
    """A ledger holding the scenario's positions and a broker that disagrees (or not)."""
    import pandas as pd

    shutil.copytree(REPO / "params", root / "params")
    ctx = Context(load_params(root / "params" / "sim.yaml", {"runs_dir": str(root / "runs")}), root)
    symbols = [f"S{k:05d}" for k in range(n)]
    broker = [Position(s, 100.0 + k % 7, 50.0 + k % 13, 51.0) for k, s in enumerate(symbols)]
    ledger = [(p.symbol, p.qty, p.avg_price) for p in broker]
    if divergent:
        cut = n // 10
        ledger = ledger[cut:]                                                    # backfills
        ledger = [(s, q + 1, a) if k < cut else (s, q, a) for k, (s, q, a) in enumerate(ledger)]  # corrections
        ledger += [(f"GONE{k:05d}", 10.0, 20.0) for k in range(cut)]            # external closes
    frame = pd.DataFrame(ledger, columns=["symbol", "qty", "avg_price"])
    with ctx.ledger.transaction() as con:
        con.register("seed", frame)
        con.execute("INSERT INTO positions SELECT symbol, qty, avg_price, 'STRATEGY', ?, 0.5, 'TIER1', 'S', ? "
                    "FROM seed", [NOW, NOW])
        con.execute("INSERT INTO trades (ts, symbol, side, qty, price, kind) VALUES (?, 'S00000', 'buy', 1, 1, 'FILL')",
                    [NOW])
        con.unregister("seed")
    fake = FakeBroker(broker)
    ctx.__dict__["broker"] = fake
    return ctx, fake


def measure(n: int, runs: int, divergent: bool) -> tuple[float, int]:
    times, actions = [], 0
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            ctx, _ = build(Path(tmp), n, divergent)
            with ctx.ledger.connect():
                pass  # create + migrate the file outside the timing
            start = time.perf_counter()
            report = run_reconcile(ctx)
            times.append(time.perf_counter() - start)
            actions = len(report.actions)
            if divergent:
                assert report.divergence and not run_reconcile(ctx).wrote  # REC-5 holds at scale too
    return statistics.median(times), actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for divergent in (False, True):
        median, actions = measure(args.positions, args.runs, divergent)
        label = "divergent" if divergent else "in sync  "
        verdict = "OK" if median <= 0.5 else "SLOW"
        print(f"reconcile {label}: {args.positions:,} broker positions, {actions:,} actions written: "
              f"{median * 1000:.0f} ms (median of {args.runs}; target <= 500 ms) {verdict}")


if __name__ == "__main__":
    main()
