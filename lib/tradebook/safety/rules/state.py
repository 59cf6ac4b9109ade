"""GATE-1 (trading state) and GATE-2 (market open)."""
from __future__ import annotations

from tradebook.safety.gate import GateContext, ProposedOrder, Verdict, reject
from tradebook.safety.portfolio_view import PortfolioView
from tradebook.safety.rules._common import passed, rule
from tradebook.safety.state import TradingState

_PASS1, _PASS2 = passed("GATE-1"), passed("GATE-2")
_BLOCK_ALL = frozenset({TradingState.HALTED, TradingState.FROZEN})


@rule("GATE-1")
def control_state(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-1: HALTED / FROZEN reject everything; REDUCE_ONLY lets only position-reducing orders out.

    REC-8: while ``ctx.entry_blocker`` is set (no successful reconcile this session) only
    position-reducing orders pass, with reason NOT_RECONCILED.

    The state comes from tradebook.safety.controls (kill switch flag file, env, ledger), read
    by the caller; an unknown state is treated as blocking (fail closed).
    """
    state = ctx.control_state
    if state in (TradingState.RUNNING, TradingState.REDUCE_ONLY) and ctx.entry_blocker and not view.reduces(order):
        return reject("GATE-1", "NOT_RECONCILED", state=state, why=ctx.entry_blocker)  # REC-8
    if state == TradingState.RUNNING:
        return _PASS1
    if state == TradingState.REDUCE_ONLY:
        if view.reduces(order):
            return _PASS1
        return reject("GATE-1", "REDUCE_ONLY", state=state, held=view.held_qty(order.symbol))
    if state in _BLOCK_ALL:
        return reject("GATE-1", state, state=state)
    return reject("GATE-1", "UNKNOWN_CONTROL_STATE", state=str(state))


@rule("GATE-2")
def market_open(order: ProposedOrder, view: PortfolioView, ctx: GateContext) -> Verdict:
    """GATE-2: orders only while the market is open, urgency=immediate exits included."""
    if ctx.market_open:
        return _PASS2
    return reject("GATE-2", "MARKET_CLOSED", urgency=order.urgency)
