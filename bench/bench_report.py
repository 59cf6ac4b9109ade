"""Report speed (SPEC §7): the report's ledger queries over 1,000,000 fills, target <= 1 s.

Builds a temporary DuckDB ledger with synthetic history (1M fills and their trades
and intents, 2 gate verdicts per intent, equity snapshots, controls, incidents,
runs), then times ``build_report`` (all its aggregations, broker not consulted) and
the figures built from it. Prints medians of a few runs.

    .venv/bin/python bench/bench_report.py [--fills N] [--runs N]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

SYMBOLS = 50


def populate(ledger, n_fills: int) -> None:
    """Synthetic ledger content, generated inside DuckDB (seconds, not minutes)."""
    with ledger.transaction() as con:
        con.execute("SELECT setseed(0.42)")
        con.execute(f"""
            INSERT INTO intents (intent_id, created_at, run_id, kind, symbol, side, qty, order_type, limit_price,
                                 confidence, decision_price, decision_time, reason, state, gate_status, gate_reason,
                                 updated_at)
            SELECT 'i' || i, TIMESTAMPTZ '2015-01-02 21:15:00+00' + to_days((i // 500)::INT), NULL,
                   CASE WHEN i % 2 = 0 THEN 'ENTRY' ELSE 'EXIT' END, 'S' || (i % {SYMBOLS}),
                   CASE WHEN i % 2 = 0 THEN 'buy' ELSE 'sell' END, 10, 'limit', 100 + (i % 97),
                   random(), 100 + (i % 97), NULL, 'synthetic',
                   CASE WHEN i >= {n_fills} - 20 THEN 'PLANNED' ELSE 'FILLED' END, 'pass', 'OK',
                   TIMESTAMPTZ '2015-01-02 21:15:00+00' + to_days((i // 500)::INT)
            FROM range({n_fills}) t(i)""")
        con.execute(f"""
            INSERT INTO fills (client_order_id, intent_id, symbol, side, qty, price, ts, decision_price, slippage_bps)
            SELECT 'c' || i, 'i' || i, 'S' || (i % {SYMBOLS}), CASE WHEN i % 2 = 0 THEN 'buy' ELSE 'sell' END, 10,
                   (100 + (i % 97)) * (1 + (random() - 0.45) / 500), TIMESTAMPTZ '2015-01-05 14:36:00+00'
                   + to_days((i // 500)::INT) + to_seconds((i % 500)::BIGINT), 100 + (i % 97),
                   CASE WHEN i % 3 = 0 THEN NULL ELSE (random() - 0.45) * 20 END
            FROM range({n_fills}) t(i)""")
        con.execute("""
            INSERT INTO trades (ts, symbol, side, qty, price, kind, realized_pnl, reason)
            SELECT ts, symbol, side, qty, price, 'FILL', CASE WHEN side = 'sell' THEN (random() - 0.45) * 50 END, 'fill'
            FROM fills""")
        con.execute("""
            INSERT INTO verdicts (intent_id, run_id, ts, rule, severity, reason_code, detail)
            SELECT intent_id, NULL, created_at, r.rule,
                   CASE WHEN hash(intent_id || r.rule) % 40 = 0 THEN 'reject' WHEN hash(intent_id) % 50 = 0 THEN 'warn'
                        ELSE 'pass' END,
                   CASE WHEN hash(intent_id || r.rule) % 40 = 0 THEN r.code ELSE 'OK' END, '{}'
            FROM intents, (VALUES ('GATE-3', 'MAX_POSITION'), ('GATE-7', 'PRICE_GAP')) r(rule, code)""")
        con.execute("""UPDATE intents SET gate_status = 'reject', gate_reason = v.reason_code, state = 'REJECTED'
                       FROM (SELECT intent_id, any_value(reason_code) AS reason_code FROM verdicts
                             WHERE severity = 'reject' GROUP BY 1) v WHERE intents.intent_id = v.intent_id""")
        con.execute("""
            INSERT INTO equity_snapshots (ts, session_date, kind, equity, cash)
            SELECT TIMESTAMPTZ '2015-01-05 14:15:00+00' + to_days(d::INT), DATE '2015-01-05' + d::INT, k.kind,
                   100000 + d * 20 + (random() - 0.5) * 3000, 50000
            FROM range(2000) t(d), (VALUES ('START_OF_DAY'), ('PEAK')) k(kind)""")
        con.execute(f"""
            INSERT INTO positions (symbol, qty, avg_price, origin, opened_at, confidence, tier, sector, updated_at)
            SELECT 'S' || i, 10 + i, 100 + i, 'STRATEGY', now(), 0.5, 'TIER' || (1 + i % 3), 'Sector' || (i % 8), now()
            FROM range({SYMBOLS}) t(i)""")
        con.execute("""INSERT INTO controls (ts, state, reason, actor, source)
                       SELECT now() - to_days(i::INT), CASE WHEN i % 2 = 0 THEN 'RUNNING' ELSE 'HALTED' END,
                              'synthetic', 'bench', 'cli' FROM range(20) t(i)""")
        con.execute("""INSERT INTO incidents (ts, session_date, kind, detail)
                       SELECT now() - to_days(i::INT), current_date - i::INT, 'SYNTHETIC', 'bench' FROM range(20) t(i)""")
        con.execute("""INSERT INTO runs (run_id, phase, started_at, ended_at, status)
                       SELECT 'r' || i, ['reconcile', 'execute', 'decide', 'report'][1 + i % 4],
                              now() - to_minutes(i::BIGINT), now(), CASE WHEN i % 97 = 0 THEN 'FAILED' ELSE 'OK' END
                       FROM range(8000) t(i)""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fills", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    from tradebook.context import Context
    from tradebook.params import Params
    from tradebook.report.build import build_report

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ctx = Context(Params(runs_dir=str(root / "runs")), root)
        t = time.perf_counter()
        populate(ctx.ledger, args.fills)
        print(f"synthetic ledger: {ctx.ledger.check()['fills']:,} fills, built in {time.perf_counter() - t:.1f} s")
        prices = {f"S{i}": 101.0 + i for i in range(SYMBOLS)}
        build_report(ctx, prices=prices, use_broker=False)  # first run pays DuckDB's catalogue load
        times, report = [], None
        for _ in range(args.runs):
            t = time.perf_counter()
            report = build_report(ctx, prices=prices, use_broker=False)
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        report.figures()
        figures_s = time.perf_counter() - t
    print(f"build_report over {args.fills:,} fills: {statistics.median(times):.3f} s median of {args.runs} "
          f"(min {min(times):.3f} s; target <= 1 s)")
    print(f"figures from that report: {figures_s:.3f} s")
    print(report.summary())


if __name__ == "__main__":
    main()
