"""Intents: what tradebook decided to do, persisted so it survives restarts (EXIT-1, EXIT-3, EXE-1).

An intent is one row in ``intents`` that moves through a small state machine::

    PLANNED ──► SUBMITTED ──► FILLED | PARTIAL | CANCELLED | EXPIRED | FAILED
       │            │
       └─► REJECTED (gate) / EXPIRED (stale, superseded) / CANCELLED

PARTIAL is terminal: the order ended (cancelled/expired) with some quantity filled.
While an order is still working, partly filled or not, the intent stays SUBMITTED.
SUBMITTED may go back to PLANNED with a new attempt number only when the order was
confirmed absent at the broker after its window (the next attempt gets a new
client_order_id), and to REJECTED when a resumed submit is re-gated and refused
before anything reached the broker.

Ids are deterministic so decide and execute are idempotent: the intent id comes
from (decision session date, symbol, kind) and the client_order_id from
(intent id, attempt). ``crash_point`` is the chaos-test hook at each step boundary.
"""
from __future__ import annotations

import hashlib
import os
import signal
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Iterator

from tradebook.errors import TradebookError
from tradebook.ledger import events
from tradebook.ledger import intents as store
# The row type and its plain reads/writes are the store's; re-exported because every phase says it.Intent.
from tradebook.ledger.intents import COLUMNS, Intent, in_states, insert, load  # noqa: F401

if TYPE_CHECKING:
    import duckdb

    from tradebook.broker.base import Session
    from tradebook.context import Context
    from tradebook.params import Params

PLANNED, SUBMITTED = "PLANNED", "SUBMITTED"
FILLED, PARTIAL, CANCELLED, EXPIRED, FAILED, REJECTED = (
    "FILLED", "PARTIAL", "CANCELLED", "EXPIRED", "FAILED", "REJECTED")
STATES = (PLANNED, SUBMITTED, FILLED, PARTIAL, CANCELLED, EXPIRED, FAILED, REJECTED)
TERMINAL = frozenset({FILLED, PARTIAL, CANCELLED, EXPIRED, FAILED, REJECTED})
TRANSITIONS: dict[str, frozenset[str]] = {
    PLANNED: frozenset({SUBMITTED, REJECTED, EXPIRED, CANCELLED}),
    SUBMITTED: frozenset({SUBMITTED, FILLED, PARTIAL, CANCELLED, EXPIRED, FAILED, PLANNED, REJECTED}),
    **{state: frozenset() for state in TERMINAL},
}
KINDS = ("ENTRY", "ADD_ON", "EXIT")
MAX_CLIENT_ID = 48
FLATTEN_PREFIX = "flat-"   # flatten's intent ids (= its client ids): flat-<YYYYMMDD>-<SYMBOL>[-<attempt>]
CRASH_ENV = "TRADEBOOK_CRASH_AT"
# The order path's step boundaries, in order (see execute.py). Verdicts, the order row
# and SUBMITTED commit in one transaction, so "after_gate_recorded" is that same point.
CRASH_STEPS = ("before_gate", "after_gate_evaluated", "after_submitted_recorded",
               "after_broker_submit", "after_order_recorded", "after_fill_recorded")
_crash_hits: dict[str, int] = {}


class InvalidTransition(TradebookError):
    """An intent was asked to move to a state its state machine does not allow."""


def crash_point(name: str) -> None:
    """Chaos hook: SIGKILL this process at step ``name`` when TRADEBOOK_CRASH_AT names it.

    ``TRADEBOOK_CRASH_AT=step`` dies at the first time the step is reached,
    ``step@2`` at the second. A no-op unless the variable is set.
    """
    target = os.environ.get(CRASH_ENV)
    if not target:
        return
    step, _, nth = target.partition("@")
    if step != name and not (step == "after_gate_recorded" and name == "after_submitted_recorded"):
        return
    _crash_hits[name] = _crash_hits.get(name, 0) + 1
    if _crash_hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def phase_session(ctx: "Context") -> Iterator[None]:
    """Keep one ledger connection open for the duration of one phase call.

    DuckDB caches a database instance per file while any connection to it is open, so
    the many short transactions of a phase cost ~0.1 ms each instead of a fresh
    instance (~40-90 ms) apiece. Released when the phase returns, never held across a
    notebook (OPS-1); every state change still commits in its own transaction.
    """
    with ctx.ledger.connect():
        yield


