"""Facts the ledger keeps about itself (table ``ledger_meta``, one JSON value per key).

- ``reconcile``: the outcome of the last full reconcile and the session it counts for
  (REC-8: no entry is sent on a session whose reconcile did not succeed).
- ``broker_identity``: the broker account the ledger belongs to (OPS-8, see
  ``tradebook.ledger.identity``).
- ``restored`` / ``flatten_journals``: a restore still to be checked against the broker, and
  the unrecorded-flatten journals already applied (``tradebook.phases.flatten_adopt``).

A value is written only when it changes, so a second identical reconcile still
writes nothing (REC-5).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

RECONCILE_KEY = "reconcile"
# Written by ``ledger restore`` ({"from": backup name, "pending": true}); the next full reconcile
# looks up at the broker the orders the lost ledger may have recorded, then sets pending false.
RESTORED_KEY = "restored"


def get(con: "duckdb.DuckDBPyConnection", key: str) -> dict[str, Any] | None:
    """The stored value of ``key`` (None when never written)."""
    row = con.execute("SELECT value FROM ledger_meta WHERE key = ?", [key]).fetchone()
    return json.loads(row[0]) if row else None


def put(con: "duckdb.DuckDBPyConnection", key: str, value: dict[str, Any], now: datetime) -> None:
    """Insert or replace ``key`` inside the caller's transaction."""
    con.execute("INSERT OR REPLACE INTO ledger_meta (key, value, updated_at) VALUES (?, ?, ?)",
                [key, json.dumps(value, default=str, sort_keys=True), now])


# --- REC-8: the session a reconcile counts for ---------------------------------------------------
def reconcile_session(now: datetime) -> date:
    """The session a reconcile at ``now`` vouches for: the one in progress, else the next one.

    A reconcile after yesterday's close or before today's open therefore covers today's
    session (nothing trades in between); one from an earlier session never does.
    """
    from tradebook.sessions import current_or_next_session

    return current_or_next_session(now).day


@dataclass(frozen=True)
class ReconcileMark:
    """The last full reconcile: the session it covers, whether it succeeded, when, and why not."""

    session: str
    ok: bool
    ts: str
    error: str | None = None

    def as_value(self) -> dict[str, Any]:
        return {"session": self.session, "ok": self.ok, "ts": self.ts, "error": self.error}


def mark_value(now: datetime, ok: bool, error: str | None = None) -> dict[str, Any]:
    """The ``reconcile`` value for an outcome at ``now``."""
    return ReconcileMark(str(reconcile_session(now)), ok, now.isoformat(), error).as_value()


def needs_mark(current: dict[str, Any] | None, value: dict[str, Any]) -> bool:
    """A success already recorded for the same session is not written again (REC-5)."""
    if current is None or not value["ok"]:
        return True
    return not (current.get("ok") and current.get("session") == value["session"])


def entry_blocker(con: "duckdb.DuckDBPyConnection", now: datetime) -> str | None:
    """REC-8: why entries may not be sent at ``now`` (None: a reconcile of this session succeeded)."""
    session = str(reconcile_session(now))
    mark = get(con, RECONCILE_KEY)
    if mark is None:
        return f"no reconcile has succeeded yet for the session of {session}; run `tradebook run reconcile` first"
    if mark.get("session") != session:
        return (f"no reconcile has succeeded for the session of {session} (the last one covered "
                f"{mark.get('session')}); run `tradebook run reconcile` first")
    if not mark.get("ok"):
        return f"the last reconcile for the session of {session} failed ({mark.get('ts')}): {mark.get('error')}"
    return None
