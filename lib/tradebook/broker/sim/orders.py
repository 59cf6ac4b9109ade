"""Order matching inside the simulator: when an order crosses the path, and what a fill changes.

Pure functions over the in-memory ``Book`` of one call. Resting orders are checked at
each session minute t_k = open + k min (k = 0 .. n, n at the close: the closing cross)
with start < t_k <= end, so walking the clock in many small steps or one big step
gives the same fills. A limit order that the path moves through fills at its limit;
one that is already through when it first can trade (a gap at the open) fills at the
better quote.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tradebook import sessions
from tradebook.broker.base import Order
from tradebook.broker.sim.path import bid_ask, day_path, session_minutes
from tradebook.broker.sim.state import OPEN_DB_STATUSES, US, Book, OrderRow, from_us, open_rows

MINUTE_US = 60 * US
EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Cross:
    ts_us: int
    price: float


def to_order(row: OrderRow) -> Order:
    """The protocol's view of a venue order."""
    return Order(broker_id=row.broker_id, client_order_id=row.client_order_id, symbol=row.symbol,
                 side=row.side, qty=row.qty, order_type=row.order_type, status=row.status,  # type: ignore[arg-type]  # str holds a Literal value
                 limit_price=row.limit_price, filled_qty=row.filled_qty,
                 filled_avg_price=row.filled_avg_price, submitted_at=from_us(row.submitted_us),
                 updated_at=from_us(row.updated_us), reject_reason=row.reject_reason)


def crosses(side: str, limit: float | None, bid: float, ask: float) -> bool:
    """Would the order trade against this quote?"""
    if limit is None:
        return True
    return ask <= limit + EPS if side == "buy" else bid >= limit - EPS


def first_cross(row: OrderRow, start_us: int, end_us: int, seed: int, spread_bps: float) -> Cross | None:
    """The first minute in (start, end] where the order may fill, with its fill price."""
    table = sessions.table()
    lo_us = max(start_us + 1, row.active_from_us)
    hi_us = end_us if row.expires_us is None else min(end_us, row.expires_us)
    i = table.closing_after((lo_us - 1) / US)
    while lo_us <= hi_us and i < len(table) and table.opens[i] * US <= hi_us:
        cross = _cross_in_session(row, i, lo_us, hi_us, seed, spread_bps)
        if cross is not None:
            return cross
        i += 1
    return None


def _cross_in_session(row: OrderRow, i: int, lo_us: int, hi_us: int, seed: int,
                      spread_bps: float) -> Cross | None:
    import numpy as np

    table = sessions.table()
    open_us = table.opens[i] * US
    n = session_minutes(i)
    k_lo = max(0, -(-(lo_us - open_us) // MINUTE_US))   # ceil: first t_k >= lo
    k_hi = min(n, (hi_us - open_us) // MINUTE_US)
    if k_lo > k_hi:
        return None
    path = day_path(row.symbol, table.days[i], n, seed)
    half = spread_bps / 2e4
    quote = path[k_lo:k_hi + 1] * ((1 + half) if row.side == "buy" else (1 - half))
    if row.limit_price is None:
        hit = 0
    else:
        mask = quote <= row.limit_price + EPS if row.side == "buy" else quote >= row.limit_price - EPS
        if not mask.any():
            return None
        hit = int(np.argmax(mask))
    k = k_lo + hit
    price = float(quote[hit])
    if row.limit_price is not None and k > 0:
        prev_bid, prev_ask = bid_ask(float(path[k - 1]), spread_bps)
        if not crosses(row.side, row.limit_price, prev_bid, prev_ask):
            price = row.limit_price      # moved through the limit within the minute
    return Cross(open_us + k * MINUTE_US, price)


def fill_qty(row: OrderRow, fractionable: bool) -> float:
    """Quantity of the next fill: all that remains, or half of it under a partial_fill fault."""
    remaining = row.remaining
    if not row.partial or row.stuck:
        return remaining
    half = round(remaining / 2, 9) if fractionable else float(math.floor(remaining / 2))
    return half if half > 0 else remaining


def apply_fill(book: Book, row: OrderRow, qty: float, price: float, ts_us: int) -> None:
    """Book one fill: cash, position, order state and the fill record (or reject at fill time)."""
    pos = book.positions.get(row.symbol, [0.0, 0.0])
    if row.side == "buy" and qty * price > book.cash + 1e-6:
        return _reject(book, row, ts_us, f"insufficient cash at fill ({book.cash:.2f} < {qty * price:.2f})")
    if row.side == "sell" and qty > pos[0] + EPS:
        return _reject(book, row, ts_us, f"insufficient qty at fill (held {pos[0]}, order {qty})")
    if row.side == "buy":
        new_qty = round(pos[0] + qty, 9)
        pos = [new_qty, (pos[0] * pos[1] + qty * price) / new_qty]
        book.cash -= qty * price
    else:
        pos = [round(pos[0] - qty, 9), pos[1]]
        book.cash += qty * price
    book.positions[row.symbol] = pos
    done = row.filled_qty
    row.filled_avg_price = (done * (row.filled_avg_price or 0.0) + qty * price) / (done + qty)
    row.filled_qty = round(done + qty, 9)
    was_cancelling = row.status == "pending_cancel"   # a fill that beat the cancel: the cancel still pends
    row.status = "filled" if row.remaining <= EPS else ("pending_cancel" if was_cancelling else "partially_filled")
    if row.partial and row.status == "partially_filled":
        row.stuck = True          # the rest stays open until it expires or is cancelled
    row.updated_us = ts_us
    book.changed[row.client_order_id] = row
    row.fills.append([qty, price, ts_us])


def _reject(book: Book, row: OrderRow, ts_us: int, reason: str) -> None:
    row.status, row.reject_reason, row.updated_us = "rejected", reason, ts_us
    book.changed[row.client_order_id] = row


def finish(book: Book, row: OrderRow, status: str, ts_us: int) -> None:
    """Close an open order as expired or canceled."""
    row.status, row.updated_us = status, ts_us
    book.changed[row.client_order_id] = row


def reserved_cash(book: Book) -> float:
    """Cash held back for open buy orders (remaining qty at the reserve price)."""
    return sum(o.remaining * o.reserve_price for o in open_rows(book) if o.side == "buy")


def reserved_qty(book: Book, symbol: str) -> float:
    """Shares of ``symbol`` already promised to open sell orders."""
    return sum(o.remaining for o in open_rows(book) if o.side == "sell" and o.symbol == symbol)


def advance(book: Book, end_us: int, seed: int, spread_bps: float,
            fractionable: frozenset[str]) -> list[OrderRow]:
    """Walk open orders from book.now to end: fills and day-order expiries in time order."""
    events = []
    for row in book.open_orders:
        expiry = row.expires_us if row.expires_us is not None and row.expires_us <= end_us else None
        if not row.stuck:
            cross = first_cross(row, book.now_us, end_us, seed, spread_bps)
            if cross is not None:
                events.append((cross.ts_us, 0, row.seq, row, cross.price))
        if expiry is not None:
            events.append((expiry, 1, row.seq, row, None))
    for ts_us, kind, _, row, price in sorted(events, key=lambda e: e[:3]):
        if row.status not in OPEN_DB_STATUSES:
            continue
        if kind == 0:
            apply_fill(book, row, fill_qty(row, row.symbol in fractionable), price, ts_us)
        else:
            finish(book, row, "expired", ts_us)
    book.now_us = end_us
    return sorted(book.changed.values(), key=lambda o: o.seq)