def intent_id(day: date, symbol: str, kind: str, suffix: str | None = None) -> str:
    """Deterministic id from (session date, symbol, kind): deciding twice never duplicates."""
    if kind not in KINDS:
        raise ValueError(f"intent kind must be one of {KINDS}, not {kind!r}")
    base = f"{day:%Y%m%d}-{symbol}-{kind}"
    return f"{base}-{suffix}" if suffix else base


def is_flatten(intent: Intent) -> bool:
    """A closing intent of ``tradebook flatten`` (its own client ids; only flatten sends it)."""
    return intent.intent_id.startswith(FLATTEN_PREFIX)


def client_order_id(intent: str, attempt: int) -> str:
    """EXE-1: deterministic client_order_id from (intent id, attempt), at most 48 characters."""
    if attempt < 1:
        raise ValueError("attempts start at 1")
    cid = f"tb-{intent}-a{attempt}"
    if len(cid) <= MAX_CLIENT_ID:
        return cid
    digest = hashlib.sha256(intent.encode()).hexdigest()[:32]
    return f"tb-{digest}-a{attempt}"


# --- rows (stored by tradebook.ledger.intents) -------------------------------------------------
def transition(con: "duckdb.DuckDBPyConnection", iid: str, to: str, *, reason: str, now: datetime,
               run_id: str | None = None, attempt: int | None = None) -> Intent:
    """Move an intent to ``to`` (checked against TRANSITIONS) and record an audit event."""
    current = load(con, iid)
    if current is None:
        raise InvalidTransition(f"intent {iid} does not exist")
    if to not in TRANSITIONS[current.state]:
        raise InvalidTransition(f"intent {iid}: {current.state} -> {to} is not allowed")
    new_attempt = current.attempt if attempt is None else attempt
    store.set_state(con, iid, to, new_attempt, now)
    events.record(con, f"INTENT_{to}", run_id=run_id, symbol=current.symbol, qty=current.qty,
                  price=current.decision_price, reason=reason, ts=now,
                  data={"intent_id": iid, "from": current.state, "to": to, "kind": current.kind,
                       "attempt": new_attempt})
    return load(con, iid)  # type: ignore[return-value]


# --- execution windows (EXIT-1, EXIT-3) --------------------------------------------------------
def window_of(session: "Session", params: "Params") -> tuple[datetime, datetime]:
    """The execution window of a session: open+exit_window_start_min … open+exit_window_end_min."""
    return (session.open + timedelta(minutes=params.exit_window_start_min),
            session.open + timedelta(minutes=params.exit_window_end_min))


def first_window_after(sessions: list["Session"], t: datetime,
                       params: "Params") -> tuple[datetime, datetime] | None:
    """The first window that starts after ``t`` (the window an intent decided at ``t`` is for)."""
    for session in sorted(sessions, key=lambda s: s.open):
        start, end = window_of(session, params)
        if start > t:
            return start, end
    return None


def current_window(sessions: list["Session"], now: datetime,
                   params: "Params") -> tuple[datetime, datetime] | None:
    """The window containing ``now``, if any."""
    for session in sessions:
        start, end = window_of(session, params)
        if start <= now <= end:
            return start, end
    return None


def display_table(intents: list[Intent]):
    """Intents as a DataFrame for notebooks (EXIT_PLANNED vocabulary in ``state``)."""
    import pandas as pd

    frame = pd.DataFrame([{c: getattr(i, c) for c in COLUMNS} for i in intents], columns=list(COLUMNS))
    if len(frame):
        frame["state"] = [i.display_state for i in intents]
    return frame
