"""Execute planned intents through the gate, crash-safe and at most once (EXIT-1…3, EXE-1, EXE-3, EXE-6).

Only inside the window open+exit_window_start_min … open+exit_window_end_min, except
urgency=immediate intents (EXIT-1/2). Outside it nothing is sent; an intent whose
window passed without it is alerted MISSED_WINDOW once and stays PLANNED (EXIT-3).

The order path of one intent (look-up first, gate, record SUBMITTED, send, record the
answer; crash points at each boundary) is ``order_path.execute_one``. A crash or an
unknown outcome never leads to a blind resend: the next run looks the id up first and,
only when the broker has never seen it and the window is still open, re-gates and
sends with the *same* id. After the window, reconcile marks it not_found and a later
run uses a new attempt (new id).

Choices: unfilled day orders of planned intents are cancelled at the first execute or
monitor after their window (a fill later in the day would execute outside the window);
the broker clock is never advanced here: execute polls order status and
reconcile/monitor record later fills. The run has a wall-clock budget of
``execution_timeout_s`` (EXE-3): once spent, no new order is started.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tradebook.phases import intents as it
from tradebook.ledger import events
from tradebook.errors import BrokerUnavailable
from tradebook.phases.exit_split import split_large_exits
from tradebook.phases.execute_audit import refusal_text
from tradebook.phases.execute_support import alert_missed_windows, build_gate_run, cancel_after_window, sessions_around
from tradebook.phases.order_path import execute_one
from tradebook.phases.order_record import Outcome

if TYPE_CHECKING:
    from tradebook.context import Context

POLLS = 3


@dataclass
class ExecuteReport:
    now: datetime
    window: tuple[datetime, datetime] | None
    control_state: str = "UNKNOWN"   # read from the controls by whoever fills the report, never assumed
    outcomes: list[Outcome] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)       # PLANNED intents not due now
    missed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    timed_out: bool = False
    entry_blocker: str | None = None                        # REC-8: why entries were held back
    orders: list[dict[str, Any]] = field(default_factory=list)     # execute_audit.orders
    refusals: list[dict[str, Any]] = field(default_factory=list)   # execute_audit.refusals

    def tables(self) -> dict[str, Any]:
        import pandas as pd

        from tradebook.phases.execute_audit import ORDER_COLUMNS, REFUSAL_COLUMNS

        cols = list(Outcome.__dataclass_fields__)
        frame = pd.DataFrame([o.__dict__ for o in self.outcomes], columns=cols)
        return {
            "intents processed": frame,
            "orders: limit, fill price, slippage vs decision (bps, + = worse)": pd.DataFrame(
                self.orders, columns=ORDER_COLUMNS),
            "gate refusals: rule, reason and its numbers": pd.DataFrame(self.refusals, columns=REFUSAL_COLUMNS),
            "rejected / expired / failed": frame[frame["state"].isin(["REJECTED", "EXPIRED", "FAILED"])],
            "waiting (PLANNED, not due now)": pd.DataFrame({"intent_id": self.waiting}),
            "missed windows (alerted)": pd.DataFrame({"intent_id": self.missed}),
            "cancelled at window end": pd.DataFrame({"client_order_id": self.cancelled}),
        }

    def summary(self) -> str:
        w = (f"window {self.window[0]:%H:%M}-{self.window[1]:%H:%M}" if self.window
             else "outside the execution window: planned intents wait")
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.state] = counts.get(o.state, 0) + 1
        done = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing sent"
        extra = "".join([f"; REFUSED by the gate: {refusal_text(self.refusals)}" if self.refusals else "",
                         f"; entries held back (REC-8): {self.entry_blocker}" if self.entry_blocker else "",
                         f"; {len(self.missed)} missed window(s) alerted" if self.missed else "",
                         f"; {len(self.cancelled)} cancelled at window end" if self.cancelled else "",
                         "; TIMEOUT: run budget spent, rest left PLANNED" if self.timed_out else ""])
        return (f"execute @ {self.now:%Y-%m-%d %H:%M %Z} ({w}, state {self.control_state}): {done}; "
                f"{len(self.waiting)} waiting{extra}")


def run_execute(ctx: "Context", *, budget_s: float | None = None) -> ExecuteReport:
    """Run due intents (exits first) through the gate and the crash-safe submit path."""
    deadline = time.monotonic() + (ctx.params.execution_timeout_s if budget_s is None else budget_s)
    with it.phase_session(ctx):
        return _run(ctx, deadline)


def _run(ctx: "Context", deadline: float) -> ExecuteReport:
    from tradebook.phases.reconcile import sync_orders

    now = ctx.now()
    sync_orders(ctx)  # adopt orders that landed before a crash, record fills, expire lost attempts
    with ctx.ledger.connect() as con:
        planned = it.in_states(con, [it.PLANNED])
        unanswered = resumable(con)
    sessions = sessions_around(ctx, now, planned)
    window = it.current_window(sessions, now, ctx.params)
    from tradebook.safety import controls

    # The summary states the real trading state even when nothing is due (execute_intents re-reads it).
    report = ExecuteReport(now, window, controls.effective_state(ctx.params, ctx.root, ctx.ledger).state)
    report.cancelled = cancel_after_window(ctx, now)
    report.missed = alert_missed_windows(ctx, planned, sessions, now)
    planned = [i for i in planned if not it.is_flatten(i)]   # only flatten sends its own intents (EXIT-8)
    unanswered = [i for i in unanswered if not it.is_flatten(i)]
    due = [i for i in planned if _due(i, window)] + [i for i in unanswered if i.urgency == "immediate" or window]
    report.waiting = [i.intent_id for i in planned if not _due(i, window)]
    if due:
        execute_intents(ctx, due, report, deadline, now)
    return report


def _due(intent: it.Intent, window: tuple[datetime, datetime] | None) -> bool:
    if intent.urgency == "immediate":
        return True
    return window is not None and intent.decision_time is not None and intent.decision_time < window[0]


def resumable(con) -> list[it.Intent]:
    """SUBMITTED intents whose current order never got a broker answer (crash / unknown outcome)."""
    from tradebook.ledger import intents as intent_store

    return intent_store.unanswered(con)


def execute_intents(ctx: "Context", intents: list[it.Intent], report: ExecuteReport, deadline: float,
                    now: datetime) -> ExecuteReport:
    """The shared order path (execute and monitor): gate, record, submit, record the answer."""
    from tradebook.safety import controls
    from tradebook.phases.reconcile import sync_orders

    status = controls.effective_state(ctx.params, ctx.root, ctx.ledger)
    report.control_state = status.state
    run, quotes, available = build_gate_run(ctx, intents, now, status.state)
    run.ctx = _with_entry_blocker(ctx, run.ctx, now, report)
    intents, split = split_large_exits(ctx, intents, quotes, available, now)   # EXIT-6
    report.outcomes += [Outcome(p.intent_id, p.symbol, p.kind, p.side, p.qty, it.CANCELLED,
                                "split into child orders within max_order_notional (EXIT-6)") for p in split]
    sent: list[str] = []
    ordered = sorted(intents, key=lambda i: (i.kind != "EXIT", -(i.confidence or 0.0), i.intent_id))
    for n, intent in enumerate(ordered):
        if time.monotonic() > deadline:
            report.timed_out = True
            with ctx.ledger.transaction() as con:
                events.record(con, "EXECUTION_TIMEOUT", run_id=ctx.run_id, ts=now,
                              reason=f"run budget {ctx.params.execution_timeout_s:g}s spent; "
                                    f"{len(ordered) - n} intent(s) left for the next run (EXE-3)")
            break
        _refresh_state(ctx, run, report)   # the kill switch is read again right before each order
        try:
            outcome = execute_one(ctx, run, intent, quotes, available, now)
        except it.InvalidTransition:
            continue  # another run moved this intent meanwhile
        except BrokerUnavailable as exc:
            report.outcomes.append(Outcome(intent.intent_id, intent.symbol, intent.kind, intent.side, intent.qty,
                                           intent.state, f"broker unavailable, left for the next run: {exc}"))
            break
        report.outcomes.append(outcome)
        if outcome.client_order_id and outcome.state == it.SUBMITTED:
            sent.append(outcome.client_order_id)
    _poll(ctx, sent, deadline, sync_orders)
    _audit(ctx, report, now)
    return report


def _audit(ctx: "Context", report: ExecuteReport, now: datetime) -> None:
    """The audit record's figures: each order's prices and slippage, each refusal's rule and numbers."""
    from tradebook.phases import execute_audit

    report.orders = execute_audit.orders(ctx, [o.client_order_id for o in report.outcomes if o.client_order_id])
    report.refusals = execute_audit.refusals(ctx, [o.intent_id for o in report.outcomes], now)


