"""The ``verdicts`` table: every SQL statement that touches it (one owner per table).

A verdict row is one gate rule's answer for one intent (GATE-*), or a recorded bypass
(CTL-5 flatten). Appended inside the caller's transaction.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from tradebook.ledger.sql import marks

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

VerdictRow = tuple[str, str, str, Mapping[str, object]]   # rule, severity, reason code, detail


@dataclass(frozen=True)
class Verdict:
    """One row of ``verdicts`` as stored (``detail`` is the JSON text)."""

    intent_id: str
    run_id: str | None
    ts: datetime
    rule: str
    severity: str
    reason_code: str
    detail: Any


_SELECT = "SELECT intent_id, run_id, ts, rule, severity, reason_code, detail FROM verdicts"


def append_verdicts(con: "duckdb.DuckDBPyConnection", intent_id: str, run_id: str | None, ts: datetime,
                    rows: Iterable[VerdictRow]) -> None:
    """Store verdicts of one intent; ``detail`` is kept as JSON (values that are not JSON as text)."""
    con.executemany(
        "INSERT INTO verdicts (intent_id, run_id, ts, rule, severity, reason_code, detail) VALUES (?,?,?,?,?,?,?)",
        [[intent_id, run_id, ts, rule, severity, code, json.dumps(dict(detail), default=str)]
         for rule, severity, code, detail in rows])


def every(con: "duckdb.DuckDBPyConnection") -> list[Verdict]:
    """Every verdict, oldest first (then by intent and rule)."""
    return [Verdict(*r) for r in con.execute(f"{_SELECT} ORDER BY ts, intent_id, rule").fetchall()]


def of_intent(con: "duckdb.DuckDBPyConnection", intent_id: str) -> list[Verdict]:
    """The verdicts of one intent, oldest first (then by rule)."""
    return [Verdict(*r) for r in con.execute(f"{_SELECT} WHERE intent_id = ? ORDER BY ts, rule",
                                             [intent_id]).fetchall()]


def rejections_with_intent(con: "duckdb.DuckDBPyConnection", intent_ids: Iterable[str], since: datetime) -> list[tuple]:
    """Rejecting verdicts of ``intent_ids`` at or after ``since``, with their intent:
    (intent_id, symbol, kind, side, qty, rule, reason_code, detail), oldest first."""
    ids = sorted(set(intent_ids))
    if not ids:
        return []
    return con.execute(
        f"SELECT v.intent_id, i.symbol, i.kind, i.side, i.qty, v.rule, v.reason_code, v.detail "
        f"FROM verdicts v JOIN intents i ON i.intent_id = v.intent_id "
        f"WHERE v.severity = 'reject' AND v.ts >= ? AND v.intent_id IN ({marks(ids)}) "
        f"ORDER BY v.ts, v.intent_id, v.rule", [since, *ids]).fetchall()


def rejection_counts(con: "duckdb.DuckDBPyConnection") -> "pd.DataFrame":
    """Rejections per (rule, reason_code) with when each was last seen, most frequent first."""
    return con.execute("""
        SELECT rule, reason_code, count(*) AS rejections, max(ts) AS last_seen
        FROM verdicts WHERE severity = 'reject' GROUP BY ALL ORDER BY rejections DESC, rule""").df()


def warning_counts(con: "duckdb.DuckDBPyConnection") -> "pd.DataFrame":
    """Warnings per (rule, reason_code), most frequent first."""
    return con.execute("SELECT rule, reason_code, count(*) AS warnings FROM verdicts WHERE severity = 'warn' "
                       "GROUP BY ALL ORDER BY warnings DESC").df()
