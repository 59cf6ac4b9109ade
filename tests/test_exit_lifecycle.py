"""Exits through a real venue's order lifecycle (issue 12 items 1-5, 9): VEN-1, VEN-2, EXIT-3,
EXIT-8, EXIT-9. Every test runs on a SimBroker with asynchronous cancels and wash-trade checks on."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from tradebook.ledger import orders as order_store
from tradebook.phases import intents as it
from tradebook.broker.base import Order, OrderRequest
from tradebook.phases.flatten import flatten
from tradebook.errors import BrokerRejected
from tradebook.ledger import events
from tradebook.phases.execute import run_execute
from tradebook.phases.monitor import run_monitor
from tradebook.phases.reconcile import sync_orders
from support.trading import (
    EXEC_DAY,
    broker_orders,
    decide_time,
    hold,
    incidents,
    intent_state,
    ledger_positions,
    make_ctx,
    mid,
    ny,
    plant,
    positions_match,
    record_order,
    stored_intents,
    stored_orders,
    window_time,
)

MIDDAY = ny(EXEC_DAY, 12)
REAL_VENUE = {"sim.cancel_polls": 2, "sim.wash_trade_check": True}


def _ctx(root, **overrides):
    ctx = make_ctx(root, **{**REAL_VENUE, **overrides})
    ctx.broker.advance_to(MIDDAY)
    return ctx


def _order(ctx, cid: str):
    with ctx.ledger.connect() as con:
        return order_store.load(con, cid)


def _working(ctx, intent: it.Intent, *, side: str, limit: float, status: str = "new") -> str:
    """Our order for ``intent`` resting at the venue, recorded in the ledger as ``status``."""
    cid = it.client_order_id(intent.intent_id, 1)
    ctx.broker.submit(OrderRequest(intent.symbol, side, Decimal(str(intent.qty)), cid, "limit",
                                   Decimal(f"{limit:.2f}")))
    now = ctx.now()
    with ctx.ledger.transaction() as con:
        record_order(con, cid, intent.intent_id, intent.symbol, side, intent.qty, now=now, status=status, limit=limit)
        it.transition(con, intent.intent_id, it.SUBMITTED, attempt=1, reason="test: sent", now=now)
    return cid


# --- VEN-1: every status has a meaning; working rows are looked up until final ------------------
def test_ven1_when_row_is_pending_cancel_then_looked_up_until_final_and_fill_recorded(root):
    """VEN-1: a row stored as pending_cancel is fetched again; the fill that beat the cancel is
    recorded and the intent resolved. Old code: never fetched again, intent SUBMITTED forever."""
    ctx = _ctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL"))
    exit_ = plant(ctx, "AAPL", "EXIT", 10)
    cid = _working(ctx, exit_, side="sell", limit=mid(ctx, "AAPL") * 1.2)
    ctx.broker.inject_fault("cancel_fill_race", op="cancel")
    ctx.broker.cancel(cid)
    sync_orders(ctx)
    assert _order(ctx, cid).status == "pending_cancel"
    for _ in range(3):
        sync_orders(ctx)
    assert (_order(ctx, cid).status, _order(ctx, cid).filled_qty) == ("filled", 10.0)
    assert intent_state(ctx, exit_.intent_id) == "FILLED"
    assert ledger_positions(ctx) == {} and positions_match(ctx)


def test_ven1_when_broker_reports_unknown_status_then_working_plus_incident(root, monkeypatch):
    """VEN-1: an unknown status is working (looked up again) and an incident, never forgotten."""
    ctx = _ctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL"))
    exit_ = plant(ctx, "AAPL", "EXIT", 10)
    cid = _working(ctx, exit_, side="sell", limit=mid(ctx, "AAPL") * 1.2)
    real = ctx.broker.get_order(cid)
    odd = Order(real.broker_id, cid, "AAPL", "sell", 10.0, "limit", "frozen_by_exchange", real.limit_price)
    monkeypatch.setattr(ctx.broker, "open_orders", lambda: [odd])
    sync_orders(ctx)
    assert _order(ctx, cid).status == "frozen_by_exchange"
    assert len(incidents(ctx, "ORDER_STATUS_UNKNOWN")) == 1
    assert intent_state(ctx, exit_.intent_id) == "SUBMITTED"
    monkeypatch.undo()
    ctx.broker.cancel(cid)
    for _ in range(3):
        sync_orders(ctx)
    assert _order(ctx, cid).status == "canceled"
    assert intent_state(ctx, exit_.intent_id) == "CANCELLED"


# --- EXIT-3: "under way" only while a live order exists ----------------------------------------
def test_exit3_when_crash_after_fractional_rejection_then_sync_puts_intent_back_to_planned(root):
    """EXIT-3 (item 3): a process killed between the fractional rejection and the whole-share retry
    leaves SUBMITTED + a rejected row; sync resolves it to PLANNED and the next run gets it out.
    Old code: SUBMITTED forever (never resumable, never looked up)."""
    ctx = make_ctx(root, **REAL_VENUE)
    ctx.broker.advance_to(decide_time())
    hold(ctx, "MSFT", 10.5, mid(ctx, "MSFT"))
    exit_ = plant(ctx, "MSFT", "EXIT", 10.5)
    ctx.broker.advance_to(window_time())
    now = ctx.now()
    with ctx.ledger.transaction() as con:   # the state the crash leaves behind
        record_order(con, it.client_order_id(exit_.intent_id, 1), exit_.intent_id, "MSFT", "sell", 10.5, now=now,
                     status="rejected", reason="FRACTIONAL_NOT_SUPPORTED: fractional orders are not accepted")
        it.transition(con, exit_.intent_id, it.SUBMITTED, attempt=1, reason="test: sent", now=now)
    report = run_execute(ctx)
    assert len([e for e in ctx.ledger.read(events.find, "INTENT_PLANNED") if "not under way" in e.reason]) == 1
    assert intent_state(ctx, exit_.intent_id) == "FILLED", report.summary()
    assert ledger_positions(ctx) == {} and positions_match(ctx)


def test_exit3_when_current_order_rejected_for_other_reason_then_failed_not_stranded(root):
    ctx = _ctx(root)
    exit_ = plant(ctx, "IBM", "EXIT", 5, urgency="immediate")
    now = ctx.now()
    with ctx.ledger.transaction() as con:
        record_order(con, it.client_order_id(exit_.intent_id, 1), exit_.intent_id, "IBM", "sell", 5, now=now,
                     order_type="market", status="rejected", reason="ASSET_NOT_TRADABLE: halted")
        it.transition(con, exit_.intent_id, it.SUBMITTED, attempt=1, reason="test: sent", now=now)
    assert sync_orders(ctx).settled == [(exit_.intent_id, "FAILED")]


# --- VEN-2 / item 4: our own working orders never block an exit -------------------------------
def test_ven2_when_stop_breached_with_own_working_buy_limit_then_cancelled_first_and_stop_fills(root):
    """Item 4: a stop loss against our own working buy limit (wash trade at Alpaca) cancels the buy,
    waits for the venue's confirmation, then sells. Old code: refused (FAILED) three times, abandoned."""
    ctx = _ctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL") * 1.10)
    add_on = plant(ctx, "AAPL", "ADD_ON", 5)
    _working(ctx, add_on, side="buy", limit=mid(ctx, "AAPL") * 0.9)
    report = run_monitor(ctx)
    assert [e.code for e in report.exits] == ["STOP_LOSS"]
    assert intent_state(ctx, "20110721-AAPL-EXIT-STOP_LOSS") == "FILLED"
    assert intent_state(ctx, add_on.intent_id) == "CANCELLED"
    assert ledger_positions(ctx) == {} and positions_match(ctx)
    sells = [o for o in broker_orders(ctx) if o[2] == "sell"]
    assert len(sells) == 1 and sells[0][4] == "filled"


