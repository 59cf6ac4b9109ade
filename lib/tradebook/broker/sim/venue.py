"""The simulated venue's real-broker habits (VEN-2), each switchable (``sim.*`` params, SimBroker args).

- Asynchronous cancel (``cancel_polls`` > 0): a cancel request puts the order in
  ``pending_cancel``; the venue confirms it (``canceled``) after that many order
  look-ups (``get_order`` / ``open_orders``) or at the next clock advance, whichever
  comes first. While pending it still holds its shares and its buying power, and it
  may still fill: on a clock advance a crossing price fills it before the cancel lands.
- Fill racing the cancel (fault ``cancel_fill_race`` on op ``cancel``): the cancel is
  accepted as pending, then the order fills in full instead (at its limit, or at the
  quote for a market order), as when the fill reached the venue first.
- Potential wash trade (``wash_trade_check``): a market or marketable order against a
  working order of the same symbol on the other side is refused the way Alpaca does
  (HTTP 403 code 40310000, "potential wash trade detected. use complex orders").
- Shares held by working sells are never available (always on, sim_accept): Alpaca's
  "insufficient qty available for order (requested: N, available: M)".

Pending cancels are kept in the book's fault list as ``[CANCEL_KEY, client_order_id,
polls_left, race]`` so the venue's state file needs no new column.
"""
from __future__ import annotations

from typing import Callable

from tradebook.broker.sim import orders as match
from tradebook.broker.sim.state import Book, OrderRow
from tradebook.errors import BrokerRejected

CANCEL_KEY = "~cancel"
WASH_TRADE_MESSAGE = "potential wash trade detected. use complex orders"


def cancels_pending(faults: list[list]) -> bool:
    """True when some cancel still waits for the venue's confirmation."""
    return any(f[0] == CANCEL_KEY and f[2] > 0 for f in faults)


def request_cancel(book: Book, row: OrderRow, polls: int, race: bool) -> None:
    """Cancel ``row``: at once (polls 0, no race), else pending until confirmed (module doc)."""
    if row.status == "pending_cancel":
        return                      # asked twice: the first request is still on its way
    if polls <= 0 and not race:
        match.finish(book, row, "canceled", book.now_us)
        return
    row.status, row.updated_us = "pending_cancel", book.now_us
    book.changed[row.client_order_id] = row
    book.faults.append([CANCEL_KEY, row.client_order_id, max(polls, 1), int(race)])


def progress(book: Book, price_of: Callable[[OrderRow], float], *, all_now: bool = False) -> bool:
    """One look-up passed (or the clock moved: ``all_now``): confirm the cancels that are due.

    Returns True when something changed (the caller saves the book)."""
    rows = {o.client_order_id: o for o in book.open_orders}
    rows.update(book.changed)
    changed = False
    for entry in book.faults:
        if entry[0] != CANCEL_KEY or entry[2] <= 0:
            continue
        entry[2] = 0 if all_now else entry[2] - 1
        changed = True
        if entry[2] > 0:
            continue
        row = rows.get(entry[1])
        if row is None or row.status != "pending_cancel":
            continue                # filled (or expired) before the cancel landed
        if entry[3] and row.remaining > match.EPS:
            match.apply_fill(book, row, row.remaining, price_of(row), book.now_us)
        else:
            match.finish(book, row, "canceled", book.now_us)
    return changed


def check_wash_trade(book: Book, symbol: str, side: str, limit: float | None) -> None:
    """Refuse an order that would trade against our own working order on the other side."""
    for other in match.open_rows(book):
        if other.symbol != symbol or other.side == side:
            continue
        if limit is None or other.limit_price is None or (
                limit <= other.limit_price + match.EPS if side == "sell" else limit >= other.limit_price - match.EPS):
            raise BrokerRejected(f"{WASH_TRADE_MESSAGE} (working {other.side} {other.client_order_id} on {symbol})",
                                 code="WASH_TRADE")
