"""The ``events`` table: every SQL statement that touches it (one owner per table).

A row is one entry of the audit trail: something that happened (a decision, an intent's
state change, an alert, a reconcile correction, a failed run), when, in which run, and why.
Rows are only ever appended, inside the caller's transaction.

Readers filter on the event's ``kind``, a time range and fields of its JSON ``data``
(``alert="MISSED_WINDOW"`` matches ``data->>'$.alert' = 'MISSED_WINDOW'``, compared as text);
a filter given as None is no filter.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

_COLUMNS = "event_id, ts, run_id, kind, symbol, qty, price, reason, data"
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Event:
    """One audit event; ``data`` is its JSON payload parsed (None when it had none)."""

    event_id: int
    ts: datetime
    run_id: str | None
    kind: str
    symbol: str | None
    qty: float | None
    price: float | None
    reason: str | None
    data: dict[str, Any] | None


def record(con: "duckdb.DuckDBPyConnection", kind: str, *, run_id: str | None = None,
           symbol: str | None = None, qty: float | None = None, price: float | None = None,
           reason: str | None = None, data: dict[str, Any] | None = None,
           ts: datetime | None = None) -> None:
    """Append an audit event inside the caller's transaction (REC-6 and friends); ``ts`` defaults to now."""
    con.execute(
        "INSERT INTO events (ts, run_id, kind, symbol, qty, price, reason, data) VALUES (?,?,?,?,?,?,?,?)",
        [ts or datetime.now(timezone.utc), run_id, kind, symbol, qty, price, reason,
         json.dumps(data, default=str) if data is not None else None],
    )


def record_reconcile_actions(con: "duckdb.DuckDBPyConnection", ts: datetime, run_id: str | None) -> None:
    """One ``RECONCILE_<kind>`` event per row of reconcile's ``rec_actions`` (a temporary table of its run)."""
    con.execute("INSERT INTO events (ts, run_id, kind, symbol, qty, price, reason, data) "
                "SELECT ?, ?, 'RECONCILE_' || kind, symbol, qty, price, reason, json_object('ledger_qty', ledger_qty, "
                "'ledger_price', ledger_price, 'broker_qty', qty, 'broker_price', price) FROM rec_actions",
                [ts, run_id])


def _where(kind: str | None, kind_prefix: str | None, run_id: str | None, since: datetime | None,
           until: datetime | None, fields: dict[str, Any]) -> tuple[str, list[Any]]:
    """The WHERE clause (and its arguments) of the filters that are not None; the time range is inclusive."""
    terms: list[tuple[str, Any]] = [("kind = ?", kind), ("starts_with(kind, ?)", kind_prefix), ("run_id = ?", run_id),
                                    ("ts >= ?", since), ("ts <= ?", until)]
    for name, value in fields.items():
        if not _FIELD.match(name):
            raise ValueError(f"event data field {name!r} is not a plain name")
        terms.append((f"json_extract_string(data, '$.{name}') = ?", None if value is None else str(value)))
    used = [(sql, value) for sql, value in terms if value is not None]
    if not used:
        return "", []
    return "WHERE " + " AND ".join(sql for sql, _ in used), [value for _, value in used]


def find(con: "duckdb.DuckDBPyConnection", kind: str | None = None, *, kind_prefix: str | None = None,
         run_id: str | None = None, since: datetime | None = None, until: datetime | None = None,
         newest_first: bool = False, limit: int | None = None, **fields: Any) -> list[Event]:
    """Events matching the filters in the order they were recorded (``newest_first``: the reverse)."""
    where, args = _where(kind, kind_prefix, run_id, since, until, fields)
    sql = (f"SELECT {_COLUMNS} FROM events {where} ORDER BY event_id {'DESC' if newest_first else ''}"
           + (" LIMIT ?" if limit is not None else ""))
    rows = con.execute(sql, args + ([limit] if limit is not None else [])).fetchall()
    names = _COLUMNS.split(", ")
    return [Event(**{**dict(zip(names, row)), "data": json.loads(row[-1]) if row[-1] is not None else None})
            for row in rows]


def count(con: "duckdb.DuckDBPyConnection", kind: str | None = None, *, kind_prefix: str | None = None,
          run_id: str | None = None, since: datetime | None = None, until: datetime | None = None,
          **fields: Any) -> int:
    """How many events match the filters."""
    where, args = _where(kind, kind_prefix, run_id, since, until, fields)
    return con.execute(f"SELECT count(*) FROM events {where}", args).fetchone()[0]


def values(con: "duckdb.DuckDBPyConnection", kind: str, field: str, *, since: datetime | None = None,
           until: datetime | None = None, **fields: Any) -> set[str | None]:
    """The distinct values (as text) of the data field ``field`` among the matching events."""
    if not _FIELD.match(field):
        raise ValueError(f"event data field {field!r} is not a plain name")
    where, args = _where(kind, None, None, since, until, fields)
    return {r[0] for r in con.execute(
        f"SELECT DISTINCT json_extract_string(data, '$.{field}') FROM events {where}", args).fetchall()}


def first_ts(con: "duckdb.DuckDBPyConnection", kind: str, **fields: Any) -> datetime | None:
    """When the first matching event happened (None: never)."""
    where, args = _where(kind, None, None, None, None, fields)
    return con.execute(f"SELECT min(ts) FROM events {where}", args).fetchone()[0]
