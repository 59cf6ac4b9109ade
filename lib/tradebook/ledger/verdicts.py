"""The ``verdicts`` table: every statement that writes it (one owner per table).

A verdict row is one gate rule's answer for one intent (GATE-*), or a recorded bypass
(CTL-5 flatten). Appended inside the caller's transaction.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Iterable, Mapping

if TYPE_CHECKING:
    import duckdb

VerdictRow = tuple[str, str, str, Mapping[str, object]]   # rule, severity, reason code, detail


def append_verdicts(con: "duckdb.DuckDBPyConnection", intent_id: str, run_id: str | None, ts: datetime,
                    rows: Iterable[VerdictRow]) -> None:
    """Store verdicts of one intent; ``detail`` is kept as JSON (values that are not JSON as text)."""
    con.executemany(
        "INSERT INTO verdicts (intent_id, run_id, ts, rule, severity, reason_code, detail) VALUES (?,?,?,?,?,?,?)",
        [[intent_id, run_id, ts, rule, severity, code, json.dumps(dict(detail), default=str)]
         for rule, severity, code, detail in rows])
