"""The simulated venue's state: its DuckDB schema, the rows, and reading/writing them.

Two tables only: every table a write touches costs ~1 ms more at checkpoint, so the
small account state (clock, cash, positions, pending faults) lives in the one meta row
(positions and faults as JSON) and each order carries its own fills. All functions run
on a connection that ``SimStore`` has attached to the state file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from tradebook import sessions

if TYPE_CHECKING:
    import duckdb

SCHEMA_VERSION = 1
OPEN_DB_STATUSES = ("new", "accepted", "partially_filled", "pending_cancel")

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

OPEN_WHERE = "status IN ('new', 'accepted', 'partially_filled', 'pending_cancel')"
US = 1_000_000                 # state times are integer epoch microseconds (exact, tz-free)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_us(dt: datetime) -> int:
    """Epoch microseconds of a timezone-aware datetime (exact, no float rounding)."""
    sessions.epoch(dt)  # refuses naive datetimes
    return (dt - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    """Exchange-time datetime of epoch microseconds."""
    return (_EPOCH + timedelta(microseconds=us)).astimezone(sessions.EXCHANGE_TZ)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution at the simulated venue."""

    client_order_id: str
    symbol: str
    side: str
    qty: float
    price: float
    ts: datetime


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


# --- reading and writing rows (on a connection SimStore attached) ---------------------------

def read_meta(con: "duckdb.DuckDBPyConnection") -> tuple | None:
    """(seed, now_us, cash, order_seq, positions_json, faults_json), or None for a brand-new state
    (whose tables this creates)."""
    import duckdb

    try:
        return con.execute("SELECT seed, now_us, cash, order_seq, positions, faults FROM sim_meta WHERE id = 1"
                           ).fetchone()
    except duckdb.CatalogException:
        con.execute(SCHEMA)
        return None


def book_from(meta: tuple, open_orders: list[OrderRow], copy: bool) -> Book:
    """A Book over a loaded state; ``copy`` when the call may change it (the snapshot must not)."""
    seed, now_us, cash, order_seq, positions, faults = meta
    rows = [replace(o, fills=[list(f) for f in o.fills]) for o in open_orders] if copy else list(open_orders)
    return Book(now_us, cash, order_seq, seed, json.loads(positions), json.loads(faults), rows)


def insert_meta(con, seed: int, now_us: int, cash: float, start_date) -> None:
    """The meta row of a brand-new simulated account."""
    con.execute("INSERT INTO sim_meta VALUES (1, ?, ?, ?, ?, 0, ?, ?, '{}', '[]')",
                [SCHEMA_VERSION, seed, now_us, cash, cash, start_date])


def load_orders(con, where: str = OPEN_WHERE, params: list | None = None) -> list[OrderRow]:
    """Orders matching ``where`` (default: the open ones), oldest first."""
    rows = con.execute(f"SELECT {', '.join(ORDER_COLUMNS)} FROM sim_orders WHERE {where} ORDER BY seq",
                       params or []).fetchall()
    return [OrderRow(*row[:-1], json.loads(row[-1])) for row in rows]  # type: ignore[call-arg]


def load_fills(con) -> list[Fill]:
    """Every fill so far, in time order."""
    rows = load_orders(con, "fills <> '[]'")
    out = [(ts, o.seq, Fill(o.client_order_id, o.symbol, o.side, q, p, from_us(ts)))
           for o in rows for q, p, ts in o.fills]
    return [f for _, _, f in sorted(out, key=lambda x: x[:2])]


def _order_values(row: OrderRow) -> list:
    values = [getattr(row, name) for name in ORDER_COLUMNS]
    values[-1] = json.dumps(row.fills)
    return values


def save_book(con, book: Book) -> tuple:
    """Write back what the call changed (clock, cash, positions, faults, orders) in one
    transaction; returns the meta row as now stored."""
    con.execute("BEGIN TRANSACTION")
    try:
        meta = _write_book(con, book)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return meta


def _write_book(con, book: Book) -> tuple:
    positions = json.dumps({s: p for s, p in sorted(book.positions.items()) if abs(p[0]) >= 1e-9})
    faults = json.dumps([f for f in book.faults if f[2] > 0])
    con.execute("UPDATE sim_meta SET now_us = ?, cash = ?, order_seq = ?, positions = ?, faults = ? WHERE id = 1",
                [book.now_us, book.cash, book.order_seq, positions, faults])
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
    return book.seed, book.now_us, book.cash, book.order_seq, positions, faults


def open_rows(book: Book) -> list[OrderRow]:
    """The open orders after this call's changes (new, changed and untouched), oldest first."""
    rows = {o.client_order_id: o for o in book.open_orders}
    rows.update({o.client_order_id: o for o in book.new_orders})
    rows.update(book.changed)
    return sorted((o for o in rows.values() if o.status in OPEN_DB_STATUSES), key=lambda o: o.seq)


def pop_fault(book: Book, op: str) -> str | None:
    """Consume one pending fault for ``op`` (oldest first) in the book; its kind, or None."""
    for fault in book.faults:
        if fault[0] == op and fault[2] > 0:
            fault[2] -= 1
            return fault[1]
    return None