def test_ven2_when_stop_breached_with_working_planned_limit_exit_then_it_is_cancelled_not_waited_for(root):
    """EXIT-9: a working planned limit exit does not make the symbol "busy": the stop cancels it and goes."""
    ctx = _ctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL") * 1.10)
    planned_exit = plant(ctx, "AAPL", "EXIT", 10)
    _working(ctx, planned_exit, side="sell", limit=mid(ctx, "AAPL") * 1.3)
    run_monitor(ctx)
    assert intent_state(ctx, "20110721-AAPL-EXIT-STOP_LOSS") == "FILLED"
    assert intent_state(ctx, planned_exit.intent_id) == "CANCELLED"
    assert ledger_positions(ctx) == {} and positions_match(ctx)


def test_ven2_when_exit_refused_as_wash_trade_alpaca_style_then_cancel_first_and_retry_not_failed(root,
                                                                                               monkeypatch):
    """Item 4: Alpaca's 403 40310000 "potential wash trade" (code FORBIDDEN, told apart by the message)
    means cancel first, then retry with a new attempt — never FAILED."""
    ctx = _ctx(root)
    hold(ctx, "MSFT", 100, mid(ctx, "MSFT"))
    exit_ = plant(ctx, "MSFT", "EXIT", 100, urgency="immediate")
    real_submit, calls = ctx.broker.submit, []

    def refuse_once(request):
        calls.append(request.client_order_id)
        if len(calls) == 1:
            raise BrokerRejected("Alpaca submit: HTTP 403 potential wash trade detected. use complex orders "
                                 "(code 40310000)", code="FORBIDDEN")
        return real_submit(request)
    monkeypatch.setattr(ctx.broker, "submit", refuse_once)
    run_monitor(ctx)
    assert calls == [it.client_order_id(exit_.intent_id, 1), it.client_order_id(exit_.intent_id, 2)]
    assert intent_state(ctx, exit_.intent_id) == "FILLED" and positions_match(ctx)


