"""Once after ``ledger restore``: record our own orders the lost ledger knew and the backup does not.

A backup is older than the ledger it replaces: orders tradebook sent after it are at the
broker under our deterministic client ids but not in the restored ledger. Compared with
the broker alone, their fills would read as someone else's trades (EXTERNAL_CLOSE without
a price, BACKFILL) and trip a divergence. ``restore`` leaves a mark in ``ledger_meta``
(key ``restored``); the next full reconcile, before it compares positions, looks up at
the broker (by client id: the broker is the truth):

- flatten's ids ``flat-<YYYYMMDD>-<SYMBOL>[-n]`` of every symbol the restored ledger holds,
  for every session from the backup's newest event to now;
- the ids ``tb-<intent>-a<n>`` of every intent the restored ledger still has open
  (PLANNED or SUBMITTED: decided before the backup, sent after it).

Each order found that the ledger lacks is recorded as ours (order row, intent state, fill
at its real price, FILL trade with realized P&L, position), oldest first; then the mark is
cleared in the same transaction, so this runs once. Intents decided after the backup are
not in the restored ledger and cannot be named: their fills are still reconciled as
external (REC-2/REC-3).
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from tradebook.ledger import events
from tradebook.ledger import intents as intent_store
from tradebook.ledger import meta as ledger_meta
from tradebook.ledger import orders as order_store
from tradebook.phases.flatten_adopt import Adopted, closing_orders_of, record_closing

if TYPE_CHECKING:
    import duckdb

    from tradebook.broker.base import Order
    from tradebook.context import Context
    from tradebook.ledger.intents import Intent

MAX_PROBE = 9   # attempts looked up per open intent (execute retries far fewer)


def adopt_after_restore(ctx: "Context") -> list[Adopted]:
    """Record our orders sent after the restored backup (see module doc); clears the restore's mark."""
    from tradebook.ledger import positions as position_store
    from tradebook.phases.intents import PLANNED, SUBMITTED
    from tradebook.sessions import session_date

    with ctx.ledger.connect() as con:
        mark = ledger_meta.get(con, ledger_meta.RESTORED_KEY)
        if not (mark and mark.get("pending")):
            return []
        held = sorted(sym for sym, qty, _ in position_store.quantities(con) if abs(qty) > 1e-9)
        newest = events.find(con, newest_first=True, limit=1)
        open_intents = [i for i in intent_store.in_states(con, (PLANNED, SUBMITTED))
                        if not i.intent_id.startswith("flat-")]
        known = {o.client_order_id for o in order_store.every(con)}
    now = ctx.now()
    days = [s.day for s in ctx.broker.calendar(session_date(newest[0].ts if newest else now), session_date(now))]
    found = _look_up(ctx, days, held, open_intents, known, now)
    source = f"the broker, after restoring {mark.get('from')}"
    out: list[Adopted] = []
    with ctx.ledger.transaction() as con:
        for truth, intent, attempt in found:
            if order_store.exists(con, truth.client_order_id):
                continue
            if intent is None:
                record_closing(con, ctx, {"reason": "flatten"}, truth, now, source)
            else:
                _record_intent_order(con, ctx, intent, attempt, truth, now, source)
            out.append(Adopted(source, truth.client_order_id, truth.symbol, truth.status, truth.filled_qty,
                               truth.filled_avg_price))
        ledger_meta.put(con, ledger_meta.RESTORED_KEY, {**mark, "pending": False, "checked": now.isoformat()}, now)
        events.record(con, "RESTORE_ORDERS_CHECKED", run_id=ctx.run_id, ts=now,
                      reason=f"our orders looked up at the broker after restoring {mark.get('from')}",
                      data={"symbols": held, "days": [str(d) for d in days], "intents": len(open_intents),
                            "adopted": [a.client_order_id for a in out]})
    return out


def _look_up(ctx: "Context", days: list, held: list[str], open_intents: list["Intent"], known: set[str],
             now: datetime) -> list[tuple["Order", "Intent | None", int]]:
    """(order, its intent or None for flatten's, attempt) found at the broker, oldest first."""
    closing = [(o, None, 0) for day in days for sym in held for o in closing_orders_of(ctx, day, sym)]
    sent = [(o, i, a) for i in open_intents for a, o in _intent_orders(ctx, i, known)]
    return sorted(closing + sent, key=lambda f: (f[0].submitted_at or now, f[0].client_order_id))


def _intent_orders(ctx: "Context", intent: "Intent", known: set[str]) -> list[tuple[int, "Order"]]:
    """(attempt, order) of the intent's attempts the broker knows and the ledger lacks, up to the first unknown."""
    from tradebook.phases.intents import client_order_id

    out = []
    for attempt in range(1, MAX_PROBE + 1):
        cid = client_order_id(intent.intent_id, attempt)
        if cid in known:
            continue
        order = ctx.broker.get_order(cid)
        if order is None:
            break
        out.append((attempt, order))
    return out


def _record_intent_order(con: "duckdb.DuckDBPyConnection", ctx: "Context", intent: "Intent", attempt: int,
                         truth: "Order", now: datetime, source: str) -> None:
    """As the order path records a sent order (row, SUBMITTED), then the broker's view through reconcile's
    order-update path (fill, trade, position, the intent's next state)."""
    from tradebook.phases import intents as it
    from tradebook.phases.order_sync import apply_order_update, open_order_rows, order_update

    cid, sent = truth.client_order_id, truth.submitted_at or now
    order_store.insert_pending(con, cid, intent.intent_id, attempt, truth.symbol, truth.side, truth.qty,
                               truth.order_type, truth.limit_price, "day", sent)
    current = intent_store.load(con, intent.intent_id)
    if current.state in (it.PLANNED, it.SUBMITTED) and attempt >= current.attempt:
        it.transition(con, intent.intent_id, it.SUBMITTED, reason=f"order {cid} found at {source}", now=sent,
                      run_id=ctx.run_id, attempt=attempt)
    for row in open_order_rows(con, [cid]):
        update = order_update(row, truth, window_over=False, now=now)
        if update is not None:
            apply_order_update(con, update, ctx, now)
