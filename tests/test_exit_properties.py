"""EXIT-9 as a property over generated broker behaviour (issue 12, "Done when").

Each generated case: a STRATEGY position of 10 AAPL whose stop is breached, on a SimBroker
that behaves like a real venue (asynchronous cancels of 0-4 look-ups, wash-trade and
held-quantity refusals), with an obstacle on the symbol (our own working buy limit, our
own working limit exit, an outside working sell, or none), transient faults and fill/cancel
races injected into the first two ticks, a partial fill of the exit, and at most one
process kill at an order-path step boundary (in-process: the tick stops dead at that point
and the next tick runs in a new Context, as a restarted process would — committed ledger
transactions and venue state survive, nothing else). Sometimes the first tick runs just
before the close and the next two on the next session. Sometimes an operator has halted
trading. Three monitor ticks, a minute apart. Then:

- the position is closed at the broker (unless an operator halted trading: then nothing
  was sent at all);
- no order was sent twice: what our orders sold adds up to exactly the position, and
  nothing of ours is still working that could sell again;
- no immediate intent was sent on a later session than the one it was created in;
- the ledger equals the broker.

Number of generated cases: N_CASES = 30 (hypothesis max_examples; a few seconds each).
"""
from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradebook.safety import controls
from tradebook.phases import intents as it
from tradebook.broker.base import OrderRequest
from tradebook.errors import TradebookError
from tradebook.ledger import events
from tradebook.phases.monitor import run_monitor
from tradebook.phases.reconcile import sync_orders
from tradebook.safety.controls import session_date
from support import REPO
from support.trading import (EXEC_DAY, hold, make_ctx, mid, ny, plant, positions_match, record_order, stored_intents,
                             stored_orders)

N_CASES = 30
NEXT_DAY = EXEC_DAY + timedelta(days=1)            # Fri 2011-07-22
VENUE = {"sim.wash_trade_check": True}
FAULTS = [("submit", "http_500"), ("submit", "http_503"), ("submit", "http_429"), ("submit", "timeout_after_accept"),
          ("submit", "partial_fill"), ("get_order", "http_500"), ("open_orders", "http_503"),
          ("positions", "http_500"), ("cancel", "http_503"), ("cancel", "cancel_fill_race"), ("quotes", "http_500")]
KILL_STEPS = ("before_gate", "after_gate_evaluated", "after_submitted_recorded", "after_broker_submit",
              "after_order_recorded", "after_fill_recorded")
OBSTACLES = ("none", "own_buy_limit", "own_limit_exit", "own_partial_limit_exit", "outside_sell")


class Killed(BaseException):
    """The process died here (SIGKILL in the chaos tests; in-process here to stay fast)."""


cases = st.fixed_dictionaries({
    "cancel_polls": st.integers(0, 4),
    "obstacle": st.sampled_from(OBSTACLES),
    "faults": st.lists(st.tuples(st.integers(0, 1), st.sampled_from(FAULTS)), max_size=3),
    "kill": st.none() | st.tuples(st.integers(0, 1), st.sampled_from(KILL_STEPS)),
    "overnight": st.booleans(),
    "halted": st.sampled_from([False, False, False, True]),
})


def _working(ctx, symbol: str, side: str, qty: float, limit: float, intent: it.Intent | None, cid: str) -> None:
    ctx.broker.submit(OrderRequest(symbol, side, Decimal(str(qty)), cid, "limit", Decimal(f"{limit:.2f}")))
    if intent is None:
        return
    now = ctx.now()
    with ctx.ledger.transaction() as con:
        record_order(con, cid, intent.intent_id, symbol, side, qty, now=now, status="new", limit=limit)
        it.transition(con, intent.intent_id, it.SUBMITTED, attempt=1, reason="test: sent", now=now)


def _obstacle(ctx, kind: str) -> None:
    m = mid(ctx, "AAPL")
    if kind == "own_buy_limit":
        add_on = plant(ctx, "AAPL", "ADD_ON", 5)
        _working(ctx, "AAPL", "buy", 5, m * 0.9, add_on, it.client_order_id(add_on.intent_id, 1))
    elif kind in ("own_limit_exit", "own_partial_limit_exit"):
        qty = 10 if kind == "own_limit_exit" else 4
        exit_ = plant(ctx, "AAPL", "EXIT", qty)
        _working(ctx, "AAPL", "sell", qty, m * 1.3, exit_, it.client_order_id(exit_.intent_id, 1))
    elif kind == "outside_sell":
        _working(ctx, "AAPL", "sell", 10, m * 1.3, None, "manual-sell-1")