def test_ven2_when_flatten_with_working_sell_and_async_cancel_then_waits_and_closes(root):
    """Item 4: flatten cancels, waits until the venue confirms, then closes. Old code: the close was
    refused (shares held by the pending_cancel sell), FAILED, and the account ended FROZEN still holding."""
    ctx = _ctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL"))
    exit_ = plant(ctx, "AAPL", "EXIT", 10)
    _working(ctx, exit_, side="sell", limit=mid(ctx, "AAPL") * 1.3)
    result = flatten(ctx, "test", actor="tester")
    assert result.failed == () and ctx.broker.positions() == []
    sync_orders(ctx)
    assert ledger_positions(ctx) == {} and positions_match(ctx)


def test_ven2_when_flatten_cancel_never_confirmed_then_intent_planned_not_failed(root):
    ctx = _ctx(root, **{"sim.cancel_polls": 20})
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL"))
    exit_ = plant(ctx, "AAPL", "EXIT", 10)
    _working(ctx, exit_, side="sell", limit=mid(ctx, "AAPL") * 1.3)
    result = flatten(ctx, "test", actor="tester")
    assert [k for k, _ in result.failed] == ["AAPL"] and "run flatten again" in result.failed[0][1]
    assert [i.state for i in stored_intents(ctx.ledger) if i.intent_id.startswith("flat-")] == ["PLANNED"]


# --- EXIT-8 / item 5: immediate intents never replay later --------------------------------------
def test_exit8_when_flatten_order_timed_out_then_never_sent_on_a_later_session(root, monkeypatch):
    """Reproduced: a flatten order that timed out on day 1 was sent at market on day 3, after a
    resume, against a new position. Now: not sent by execute/monitor, EXPIRED after the close."""
    from tradebook.safety import controls
    from tradebook.errors import OrderOutcomeUnknown

    ctx = _ctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL"))

    def timeout(symbol, cid):
        raise OrderOutcomeUnknown("read timeout")
    monkeypatch.setattr(ctx.broker, "close_position", timeout)
    monkeypatch.setattr(ctx.broker, "get_order", lambda cid: None)
    flatten(ctx, "day 1", actor="tester")
    monkeypatch.undo()
    controls.resume(ctx.params, ctx.root, "reviewed", now=ctx.now())
    ctx.broker.advance_to(ny(EXEC_DAY + timedelta(days=4), 10))        # Mon 2011-07-25
    hold(ctx, "IBM", 5, mid(ctx, "IBM"))
    run_execute(ctx)
    run_monitor(ctx)
    flat = [(i.intent_id, i.state) for i in stored_intents(ctx.ledger) if i.intent_id.startswith("flat-")]
    assert [s for _, s in flat] == ["EXPIRED"]
    assert all(not o[0].startswith(("flat-", "tb-flat-")) for o in broker_orders(ctx))
    assert ctx.broker.get_order(it.client_order_id(flat[0][0], 1)) is None
    assert {p.symbol for p in ctx.broker.positions()} == {"AAPL", "IBM"}   # nothing sold behind our back


