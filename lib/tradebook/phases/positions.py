"""Position state in the ledger and the entry / add-on decision tree (POS-1, POS-2, POS-3).

The broker is the truth for quantities; the ledger adds *why*: origin (STRATEGY or
EXTERNAL), entry time, confidence, tier and sector. Fills of our own orders change
the ledger here (``apply_fill``); reconcile corrects anything else (reconcile.py).

The decision tree (seed 000) is a pure function: every outcome, approved or not,
has a stable code and a readable reason that decide logs as a DECISION event.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from tradebook.ledger import events
from tradebook.ledger import fills as fill_store
from tradebook.ledger import positions as position_store
from tradebook.ledger import trades as trade_store

if TYPE_CHECKING:
    import duckdb

    from tradebook.params import Params

EPS = 1e-9
STRATEGY, EXTERNAL = "STRATEGY", "EXTERNAL"


@dataclass(frozen=True)
class LedgerPosition:
    symbol: str
    qty: float
    avg_price: float
    origin: str
    opened_at: datetime | None
    confidence: float | None
    tier: str | None
    sector: str | None

    @property
    def external(self) -> bool:
        return self.origin == EXTERNAL


def load_positions(con: "duckdb.DuckDBPyConnection") -> dict[str, LedgerPosition]:
    """Every ledger position by symbol."""
    return {r[0]: LedgerPosition(*r) for r in position_store.rows(con)}


# --- the decision tree (pure) ----------------------------------------------------------------
@dataclass(frozen=True)
class EntryDecision:
    symbol: str
    approved: bool
    kind: str | None          # ENTRY | ADD_ON when approved
    code: str                 # NEW_POSITION, ADD_ON_APPROVED, EXTERNAL_ONLY, ...
    reason: str
    qty: float = 0.0
    allocation: float | None = None


def size_qty(notional: float, price: float, fractional: bool) -> float:
    """Shares worth ``notional`` at ``price``: floored to whole shares, or to 1e-6 when fractional."""
    if price <= 0 or notional <= 0:
        return 0.0
    raw = notional / price
    return math.floor(raw * 1e6) / 1e6 if fractional else float(math.floor(raw + 1e-9))


def decide_entry(symbol: str, confidence: float, price: float, position: LedgerPosition | None, *,
                 equity: float, params: "Params", open_positions: int, fractional: bool) -> EntryDecision:
    """POS-1/POS-2/POS-3 decision for one entry signal: new position, add-on, or a coded rejection."""
    def no(code: str, reason: str, alloc: float | None = None) -> EntryDecision:
        return EntryDecision(symbol, False, None, code, reason, 0.0, alloc)

    if confidence < params.signal_threshold:
        return no("LOW_CONFIDENCE", f"confidence {confidence:.2f} < signal_threshold {params.signal_threshold:.2f}")
    # Size so that a price up to max_gap_pct higher at execution still fits under max_position_pct
    # (GATE-3 re-checks at the execution price; sizing to the exact cap would always be refused).
    cap = params.max_position_pct * equity / (1.0 + params.max_gap_pct)
    size = min(params.strategy.position_size_pct * equity, cap)
    if position is None or position.qty <= EPS:
        if open_positions >= params.max_concurrent_positions:
            return no("MAX_CONCURRENT", f"{open_positions} positions open, max {params.max_concurrent_positions}")
        qty = size_qty(size, price, fractional)
        if qty * price < max(params.min_order_notional, 1e-9):
            return no("ZERO_QTY", f"{size:,.2f} buys {qty:g} share(s) at {price:,.2f}: below min_order_notional")
        return EntryDecision(symbol, True, "ENTRY", "NEW_POSITION",
                             f"new position {qty:g} @ {price:,.2f} (confidence {confidence:.2f})", qty, 0.0)
    return _add_on(symbol, confidence, price, position, equity, size, cap, params, fractional)


def _add_on(symbol: str, confidence: float, price: float, position: LedgerPosition, equity: float,
            size: float, cap: float, params: "Params", fractional: bool) -> EntryDecision:
    alloc = position.qty * price / equity if equity > 0 else math.inf
    maximum = params.max_position_pct

    def no(code: str, reason: str) -> EntryDecision:
        return EntryDecision(symbol, False, None, code, reason, 0.0, alloc)

    if position.external:
        return no("EXTERNAL_ONLY", "position is EXTERNAL only: never add to a position tradebook did not open")
    if not params.add_on_enabled:
        return no("ADD_ON_DISABLED", "add-on buys are disabled (add_on_enabled: false)")
    if alloc >= maximum:
        return no("AT_MAX_ALLOCATION", f"allocation {alloc:.2%} >= max {maximum:.2%}")
    if confidence < params.add_on_confidence:
        return no("ADD_ON_CONFIDENCE_LOW", f"confidence {confidence:.2f} < add_on_confidence "
                                           f"{params.add_on_confidence:.2f}")
    room = cap - position.qty * price
    qty = size_qty(min(size, room), price, fractional)
    if qty * price < max(params.min_order_notional, 1e-9):  # the gate would refuse it (GATE-5): do not plan it
        return no("ZERO_QTY", f"room {max(room, 0.0):,.2f} buys {qty:g} share(s) at {price:,.2f}: "
                              "below min_order_notional")
    return EntryDecision(symbol, True, "ADD_ON", "ADD_ON_APPROVED",
                         f"add-on {qty:g} @ {price:,.2f}: allocation {alloc:.2%} < max {maximum:.2%}, "
                         f"confidence {confidence:.2f} >= {params.add_on_confidence:.2f}", qty, alloc)


# --- fills of our own orders (EXE-6) -----------------------------------------------------------
@dataclass(frozen=True)
class FillInfo:
    client_order_id: str
    intent_id: str
    symbol: str
    side: str
    qty: float
    price: float
    ts: datetime
    decision_price: float | None
    confidence: float | None = None


def slippage_bps(side: str, price: float, decision_price: float | None) -> float | None:
    """Cost vs the decision price in basis points (positive = worse than decided)."""
    if not decision_price:
        return None
    sign = 1.0 if side == "buy" else -1.0
    return sign * (price - decision_price) / decision_price * 1e4


def apply_fill(con: "duckdb.DuckDBPyConnection", fill: FillInfo, params: "Params",
               session_day, run_id: str | None = None) -> float | None:
    """Record one fill inside the caller's transaction; returns realized P&L for sells.

    Writes the fill (with slippage), the FILL trade, the position (weighted average on
    buys; removed at zero, which also marks ``closed_today``) and the ticker cooldown.
    """
    from tradebook.ledger import cooldowns as cooldown_store

    slip = slippage_bps(fill.side, fill.price, fill.decision_price)
    fill_store.insert(con, fill.client_order_id, fill.intent_id, fill.symbol, fill.side, fill.qty, fill.price,
                      fill.ts, fill.decision_price, slip)
    pos = load_positions_for(con, fill.symbol)
    realized = _update_position(con, fill, pos, params, session_day)
    trade_store.append(con, fill.ts, fill.symbol, fill.side, fill.qty, fill.price, "FILL", realized,
                       f"fill of {fill.client_order_id}", run_id)
    cooldown_store.touch(con, fill.symbol, fill.ts)
    events.record(con, "FILL", run_id=run_id, symbol=fill.symbol, qty=fill.qty, price=fill.price, ts=fill.ts,
                  reason=f"{fill.side} fill of {fill.client_order_id}",
                  data={"intent_id": fill.intent_id, "client_order_id": fill.client_order_id,
                       "slippage_bps": slip, "realized_pnl": realized})
    return realized


def load_positions_for(con: "duckdb.DuckDBPyConnection", symbol: str) -> LedgerPosition | None:
    """The ledger position in ``symbol`` (None when not held)."""
    row = position_store.row(con, symbol)
    return LedgerPosition(*row) if row else None


def next_position(qty: float, avg: float, side: str, fill_qty: float, fill_price: float) -> tuple[float, float]:
    """(qty, avg price) after a fill: weighted average on buys, unchanged average on sells."""
    if side == "buy":
        new_qty = qty + fill_qty
        return new_qty, (qty * avg + fill_qty * fill_price) / new_qty if new_qty > EPS else fill_price
    new_qty = qty - fill_qty
    return (0.0, 0.0) if new_qty <= EPS else (new_qty, avg)


def _update_position(con: "duckdb.DuckDBPyConnection", fill: FillInfo, pos: LedgerPosition | None,
                     params: "Params", session_day) -> float | None:
    held = pos.qty if pos else 0.0
    if fill.side == "buy":
        qty, avg = next_position(held, pos.avg_price if pos else 0.0, "buy", fill.qty, fill.price)
        if pos:
            position_store.update(con, fill.symbol, qty, fill.ts, avg_price=avg)
        else:
            position_store.insert(con, fill.symbol, qty, avg, STRATEGY, fill.ts, fill.confidence,
                                  params.symbol_tiers.get(fill.symbol), params.symbol_sectors.get(fill.symbol),
                                  fill.ts)
        return None
    sold = min(fill.qty, held)
    realized = (fill.price - pos.avg_price) * sold if pos else None
    remaining = held - fill.qty
    if remaining <= EPS:
        position_store.delete(con, fill.symbol)
        mark_closed_today(con, fill.symbol, session_day, fill.ts)
    else:
        position_store.update(con, fill.symbol, remaining, fill.ts)
    return realized


def mark_closed_today(con: "duckdb.DuckDBPyConnection", symbol: str, session_day, ts: datetime) -> None:
    """POS-3 re-entry prevention: remember that ``symbol`` went flat this session."""
    from tradebook.ledger import closed_today

    closed_today.mark(con, symbol, session_day, ts)
