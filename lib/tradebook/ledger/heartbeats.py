"""The ``heartbeats`` table: every statement on it (one owner per table).

One row per component: the daemon (OPS-4) and each running phase run (``run:<run_id>``,
naming the process that runs it). Written inside the caller's transaction.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from tradebook.ledger.sql import marks

if TYPE_CHECKING:
    import duckdb


def put(con: "duckdb.DuckDBPyConnection", component: str, ts: datetime, detail: Mapping[str, Any]) -> None:
    """Insert or replace ``component``'s row (detail kept as JSON; values that are not JSON as text)."""
    con.execute("INSERT OR REPLACE INTO heartbeats (component, ts, detail) VALUES (?, ?, ?)",
                [component, ts, json.dumps(dict(detail), default=str)])


def remove(con: "duckdb.DuckDBPyConnection", component: str) -> None:
    con.execute("DELETE FROM heartbeats WHERE component = ?", [component])


def components(con: "duckdb.DuckDBPyConnection") -> list[str]:
    """Every component that has a heartbeat row, in name order."""
    return [r[0] for r in con.execute("SELECT component FROM heartbeats ORDER BY component").fetchall()]


def details(con: "duckdb.DuckDBPyConnection", components: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The recorded detail of each of ``components`` that has a row with one."""
    wanted = list(components)
    if not wanted:
        return {}
    rows = con.execute(f"SELECT component, detail FROM heartbeats WHERE component IN ({marks(wanted)})", wanted).fetchall()
    return {component: json.loads(detail) for component, detail in rows if detail}
