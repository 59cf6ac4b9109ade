"""The pre-trade gate: every order, entries and exits, passes here before the broker.

The gate is an ordered list of pure rule functions ``rule(order, view, ctx) ->
Verdict``. Each returns pass / warn / reject with a stable reason code and the
numbers it used. The gate fails closed: a rule that raises is a rejection.
Verdicts are stored with the intent (``record``).

Exposure, tier and sector caps are computed on the whole portfolio at current
prices *after* the order (seed 003 Fix #1), from aggregates the view computes
once, so a run of many intents costs O(rules) per intent, not O(positions).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Literal, Mapping

if TYPE_CHECKING:
    import duckdb

    from tradebook.broker.base import Quote
    from tradebook.params import Params

Severity = Literal["pass", "warn", "reject"]
ControlState = Literal["RUNNING", "REDUCE_ONLY", "HALTED", "FROZEN"]


@dataclass(frozen=True, slots=True)
class Verdict:
    rule: str                     # requirement id, e.g. "GATE-3"
    severity: Severity
    code: str                     # stable reason code, "OK" when it passes
    detail: Mapping[str, object] = field(default_factory=dict)

    @property
    def rejected(self) -> bool:
        return self.severity == "reject"


def ok(rule: str, **detail: object) -> Verdict:
    return Verdict(rule, "pass", "OK", detail)


def warn(rule: str, code: str, **detail: object) -> Verdict:
    return Verdict(rule, "warn", code, detail)


def reject(rule: str, code: str, **detail: object) -> Verdict:
    return Verdict(rule, "reject", code, detail)


@dataclass(frozen=True, slots=True)
class ProposedOrder:
    """An order as the gate sees it, before it becomes an OrderRequest."""

    intent_id: str
    symbol: str
    side: Literal["buy", "sell"]
    qty: float
    price: float                  # reference price for notional (limit price or current quote)
    kind: Literal["ENTRY", "ADD_ON", "EXIT"] = "ENTRY"
    order_type: Literal["market", "limit"] = "limit"
    limit_price: float | None = None
    urgency: Literal["normal", "immediate"] = "normal"
    confidence: float | None = None
    decision_price: float | None = None
    decision_time: datetime | None = None
    intraday: bool = False        # intraday signal (120 s staleness) vs planned intent (24 h)

    @property
    def notional(self) -> float:
        return abs(self.qty) * self.price

    @property
    def signed_qty(self) -> float:
        return self.qty if self.side == "buy" else -self.qty


@dataclass(frozen=True, slots=True)
class Holding:
    qty: float
    price: float                  # current price
    origin: str = "STRATEGY"      # STRATEGY | EXTERNAL

    @property
    def value(self) -> float:
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

    def __post_init__(self) -> None:
        self.gross = 0.0
        self.by_tier, self.by_sector = {}, {}
        for sym, h in self.holdings.items():
            self._add(sym, abs(h.value))

    def _add(self, symbol: str, value: float) -> None:
        self.gross += value
        tier = self.symbol_tier.get(symbol, "UNMAPPED")
        sector = self.symbol_sector.get(symbol, "UNMAPPED")
        self.by_tier[tier] = self.by_tier.get(tier, 0.0) + value
        self.by_sector[sector] = self.by_sector.get(sector, 0.0) + value

    def held_qty(self, symbol: str) -> float:
        h = self.holdings.get(symbol)
        return h.qty if h else 0.0

    def value_after(self, order: ProposedOrder) -> tuple[float, float]:
        """(abs value of the symbol's position before, after) the order, at the order's price."""
        h = self.holdings.get(order.symbol)
        before = abs(h.qty * order.price) if h else 0.0
        after = abs(((h.qty if h else 0.0) + order.signed_qty) * order.price)
        return before, after

    def apply(self, order: ProposedOrder) -> None:
        """Account for an accepted order as if filled at its reference price."""
        h = self.holdings.get(order.symbol)
        old_value = abs(h.value) if h else 0.0
        qty = (h.qty if h else 0.0) + order.signed_qty
        origin = h.origin if h else "STRATEGY"
        self.holdings[order.symbol] = Holding(qty, order.price, origin)
        self._add(order.symbol, abs(qty * order.price) - old_value)
        self.buying_power -= order.notional if order.side == "buy" else 0.0


@dataclass(frozen=True, slots=True)
class GateContext:
    """Everything a rule may consult besides the order and the portfolio."""

    now: datetime
    params: "Params"
    control_state: ControlState = "RUNNING"
    market_open: bool = True
    quotes: Mapping[str, "Quote"] = field(default_factory=dict)
    orders_today_by_symbol: Mapping[str, int] = field(default_factory=dict)
    orders_today: int = 0
    orders_this_run: int = 0
    closed_today: frozenset[str] = frozenset()
    last_order_at: Mapping[str, datetime] = field(default_factory=dict)
    correlations: Mapping[tuple[str, str], float] = field(default_factory=dict)


Rule = Callable[[ProposedOrder, PortfolioView, GateContext], Verdict]


@dataclass(frozen=True, slots=True)
class GateResult:
    verdicts: tuple[Verdict, ...]

    @property
    def passed(self) -> bool:
        return not any(v.rejected for v in self.verdicts)

    @property
    def rejection(self) -> Verdict | None:
        return next((v for v in self.verdicts if v.rejected), None)

    @property
    def warnings(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.severity == "warn"]

    @property
    def reason(self) -> str:
        r = self.rejection
        return r.code if r else ("WARN:" + ",".join(v.code for v in self.warnings) if self.warnings else "OK")


def evaluate(order: ProposedOrder, view: PortfolioView, ctx: GateContext,
             rules: "list[Rule] | None" = None) -> GateResult:
    """Run every rule (all of them, so the stored record shows each reason); fail closed."""
    out = []
    for rule in rules if rules is not None else RULES:
        try:
            out.append(rule(order, view, ctx))
        except Exception as exc:  # a broken rule must never let an order through
            out.append(reject(getattr(rule, "rule_id", rule.__name__), "RULE_ERROR",
                              error=f"{type(exc).__name__}: {exc}"))
    return GateResult(tuple(out))


def record(con: "duckdb.DuckDBPyConnection", intent_id: str, run_id: str | None, ts: datetime,
           result: GateResult) -> None:
    """Store every verdict with the intent, inside the caller's transaction."""
    con.executemany(
        "INSERT INTO verdicts (intent_id, run_id, ts, rule, severity, reason_code, detail) VALUES (?,?,?,?,?,?,?)",
        [[intent_id, run_id, ts, v.rule, v.severity, v.code, json.dumps(dict(v.detail), default=str)]
         for v in result.verdicts],
    )
    con.execute("UPDATE intents SET gate_status = ?, gate_reason = ?, updated_at = ? WHERE intent_id = ?",
                ["pass" if result.passed else "reject", result.reason, ts, intent_id])


# --- rules ---------------------------------------------------------------------------------
# Rule functions live in tradebook.gate_rules (one function per GATE-n); RULES is their order.
from tradebook.gate_rules import RULES  # noqa: E402  (rules import the types above)
