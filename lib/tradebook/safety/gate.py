"""The pre-trade gate: every order, entries and exits, passes here before the broker.

The gate is an ordered list of pure rule functions ``rule(order, view, ctx) ->
Verdict``. Each returns pass / warn / reject with a stable reason code and the
numbers it used. The gate fails closed: a rule that raises is a rejection.
Verdicts are stored with the intent (``record``).

Exposure, tier and sector caps are computed on the whole portfolio at current
prices *after* the order (seed 003 Fix #1), from aggregates the view computes
once, so a run of many intents costs O(rules) per intent, not O(positions): that view
is ``safety/portfolio_view``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from types import MappingProxyType
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

from tradebook.safety.portfolio_view import PortfolioView
from tradebook.safety.state import TradingState

if TYPE_CHECKING:
    import duckdb

    from tradebook.broker.base import Quote
    from tradebook.params import Params

Severity = Literal["pass", "warn", "reject"]
NO_DETAIL: Mapping[str, object] = MappingProxyType({})  # shared, immutable: pass verdicts are reused


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
    part: int = 0                 # k-th child of a split exit (EXIT-6); parts > 1 ride on part 1's GATE-10 count

    @property
    def notional(self) -> float:
        return abs(self.qty) * self.price

    @property
    def signed_qty(self) -> float:
        return self.qty if self.side == "buy" else -self.qty


@dataclass(frozen=True, slots=True)
class GateContext:
    """Everything a rule may consult besides the order and the portfolio."""

    now: datetime
    params: "Params"
    control_state: TradingState = TradingState.RUNNING
    # REC-8: why orders that add risk may not be sent although the state allows them (e.g. no
    # successful reconcile this session); None: nothing beyond the control state.
    entry_blocker: str | None = None
    market_open: bool = True
    quotes: Mapping[str, "Quote"] = field(default_factory=dict)
    orders_today_by_symbol: Mapping[str, int] = field(default_factory=dict)
    orders_today: int = 0
    orders_this_run: int = 0
    closed_today: frozenset[str] = frozenset()
    last_order_at: Mapping[str, datetime] = field(default_factory=dict)
    correlations: Mapping[tuple[str, str], float] = field(default_factory=dict)
    # Weekdays without a session (exchange holidays) between a planned intent's decision and
    # now; with weekends they are not counted in its age (GATE-7), so Friday's plan is fresh
    # on Monday. Empty: only weekends are discounted.
    non_trading_days: frozenset[date] = frozenset()


Rule = Callable[[ProposedOrder, PortfolioView, GateContext], Verdict]


@dataclass(frozen=True, slots=True)
class GateResult:
    verdicts: tuple[Verdict, ...]
    # True when no verdict rejects; computed once here because callers ask for every order.
    passed: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "passed", "reject" not in map(_severity, self.verdicts))

    @property
    def rejection(self) -> Verdict | None:
        return None if self.passed else next(v for v in self.verdicts if v.rejected)

    @property
    def warnings(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.severity == "warn"]

    @property
    def reason(self) -> str:
        r = self.rejection
        return r.code if r else ("WARN:" + ",".join(v.code for v in self.warnings) if self.warnings else "OK")


_severity = attrgetter("severity")


def evaluate(order: ProposedOrder, view: PortfolioView, ctx: GateContext,
             rules: "list[Rule] | None" = None) -> GateResult:
    """Run every rule (all of them, so the stored record shows each reason); fail closed."""
    if rules is None:
        try:
            return GateResult((_fast_default or _compile_default())(order, view, ctx))
        except Exception:  # some rule raised: run them one by one to keep every other verdict
            pass
    out: list[Verdict] = []
    append = out.append  # hot loop: 14 rules x every order of a run
    for rule in rules if rules is not None else (_rules_cache or _default_rules()):
        try:
            append(rule(order, view, ctx))
        except Exception as exc:  # a broken rule must never let an order through
            append(reject(getattr(rule, "rule_id", rule.__name__), "RULE_ERROR",
                          error=f"{type(exc).__name__}: {exc}"))
    return GateResult(tuple(out))


def record(con: "duckdb.DuckDBPyConnection", intent_id: str, run_id: str | None, ts: datetime,
           result: GateResult) -> None:
    """Store every verdict with the intent, inside the caller's transaction."""
    from tradebook.ledger import intents as intent_store
    from tradebook.ledger.verdicts import append_verdicts

    append_verdicts(con, intent_id, run_id, ts, ((v.rule, v.severity, v.code, v.detail) for v in result.verdicts))
    intent_store.set_gate(con, intent_id, "pass" if result.passed else "reject", result.reason, ts)


