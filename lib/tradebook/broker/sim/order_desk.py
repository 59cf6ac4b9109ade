"""SimBroker's order calls: submit, close a position, cancel, and the look-ups of its orders.

Matching (fills along the price path) is ``orders``; acceptance and rejections at submit
``accept``; the venue's habits (asynchronous cancels, wash-trade refusals, VEN-2)
``venue``. Here: one transaction per call, the injected submit/cancel faults, and a
look-up that lets pending cancels progress. A rejection is raised after the commit, so
a consumed fault stays consumed and nothing is left at the venue.
"""
from __future__ import annotations

from typing import Callable

from tradebook.broker.base import CancelResult, Order, OrderRequest, to_qty
from tradebook.broker.sim import orders as match
from tradebook.broker.sim import path as prices
from tradebook.broker.sim import state
from tradebook.broker.sim import venue
from tradebook.broker.sim.access import StateAccess, fault_pending
from tradebook.broker.sim.accept import accept, fault_error
from tradebook.errors import BrokerRejected, OrderOutcomeUnknown


class SimOrderDesk(StateAccess):
    """The order half of SimBroker (its reads are ``reads``)."""

    def open_orders(self) -> list[Order]:
        if self._cancels_pending():
            return self._call("open_orders", lambda con, book: self._polled(con, book, None))
        return self._read("open_orders", lambda book: [match.to_order(o) for o in book.open_orders])

    def _cancels_pending(self) -> bool:
        snap = self.store.recall()
        return snap is None or venue.cancels_pending(state.book_from(*snap, copy=False).faults)

    def _polled(self, con, book: state.Book, cid: str | None):
        """A look-up that also lets pending cancels progress (VEN-2); open orders, or one order."""
        if venue.progress(book, lambda row: self._race_price(row, book)):
            self.store.save(con, book)
        if cid is None:
            return [match.to_order(o) for o in state.open_rows(book)]
        rows = state.load_orders(con, "client_order_id = ?", [cid])
        return match.to_order(rows[0]) if rows else None

    def _race_price(self, row, book: state.Book) -> float:
        if row.limit_price is not None:
            return row.limit_price
        bid, ask = prices.bid_ask(self._mid(row.symbol, book), self.spread_bps)
        return ask if row.side == "buy" else bid

    def get_order(self, client_order_id: str) -> Order | None:
        """Any order (open or final) by client id; None when the venue never accepted it."""
        if self._cancels_pending():
            return self._call("get_order", lambda con, book: self._polled(con, book, client_order_id))
        snap = self.store.recall()
        if snap is not None and not fault_pending(state.book_from(*snap, copy=False), "get_order"):
            for row in snap[1]:                  # the common poll: an order still open
                if row.client_order_id == client_order_id:
                    return match.to_order(row)

        def body(con, book):
            rows = state.load_orders(con, "client_order_id = ?", [client_order_id])
            return match.to_order(rows[0]) if rows else None
        return self._call("get_order", body)

    def submit(self, request: OrderRequest) -> Order:
        """Send an order to the simulated venue (rules in the module docstring)."""
        return self._submit(lambda book: request, liquidation=False)

    def close_position(self, symbol: str, client_order_id: str) -> Order | None:
        """Market-sell the whole position; None when nothing is held."""
        def build(book):
            held = book.positions.get(symbol)
            if not held or held[0] <= 0:
                return None
            return OrderRequest(symbol, "sell", to_qty(held[0]), client_order_id, order_type="market")
        return self._submit(build, liquidation=True)

    def _submit(self, build: Callable[[state.Book], OrderRequest | None], liquidation: bool) -> Order | None:
        pending: Exception | None = None
        order = None
        with self._book() as (con, book):
            fault = state.pop_fault(book, "submit")
            pending = fault_error(fault, "submit") if fault else None
            request = None if pending else build(book)
            try:
                if request is not None:
                    order = accept(self, con, book, request, partial=fault == "partial_fill",
                                   liquidation=liquidation)
            except BrokerRejected as exc:
                pending = exc     # raised after the commit, so the consumed fault stays consumed
            if fault == "timeout_after_accept":
                cid = request.client_order_id if request else "?"
                pending = OrderOutcomeUnknown(f"submit of {cid} timed out after the simulated venue received "
                                              "it (injected fault); look the order up by client_order_id")
            if fault or order is not None:
                self.store.save(con, book)
        if pending is not None:
            raise pending
        return order

    def cancel(self, client_order_id: str) -> None:
        """Ask to cancel an open order (BrokerRejected when unknown or no longer open); with
        ``cancel_polls`` the order goes to pending_cancel first (VEN-2)."""
        with self._book() as (con, book):
            fault = state.pop_fault(book, "cancel")
            error = fault_error(fault, "cancel") if fault else None
            if error is None:
                rows = [o for o in book.open_orders if o.client_order_id == client_order_id] or \
                    state.load_orders(con, "client_order_id = ?", [client_order_id])
                if not rows:
                    error = BrokerRejected(f"order {client_order_id} not found", code="ORDER_NOT_FOUND")
                elif rows[0].status not in state.OPEN_DB_STATUSES:
                    error = BrokerRejected(f"order {client_order_id} is not cancelable (status {rows[0].status})",
                                           code="ORDER_NOT_CANCELABLE")
                else:
                    venue.request_cancel(book, rows[0], self.cancel_polls, race=fault == "cancel_fill_race")
            self.store.save(con, book)
        if error is not None:
            raise error

    def cancel_all(self) -> CancelResult:
        """Ask to cancel every open order (asynchronous with ``cancel_polls``)."""
        def body(con, book):
            for row in book.open_orders:
                venue.request_cancel(book, row, self.cancel_polls, race=False)
            self.store.save(con, book)
            return CancelResult(tuple(o.client_order_id for o in book.open_orders))
        return self._call("cancel", body)
