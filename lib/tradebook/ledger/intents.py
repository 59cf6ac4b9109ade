"""The ``intents`` table: every SQL statement that touches it (one owner per table).

An intent row is one thing tradebook decided to do (enter, add on, exit a symbol) and where
it stands (state, attempt, the gate's answer). The state machine that decides which moves
are allowed is tradebook.phases.intents'; here rows are only stored and read, inside the
caller's connection or transaction.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Iterable

from tradebook.ledger.sql import marks

if TYPE_CHECKING:
    import duckdb
    import pandas as pd


@dataclass(frozen=True)
class Intent:
    intent_id: str
    created_at: datetime
    run_id: str | None
    kind: str
    symbol: str
    side: str
    qty: float
    order_type: str
    limit_price: float | None
    urgency: str
    confidence: float | None
    decision_price: float | None
    decision_time: datetime | None
    reason: str | None
    state: str
    attempt: int
    gate_status: str | None
    gate_reason: str | None
    updated_at: datetime

    @property
    def display_state(self) -> str:
        """EXIT intents read as EXIT_PLANNED etc. in tables (the seed's vocabulary)."""
        return f"EXIT_{self.state}" if self.kind == "EXIT" else self.state


COLUMNS = tuple(f.name for f in fields(Intent))
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM intents"
_ORDER = " ORDER BY created_at, intent_id"


def _intents(con: "duckdb.DuckDBPyConnection", where: str, params: list) -> list[Intent]:
    return [Intent(*r) for r in con.execute(f"{_SELECT} WHERE {where}{_ORDER}", params).fetchall()]


# --- writes -----------------------------------------------------------------------------------
def insert(con: "duckdb.DuckDBPyConnection", intent: Intent) -> bool:
    """Insert an intent unless its id exists; True when a row was written."""
    before = con.execute("SELECT count(*) FROM intents WHERE intent_id = ?", [intent.intent_id]).fetchall()[0][0]
    if before:
        return False
    con.execute(f"INSERT INTO intents ({', '.join(COLUMNS)}) VALUES ({marks(list(COLUMNS))})",
                [getattr(intent, c) for c in COLUMNS])
    return True


def set_state(con: "duckdb.DuckDBPyConnection", iid: str, state: str, attempt: int, now: datetime) -> None:
    """Store an intent's state and attempt (the move is checked by tradebook.phases.intents.transition)."""
    con.execute("UPDATE intents SET state = ?, attempt = ?, updated_at = ? WHERE intent_id = ?",
                [state, attempt, now, iid])


def set_gate(con: "duckdb.DuckDBPyConnection", iid: str, status: str, reason: str, ts: datetime) -> None:
    """Store the gate's answer for an intent: ``pass`` or ``reject`` and the reason."""
    con.execute("UPDATE intents SET gate_status = ?, gate_reason = ?, updated_at = ? WHERE intent_id = ?",
                [status, reason, ts, iid])


# --- reads ------------------------------------------------------------------------------------
def load(con: "duckdb.DuckDBPyConnection", iid: str) -> Intent | None:
    """One intent by id (None: no such intent)."""
    rows = con.execute(f"{_SELECT} WHERE intent_id = ?", [iid]).fetchall()
    return Intent(*rows[0]) if rows else None


def every(con: "duckdb.DuckDBPyConnection") -> list[Intent]:
    """Every intent, oldest first."""
    return _intents(con, "TRUE", [])


def in_states(con: "duckdb.DuckDBPyConnection", states: Iterable[str]) -> list[Intent]:
    """Intents in any of ``states``, oldest first."""
    states = list(states)
    return _intents(con, f"state IN ({marks(states)})", states)


def planned_immediate(con: "duckdb.DuckDBPyConnection") -> list[Intent]:
    """PLANNED intents with urgency immediate, oldest first."""
    return _intents(con, "state = 'PLANNED' AND urgency = 'immediate'", [])


def unanswered(con: "duckdb.DuckDBPyConnection") -> list[Intent]:
    """SUBMITTED intents whose current order (same attempt) is still ``pending_submit`` or ``unknown``."""
    return _intents(con, "state = 'SUBMITTED' AND EXISTS (SELECT 1 FROM orders o WHERE o.intent_id = "
                         "intents.intent_id AND o.attempt = intents.attempt AND o.status IN ('pending_submit', "
                         "'unknown'))", [])


def ids_with_prefix(con: "duckdb.DuckDBPyConnection", prefix: str, states: Iterable[str] | None = None) -> set[str]:
    """Ids of the intents whose id starts with ``prefix`` (optionally only those in ``states``)."""
    sql, params = "SELECT intent_id FROM intents WHERE starts_with(intent_id, ?)", [prefix]
    if states is not None:
        states = list(states)
        sql += f" AND state IN ({marks(states)})"
        params += states
    return {r[0] for r in con.execute(sql, params).fetchall()}


def stranded(con: "duckdb.DuckDBPyConnection", final_statuses: Iterable[str]) -> list[tuple]:
    """SUBMITTED intents whose current order row has one of ``final_statuses``, by intent id:
    (intent_id, client_order_id, status, filled_qty, reject_reason, urgency)."""
    statuses = sorted(final_statuses)
    return con.execute(
        "SELECT i.intent_id, o.client_order_id, o.status, o.filled_qty, o.reject_reason, i.urgency "
        "FROM intents i JOIN orders o ON o.intent_id = i.intent_id AND o.attempt = i.attempt "
        f"WHERE i.state = 'SUBMITTED' AND o.status IN ({marks(statuses)}) ORDER BY i.intent_id",
        statuses).fetchall()


def count_in_state(con: "duckdb.DuckDBPyConnection", state: str) -> int:
    """How many intents are in ``state``."""
    return con.execute("SELECT count(*) FROM intents WHERE state = ?", [state]).fetchone()[0]


def count_open(con: "duckdb.DuckDBPyConnection", open_states: Iterable[str]) -> int:
    """How many intents are in any of ``open_states``."""
    states = list(open_states)
    return con.execute(f"SELECT count(*) FROM intents WHERE state IN ({marks(states)})", states).fetchone()[0]


def count_gate_rejected(con: "duckdb.DuckDBPyConnection") -> int:
    """How many intents the gate rejected (their last gate answer)."""
    return con.execute("SELECT count(*) FROM intents WHERE gate_status = 'reject'").fetchone()[0]


def gate_rejections_since(con: "duckdb.DuckDBPyConnection", since: datetime) -> dict[str, int]:
    """Gate reason -> number of intents rejected for it and last changed after ``since``."""
    return dict(con.execute("SELECT gate_reason, count(*) FROM intents WHERE gate_status = 'reject' "
                            "AND updated_at > ? GROUP BY 1", [since]).fetchall())


def last_update(con: "duckdb.DuckDBPyConnection") -> datetime | None:
    """When any intent last changed (part of reconcile's did-the-ledger-move fingerprint)."""
    return con.execute("SELECT max(updated_at) FROM intents").fetchone()[0]


def open_listing(con: "duckdb.DuckDBPyConnection", open_states: Iterable[str]) -> "pd.DataFrame":
    """The report's open intents, oldest first; EXIT intents' state reads EXIT_<state>."""
    states = list(open_states)
    return con.execute(f"""SELECT created_at, intent_id, kind, symbol, side, qty, order_type, limit_price, urgency,
                          confidence, decision_price,
                          CASE WHEN kind = 'EXIT' THEN 'EXIT_' || state ELSE state END AS state,
                          attempt, gate_status, gate_reason, reason
                   FROM intents WHERE state IN ({marks(states)}) ORDER BY created_at, intent_id""",
                       states).df()