class GateRun:
    """Gate a sequence of orders in one run: each accepted order updates the view and the
    context (order counts, cooldown, closed-today), so the next order sees it (GATE-3/4/10/12/14).
    """

    def __init__(self, view: PortfolioView, ctx: GateContext, rules: "list[Rule] | None" = None):
        self.view = view
        self.rules = rules
        # Own mutable copies: the caller's mappings are never changed.
        self._by_symbol = dict(ctx.orders_today_by_symbol)
        self._last_order_at = dict(ctx.last_order_at)
        self.ctx = replace(ctx, orders_today_by_symbol=self._by_symbol, last_order_at=self._last_order_at)

    def check(self, order: ProposedOrder, *, accept: bool = True) -> GateResult:
        """Evaluate one order; when it passes and ``accept`` is set, account for it."""
        result = evaluate(order, self.view, self.ctx, self.rules)
        if accept and result.passed:
            self.accept(order)
        return result

    def accept(self, order: ProposedOrder) -> None:
        """Account for an order that was sent: exposure, order counts, cooldown, closed-today."""
        ctx = self.ctx
        held_before = self.view.held_qty(order.symbol)
        self.view.apply(order)
        self._last_order_at[order.symbol] = ctx.now
        # self.ctx is this run's own copy (made in __init__): frozen to the rules, advanced
        # only here, in place, because dataclasses.replace per order costs more than all rules.
        advance = object.__setattr__
        if order.part <= 1:  # a split exit counts once against the order rates (EXIT-6)
            self._by_symbol[order.symbol] = self._by_symbol.get(order.symbol, 0) + 1
            advance(ctx, "orders_today", ctx.orders_today + 1)
            advance(ctx, "orders_this_run", ctx.orders_this_run + 1)
        if held_before != 0.0 and self.view.held_qty(order.symbol) == 0.0:
            advance(ctx, "closed_today", ctx.closed_today | {order.symbol})


# --- rules ---------------------------------------------------------------------------------
# Rule functions live in tradebook.safety.rules (one function per GATE-n); RULES is their order.
# Imported lazily: gate_rules imports the types above, so either module may be imported first.
_rules_cache: "list[Rule] | None" = None
_fast_default: "Callable[[ProposedOrder, PortfolioView, GateContext], tuple[Verdict, ...]] | None" = None


def _default_rules() -> "list[Rule]":
    global _rules_cache
    if _rules_cache is None:
        from tradebook.safety.rules import RULES

        _rules_cache = RULES  # type: ignore[assignment]  # decorated rule functions are Rules
    return _rules_cache


def _compile_default() -> Callable[[ProposedOrder, PortfolioView, GateContext], tuple[Verdict, ...]]:
    """RULES unrolled into one function, one call site per rule.

    A loop calling 14 different functions from one call site defeats CPython's call
    specialisation; the unrolled form halves the gate's cost (bench/bench_gate.py).
    RULES is read once here: pass ``rules=`` to evaluate a different list.
    """
    global _fast_default
    rules = _default_rules()
    names: dict[str, Any] = {f"r{i}": rule for i, rule in enumerate(rules)}
    calls = ", ".join(f"r{i}(o, v, c)" for i in range(len(rules)))
    exec(f"def run_rules(o, v, c):\n    return ({calls},)\n", names)  # noqa: S102 (fixed template)
    _fast_default = names["run_rules"]
    return _fast_default


def __getattr__(name: str) -> object:
    if name == "RULES":  # `from tradebook.safety.gate import RULES` keeps working
        return _default_rules()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
