"""Property tests of the execution invariants over random days on SimBroker (hypothesis).

Random sequences of signals (entries with random confidence, exits), control actions
(halt, freeze, reduce-only, resume), broker faults and execute times (inside and
outside the window) go through decide → execute → monitor → reconcile. After every
step: no order at the broker without a passing verdict row; while HALTED/FROZEN no
order at all, while REDUCE_ONLY only sells; after every buy fill the position is
within max_position_pct of equity; no short; the ledger equals the broker and never
diverges. (EXE-1, GATE-1, GATE-3, GATE-6, REC-5, POS-2)
"""
from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradebook.safety import controls
from tradebook.phases.decide import plan
from tradebook.phases.execute import run_execute
from tradebook.phases.monitor import run_monitor
from tradebook.phases.reconcile import run_reconcile
from tradebook.strategies.swing_rules import EntrySignal, ExitSignal, Signals
from support.trading import (DECIDE_DAY, REPO_PARAMS, SYMBOLS, broker_orders, fills, gate_passed_intents, hold,
                             make_ctx, mid, ny, positions_match, stored_orders)

ENTRY = st.tuples(st.just("entry"), st.sampled_from(SYMBOLS), st.sampled_from([0.05, 0.3, 0.65, 0.9]))
EXIT = st.tuples(st.just("exit"), st.sampled_from(SYMBOLS), st.just(0.0))
ACTIONS = st.one_of(
    ENTRY, ENTRY, ENTRY, ENTRY, EXIT, EXIT,   # weights: most actions are signals, so most examples trade
    st.tuples(st.just("control"), st.sampled_from(["halt", "freeze", "reduce_only", "resume", "resume"]),
              st.just(0.0)),
    st.tuples(st.just("fault"), st.sampled_from(["http_500", "timeout_after_accept", "partial_fill",
                                                 "reject_buying_power"]), st.just(0.0)),
)
# (actions, execute at open+N minutes): mostly inside the 5..30 window, sometimes before or after it
DAY = st.tuples(st.lists(ACTIONS, min_size=1, max_size=6), st.sampled_from([2, 6, 6, 12, 25, 40]))


def _signals(ctx, actions) -> Signals:
    quotes = ctx.broker.quotes(list(SYMBOLS))
    day = ctx.now().date()
    entries = [EntrySignal(s, c, quotes[s].mid, "random", day) for kind, s, c in actions if kind == "entry"]
    exits = [ExitSignal(s, "random exit", quotes[s].mid, asof=day) for kind, s, _ in actions if kind == "exit"]
    return Signals(entries, exits)


def _control(ctx, action: str) -> None:
    now = ctx.now()
    if action == "halt":
        controls.halt(ctx.params, ctx.root, "property test", now=now)
    elif action == "freeze":
        controls.freeze(ctx.ledger, "property test", "test", "test", now=now)
    elif action == "reduce_only":
        controls.reduce_only(ctx.ledger, "property test", "test", now=now)
    else:
        controls.resume(ctx.params, ctx.root, "property test resume", now=now)


def _verdict_passed_intents(ctx) -> set[str]:
    return gate_passed_intents(ctx.ledger)


def _check_step(ctx, before: set[str], state: str, equity: float) -> None:
    orders = broker_orders(ctx)
    new = [o for o in orders if o[0] not in before]
    sent = {o.client_order_id: o.intent_id for o in stored_orders(ctx.ledger)}
    passed = _verdict_passed_intents(ctx)
    assert all(sent.get(o[0]) in passed for o in orders), "order at the broker without a passing verdict"
    if state in ("HALTED", "FROZEN"):
        assert new == [], f"orders sent while {state}: {new}"
    if state == "REDUCE_ONLY":
        assert all(o[2] == "sell" for o in new), f"a buy was sent while REDUCE_ONLY: {new}"
    held = {p.symbol: p.qty for p in ctx.broker.positions()}
    assert all(q >= -1e-9 for q in held.values()), "short position"
    limit = ctx.params.max_position_pct * equity * (1 + 1e-6) + 0.01
    sent_now = {o[0] for o in new}
    for f in fills(ctx):
        if f["side"] == "buy" and f["client_order_id"] in sent_now:
            assert held.get(f["symbol"], 0.0) * f["price"] <= limit, f"{f['symbol']} over max position after a fill"


def _run_day(ctx, actions, minutes: int, decide_at) -> None:
    ctx.broker.advance_to(decide_at)
    plan(ctx, _signals(ctx, actions), ctx.now())
    for kind, what, _ in actions:
        if kind == "control":
            _control(ctx, what)
        elif kind == "fault":
            ctx.broker.inject_fault(what)
    session = ctx.broker.first_session_on_or_after(decide_at.date() + timedelta(days=1))
    ctx.broker.advance_to(session.open + timedelta(minutes=minutes))
    for step in (run_execute, run_monitor):
        before = {o[0] for o in broker_orders(ctx)}
        state = controls.effective_state(ctx.params, ctx.root, ctx.ledger).state
        equity = ctx.broker.account().equity
        step(ctx)
        _check_step(ctx, before, state, equity)
    ctx.broker.advance_to(session.close + timedelta(minutes=5))
    report = run_reconcile(ctx)
    assert not report.divergence and positions_match(ctx)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(days=st.lists(DAY, min_size=1, max_size=2))
def test_exe1_gate1_when_random_days_run_then_invariants_hold(days):
    """EXE-1/GATE-1/GATE-3/GATE-6: random signals, controls, faults and times never break the invariants."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO_PARAMS, root / "params")
        (root / "runs").mkdir()
        ctx = make_ctx(root)
        decide_at = ny(DECIDE_DAY, 16, 15)
        ctx.broker.advance_to(decide_at)
        hold(ctx, "MSFT", 60, mid(ctx, "MSFT"))     # something to exit or add to from day one
        hold(ctx, "IBM", 5, mid(ctx, "IBM"), origin="EXTERNAL")
        for actions, minutes in days:
            _run_day(ctx, actions, minutes, decide_at)
            decide_at = ctx.broker.first_session_on_or_after(decide_at.date() + timedelta(days=1)).close \
                + timedelta(minutes=15)
