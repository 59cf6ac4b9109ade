"""Shared set-up for the trading-core tests (reconcile, decide, execute, monitor, chaos).

Everything runs on a real SimBroker and a real ledger under a temp root. The default
dates are a calm pair of sessions (Wed 2011-07-20 → Thu 2011-07-21: every symbol
moves < 0.2% overnight), so the gate's gap and move rules do not get in the way
unless a test wants them to.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from tradebook.ledger import intents as intent_store
from tradebook.ledger import orders as order_store
from tradebook.ledger import positions as position_store
from tradebook.ledger import trades as trade_store
from tradebook.ledger import verdicts as verdict_store
from tradebook.phases import intents as it
from tradebook.context import Context
from tradebook.params import load_params
from tradebook.sessions import EXCHANGE_TZ as NY

if TYPE_CHECKING:
    from tradebook.ledger.db import Ledger

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params"
DECIDE_DAY = date(2011, 7, 20)
EXEC_DAY = date(2011, 7, 21)
SYMBOLS = ("AAPL", "GOOG", "IBM", "MSFT")


def ny(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), NY)


def decide_time(day: date = DECIDE_DAY) -> datetime:
    return ny(day, 16, 15)


def window_time(day: date = EXEC_DAY, minutes_after_open: int = 6) -> datetime:
    return ny(day, 9, 30) + timedelta(minutes=minutes_after_open)


def make_ctx(root: Path, **overrides) -> Context:
    """A context on ``root`` (SimBroker + ledger under root/runs) with param overrides."""
    overrides.setdefault("runs_dir", str(root / "runs"))
    # The helpers' calendar (DECIDE_DAY/EXEC_DAY) is fixed; don't depend on the demo's start date.
    overrides.setdefault("sim.start_date", "2011-07-01")
    # VEN-2: the trading-core tests run against a venue with a real broker's habits
    # (asynchronous cancels, wash-trade refusals; held shares are always unavailable).
    overrides.setdefault("sim.cancel_polls", 2)
    overrides.setdefault("sim.wash_trade_check", True)
    return Context(load_params(root / "params" / "sim.yaml", overrides), root)


def hold(ctx: Context, symbol: str, qty: float, avg: float, origin: str = "STRATEGY",
         confidence: float | None = 0.7) -> None:
    """A position at the broker and in the ledger, as if tradebook (or someone) had opened it."""
    ctx.broker.seed_position(symbol, qty, avg)
    now = ctx.now()
    strategy = origin == "STRATEGY"
    with ctx.ledger.transaction() as con:
        position_store.insert(con, symbol, qty, avg, origin, now if strategy else None,
                              confidence if strategy else None, ctx.params.symbol_tiers.get(symbol),
                              ctx.params.symbol_sectors.get(symbol), now)
        trade_store.append(con, now, symbol, "buy", qty, avg, "FILL" if strategy else "BACKFILL", None, "test set-up")


def mid(ctx: Context, symbol: str) -> float:
    return ctx.broker.quotes([symbol])[symbol].mid


def plant(ctx: Context, symbol: str, kind: str, qty: float, *, price: float | None = None,
          confidence: float | None = 0.8, urgency: str = "normal", when: datetime | None = None,
          suffix: str | None = None) -> it.Intent:
    """Insert a PLANNED intent decided now (decision price: the current mid unless given)."""
    now = when or ctx.now()
    price = mid(ctx, symbol) if price is None else price
    market = urgency == "immediate"
    intent = it.Intent(it.intent_id(now.date(), symbol, kind, suffix), now, None, kind, symbol,
                       "sell" if kind == "EXIT" else "buy", qty, "market" if market else "limit",
                       None if market else price, urgency, confidence, price, now, "test", it.PLANNED, 0,
                       None, None, now)
    with ctx.ledger.transaction() as con:
        it.insert(con, intent)
    return intent


def intent_state(ctx: Context, iid: str) -> str | None:
    """The intent's state in the ledger (None: no such intent)."""
    with ctx.ledger.connect() as con:
        intent = intent_store.load(con, iid)
    return intent.state if intent else None


def stored_intents(ledger: "Ledger") -> list[it.Intent]:
    """Every intent in the ledger, oldest first (through its store)."""
    with ledger.connect() as con:
        return intent_store.every(con)


def intent_states(ledger: "Ledger") -> dict[str, str]:
    """intent id -> state of every intent in the ledger."""
    return {i.intent_id: i.state for i in stored_intents(ledger)}


def stored_orders(ledger: "Ledger") -> list[order_store.OrderRecord]:
    """Every order row in the ledger, in the order sent (through its store)."""
    with ledger.connect() as con:
        return order_store.every(con)


