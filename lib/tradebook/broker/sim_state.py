"""The simulated venue's persistent state: one DuckDB file, never held open.

Why ATTACH and not ``duckdb.connect`` per call: starting a DuckDB 2.0 instance costs
~20 ms (it loads its built-in extensions), which would make every broker call slow.
So the process keeps one in-memory DuckDB instance and, for each call, ATTACHes the
state file, reads, writes any change in one transaction, and DETACHes it (1-4 ms).
While detached no lock is held, so a notebook kernel and the demo process can take
turns on the same simulated account (OPS-1). Lock conflicts are retried like the ledger's; a file that
is not a DuckDB database is a clear error, never silently replaced.
"""
from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from tradebook.errors import BrokerError, BrokerUnavailable
from tradebook.ledger import CORRUPT_MARKERS, LOCK_MARKERS

if TYPE_CHECKING:
    import duckdb

SCHEMA_VERSION = 1
ALIAS = "tradebook_sim"
OPEN_DB_STATUSES = ("new", "accepted", "partially_filled")

# Two tables only: every table a write touches costs ~1 ms more at checkpoint (DETACH),
# so the small account state (positions, pending faults) lives as JSON in the one meta
# row and each order carries its own fills.
SCHEMA = """
CREATE TABLE IF NOT EXISTS sim_meta (
    id INTEGER NOT NULL, schema_version INTEGER NOT NULL, seed BIGINT NOT NULL,
    now_us BIGINT NOT NULL, cash DOUBLE NOT NULL, order_seq BIGINT NOT NULL,
    starting_cash DOUBLE NOT NULL, start_date DATE NOT NULL,
    positions VARCHAR NOT NULL,     -- JSON {symbol: [qty, avg_price]}
    faults VARCHAR NOT NULL);       -- JSON [[op, kind, remaining], ...], oldest first
CREATE TABLE IF NOT EXISTS sim_orders (
    seq BIGINT NOT NULL, client_order_id VARCHAR NOT NULL, broker_id VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL, side VARCHAR NOT NULL, qty DOUBLE NOT NULL, order_type VARCHAR NOT NULL,
    limit_price DOUBLE, tif VARCHAR NOT NULL, status VARCHAR NOT NULL, filled_qty DOUBLE NOT NULL,
    filled_avg_price DOUBLE, submitted_us BIGINT NOT NULL, updated_us BIGINT NOT NULL,
    active_from_us BIGINT NOT NULL, expires_us BIGINT, reserve_price DOUBLE NOT NULL,
    partial BOOLEAN NOT NULL, stuck BOOLEAN NOT NULL, reject_reason VARCHAR,
    fills VARCHAR NOT NULL);        -- JSON [[qty, price, ts_us], ...]
"""

_lock = threading.RLock()   # one attached state at a time per process
_memory: "duckdb.DuckDBPyConnection | None" = None
_memory_pid = 0
_inherited: list = []


@dataclass(slots=True)
class OrderRow:
    """An order as the venue keeps it (times in epoch microseconds)."""

    seq: int
    client_order_id: str
    broker_id: str
    symbol: str
    side: str
    qty: float
    order_type: str
    limit_price: float | None
    tif: str
    status: str
    filled_qty: float
    filled_avg_price: float | None
    submitted_us: int
    updated_us: int
    active_from_us: int          # first instant it may fill (the next open when sent while closed)
    expires_us: int | None       # close of its session for day orders; None for gtc
    reserve_price: float         # price used to reserve buying power (limit, or ask at submit)
    partial: bool = False        # partial_fill fault: the next fill fills only half
    stuck: bool = False          # after a partial fill: no more fills until expiry/cancel
    reject_reason: str | None = None
    fills: list[list] = field(default_factory=list)   # [[qty, price, ts_us], ...]

    @property
    def remaining(self) -> float:
        return round(self.qty - self.filled_qty, 9)


ORDER_COLUMNS = [f.name for f in fields(OrderRow)]