def test_exit8_when_stop_intent_left_planned_from_yesterday_then_expired_not_sent(root):
    ctx = _ctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL"))
    stale = plant(ctx, "AAPL", "EXIT", 10, urgency="immediate", suffix="STOP_LOSS",
                  when=ctx.now() - timedelta(days=1))
    report = run_monitor(ctx)
    assert intent_state(ctx, stale.intent_id) == "EXPIRED" and broker_orders(ctx) == []
    assert stale.intent_id in dict(report.reconcile.settled)
    assert [e for e in ctx.ledger.read(events.find, "INTENT_EXPIRED") if "EXIT-8" in e.reason]


def test_exit8_when_monitor_exit_left_planned_and_trigger_no_longer_true_then_expired_not_sent(root):
    ctx = _ctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL"))                 # not under water: no stop now
    left = plant(ctx, "AAPL", "EXIT", 10, urgency="immediate", suffix="STOP_LOSS")
    run_monitor(ctx)
    assert intent_state(ctx, left.intent_id) == "EXPIRED" and broker_orders(ctx) == []


# --- item 9: stops on real prices -----------------------------------------------------------
def test_exit8_when_quote_is_stale_then_monitor_fires_nothing_and_warns_then_fires_on_fresh_quote(root,
                                                                                                monkeypatch):
    from dataclasses import replace

    ctx = _ctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL") * 1.10)
    real_quotes = ctx.broker.quotes
    monkeypatch.setattr(ctx.broker, "quotes", lambda symbols: {
        s: replace(q, ts=q.ts - timedelta(minutes=10)) for s, q in real_quotes(symbols).items()})
    report = run_monitor(ctx)
    assert report.exits == [] and broker_orders(ctx) == [] and "AAPL" in report.warnings[0]
    assert "WARNING" in report.summary()
    monkeypatch.undo()
    assert [e.code for e in run_monitor(ctx).exits] == ["STOP_LOSS"]
    assert intent_state(ctx, "20110721-AAPL-EXIT-STOP_LOSS") == "FILLED"


def test_exit9_when_stop_order_partly_filled_and_stuck_then_next_tick_sells_the_rest(root):
    """EXIT-9: an immediate exit still working at the next tick (half filled, the rest stuck) is
    cancelled and a fresh exit sells what is left. Old code: the symbol stayed "busy" until the close."""
    ctx = _ctx(root)
    hold(ctx, "AAPL", 10, mid(ctx, "AAPL") * 1.10)
    ctx.broker.inject_fault("partial_fill")
    run_monitor(ctx)
    assert [p.qty for p in ctx.broker.positions()] == [5.0]
    ctx.broker.advance_to(MIDDAY + timedelta(minutes=1))
    run_monitor(ctx)
    assert ctx.broker.positions() == [] and positions_match(ctx)
    assert intent_state(ctx, "20110721-AAPL-EXIT-STOP_LOSS") == "PARTIAL"
    assert intent_state(ctx, "20110721-AAPL-EXIT-STOP_LOSS-2") == "FILLED"


def test_exit3_when_process_killed_between_fractional_rejection_and_whole_share_retry_then_not_stranded(root):
    """EXIT-3 (item 3) with a real SIGKILL: execute dies right after the fractional rejection is
    recorded, before the whole-share retry (second gate). The restarted run gets the exit out."""
    import signal

    from test_chaos import _child

    ctx = make_ctx(root)
    ctx.broker.advance_to(decide_time())
    hold(ctx, "MSFT", 10.5, mid(ctx, "MSFT"))
    exit_ = plant(ctx, "MSFT", "EXIT", 10.5)
    ctx.broker.advance_to(window_time())
    ctx.broker.inject_fault("fractional_reject")
    assert _child(root, "before_gate@2") == -signal.SIGKILL
    assert intent_state(ctx, exit_.intent_id) == "SUBMITTED"          # what the kill leaves behind
    assert [o.status for o in stored_orders(ctx.ledger)] == ["rejected"]
    again = make_ctx(root)
    run_execute(again)
    assert intent_state(again, exit_.intent_id) == "FILLED"
    assert again.broker.positions() == [] and positions_match(again)
