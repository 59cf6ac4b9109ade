"""The ``runs`` table: every SQL statement that touches it (one owner per table).

A row is one executed phase notebook: which phase, with which params and code version,
when (wall clock and, in sim mode, the simulated clock ``sim_time``), how it ended and
where its executed notebook is. Written inside the caller's transaction.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb
    import pandas as pd


@dataclass(frozen=True)
class Run:
    """One row of ``runs`` as the status views show it."""

    run_id: str
    phase: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    error: str | None
    notebook_path: str | None
    sim_time: datetime | None
    params_hash: str | None

    @property
    def at(self) -> datetime:
        """The time that matters: the simulated clock in sim mode, else the wall clock."""
        return self.sim_time or self.started_at


def start(con: "duckdb.DuckDBPyConnection", run_id: str, phase: str, *, started_at: datetime,
          params_hash: str | None = None, params_json: str | None = None, notebook_path: str | None = None,
          sim_time: datetime | None = None, code_version: str | None = None) -> None:
    """A new run, RUNNING from ``started_at``."""
    con.execute(
        "INSERT INTO runs (run_id, phase, params_hash, params_json, started_at, status, notebook_path, "
        "sim_time, code_version) VALUES (?, ?, ?, ?, ?, 'RUNNING', ?, ?, ?)",
        [run_id, phase, params_hash, params_json, started_at, notebook_path, sim_time, code_version])


def finish(con: "duckdb.DuckDBPyConnection", run_id: str, status: str, ended_at: datetime, error: str | None,
           *, kernel_pid: int | None = None, stopped_early: bool | None = None) -> None:
    """The run ended with ``status`` (and the kernel that ran it, and whether it stopped itself early)."""
    con.execute("UPDATE runs SET status = ?, ended_at = ?, error = ?, kernel_pid = ?, stopped_early = ? "
                "WHERE run_id = ?", [status, ended_at, error, kernel_pid, stopped_early, run_id])


def end_if_running(con: "duckdb.DuckDBPyConnection", run_id: str, status: str, ended_at: datetime,
                   error: str) -> None:
    """The run ended with ``status`` unless it is no longer RUNNING (then nothing changes)."""
    con.execute("UPDATE runs SET status = ?, ended_at = ?, error = ? WHERE run_id = ? AND status = 'RUNNING'",
                [status, ended_at, error, run_id])


def running(con: "duckdb.DuckDBPyConnection") -> list[str]:
    """The ids of the runs still marked RUNNING."""
    return [r[0] for r in con.execute("SELECT run_id FROM runs WHERE status = 'RUNNING'").fetchall()]


def latest(con: "duckdb.DuckDBPyConnection", limit: int | None) -> list[Run]:
    """The ``limit`` most recently started runs (None: all of them), newest first."""
    rows = con.execute("SELECT run_id, phase, status, started_at, ended_at, error, notebook_path, sim_time, "
                       "params_hash FROM runs ORDER BY started_at DESC LIMIT ?", [limit]).fetchall()
    return [Run(*row) for row in rows]


def get(con: "duckdb.DuckDBPyConnection", run_id: str) -> dict[str, object] | None:
    """Every column of one run (None when there is no such run)."""
    cur = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
    row = cur.fetchone()
    return dict(zip([d[0] for d in cur.description], row)) if row else None


def count(con: "duckdb.DuckDBPyConnection", *, phase: str | None = None, status: str | None = None,
          since: datetime | None = None, until: datetime | None = None) -> int:
    """How many runs match: of ``phase``, with ``status``, whose time (``Run.at``) is in [since, until)."""
    terms = [("phase = ?", phase), ("status = ?", status), ("coalesce(sim_time, started_at) >= ?", since),
             ("coalesce(sim_time, started_at) < ?", until)]
    used = [(sql, value) for sql, value in terms if value is not None]
    where = ("WHERE " + " AND ".join(sql for sql, _ in used)) if used else ""
    return con.execute(f"SELECT count(*) FROM runs {where}", [value for _, value in used]).fetchone()[0]


def latest_notebook(con: "duckdb.DuckDBPyConnection", phase: str, status: str = "OK") -> str | None:
    """The executed notebook of the most recently started ``phase`` run that ended with ``status``."""
    row = con.execute("SELECT notebook_path FROM runs WHERE phase = ? AND status = ? "
                      "ORDER BY started_at DESC LIMIT 1", [phase, status]).fetchone()
    return row[0] if row else None


def modes(con: "duckdb.DuckDBPyConnection") -> set[str]:
    """The params modes (sim, paper, live) the recorded runs ran with."""
    rows = con.execute("SELECT DISTINCT json_extract_string(params_json, '$.mode') FROM runs "
                       "WHERE params_json IS NOT NULL").fetchall()
    return {r[0] for r in rows if r[0]}


# --- the report's listings (DataFrames) --------------------------------------------------------
def by_phase(con: "duckdb.DuckDBPyConnection") -> "pd.DataFrame":
    """Per phase: runs, failed runs (neither OK nor RUNNING), the last run's time and status."""
    return con.execute(
        """SELECT phase, count(*) AS runs, count(*) FILTER (WHERE status NOT IN ('OK', 'RUNNING')) AS failed,
                  max(coalesce(sim_time, started_at)) AS last_run,
                  arg_max(status, coalesce(sim_time, started_at)) AS last_status
           FROM runs GROUP BY phase ORDER BY phase""").df()


def failed(con: "duckdb.DuckDBPyConnection", limit: int = 10) -> "pd.DataFrame":
    """The ``limit`` latest runs that ended neither OK nor RUNNING, newest first."""
    return con.execute("SELECT coalesce(sim_time, started_at) AS started_at, phase, status, error, notebook_path "
                       "FROM runs WHERE status NOT IN ('OK', 'RUNNING') ORDER BY 1 DESC LIMIT ?", [limit]).df()


def notebook_paths(con: "duckdb.DuckDBPyConnection") -> list[str]:
    """Every executed notebook this ledger's runs point at (what `demo --fresh` moves with the ledger)."""
    return [r[0] for r in con.execute("SELECT notebook_path FROM runs WHERE notebook_path IS NOT NULL "
                                      "ORDER BY started_at").fetchall()]
