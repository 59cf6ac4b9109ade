"""The sweep results table: a DuckDB file of its own, never the ledger.

One row per (sweep, parameter set). Rows are written as batches finish, each batch
in one transaction, so an interrupted sweep keeps every finished set and a rerun
skips them (by ``key``). Connections are short-lived (see notes/platform-facts:
another process cannot even read a DuckDB file while it is open read-write).
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from tradebook.errors import ConfigError

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

TABLE = "sweep_results"
COLUMNS = ("sweep", "key", "seq", "strategy", "params", "symbols", "start", "end", "use_gate",
           "final_equity", "cagr_pct", "max_drawdown_pct", "sharpe", "trades", "fills", "rejections", "costs",
           "error", "seconds", "finished_at")
RESULT_COLUMNS = ("key", "params", "final_equity", "cagr_pct", "max_drawdown_pct", "sharpe", "trades", "fills",
                  "rejections", "costs", "error")
DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    sweep VARCHAR NOT NULL, key VARCHAR NOT NULL, seq INTEGER, strategy VARCHAR, params VARCHAR,
    symbols VARCHAR, start DATE, "end" DATE, use_gate BOOLEAN,
    final_equity DOUBLE, cagr_pct DOUBLE, max_drawdown_pct DOUBLE, sharpe DOUBLE,
    trades INTEGER, fills INTEGER, rejections INTEGER, costs DOUBLE, error VARCHAR,
    seconds DOUBLE, finished_at TIMESTAMPTZ, PRIMARY KEY (sweep, key))
"""


def check_not_ledger(path: Path, ledger: Path | None) -> None:
    """Refuse to write sweep results into the trading ledger."""
    if ledger is not None and Path(path).resolve() == Path(ledger).resolve():
        raise ConfigError(f"{path} is the trading ledger; sweep results go to their own file "
                          "(default runs/sweeps.duckdb): pass a different --db")


@contextmanager
def connect(path: Path | str) -> Iterator["duckdb.DuckDBPyConnection"]:
    """A short-lived connection with the table in place."""
    import duckdb

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path))
    except duckdb.IOException as exc:
        raise ConfigError(f"cannot open the sweep table {path}: {exc}. If another sweep is writing to it, "
                          "wait for it or pass a different --db") from None
    try:
        con.execute(DDL)
        yield con
    finally:
        con.close()


def done_keys(con: "duckdb.DuckDBPyConnection", sweep: str) -> set[str]:
    """Keys of the sets this sweep already finished."""
    return {k for (k,) in con.execute(f"SELECT key FROM {TABLE} WHERE sweep = ?", [sweep]).fetchall()}


def insert(con: "duckdb.DuckDBPyConnection", rows: Sequence[dict[str, Any]]) -> None:
    """Write finished rows in one transaction (a set already present is left as it was)."""
    if not rows:
        return
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    marks = ", ".join("?" for _ in COLUMNS)
    con.execute("BEGIN")
    try:
        con.executemany(f"INSERT INTO {TABLE} ({cols}) VALUES ({marks}) ON CONFLICT DO NOTHING",
                        [[row.get(c) for c in COLUMNS] for row in rows])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def results(source: "Path | str | duckdb.DuckDBPyConnection", sweep: str | None = None,
            keys: Sequence[str] | None = None) -> "pd.DataFrame":
    """The rows of one sweep (or all), with each parameter as its own column, in run order.

    ``source``: the table's file, or an open connection to it. ``keys``: only these sets.
    """
    import pandas as pd

    where, args = ("WHERE sweep = ?", [sweep]) if sweep else ("", [])
    query = f"SELECT * FROM {TABLE} {where} ORDER BY sweep, seq"
    if isinstance(source, (str, Path)):
        if not Path(source).exists():
            raise ConfigError(f"no sweep table at {source}: run `tradebook sweep` first")
        with connect(source) as con:
            frame = con.execute(query, args).df()
    else:
        frame = source.execute(query, args).df()
    if keys is not None:
        frame = frame[frame["key"].isin(set(keys))].reset_index(drop=True)
    params = pd.DataFrame([json.loads(p) for p in frame["params"]], index=frame.index)
    return pd.concat([params, frame], axis=1)


def sweeps(path: Path | str) -> "pd.DataFrame":
    """One line per sweep in the file: name, strategy, sets, last finish time."""
    with connect(path) as con:
        return con.execute(f"SELECT sweep, any_value(strategy) AS strategy, count(*) AS sets, "
                           f"max(finished_at) AS last_finished FROM {TABLE} GROUP BY sweep ORDER BY 4").df()
