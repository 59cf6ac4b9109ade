"""The intraday monitor tick: light reconcile, breakers, protective exits (EXIT-4, EXIT-5, EXIT-2)."""
from __future__ import annotations

import pytest

from tradebook.ledger import closed_today, events
from tradebook.phases import intents as it
from tradebook.phases.monitor import run_monitor
from support.trading import (EXEC_DAY, broker_orders, hold, intent_state, intent_states, ledger_positions, make_ctx, mid,
                             ny, plant, positions_match, stored_intents, stored_orders, stored_verdicts)

MIDDAY = ny(EXEC_DAY, 12)


def _mctx(root, **overrides):
    ctx = make_ctx(root, **overrides)
    ctx.broker.advance_to(MIDDAY)
    return ctx


def test_exit4_when_stop_loss_hit_then_immediate_market_exit_through_gate(root):
    """EXIT-4: stop loss 5% checked by the monitor; EXIT-2: an immediate exit uses a market order."""
    ctx = _mctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL") * 1.10)       # 9% under water
    report = run_monitor(ctx)
    assert [(e.code, e.symbol) for e in report.exits] == [("STOP_LOSS", "AAPL")]
    iid = "20110721-AAPL-EXIT-STOP_LOSS"
    assert [(i.state, i.urgency, i.order_type) for i in stored_intents(ctx.ledger)] == [("FILLED", "immediate", "market")]
    assert [o.order_type for o in stored_orders(ctx.ledger) if o.intent_id == iid] == ["market"]
    assert [v for v in stored_verdicts(ctx.ledger) if v.intent_id == iid]   # it passed the gate
    assert ledger_positions(ctx) == {} and positions_match(ctx)
    assert [(e.symbol, e.qty) for e in ctx.ledger.read(events.find, "EXIT_TRIGGERED")] == [("AAPL", 10.0)]
    assert ctx.ledger.read(closed_today.symbols, EXEC_DAY) == ["AAPL"]


def test_exit4_when_profit_target_hit_then_exit(root):
    """EXIT-4: profit target per position."""
    ctx = _mctx(root)
    hold(ctx, "IBM", 10, mid(ctx, "IBM") * 0.80)
    report = run_monitor(ctx)
    assert [e.code for e in report.exits] == ["PROFIT_TARGET"] and broker_orders(ctx)[0][1:3] == ("IBM", "sell")


def test_exit4_when_position_external_then_no_stop_loss(root):
    """EXIT-4 choice: stops protect positions tradebook opened, not EXTERNAL ones."""
    ctx = _mctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL") * 1.5, origin="EXTERNAL")
    assert run_monitor(ctx).exits == [] and broker_orders(ctx) == []


def test_exit4_when_monitor_ticks_again_then_no_second_exit(root):
    ctx = _mctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL") * 1.10)
    run_monitor(ctx)
    ctx.broker.advance_to(ny(EXEC_DAY, 12, 1))
    second = run_monitor(ctx)
    assert second.exits == [] and len(broker_orders(ctx)) == 1


def test_exit4_when_exit_order_still_working_then_skipped(root):
    """A symbol whose exit is already under way gets no second exit."""
    ctx = _mctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL") * 1.10)
    planned = plant(ctx, "AAPL", "EXIT", 10, urgency="immediate", suffix="OPERATOR")
    with ctx.ledger.transaction() as con:
        it.transition(con, planned.intent_id, it.SUBMITTED, reason="test: sent", now=ctx.now())
    report = run_monitor(ctx)
    assert report.skipped == ["AAPL"] and broker_orders(ctx) == []


@pytest.mark.parametrize("eod,expect_sold", [(True, True), (False, False)])
def test_exit5_when_near_close_then_eod_liquidation_only_if_enabled(root, eod, expect_sold):
    """EXIT-5: optional EOD liquidation (off for swing, on for a day-trade params set), incl. EXTERNAL."""
    ctx = make_ctx(root, eod_liquidation=eod)
    ctx.broker.advance_to(ny(EXEC_DAY, 15, 50))
    hold(ctx, "MSFT", 100, mid(ctx, "MSFT"))
    hold(ctx, "AAPL", 5, mid(ctx, "AAPL"), origin="EXTERNAL")
    report = run_monitor(ctx)
    sold = {o[1] for o in broker_orders(ctx)}
    if expect_sold:
        assert [e.code for e in report.exits] == ["EOD_LIQUIDATION"] * 2 and sold == {"AAPL", "MSFT"}
        assert ledger_positions(ctx) == {}
    else:
        assert report.exits == [] and sold == set()


def test_exit4_when_market_closed_then_no_protective_exits(root):
    ctx = make_ctx(root)
    ctx.broker.advance_to(ny(EXEC_DAY, 17))
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL") * 1.5)
    report = run_monitor(ctx)
    assert not report.market_open and report.exits == [] and "market closed" in report.summary()