def _with_entry_blocker(ctx: "Context", gctx, now: datetime, report: ExecuteReport):
    """REC-8: no entries (exits only) unless a reconcile of the current session succeeded."""
    from dataclasses import replace

    from tradebook.ledger.meta import entry_blocker

    with ctx.ledger.connect() as con:
        blocker = entry_blocker(con, now)
    report.entry_blocker = blocker
    return replace(gctx, entry_blocker=blocker)


def _refresh_state(ctx: "Context", run, report: ExecuteReport) -> None:
    """GATE-1 at the last step: a halt (flag file, env, ledger) mid-run stops the next order."""
    from dataclasses import replace

    from tradebook.safety import controls

    state = controls.effective_state(ctx.params, ctx.root, ctx.ledger).state
    if state != run.ctx.control_state:
        run.ctx = replace(run.ctx, control_state=state)
        report.control_state = state


def _poll(ctx: "Context", cids: list[str], deadline: float, sync) -> None:
    """Track fills a few times within the budget (no sleeping in sim: its clock only moves on demand)."""
    interval = 0.0 if ctx.params.mode == "sim" else 1.0
    for k in range(1 if interval == 0 else POLLS):
        if not cids or time.monotonic() > deadline:
            return
        report = sync(ctx, cids)
        done = {u.row.client_order_id for u in report.order_updates if u.intent_to}
        cids = [c for c in cids if c not in done]
        if k + 1 < POLLS and cids:
            time.sleep(interval)
