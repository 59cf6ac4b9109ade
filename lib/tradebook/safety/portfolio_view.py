"""The gate's view of the portfolio (GATE-3/4/11/12/14): holdings at current prices, with their aggregates.

Gross exposure, exposure per tier and per sector and the number of positions are
computed once when the view is built, then kept up to date by ``apply`` as each order
of a run is accepted, so the next intent sees what the previous one added and a run of
many intents costs O(rules) per intent, not O(positions). The caps these are checked
against are ``safety/exposure``; the rules that check them ``safety/rules``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from tradebook.safety.gate import ProposedOrder

QTY_EPS = 1e-9                    # share quantities closer than this are equal (float noise)


@dataclass(frozen=True, slots=True)
class Holding:
    """One position as the gate values it."""

    qty: float
    price: float                  # current price
    origin: str = "STRATEGY"      # STRATEGY | EXTERNAL

    @property
    def value(self) -> float:
        """Signed market value at the current price."""
        return self.qty * self.price


@dataclass(slots=True)
class PortfolioView:
    """Read-only (to rules) snapshot of the portfolio at current prices, with cached aggregates.

    ``apply`` updates it incrementally after an order is accepted, so the next
    intent in the same run sees the exposure the previous one added.
    """

    equity: float
    buying_power: float
    holdings: dict[str, Holding]
    symbol_tier: Mapping[str, str]
    symbol_sector: Mapping[str, str]
    gross: float = 0.0
    by_tier: dict[str, float] = field(default_factory=dict)
    by_sector: dict[str, float] = field(default_factory=dict)
    n_positions: int = 0          # holdings with a non-zero quantity (GATE-14 max concurrent)

    def __post_init__(self) -> None:
        self.gross = 0.0
        self.by_tier, self.by_sector = {}, {}
        self.n_positions = 0
        for sym, h in self.holdings.items():
            self._add(sym, abs(h.value))
            self.n_positions += abs(h.qty) > QTY_EPS

    def _add(self, symbol: str, value: float) -> None:
        self.gross += value
        tier = self.symbol_tier.get(symbol, "UNMAPPED")
        sector = self.symbol_sector.get(symbol, "UNMAPPED")
        self.by_tier[tier] = self.by_tier.get(tier, 0.0) + value
        self.by_sector[sector] = self.by_sector.get(sector, 0.0) + value

    def held_qty(self, symbol: str) -> float:
        """Shares of ``symbol`` held now (as the view counts them: accepted orders included)."""
        h = self.holdings.get(symbol)
        return h.qty if h else 0.0

    def reduces(self, order: "ProposedOrder") -> bool:
        """True when the order only shrinks an existing position toward zero (never flips it)."""
        h = self.holdings.get(order.symbol)
        if h is None or order.qty <= 0:
            return False
        if h.qty > QTY_EPS:
            return order.side == "sell" and order.qty <= h.qty + QTY_EPS
        return h.qty < -QTY_EPS and order.side == "buy" and order.qty <= -h.qty + QTY_EPS

    def exposure_delta(self, order: "ProposedOrder") -> float:
        """Change of gross (and of the symbol's tier and sector) exposure if the order fills.

        The symbol's current contribution (at its current price, as counted in the
        aggregates) is replaced by the position after the order at the order's price.
        """
        h = self.holdings.get(order.symbol)
        if h is None:
            return abs(order.signed_qty * order.price)
        return abs((h.qty + order.signed_qty) * order.price) - abs(h.qty * h.price)

    def value_after(self, order: "ProposedOrder") -> tuple[float, float]:
        """(abs value of the symbol's position before, after) the order, at the order's price."""
        h = self.holdings.get(order.symbol)
        before = abs(h.qty * order.price) if h else 0.0
        after = abs(((h.qty if h else 0.0) + order.signed_qty) * order.price)
        return before, after

    def apply(self, order: "ProposedOrder") -> None:
        """Account for an accepted order as if filled at its reference price."""
        h = self.holdings.get(order.symbol)
        old_value = abs(h.value) if h else 0.0
        old_qty = h.qty if h else 0.0
        qty = old_qty + order.signed_qty
        qty = 0.0 if abs(qty) <= QTY_EPS else qty   # a full exit leaves exactly zero
        origin = h.origin if h else "STRATEGY"
        self.holdings[order.symbol] = Holding(qty, order.price, origin)
        self._add(order.symbol, abs(qty * order.price) - old_value)
        self.n_positions += (qty != 0.0) - (abs(old_qty) > QTY_EPS)
        # Sells do not free buying power until they fill: conservative within one run.
        self.buying_power -= order.notional if order.side == "buy" else 0.0

