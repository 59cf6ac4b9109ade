"""Chaos: execute as a real process, killed with SIGKILL at every step boundary of the order path,
or hit by injected broker faults; then restart, reconcile, execute again (EXE-1, OPS-2, EXIT-3).

After every scenario: no duplicate order at the broker (per intent), no lost intent (each one
ends terminal), ledger positions equal broker positions, no divergence incident, and every
order at the broker has a passing gate verdict in the ledger.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import pytest

from tradebook.phases import intents as it
from tradebook.phases.execute import run_execute
from tradebook.phases.monitor import run_monitor
from tradebook.phases.reconcile import run_reconcile
from support.trading import (EXEC_DAY, broker_orders, decide_time, gate_passed_intents, hold, incidents, intent_states,
                             ledger_positions, make_ctx, mid, ny, plant, positions_match, stored_orders, window_time)

CHILD = """
import sys
from pathlib import Path
from tradebook.context import Context
from tradebook.phases.execute import run_execute
root = Path(sys.argv[1])
ctx = Context.load("params/sim.yaml", {"runs_dir": str(root / "runs")}, root=root)
print(run_execute(ctx).summary())
"""
CRASHES = [(step, None) for step in it.CRASH_STEPS] + [
    ("after_submitted_recorded@2", None), ("after_broker_submit@3", None)]   # a later intent's boundary
FAULTS = [(None, f) for f in ("timeout_after_accept", "http_500", "http_429", "reject_buying_power", "partial_fill")]


def _setup(root):
    ctx = make_ctx(root)
    ctx.broker.advance_to(decide_time())
    hold(ctx, "MSFT", 100, mid(ctx, "MSFT"))
    intents = [plant(ctx, "MSFT", "EXIT", 100), plant(ctx, "AAPL", "ENTRY", 10), plant(ctx, "IBM", "ENTRY", 20)]
    run_reconcile(ctx)   # REC-8: after the close, it covers the next session's entries
    ctx.broker.advance_to(window_time())
    return ctx, [i.intent_id for i in intents]


def _child(root, crash: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != it.CRASH_ENV}
    if crash:
        env[it.CRASH_ENV] = crash
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root)], env=env, capture_output=True, text=True,
                          timeout=180, cwd=root)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr[-3000:]
    return proc.returncode


def _restart(root):
    """What the scheduler does after a crash: a new process reconciles, then executes again."""
    ctx = make_ctx(root)
    run_reconcile(ctx)
    run_execute(ctx)
    ctx.broker.advance_to(ny(EXEC_DAY, 10, 5))   # after the window: leftovers are cancelled / resolved
    run_monitor(ctx)
    return ctx


def _check(ctx, planted: list[str]) -> tuple[int, int]:
    states = intent_states(ctx.ledger)
    ids = list(states)
    assert set(planted) <= set(ids)
    orders = broker_orders(ctx)
    per_intent = {i: [o for o in orders if o[0].startswith(f"tb-{i}-")] for i in ids}
    duplicates = sum(max(0, len(v) - 1) for v in per_intent.values())
    lost = sum(states[i] not in it.TERMINAL for i in ids)
    assert positions_match(ctx), (ctx.broker.positions(), ledger_positions(ctx))
    assert incidents(ctx) == []   # nothing diverged
    passed = gate_passed_intents(ctx.ledger)
    sent = {o.client_order_id: o.intent_id for o in stored_orders(ctx.ledger)}
    assert all(sent.get(o[0]) in passed for o in orders)   # no order without a passing verdict
    return duplicates, lost


@pytest.mark.integration
@pytest.mark.parametrize("crash,fault", CRASHES + FAULTS, ids=[c or f for c, f in CRASHES + FAULTS])
def test_chaos_when_execute_killed_or_faulted_then_no_duplicate_no_lost_intent_ledger_equals_broker(root, crash,
                                                                                                     fault):
    """EXE-1/OPS-2: kill -9 at each order-path step (or inject a fault), restart: 0 duplicates, 0 lost."""
    ctx, ids = _setup(root)
    if fault:
        ctx.broker.inject_fault(fault)
    code = _child(root, crash)
    assert (code == -signal.SIGKILL) == bool(crash)
    ctx = _restart(root)
    duplicates, lost = _check(ctx, ids)
    states = intent_states(ctx.ledger)
    print(f"\nchaos {crash or fault}: runs=2 killed={code == -signal.SIGKILL} orders={len(broker_orders(ctx))} "
          f"duplicates={duplicates} lost={lost} states={sorted(states.values())}")
    assert duplicates == 0 and lost == 0
    if fault == "reject_buying_power":
        assert states[ids[0]] == "FAILED"
    elif fault == "partial_fill":
        assert states[ids[0]] == "PARTIAL"
    else:
        assert set(states.values()) == {"FILLED"}


def test_chaos_when_crash_after_submit_then_restart_adopts_instead_of_resending(root):
    """EXE-1 in detail: killed right after the broker accepted, the order is adopted by reconcile."""
    ctx, ids = _setup(root)
    assert _child(root, "after_broker_submit") == -signal.SIGKILL
    assert [o.status for o in stored_orders(ctx.ledger)] == ["pending_submit"]
    report = run_reconcile(make_ctx(root))
    assert [u.reason for u in report.order_updates] == ["adopted: found at the broker by client_order_id"]
    assert intent_states(ctx.ledger)[ids[0]] == "FILLED"
    assert len(broker_orders(ctx)) == 1
