"""Reconcile's write: one transaction that records what the check found (REC-2…7).

Order updates, the position actions (set-based SQL in the ledger's stores, so 5,000
actions stay fast), a confirmed divergence (incident, ALERT, REDUCE_ONLY) and a failed
order look-up, all in the transaction that first checks the ledger did not move since
it was read (another writer → ``LedgerMoved``, and reconcile reads again).
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from tradebook.errors import LedgerError
from tradebook.ledger import closed_today, events
from tradebook.ledger import intents as intent_store
from tradebook.ledger import orders as order_store
from tradebook.ledger import positions as position_store
from tradebook.ledger import trades as trade_store
from tradebook.ledger.db import staged
from tradebook.phases import reconcile_outcome as outcome
from tradebook.phases.order_sync import apply_order_update

if TYPE_CHECKING:
    import duckdb

    from tradebook.context import Context
    from tradebook.phases.reconcile import ReconcileReport
    from tradebook.phases.reconcile_diff import Action


class LedgerMoved(LedgerError):
    """The ledger changed between our read and our write (another writer): redo the reconcile."""


def ledger_fingerprint(con: "duckdb.DuckDBPyConnection") -> tuple:
    """What changes whenever another writer touches orders, intents, positions or trades."""
    return (*order_store.fingerprint(con), intent_store.last_update(con), *position_store.version(con),
            trade_store.count(con))


def write(ctx: "Context", report: "ReconcileReport", fingerprint: tuple, mark: dict | None = None,
          mark_due: bool = False) -> None:
    """Record the report in one transaction, unless the ledger moved since ``fingerprint`` was read."""
    with ctx.ledger.transaction() as con:
        if ledger_fingerprint(con) != fingerprint:
            raise LedgerMoved("ledger changed since it was read")
        if mark_due:
            outcome.mark_success(con, mark, report.now)
        for u in report.order_updates:
            apply_order_update(con, u, ctx, report.now)
        if report.actions:
            apply_actions(con, report.actions, ctx, report.now)
        if report.divergence:
            _raise_divergence(con, report, ctx)
        if report.unread:
            from tradebook.safety.controls import record_incident

            record_incident(con, "ORDER_LOOKUP_FAILED",
                            f"order look-up failed for {', '.join(report.unread)}: left out of the position "
                            "comparison (our own fill is never booked as an external close); the next run "
                            "settles it", report.now)


def apply_actions(con: "duckdb.DuckDBPyConnection", actions: list["Action"], ctx: "Context", now: datetime) -> None:
    """REC-2/3/4/6 in bulk (set-based SQL over a registered frame: 5,000 actions stay fast)."""
    import pandas as pd

    from tradebook.sessions import session_date

    p = ctx.params
    frame = pd.DataFrame({
        "kind": [a.kind for a in actions], "symbol": [a.symbol for a in actions],
        "qty": [a.qty for a in actions], "price": [a.price for a in actions],
        "delta": [a.delta for a in actions], "reason": [a.reason for a in actions],
        "tier": [p.symbol_tiers.get(a.symbol) for a in actions],
        "sector": [p.symbol_sectors.get(a.symbol) for a in actions],
        "ledger_qty": [a.ledger_qty for a in actions], "ledger_price": [a.ledger_price for a in actions],
    })
    with staged(con, "rec_actions", frame):
        _bulk_sql(con, now, ctx.run_id, session_date(now))


def _bulk_sql(con: "duckdb.DuckDBPyConnection", now: datetime, run_id: str | None, day) -> None:
    position_store.apply_reconcile_actions(con, now)
    closed_today.mark_external_closes(con, day, now)
    trade_store.append_reconcile_actions(con, now, run_id)
    events.record_reconcile_actions(con, now, run_id)


def _raise_divergence(con: "duckdb.DuckDBPyConnection", report: "ReconcileReport", ctx: "Context") -> None:
    """REC-7: incident + ALERT + REDUCE_ONLY, all in the reconcile's transaction."""
    from tradebook import alerts
    from tradebook.safety import controls

    shown = 10  # an alert is read by a person: name a few, count the rest (all are audit events)
    listed = "; ".join(f"{a.kind} {a.symbol} ledger {a.ledger_qty:g} -> broker {a.qty:g}"
                       for a in report.actions[:shown])
    more = len(report.actions) - shown
    detail = (f"ledger and broker diverged on {report.checks} consecutive checks for "
              f"{len(report.actions)} position(s): {listed}" + (f"; and {more} more" if more > 0 else ""))
    controls.record_incident(con, "RECONCILE_DIVERGENCE", detail, report.now)
    alerts.alert(con, "DIVERGENCE", detail, params=ctx.params, run_id=ctx.run_id, now=report.now,
                 data={"symbols": [a.symbol for a in report.actions]})
    controls.reduce_only(con, f"reconcile divergence: {len(report.actions)} position(s) corrected to the broker",
                         source="reconcile", now=report.now, incident=False)
