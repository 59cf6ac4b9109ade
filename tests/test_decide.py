"""Decide after the close: signals → EXIT_PLANNED / entry / add-on intents (EXIT-1, EXIT-2, POS-1…3)."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from tradebook.ledger import events
from tradebook.phases.decide import plan, run_decide
from tradebook.strategies.swing_rules import EntrySignal, ExitSignal, Signals
from support.trading import (DECIDE_DAY, decide_time, hold, intent_state, make_ctx, mid, ny, plant, stored_intents,
                             table_counts)


@pytest.fixture
def dctx(root):
    ctx = make_ctx(root)
    ctx.broker.advance_to(decide_time())
    return ctx


def _entry(symbol: str, confidence: float, price: float = 100.0) -> EntrySignal:
    return EntrySignal(symbol, confidence, price, "RSI dip in uptrend", DECIDE_DAY)


def _exit(symbol: str, price: float = 100.0, urgency: str = "normal") -> ExitSignal:
    return ExitSignal(symbol, "TREND_BREAK: close below SMA", price, urgency, asof=DECIDE_DAY)


def _decisions(ctx) -> list[tuple]:
    return [(e.symbol, e.reason) for e in ctx.ledger.read(events.find, "DECISION")]


def test_exit1_exit2_when_exit_signal_for_held_position_then_exit_planned_limit_intent(dctx):
    """EXIT-1: decide after the close persists an EXIT_PLANNED intent with decision price and time;
    EXIT-2: planned exits are limit orders."""
    hold(dctx, "MSFT", 100, 25.0)
    price = mid(dctx, "MSFT")
    report = plan(dctx, Signals([], [_exit("MSFT", price)]), dctx.now())
    row = [(i.intent_id, i.kind, i.side, i.qty, i.order_type, i.limit_price, i.urgency, i.decision_price,
            i.decision_time, i.state) for i in stored_intents(dctx.ledger)]
    assert row == [("20110720-MSFT-EXIT", "EXIT", "sell", 100.0, "limit", price, "normal", price,
                    decide_time(), "PLANNED")]
    assert report.tables()["approved (intents)"]["code"].tolist() == ["EXIT_PLANNED"]
    assert "EXIT_PLANNED" in report.summary()


def test_exit2_when_exit_signal_is_immediate_then_market_intent(dctx):
    """EXIT-2: market orders only for urgency=immediate."""
    hold(dctx, "MSFT", 100, 25.0)
    plan(dctx, Signals([], [_exit("MSFT", urgency="immediate")]), dctx.now())
    assert [(i.order_type, i.urgency, i.limit_price) for i in stored_intents(dctx.ledger)] == [
        ("market", "immediate", None)]


def test_decide_when_exit_signal_for_symbol_not_held_then_rejected_not_held(dctx):
    plan(dctx, Signals([], [_exit("IBM")]), dctx.now())
    assert stored_intents(dctx.ledger) == []
    assert "REJECTED NOT_HELD" in _decisions(dctx)[0][1]


def test_pos1_when_entry_signal_for_external_position_then_no_add_on_and_logged(dctx):
    """POS-1: EXTERNAL only → no add-on, ever; the rejection is a DECISION event with its reason."""
    hold(dctx, "AAPL", 5, 300.0, origin="EXTERNAL")
    plan(dctx, Signals([_entry("AAPL", 0.99)], []), dctx.now())
    assert stored_intents(dctx.ledger) == []
    symbol, reason = _decisions(dctx)[0]
    assert symbol == "AAPL" and reason.startswith("REJECTED EXTERNAL_ONLY")


def test_pos2_when_add_on_signal_confident_and_below_max_then_add_on_intent(dctx):
    """POS-2: an add-on is approved when enabled, allocation < max_position_pct and confident enough."""
    hold(dctx, "MSFT", 50, 25.0)   # ~1.4% of 100k
    report = plan(dctx, Signals([_entry("MSFT", 0.9, 27.0)], []), dctx.now())
    assert [(d.kind, d.code) for d in report.decisions] == [("ADD_ON", "ADD_ON_APPROVED")]
    assert [(i.intent_id, i.kind, i.order_type, i.confidence) for i in stored_intents(dctx.ledger)] == [
        ("20110720-MSFT-ADD_ON", "ADD_ON", "limit", 0.9)]
    assert _decisions(dctx)[0][1].startswith("APPROVED ADD_ON_APPROVED")


def test_pos2_when_entry_below_threshold_then_rejected_with_reason(dctx):
    """POS-2 / decision log: entries need confidence >= signal_threshold; the rejection is logged."""
    plan(dctx, Signals([_entry("IBM", 0.01)], []), dctx.now())
    (symbol, reason), = _decisions(dctx)
    assert symbol == "IBM" and reason.startswith("REJECTED LOW_CONFIDENCE: confidence 0.01 < signal_threshold 0.10")


def test_pos3_when_exit_and_entry_for_same_symbol_then_no_entry(dctx):
    """POS-3 flavour at decide time: a symbol being exited is not entered in the same plan."""
    hold(dctx, "MSFT", 50, 25.0)
    report = plan(dctx, Signals([_entry("MSFT", 0.9)], [_exit("MSFT")]), dctx.now())
    assert [(d.kind, d.approved, d.code) for d in report.decisions] == [("EXIT", True, "EXIT_PLANNED"),
                                                                          ("ADD_ON", False, "EXITING")]


def test_exit1_when_decide_runs_twice_same_day_then_nothing_duplicated(dctx):
    """Idempotent decide: ids from (date, symbol, kind); decisions logged once per id."""
    hold(dctx, "MSFT", 100, 25.0)
    signals = Signals([_entry("IBM", 0.8, 180.0), _entry("GOOG", 0.01)], [_exit("MSFT")])
    first = plan(dctx, signals, dctx.now())
    before = table_counts(dctx)
    second = plan(dctx, signals, dctx.now())
    assert len(first.created) == 2 and second.created == [] and table_counts(dctx) == before


def test_exit3_when_new_plan_for_symbol_then_older_planned_intent_superseded(dctx):
    """EXIT-3: a missed-window plan from an earlier day is replaced, never doubled (EXPIRED, reason)."""
    hold(dctx, "MSFT", 100, 25.0)
    old = plant(dctx, "MSFT", "EXIT", 100, price=25.0, when=decide_time() - timedelta(days=1))
    report = plan(dctx, Signals([], [_exit("MSFT")]), dctx.now())
    assert report.superseded == [old.intent_id]
    assert intent_state(dctx, old.intent_id) == "EXPIRED"
    expired, = dctx.ledger.read(events.find, "INTENT_EXPIRED")
    assert "superseded by 20110720-MSFT-EXIT" in expired.reason


def test_decide_when_strategy_runs_on_sim_bars_then_every_decision_logged_and_approved_ones_planned(root):
    """run_decide end to end: bars from the broker, strategy.generate, decisions → events and intents."""
    ctx = make_ctx(root)
    ctx.broker.advance_to(ny(date(2011, 7, 28), 16, 15))   # a day the reference strategy signals
    report = run_decide(ctx)
    assert report.n_entry_signals >= 1
    approved = {d.decision_id for d in report.decisions if d.approved}
    assert {i.intent_id for i in stored_intents(ctx.ledger)} == approved
    assert ctx.ledger.read(events.count, "DECISION") == len(report.decisions)
    for d in report.decisions:
        assert d.price > 0 and d.reason
    assert set(report.tables()) >= {"decisions", "approved (intents)", "rejected (with reason)"}
