"""Gate invariants over random sequences (hypothesis): GATE-1, 3, 4, 6, 10, 11, 12, 14.

A pure in-memory portfolio model applies only the orders the gate accepts, filled at
the current price. After every accepted order the model (not the gate's cached view)
must satisfy the limits. Price moves between runs create drift, which may push
existing holdings over a cap; the gate must then refuse to add to it while still
letting positions be reduced.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradebook.broker.base import Quote
from tradebook.safety.gate import GateContext, GateRun, ProposedOrder, evaluate
from tradebook.safety.portfolio_view import QTY_EPS, Holding, PortfolioView
from tradebook.params import Params

SYMBOLS = ("AAA", "BBB", "CCC", "DDD", "EEE", "FFF")
TIERS = {"AAA": "TIER3", "BBB": "TIER3", "CCC": "TIER2", "DDD": "TIER2", "EEE": "TIER1", "FFF": "TIER3"}
SECTORS = {"AAA": "Tech", "BBB": "Tech", "CCC": "Tech", "DDD": "Health", "EEE": "Energy", "FFF": "Health"}
# Tight limits so that every one of them binds within a short sequence.
PARAMS = Params(
    symbols=list(SYMBOLS), symbol_tiers=TIERS, symbol_sectors=SECTORS,
    tier_caps={"TIER1": 0.40, "TIER2": 0.30, "TIER3": 0.20}, sector_cap_pct=0.25,
    max_position_pct=0.10, max_gross_exposure_pct=0.45, max_order_notional=6_000, min_order_notional=50,
    orders_per_symbol_day=3, orders_per_day=8, orders_per_run=5, cooldown_minutes_per_ticker=1,
    max_concurrent_positions=5,
)
MAX_BUY = 9_000.0    # buys up to this notional: over max_order_notional, and over a cap near it
START = datetime(2012, 6, 4, 13, 35, tzinfo=timezone.utc)
TOL = 1e-6
# Same examples on every run (tests must be deterministic); no example database on disk.
DETERMINISTIC = dict(deadline=None, derandomize=True, database=None)
STATES = ("RUNNING", "RUNNING", "RUNNING", "REDUCE_ONLY", "HALTED", "FROZEN")


@dataclass
class Model:
    """The account as the broker would see it, updated only by accepted orders and price moves."""

    cash: float = 100_000.0
    reserved: float = 0.0         # cash held for open orders elsewhere: buying power = cash - reserved
    pos: dict[str, float] = field(default_factory=dict)
    px: dict[str, float] = field(default_factory=lambda: {s: 100.0 for s in SYMBOLS})
    now: datetime = START
    state: str = "RUNNING"
    by_symbol: Counter = field(default_factory=Counter)
    day_orders: int = 0
    closed_today: set[str] = field(default_factory=set)
    last_order_at: dict[str, datetime] = field(default_factory=dict)

    @property
    def equity(self) -> float:
        return self.cash + sum(q * self.px[s] for s, q in self.pos.items())

    def value(self, symbols) -> float:
        return sum(abs(self.pos.get(s, 0.0)) * self.px[s] for s in symbols)

    def new_run(self) -> GateRun:
        """The view and context an execute run would build from the broker and the ledger."""
        view = PortfolioView(self.equity, self.cash - self.reserved,
                             {s: Holding(q, self.px[s]) for s, q in self.pos.items()}, TIERS, SECTORS)
        quotes = {s: Quote(s, p * 0.9999, p * 1.0001, self.now, day_open=p, prev_close=p) for s, p in self.px.items()}
        ctx = GateContext(now=self.now, params=PARAMS, control_state=self.state, quotes=quotes,  # type: ignore[arg-type]
                          orders_today_by_symbol=dict(self.by_symbol), orders_today=self.day_orders,
                          closed_today=frozenset(self.closed_today), last_order_at=dict(self.last_order_at))
        return GateRun(view, ctx)

    def fill(self, order: ProposedOrder) -> None:
        qty = self.pos.get(order.symbol, 0.0) + order.signed_qty
        self.cash -= order.signed_qty * order.price
        self.pos[order.symbol] = 0.0 if abs(qty) <= QTY_EPS else qty
        if self.pos[order.symbol] == 0.0:
            self.closed_today.add(order.symbol)
        self.by_symbol[order.symbol] += 1
        self.day_orders += 1
        self.last_order_at[order.symbol] = self.now


# --- event strategies ----------------------------------------------------------------------
# A sequence is a list of execute runs; between runs prices move, time passes, a day ends or the
# control state changes. Runs of up to 8 orders make the per-run and per-day limits bind.
# Sizes and moves on a grid (integers shrink and generate faster than floats).
fractions = st.integers(1, 1300).map(lambda k: k / 1000)
orders = st.tuples(st.just("order"), st.sampled_from(SYMBOLS), st.sampled_from(("buy", "buy", "sell")),
                   fractions, st.booleans())
moves = st.tuples(st.just("move"), st.sampled_from(SYMBOLS), st.integers(-15, 25).map(lambda k: k / 100))
states = st.tuples(st.just("state"), st.sampled_from(STATES))
waits = st.tuples(st.just("wait"), st.integers(0, 40))
days = st.tuples(st.just("day"))
runs = st.lists(st.tuples(st.one_of(moves, states, waits, waits, days), st.lists(orders, min_size=1, max_size=8)),
                min_size=1, max_size=8)
events = runs.map(lambda rs: [step for between, batch in rs for step in (between, *batch)])


def make_order(model: Model, symbol: str, side: str, frac: float, immediate: bool) -> ProposedOrder:
    """Buys up to MAX_BUY (over max_order_notional); sells a part, all (frac 1..1.15) or up to 1.3x
    the holding (NO_SHORTS)."""
    price = model.px[symbol]
    held = model.pos.get(symbol, 0.0)
    if side == "buy" or held <= 0:
        qty = frac * MAX_BUY / price
    else:
        qty = held if 1.0 < frac <= 1.15 else frac * held
    market = immediate and side == "sell"
    return ProposedOrder("i", symbol, side, qty, price, kind="ENTRY" if side == "buy" else "EXIT",  # type: ignore[arg-type]
                         order_type="market" if market else "limit", limit_price=None if market else price,
                         urgency="immediate" if market else "normal", decision_price=price,
                         decision_time=model.now - timedelta(minutes=20))


def check_accepted(model: Model, order: ProposedOrder, held_before: float, run: GateRun) -> None:
    """The limits after an accepted order, computed from the model (not the gate's view)."""
    p, equity = PARAMS, run.view.equity   # equity is constant within a run: fills are at the price
    reducing = held_before > QTY_EPS and order.side == "sell" and order.qty <= held_before + QTY_EPS
    assert model.state in ("RUNNING", "REDUCE_ONLY"), "GATE-1: nothing passes while HALTED/FROZEN"
    assert model.state == "RUNNING" or reducing, "GATE-1: REDUCE_ONLY lets only reducing orders pass"
    assert all(q >= -QTY_EPS for q in model.pos.values()), "GATE-6: no short position"
    assert model.cash - model.reserved >= -TOL, "GATE-11: buys never exceed buying power"
    assert model.by_symbol[order.symbol] <= p.orders_per_symbol_day, "GATE-10 per symbol"
    assert model.day_orders <= p.orders_per_day and run.ctx.orders_this_run <= p.orders_per_run, "GATE-10"
    assert order.notional <= p.max_order_notional + TOL, "GATE-5"
    if reducing:
        return
    sym = order.symbol
    assert model.value([sym]) <= p.max_position_pct * equity + TOL, "GATE-3 max position"
    assert model.value(SYMBOLS) <= p.max_gross_exposure_pct * equity + TOL, "GATE-4 gross exposure"
    tier_syms = [s for s in SYMBOLS if TIERS[s] == TIERS[sym]]
    sector_syms = [s for s in SYMBOLS if SECTORS[s] == SECTORS[sym]]
    assert model.value(tier_syms) <= p.tier_caps[TIERS[sym]] * equity + TOL, "GATE-12 tier cap"
    assert model.value(sector_syms) <= p.sector_cap_pct * equity + TOL, "GATE-12 sector cap"
    if held_before <= QTY_EPS:
        assert sum(q > 0 for q in model.pos.values()) <= p.max_concurrent_positions, "GATE-14 max concurrent"
    assert sym not in model.closed_today, "GATE-14 re-entry"


# A starting book: up to 150 shares of each symbol at $100 (possibly over a cap already, as
# drift would leave it), little to a lot of cash, most of it possibly reserved by open orders,
# and symbols already closed earlier today; so that every limit binds quickly.
QTY_CHOICES, CASH_CHOICES, RESERVED_CHOICES = (0.0, 0.0, 20.0, 60.0, 95.0, 150.0), (3e3, 60e3, 150e3), (0.0, 0.0, 0.97)
books = st.tuples(st.lists(st.sampled_from(QTY_CHOICES), min_size=6, max_size=6),
                  st.sampled_from(CASH_CHOICES), st.sampled_from(RESERVED_CHOICES),
                  st.sets(st.sampled_from(SYMBOLS), max_size=3))


def start_model(book) -> Model:
    qtys, cash, reserved, closed = book
    pos = {s: q for s, q in zip(SYMBOLS, qtys) if q}
    return Model(cash=cash, reserved=cash * reserved, pos=pos, closed_today={s for s in closed if s not in pos})


def play(steps, book=((0.0,) * 6, 100_000.0, 0.0, ())) -> Counter:
    """Run one event sequence through the gate and the model; returns what happened."""
    model, seen = start_model(book), Counter()
    run = model.new_run()
    for step in steps:
        kind = step[0]
        if kind == "order":
            order = make_order(model, *step[1:])
            held_before = model.pos.get(order.symbol, 0.0)
            result = run.check(order)
            seen.update(v.code for v in result.verdicts if v.rejected)
            seen["PASS"] += result.passed
            if result.passed:
                model.fill(order)
                check_accepted(model, order, held_before, run)
            continue
        if kind == "move":
            model.px[step[1]] *= 1 + step[2]
        elif kind == "state":
            model.state = step[1]
        elif kind == "wait":
            model.now += timedelta(minutes=step[1])
        elif kind == "day":
            model.now += timedelta(days=1)
            model.by_symbol, model.day_orders, model.closed_today = Counter(), 0, set()
        run = model.new_run()   # anything but an order starts a new execute run
    return seen


@settings(max_examples=200, **DETERMINISTIC, suppress_health_check=[HealthCheck.too_slow])
@given(events, books)
def test_gate_when_random_sequences_then_accepted_orders_keep_every_limit(steps, book):
    """GATE-1/3/4/5/6/10/11/12/14: after every accepted order the model is within every limit;
    HALTED/FROZEN pass nothing; REDUCE_ONLY passes only reducing orders."""
    play(steps, book)


@settings(max_examples=100, **DETERMINISTIC)
@given(st.lists(st.tuples(st.sampled_from(SYMBOLS), st.sampled_from(("buy", "sell")), fractions,
                          st.booleans()), max_size=30),
       st.sampled_from(("HALTED", "FROZEN", "REDUCE_ONLY")))
def test_gate_when_trading_stopped_then_only_permitted_orders_pass(raw, state):
    """GATE-1: from a book with every symbol held, HALTED/FROZEN reject all, REDUCE_ONLY only reduces."""
    model = Model(cash=40_000.0, pos={s: 100.0 for s in SYMBOLS})
    model.state = state
    run = model.new_run()
    for symbol, side, frac, immediate in raw:
        order = make_order(model, symbol, side, frac, immediate)
        held_before = model.pos.get(symbol, 0.0)
        result = run.check(order)
        if state != "REDUCE_ONLY":
            assert not result.passed and result.rejection.code == state
        elif result.passed:
            model.fill(order)
            assert side == "sell" and order.qty <= held_before + QTY_EPS
        else:
            reducing = side == "sell" and 0 < order.qty <= held_before + QTY_EPS
            assert reducing or result.rejection.code == "REDUCE_ONLY"


@settings(max_examples=100, **DETERMINISTIC)
@given(events)
def test_gate_run_when_orders_applied_then_cached_aggregates_match_a_fresh_view(steps):
    """GATE-3/4/12/14 speed cache: incremental view updates equal a view rebuilt from scratch."""
    model = Model()
    run = model.new_run()
    for step in steps:
        if step[0] != "order":
            continue
        run.check(make_order(model, *step[1:]))
    fresh = PortfolioView(run.view.equity, 0.0, dict(run.view.holdings), TIERS, SECTORS)
    assert math.isclose(run.view.gross, fresh.gross, rel_tol=1e-9, abs_tol=1e-6)
    assert run.view.n_positions == fresh.n_positions
    for key, value in fresh.by_tier.items():
        assert math.isclose(run.view.by_tier.get(key, 0.0), value, rel_tol=1e-9, abs_tol=1e-6)
    for key, value in fresh.by_sector.items():
        assert math.isclose(run.view.by_sector.get(key, 0.0), value, rel_tol=1e-9, abs_tol=1e-6)


bad_numbers = st.sampled_from((math.nan, math.inf, -math.inf, 0.0, -1.0))


@settings(max_examples=100, **DETERMINISTIC)
@given(st.sampled_from(("equity", "price", "qty", "limit", "quote")), bad_numbers, st.sampled_from(SYMBOLS))
def test_gate_when_an_input_is_not_a_sane_number_then_entry_never_passes(where, bad, symbol):
    """GATE fail-closed: NaN/inf/zero/negative in equity, price, qty, limit or quote never lets an entry out."""
    model = Model()
    run = model.new_run()
    order = make_order(model, symbol, "buy", 0.2, False)
    fields = {"price": order.price, "qty": order.qty, "limit_price": order.limit_price}
    if where in ("price", "qty"):
        fields[where] = bad
    elif where == "limit":
        fields["limit_price"] = bad
    order = ProposedOrder("i", symbol, "buy", fields["qty"], fields["price"], limit_price=fields["limit_price"],
                          decision_price=order.decision_price, decision_time=order.decision_time)
    view, ctx = run.view, run.ctx
    if where == "equity":
        view = PortfolioView(bad, bad, {}, TIERS, SECTORS)
    if where == "quote":
        q = ctx.quotes[symbol]
        ctx = GateContext(now=ctx.now, params=PARAMS, quotes={symbol: Quote(symbol, bad, bad, q.ts)})
    assert not evaluate(order, view, ctx).passed


def test_gate_properties_when_sequences_played_then_every_outcome_is_reached():
    """The random model reaches passes and every limit it checks (the property is not vacuous)."""
    import random

    rng = random.Random(5)
    seen: Counter = Counter()
    for _ in range(150):
        steps = []
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            between = (("move", rng.choice(SYMBOLS), rng.uniform(-0.15, 0.25)) if r < 0.2 else
                       ("state", rng.choice(STATES)) if r < 0.4 else ("day",) if r < 0.5 else
                       ("wait", rng.randint(0, 40)))
            steps.append(between)
            steps.extend(("order", rng.choice(SYMBOLS), rng.choice(("buy", "buy", "sell")),
                          rng.uniform(0.001, 1.3), rng.random() < 0.2) for _ in range(rng.randint(1, 8)))
        seen += play(steps, (rng.choices(QTY_CHOICES, k=6), rng.choice(CASH_CHOICES), rng.choice(RESERVED_CHOICES),
                             rng.sample(SYMBOLS, rng.randint(0, 2))))
    expected = {"PASS", "MAX_POSITION", "GROSS_EXPOSURE", "MAX_ORDER_NOTIONAL", "NO_SHORTS", "ORDER_RATE_RUN",
                "ORDER_RATE_SYMBOL", "ORDER_RATE_DAY", "BUYING_POWER", "TIER_CAP", "SECTOR_CAP", "COOLDOWN",
                "MAX_CONCURRENT", "REDUCE_ONLY", "HALTED", "FROZEN", "REENTRY", "CORRELATION"}
    assert expected <= set(seen), expected - set(seen)