def stored_verdicts(ledger: "Ledger") -> list[verdict_store.Verdict]:
    """Every verdict row in the ledger, oldest first (through its store)."""
    with ledger.connect() as con:
        return verdict_store.every(con)


def gate_passed_intents(ledger: "Ledger") -> set[str]:
    """Intents with at least one gate evaluation (verdicts of one timestamp) that rejected nothing."""
    rejected: dict[tuple[str, datetime], bool] = {}
    for v in stored_verdicts(ledger):
        key = (v.intent_id, v.ts)
        rejected[key] = rejected.get(key, False) or v.severity == "reject"
    return {iid for (iid, _), bad in rejected.items() if not bad}


def record_order(con, cid: str, intent_id: str, symbol: str, side: str, qty: float, *, now: datetime,
                 status: str = "pending_submit", order_type: str = "limit", limit: float | None = None,
                 reason: str | None = None, attempt: int = 1) -> None:
    """An order row as the order path writes it before sending (pending_submit), then moved to
    ``status`` (with ``reason``) as a later broker answer would: the state a test starts from."""
    order_store.insert_pending(con, cid, intent_id, attempt, symbol, side, qty, order_type, limit, "day", now)
    if status != "pending_submit":
        order_store.set_status(con, cid, status, reason, now)


def broker_orders(ctx: Context, max_attempts: int = 4) -> list[tuple]:
    """Orders the venue has for any intent in the ledger, found through the public Broker API:
    every client_order_id tradebook could have used (attempts 1..max) plus any id with a fill.
    Tuples (client_order_id, symbol, side, qty, status, filled_qty), in submit order."""
    ids = [i.intent_id for i in stored_intents(ctx.ledger)]
    cids = {it.client_order_id(i, a) for i in ids for a in range(1, max_attempts + 1)}
    cids |= {f.client_order_id for f in ctx.broker.fills()}
    found = [o for o in (ctx.broker.get_order(c) for c in sorted(cids)) if o is not None]
    found.sort(key=lambda o: (o.submitted_at, o.client_order_id))
    return [(o.client_order_id, o.symbol, o.side, o.qty, o.status, o.filled_qty) for o in found]


def positions_match(ctx: Context) -> bool:
    """Ledger positions equal broker positions (qty and average price)."""
    broker = {p.symbol: (round(p.qty, 6), round(p.avg_price, 4)) for p in ctx.broker.positions() if abs(p.qty) > 1e-9}
    ledger = {s: (round(q, 6), round(a, 4)) for s, q, a in ctx.ledger.read(position_store.quantities)}
    return broker == ledger


def ledger_positions(ctx: Context) -> dict:
    """The ledger's positions by symbol (tradebook.phases.positions.LedgerPosition)."""
    from tradebook.phases.positions import load_positions

    return ctx.ledger.read(load_positions)


def fills(ctx: Context) -> list[dict]:
    """The ledger's fills, oldest first."""
    from tradebook.ledger import fills as fill_store

    return ctx.ledger.read(fill_store.history)


def trades(ctx: Context, kind: str | None = None) -> list[dict]:
    """The ledger's trades, oldest first, optionally only those of ``kind``."""
    return [t for t in ctx.ledger.read(trade_store.history) if kind is None or t["kind"] == kind]


def incidents(ctx: Context, kind: str | None = None) -> list[dict]:
    """The ledger's incidents, oldest first, optionally only those of ``kind``."""
    from tradebook.ledger import controls as control_store

    return [i for i in ctx.ledger.read(control_store.incident_history) if kind is None or i["kind"] == kind]


def control_rows(ctx: Context) -> list[dict]:
    """The ledger's control rows (trading-state changes), oldest first."""
    from tradebook.ledger import controls as control_store

    return ctx.ledger.read(control_store.control_history)


def table_counts(ctx: Context) -> dict[str, int]:
    return ctx.ledger.check()


def decided_book(root: Path) -> Context:
    """Decided on 2011-07-20 after the close: exit MSFT (held), enter AAPL and IBM; clock still at decide
    time; reconciled (REC-8: after the close it covers the next session, so entries may go)."""
    from tradebook.phases.reconcile import run_reconcile

    ctx = make_ctx(root)
    ctx.broker.advance_to(decide_time())
    hold(ctx, "MSFT", 100, 25.0)
    plant(ctx, "MSFT", "EXIT", 100)
    plant(ctx, "AAPL", "ENTRY", 10)
    plant(ctx, "IBM", "ENTRY", 20, confidence=0.6)
    run_reconcile(ctx)
    return ctx
