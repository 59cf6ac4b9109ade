"""REC-8: what a full reconcile leaves behind besides its actions.

Success marks the session as reconciled (entries may be sent). Failure (the broker
read failed, or anything else went wrong) is an incident, an alert and an automatic
REDUCE_ONLY trip (CTL-3: it may re-arm after the cooldown), and marks the session as
not reconciled, so execute sends exits only until a later reconcile succeeds.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from tradebook.ledger import meta as ledger_meta

if TYPE_CHECKING:
    import duckdb

    from tradebook.context import Context


def failure_time(ctx: "Context") -> datetime:
    """The broker's clock (simulated in sim mode); the wall clock if even that cannot be read."""
    try:
        return ctx.now()
    except Exception:  # the broker may be down entirely: the failure still gets a time
        return datetime.now(timezone.utc)


def describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300]


def record_failure(ctx: "Context", exc: BaseException, now: datetime) -> str | None:
    """Incident + ALERT + REDUCE_ONLY + session marked unreconciled, in one transaction.

    Returns None when recorded, else why it could not be (the ledger is locked or damaged:
    the caller's error is what the operator sees then).
    """
    from tradebook import alerts
    from tradebook.safety import controls

    error = describe(exc)
    detail = f"reconcile failed, the ledger was not compared with the broker: {error}"
    try:
        with ctx.ledger.transaction() as con:
            controls.record_incident(con, "RECONCILE_FAILED", detail, now)
            alerts.alert(con, "INCIDENT", detail, params=ctx.params, run_id=ctx.run_id, now=now,
                         data={"kind": "RECONCILE_FAILED"})
            controls.reduce_only(con, "reconcile failed: no new entries until a reconcile succeeds "
                                      f"({error})", source="reconcile", now=now, incident=False)
            ledger_meta.put(con, ledger_meta.RECONCILE_KEY, ledger_meta.mark_value(now, False, error), now)
    except Exception as inner:  # noqa: BLE001 - never hide the reconcile's own error behind this one
        return describe(inner)
    return None


def mark_success(con: "duckdb.DuckDBPyConnection", current: dict | None, now: datetime) -> bool:
    """Mark the session reconciled inside the caller's transaction, unless already marked. True if written."""
    value = ledger_meta.mark_value(now, True)
    if not ledger_meta.needs_mark(current, value):
        return False
    ledger_meta.put(con, ledger_meta.RECONCILE_KEY, value, now)
    return True


def needs_success_mark(current: dict | None, now: datetime) -> bool:
    return ledger_meta.needs_mark(current, ledger_meta.mark_value(now, True))
