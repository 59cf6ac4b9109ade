"""The ``equity_snapshots`` table: every SQL statement that touches it (one owner per table).

Kinds: START_OF_DAY (the previous close's equity, once per exchange date), PEAK (each new
high), PEAK_RESET (an operator restarted the BRK-2 high-water mark). Appended inside the
caller's transaction.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

_HISTORY = ("ts", "session_date", "kind", "equity", "cash")


def append_snapshot(con: "duckdb.DuckDBPyConnection", ts: datetime, day: date, kind: str, equity: float,
                    cash: float | None = None) -> None:
    """One snapshot of ``kind`` on exchange date ``day``."""
    con.execute("INSERT INTO equity_snapshots (ts, session_date, kind, equity, cash) VALUES (?, ?, ?, ?, ?)",
                [ts, day, kind, equity, cash])


def peak(con: "duckdb.DuckDBPyConnection") -> float | None:
    """Highest equity since the last PEAK_RESET (all time if none)."""
    reset = con.execute("SELECT max(ts) FROM equity_snapshots WHERE kind = 'PEAK_RESET'").fetchone()[0]
    sql = "SELECT max(equity) FROM equity_snapshots WHERE kind IN ('PEAK', 'PEAK_RESET')"
    row = con.execute(sql + (" AND ts >= ?" if reset is not None else ""),
                      [reset] if reset is not None else []).fetchone()
    return row[0]


def start_of_day(con: "duckdb.DuckDBPyConnection", day: date) -> float | None:
    """The START_OF_DAY equity recorded for exchange date ``day`` (None: not yet)."""
    row = con.execute("SELECT equity FROM equity_snapshots WHERE kind = 'START_OF_DAY' AND session_date = ? "
                      "ORDER BY ts LIMIT 1", [day]).fetchone()
    return None if row is None else row[0]


def last_ts(con: "duckdb.DuckDBPyConnection") -> datetime | None:
    """Time of the newest snapshot (None: none yet)."""
    return con.execute("SELECT max(ts) FROM equity_snapshots").fetchone()[0]


def history(con: "duckdb.DuckDBPyConnection") -> list[dict[str, Any]]:
    """Every snapshot, oldest first, as a dict per row (ts, session_date, kind, equity, cash)."""
    return [dict(zip(_HISTORY, r)) for r in con.execute(
        f"SELECT {', '.join(_HISTORY)} FROM equity_snapshots ORDER BY ts, session_date, kind").fetchall()]


def daily(con: "duckdb.DuckDBPyConnection", tz: str) -> "pd.DataFrame":
    """Per exchange date (in time zone ``tz``): open equity, close equity, realized P&L and trades.

    Open is the START_OF_DAY snapshot (else the day's first observation); close is END_OF_DAY,
    else the next day's open, else the day's last observation. Realized P&L and trade counts come
    from ``trades`` (a read join): days with trades but no snapshot are listed too.
    """
    return con.execute(f"""
        WITH obs AS (SELECT session_date, ts, kind, equity FROM equity_snapshots WHERE kind <> 'PEAK_RESET'),
        d AS (SELECT session_date,
                     coalesce(arg_min(equity, ts) FILTER (WHERE kind = 'START_OF_DAY'), arg_min(equity, ts)) AS open_eq,
                     arg_max(equity, ts) FILTER (WHERE kind = 'END_OF_DAY') AS eod, arg_max(equity, ts) AS last_obs
              FROM obs GROUP BY 1),
        -- Bucket by UTC hour first (plain integer maths), then convert the few buckets to the
        -- exchange date: per-row time-zone conversion is 10x slower on millions of trades, and
        -- New York's UTC offsets are whole hours, so the buckets map exactly.
        h AS (SELECT epoch_us(ts) // 3600000000 AS hour, sum(realized_pnl) AS realized, count(*) AS trades
              FROM trades GROUP BY 1),
        r AS (SELECT (make_timestamp(hour * 3600000000)::TIMESTAMPTZ AT TIME ZONE '{tz}')::DATE AS session_date,
                     sum(realized) AS realized, sum(trades) AS trades FROM h GROUP BY 1)
        SELECT coalesce(d.session_date, r.session_date) AS session_date, d.open_eq,
               coalesce(d.eod, lead(d.open_eq) OVER (ORDER BY coalesce(d.session_date, r.session_date)),
                        d.last_obs) AS close_eq, coalesce(r.realized, 0) AS realized, coalesce(r.trades, 0) AS trades
        FROM d FULL OUTER JOIN r USING (session_date) ORDER BY 1""").df()
