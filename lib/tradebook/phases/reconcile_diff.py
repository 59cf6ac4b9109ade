"""Pure: what makes the ledger's positions equal the broker's (REC-2, REC-3, REC-4).

``diff`` compares broker positions with the ledger's; ``project`` is the ledger's
positions after the fills reconcile is about to record, so that our own fills are never
taken for a divergence. No I/O: reconcile reads both sides and writes the actions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple

from tradebook.phases.order_sync import OrderUpdate
from tradebook.phases.positions import EPS, next_position


QTY_TOL = 1e-6
PRICE_TOL = 1e-6          # relative
BACKFILL, EXTERNAL_CLOSE, CORRECTION = "BACKFILL", "EXTERNAL_CLOSE", "CORRECTION"


class Pos(NamedTuple):
    """A position as reconcile compares it."""

    symbol: str
    qty: float
    avg_price: float


@dataclass(frozen=True)
class Action:
    """One change that makes the ledger equal the broker for one symbol."""

    kind: str                 # BACKFILL | EXTERNAL_CLOSE | CORRECTION
    symbol: str
    qty: float                # broker quantity (0 for EXTERNAL_CLOSE)
    price: float | None       # broker average price
    ledger_qty: float
    ledger_price: float | None
    reason: str

    @property
    def delta(self) -> float:
        """Broker qty minus ledger qty."""
        return self.qty - self.ledger_qty


def diff(broker_positions: Iterable[Any], ledger_positions: Iterable[Any]) -> list[Action]:
    """Pure: the actions that make the ledger equal the broker (objects with symbol, qty, avg_price)."""
    broker = {p.symbol: p for p in broker_positions if abs(p.qty) > QTY_TOL}
    ledger = {p.symbol: p for p in ledger_positions if abs(p.qty) > QTY_TOL}
    out: list[Action] = []
    for sym in sorted(broker.keys() | ledger.keys()):
        b, led = broker.get(sym), ledger.get(sym)
        if led is None:
            out.append(Action(BACKFILL, sym, b.qty, b.avg_price, 0.0, None,
                              "position at the broker unknown to the ledger: backfilled as EXTERNAL"))
        elif b is None:
            out.append(Action(EXTERNAL_CLOSE, sym, 0.0, None, led.qty, led.avg_price,
                              "position in the ledger not found at the broker: closed outside tradebook"))
        elif abs(b.qty - led.qty) > QTY_TOL or abs(b.avg_price - led.avg_price) > PRICE_TOL * max(abs(b.avg_price), 1):
            out.append(Action(CORRECTION, sym, b.qty, b.avg_price, led.qty, led.avg_price,
                              f"broker wins: qty {led.qty:g} -> {b.qty:g}, avg {led.avg_price:.4f} -> "
                              f"{b.avg_price:.4f}"))
    return out


def project(ledger: dict[str, Any], updates: list[OrderUpdate]) -> dict[str, Pos]:
    """Pure: ledger positions after the fills in ``updates``."""
    if not any(u.fill_qty > EPS for u in updates):
        return ledger
    out = {s: Pos(s, p.qty, p.avg_price) for s, p in ledger.items()}
    for u in updates:
        if u.fill_qty <= EPS:
            continue
        cur = out.get(u.row.symbol, Pos(u.row.symbol, 0.0, 0.0))
        qty, avg = next_position(cur.qty, cur.avg_price, u.row.side, u.fill_qty, u.fill_price or 0.0)
        if qty <= EPS:
            out.pop(u.row.symbol, None)
        else:
            out[u.row.symbol] = Pos(u.row.symbol, qty, avg)
    return out


def price_only(a: Action) -> bool:
    """A correction of the average price alone (Alpaca's FIFO end-of-day average, REC-4): not a divergence."""
    return a.kind == CORRECTION and abs(a.qty - a.ledger_qty) <= QTY_TOL