def _tick_times(overnight: bool):
    if overnight:
        return [ny(EXEC_DAY, 15, 58), ny(NEXT_DAY, 9, 31), ny(NEXT_DAY, 9, 32)]
    return [ny(EXEC_DAY, 10, 0), ny(EXEC_DAY, 10, 1), ny(EXEC_DAY, 10, 2)]


def _run_case(root: Path, case: dict, monkeypatch) -> None:
    overrides = {**VENUE, "sim.cancel_polls": case["cancel_polls"]}
    times = _tick_times(case["overnight"])
    ctx = make_ctx(root, **overrides)
    with ctx.ledger.connect():   # one DuckDB instance for the whole case (speed only; every change commits)
        _ticks(root, ctx, case, overrides, times, monkeypatch)


def _ticks(root: Path, ctx, case: dict, overrides: dict, times: list, monkeypatch) -> None:
    ctx.broker.advance_to(times[0] - timedelta(minutes=1))
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL") * 1.3)            # ~23% under water: the stop is breached
    _obstacle(ctx, case["obstacle"])
    if case["halted"]:
        controls.halt(ctx.params, ctx.root, "operator halt", now=ctx.now())
    ours_before = _venue_orders(ctx)
    for k, at in enumerate(times):
        ctx.broker.advance_to(at)
        for tick, (op, kind) in case["faults"]:
            if tick == k:
                ctx.broker.inject_fault(kind, op=op)
        _arm_kill(monkeypatch, case["kill"], k)
        try:
            run_monitor(ctx)
        except (Killed, TradebookError):
            ctx = make_ctx(root, **overrides)                # a new process for the next tick
        ctx.broker.clear_faults()
    monkeypatch.setattr(it, "crash_point", lambda name: None)
    _check(ctx, case, ours_before)


def _arm_kill(monkeypatch, kill, tick: int) -> None:
    def crash(name: str) -> None:
        if kill is not None and kill[0] == tick and name == kill[1]:
            raise Killed(name)
    monkeypatch.setattr(it, "crash_point", crash)


def _venue_orders(ctx) -> dict:
    """Every venue order of ours (by the ledger's client ids), cid -> Order."""
    cids = [o.client_order_id for o in stored_orders(ctx.ledger)]
    return {c: o for c in cids if (o := ctx.broker.get_order(c)) is not None}


def _check(ctx, case: dict, before: dict) -> None:
    sync_orders(ctx)
    held = {p.symbol: p.qty for p in ctx.broker.positions()}
    venue = _venue_orders(ctx)
    sent = {c: o for c, o in venue.items() if c not in before}
    if case["halted"]:
        assert sent == {}, f"orders sent while HALTED: {sorted(sent)}"
    else:
        assert "AAPL" not in held, f"stop not closed within 3 ticks: {held} {_trail(ctx)}"
    sold = sum(o.filled_qty for o in venue.values() if o.symbol == "AAPL" and o.side == "sell")
    bought = sum(o.filled_qty for o in venue.values() if o.symbol == "AAPL" and o.side == "buy")
    outside = ctx.broker.get_order("manual-sell-1").filled_qty if case["obstacle"] == "outside_sell" else 0.0
    assert abs(sold + outside - (10 + bought - held.get("AAPL", 0.0))) < 1e-9, "sold more (or less) than held"
    assert not [o for o in sent.values() if o.is_open and o.side == "sell"] or case["halted"]
    immediate = {i.intent_id: i.created_at for i in stored_intents(ctx.ledger) if i.urgency == "immediate"}
    created = {o.client_order_id: immediate[o.intent_id] for o in stored_orders(ctx.ledger) if o.intent_id in immediate}
    for cid, order in sent.items():
        if cid in created:
            assert session_date(order.submitted_at) == session_date(created[cid]), f"{cid} sent on a later session"
    assert positions_match(ctx), "ledger and broker differ"


def _trail(ctx) -> list[tuple]:
    """The intents' and orders' audit events in time order (for a failure message)."""
    found = [*ctx.ledger.read(events.find, kind_prefix="INTENT_"), *ctx.ledger.read(events.find, kind_prefix="ORDER_")]
    return [(e.kind, e.symbol, e.reason) for e in sorted(found, key=lambda e: e.ts)]


@settings(max_examples=N_CASES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=cases)
def test_exit9_when_broker_misbehaves_then_breached_stop_closed_within_3_ticks_once_and_ledger_equals_broker(
        case, monkeypatch):
    """EXIT-9, EXIT-8, VEN-1, VEN-2 over N_CASES generated cases (module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "params", root / "params")
        (root / "runs").mkdir()
        with monkeypatch.context() as m:
            _run_case(root, case, m)