@dataclass
class Book:
    """Everything one call reads and changes, loaded while the file is attached."""

    now_us: int
    cash: float
    order_seq: int
    seed: int
    positions: dict[str, list[float]]            # symbol -> [qty, avg_price]
    faults: list[list]                           # [op, kind, remaining], oldest first
    open_orders: list[OrderRow]
    new_orders: list[OrderRow] = field(default_factory=list)
    changed: dict[str, OrderRow] = field(default_factory=dict)


def _memory_connection() -> "duckdb.DuckDBPyConnection":
    """This process's private in-memory DuckDB instance (a forked child makes its own)."""
    global _memory, _memory_pid
    if _memory is None or _memory_pid != os.getpid():
        import duckdb

        if _memory is not None:
            _inherited.append(_memory)   # never close the parent's copy in a forked child
        _memory = duckdb.connect(":memory:")
        # Simulator state, not money: skip fsync (~4 per write). A killed process still leaves a
        # consistent file (the OS has the writes); only an OS crash could damage it.
        _memory.execute("SET fsync_mode = 'NONE'")
        _memory.execute("SET threads = 1")
        _memory_pid = os.getpid()
    return _memory


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class SimStore:
    """Short visits to the sim state file: ATTACH, read, one write transaction, DETACH."""

    def __init__(self, path: str | Path, lock_timeout_s: float = 15.0):
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self._schema_for: tuple[int, int] | None = None   # file the schema was ensured for

    @contextmanager
    def attached(self) -> Iterator["duckdb.DuckDBPyConnection"]:
        """The state file attached for one call; detached (lock released) on exit.

        While attached, no other process can open the file and this process's other
        callers wait on a lock, so a call's reads and its one write transaction
        (``save_book``) see no interleaved change.
        """
        with _lock:
            con = _memory_connection()
            self._attach(con)
            try:
                con.execute(f"USE {ALIAS}")
                key = _file_key(self.path)
                if key is None or key != self._schema_for:   # new, or replaced (e.g. demo --fresh)
                    con.execute(SCHEMA)
                    self._schema_for = key
                yield con
            finally:
                _detach(con)

    def _attach(self, con: "duckdb.DuckDBPyConnection") -> None:
        import duckdb

        self.path.parent.mkdir(parents=True, exist_ok=True)
        quoted = str(self.path).replace("'", "''")
        deadline = time.monotonic() + self.lock_timeout_s
        delay, cleaned = 0.02, False
        while True:
            try:
                con.execute(f"ATTACH '{quoted}' AS {ALIAS}")
                return
            except duckdb.Error as exc:
                text = str(exc)
                if not cleaned and ("already exists" in text or "already attached" in text):
                    _detach(con)    # left over from an interrupted call in this process
                    cleaned = True
                    continue
                if any(m in text for m in LOCK_MARKERS) and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.25)
                    continue
                if any(m in text for m in LOCK_MARKERS):
                    raise BrokerUnavailable(f"sim state {self.path} is locked by another process for more "
                                            f"than {self.lock_timeout_s:.0f}s; try again") from None
                if any(m in text for m in CORRUPT_MARKERS):
                    raise BrokerError(f"sim state {self.path} is corrupt or not a DuckDB database; move it "
                                      "aside to start a fresh simulated account") from None
                raise BrokerError(f"cannot open sim state {self.path}: {text.splitlines()[0]}") from None


def _detach(con: "duckdb.DuckDBPyConnection") -> None:
    """Release the file (and its lock); tolerate a connection left mid-transaction."""
    import duckdb

    for sql in ("USE memory", f"DETACH DATABASE IF EXISTS {ALIAS}"):
        try:
            con.execute(sql)
        except duckdb.TransactionException:
            con.execute("ROLLBACK")
            con.execute(sql)


# --- reading and writing rows (inside SimStore.attached) ---------------------------------

