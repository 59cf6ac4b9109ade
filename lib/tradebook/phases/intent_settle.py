"""Intents that no live broker order backs, settled by every sync (EXIT-3, EXIT-8; issue 12 items 3, 5).

- An intent is SUBMITTED ("under way") only while its current order may still trade.
  A SUBMITTED intent whose current order row is final in the ledger (a crash between
  the broker's refusal and the retry, a cancel-first refusal, an order that ended
  while the intent was not looked at) is resolved by its row: filled → FILLED, ended
  → CANCELLED / EXPIRED / PARTIAL, refused for a reason a new attempt can fix
  (fractional qty, our own working order in the way) or never sent → back to PLANNED
  with the next attempt, any other refusal → FAILED.
- An immediate intent (stop loss, flatten, any urgency=immediate exit) belongs to its
  session: still PLANNED after that session's close, it becomes EXPIRED with an event,
  never sent on a later day (EXIT-8). (A SUBMITTED one whose order the broker does not
  know after the close expires through order_sync's not_found rule.)
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tradebook.ledger import intents as intent_store
from tradebook.phases import intents as it
from tradebook.broker.base import CANCEL_FIRST_CODES, CANCEL_FIRST_MESSAGES
from tradebook.phases.order_sync import LEDGER_FINAL, intent_state_for

if TYPE_CHECKING:
    from tradebook.context import Context

RETRYABLE_MARKERS = ("FRACTIONAL_NOT_SUPPORTED", *CANCEL_FIRST_CODES, *CANCEL_FIRST_MESSAGES)


def stranded_to(status: str, filled_qty: float, reject_reason: str | None, urgency: str) -> str:
    """The state a SUBMITTED intent takes when its current order row is final (pure)."""
    if status == "rejected":
        text = (reject_reason or "").lower()
        return it.PLANNED if any(m.lower() in text for m in RETRYABLE_MARKERS) else it.FAILED
    if status == "not_sent":
        return it.PLANNED
    return intent_state_for(status, filled_qty, urgency) or it.PLANNED


def settle_intents(ctx: "Context", now: datetime) -> list[tuple[str, str]]:
    """Resolve stranded SUBMITTED intents, then expire immediate ones past their session; [(id, new state)]."""
    return _resolve_stranded(ctx, now) + _expire_immediate(ctx, now)


def _resolve_stranded(ctx: "Context", now: datetime) -> list[tuple[str, str]]:
    with ctx.ledger.connect() as con:
        stranded = intent_store.stranded(con, LEDGER_FINAL)
    if not stranded:
        return []
    done = []
    with ctx.ledger.transaction() as con:
        for iid, cid, status, filled, why, urgency in stranded:
            current = it.load(con, iid)
            if current is None or current.state != it.SUBMITTED:
                continue
            to = stranded_to(status, filled, why, urgency)
            it.transition(con, iid, to, now=now, run_id=ctx.run_id,
                          reason=f"order {cid} is {status} ({why or 'no reason given'}): not under way any more")
            done.append((iid, to))
    return done


def _expire_immediate(ctx: "Context", now: datetime) -> list[tuple[str, str]]:
    with ctx.ledger.connect() as con:
        planned = intent_store.planned_immediate(con)
    closes: dict = {}
    late = [i for i in planned if now >= session_close_after(ctx, i.created_at, closes)]
    if not late:
        return []
    done = []
    with ctx.ledger.transaction() as con:
        for i in late:
            current = it.load(con, i.intent_id)
            if current is None or current.state != it.PLANNED:
                continue
            it.transition(con, i.intent_id, it.EXPIRED, now=now, run_id=ctx.run_id,
                          reason="immediate intent not sent in its session: expired, never sent on a later "
                                 "session (EXIT-8)")
            done.append((i.intent_id, it.EXPIRED))
    return done


def session_close_after(ctx: "Context", t: datetime, cache: dict | None = None) -> datetime:
    """The close of the session ``t`` belongs to: the first close after ``t``."""
    from tradebook.safety.controls import session_date

    day = session_date(t)
    cache = {} if cache is None else cache
    if day not in cache:
        cache[day] = [s.close for s in ctx.broker.calendar(day, day + timedelta(days=10))]
    return next((c for c in cache[day] if c > t), t + timedelta(days=1))