def test_monitor_when_tick_runs_then_breakers_run_and_planned_exit_superseded(root, monkeypatch):
    """Each tick runs breakers.run_breakers; an immediate exit replaces a planned one for the symbol."""
    import tradebook.safety.breakers as breakers

    calls = []
    monkeypatch.setattr(breakers, "run_breakers", lambda ctx: calls.append(ctx) or [])
    ctx = _mctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL") * 1.10)
    old = plant(ctx, "AAPL", "EXIT", 10)
    run_monitor(ctx)
    assert len(calls) == 1
    assert intent_state(ctx, old.intent_id) == "EXPIRED"
    assert it.client_order_id("20110721-AAPL-EXIT-STOP_LOSS", 1) in {o[0] for o in broker_orders(ctx)}


def test_exit4_when_frozen_then_no_exit_intent_and_report_says_why(root):
    """A FROZEN account gets no protective exit orders (GATE-1 refuses all); the tick says so, once."""
    from tradebook.safety import controls

    ctx = _mctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL") * 1.10)
    controls.freeze(ctx.ledger, "test freeze", "operator", "test", now=ctx.now())
    report = run_monitor(ctx)
    assert report.blocked_by == "FROZEN" and report.skipped == ["AAPL"] and "FROZEN" in report.summary()
    assert stored_intents(ctx.ledger) == [] and broker_orders(ctx) == []


def test_exit2_when_immediate_exit_is_planned_then_next_tick_sends_it_as_market_order(root):
    """EXIT-2: an urgency=immediate exit (e.g. planned by decide, or left by a tick that died) is not
    held back for a window: the next monitor tick sends it, as a market order, through the gate."""
    ctx = _mctx(root)
    hold(ctx, "MSFT", 100, mid(ctx, "MSFT"))
    planned = plant(ctx, "MSFT", "EXIT", 100, urgency="immediate")
    run_monitor(ctx)
    assert intent_state(ctx, planned.intent_id) == "FILLED"
    assert [o.order_type for o in stored_orders(ctx.ledger)] == ["market"] and positions_match(ctx)


def test_ctl3_when_auto_trip_cooldown_passed_and_healthy_then_monitor_rearms(root):
    """CTL-3: the monitor re-arms an auto trip (API circuit) after the cooldown when the broker answers."""
    from datetime import timedelta

    from tradebook.safety import controls

    ctx = _mctx(root)
    controls.reduce_only(ctx.ledger, "api circuit open", source="api_breaker", now=MIDDAY - timedelta(minutes=31))
    assert controls.effective_state(ctx.params, ctx.root, ctx.ledger).state == "REDUCE_ONLY"
    report = run_monitor(ctx)
    assert report.rearmed and "re-armed" in report.summary()
    assert controls.effective_state(ctx.params, ctx.root, ctx.ledger).state == "RUNNING"


def test_ctl3_when_auto_trip_still_in_cooldown_then_monitor_keeps_reduce_only(root):
    """CTL-3: no re-arm before the cooldown; CTL-2: a freeze is never re-armed by the monitor."""
    from datetime import timedelta

    from tradebook.safety import controls

    ctx = _mctx(root)
    controls.reduce_only(ctx.ledger, "api circuit open", source="api_breaker", now=MIDDAY - timedelta(minutes=5))
    assert not run_monitor(ctx).rearmed
    assert controls.effective_state(ctx.params, ctx.root, ctx.ledger).state == "REDUCE_ONLY"
    controls.freeze(ctx.ledger, "manual freeze", actor="operator", source="cli", now=MIDDAY)
    ctx.broker.advance_to(MIDDAY + timedelta(hours=1))
    assert not run_monitor(ctx).rearmed
    assert controls.effective_state(ctx.params, ctx.root, ctx.ledger).state == "FROZEN"


def test_exit6_when_stop_loss_exceeds_max_order_notional_then_closed_in_one_tick_by_child_orders(root):
    """EXIT-6 (issue 12 item 6, reproduced: a 15k stop-loss REJECTED three times, then skipped):
    the stop goes out as market child orders each within max_order_notional, in the same tick."""
    ctx = _mctx(root, **{"sim.starting_cash": 300_000})
    qty = float(round(15_000 / mid(ctx, "AAPL")))
    hold(ctx, "AAPL", qty, mid(ctx, "AAPL") * 1.10)
    run_monitor(ctx)
    iid = "20110721-AAPL-EXIT-STOP_LOSS"
    states = intent_states(ctx.ledger)
    assert states == {iid: "CANCELLED", f"{iid}-part1": "FILLED", f"{iid}-part2": "FILLED"}
    assert ctx.broker.positions() == [] and positions_match(ctx)
    limit = ctx.params.max_order_notional
    assert all(o.qty * mid(ctx, "AAPL") <= limit * 1.01 for o in stored_orders(ctx.ledger))