def read_meta(con: "duckdb.DuckDBPyConnection") -> tuple | None:
    """(seed, now_us, cash, order_seq, positions_json, faults_json), or None for a brand-new state."""
    return con.execute("SELECT seed, now_us, cash, order_seq, positions, faults FROM sim_meta WHERE id = 1"
                       ).fetchone()


def create_meta(con, seed: int, now_us: int, cash: float, start_date) -> None:
    """The first (only) meta row of a brand-new simulated account."""
    con.execute("INSERT INTO sim_meta VALUES (1, ?, ?, ?, ?, 0, ?, ?, '{}', '[]')",
                [SCHEMA_VERSION, seed, now_us, cash, cash, start_date])


def load_book(con, meta: tuple, orders: bool = True) -> Book:
    """The account state and (optionally) the open orders."""
    seed, now_us, cash, order_seq, positions, faults = meta
    open_orders = load_orders(con, "status IN ('new', 'accepted', 'partially_filled')") if orders else []
    return Book(now_us, cash, order_seq, seed, json.loads(positions), json.loads(faults), open_orders)


def load_orders(con, where: str, params: list | None = None) -> list[OrderRow]:
    rows = con.execute(f"SELECT {', '.join(ORDER_COLUMNS)} FROM sim_orders WHERE {where} ORDER BY seq",
                       params or []).fetchall()
    return [OrderRow(*row[:-1], json.loads(row[-1])) for row in rows]


def _order_values(row: OrderRow) -> list:
    values = [getattr(row, name) for name in ORDER_COLUMNS]
    values[-1] = json.dumps(row.fills)
    return values


def save_book(con, book: Book) -> None:
    """Write back what the call changed (clock, cash, positions, faults, orders) in one transaction."""
    con.execute("BEGIN TRANSACTION")
    try:
        _write_book(con, book)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _write_book(con, book: Book) -> None:
    positions = {s: p for s, p in sorted(book.positions.items()) if abs(p[0]) >= 1e-9}
    faults = [f for f in book.faults if f[2] > 0]
    con.execute("UPDATE sim_meta SET now_us = ?, cash = ?, order_seq = ?, positions = ?, faults = ? WHERE id = 1",
                [book.now_us, book.cash, book.order_seq, json.dumps(positions), json.dumps(faults)])
    new_ids = {o.client_order_id for o in book.new_orders}
    width = len(ORDER_COLUMNS)
    if book.new_orders:
        # One multi-row statement: DuckDB runs executemany as one statement per row (slow).
        marks = ", ".join(["(" + ", ".join("?" * width) + ")"] * len(book.new_orders))
        con.execute(f"INSERT INTO sim_orders ({', '.join(ORDER_COLUMNS)}) VALUES {marks}",
                    [v for o in book.new_orders for v in _order_values(o)])
    changed = [o for cid, o in book.changed.items() if cid not in new_ids]
    if changed:
        cols = ["client_order_id", "status", "filled_qty", "filled_avg_price", "updated_us", "stuck",
                "reject_reason", "fills"]
        marks = ", ".join(["(?::VARCHAR, ?::VARCHAR, ?::DOUBLE, ?::DOUBLE, ?::BIGINT, ?::BOOLEAN, ?::VARCHAR, "
                           "?::VARCHAR)"] * len(changed))
        sets = ", ".join(f"{c} = v.{c}" for c in cols[1:])
        con.execute(f"UPDATE sim_orders AS o SET {sets} FROM (VALUES {marks}) AS v({', '.join(cols)}) "
                    "WHERE o.client_order_id = v.client_order_id",
                    [x for o in changed for x in (o.client_order_id, o.status, o.filled_qty, o.filled_avg_price,
                                                  o.updated_us, o.stuck, o.reject_reason, json.dumps(o.fills))])


def pop_fault(book: Book, op: str) -> str | None:
    """Consume one pending fault for ``op`` (oldest first) in the book; its kind, or None."""
    for fault in book.faults:
        if fault[0] == op and fault[2] > 0:
            fault[2] -= 1
            return fault[1]
    return None
