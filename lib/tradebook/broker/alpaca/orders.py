"""Order handling for AlpacaBroker: idempotent submit, fractional fallback, cancel, close (EXE-1, EXE-4, EXE-5).

- Submit is idempotent by client_order_id: after an outcome that may have reached Alpaca
  (timeout, dropped connection, 5xx) the order is looked up before any resubmit; a 422
  duplicate client_order_id returns the existing order. Retries exhausted after such an
  outcome raise OrderOutcomeUnknown, never a blind resubmit.
- The adapter reports an open API circuit breaker (``circuit_open``; CircuitOpen when a
  submit's outcome was unknown, the order is not at Alpaca and the circuit is open, so it is
  not resubmitted blind), whatever the side. It never decides which orders may leave: the
  order path does (EXE-4: REDUCE_ONLY, then GATE-1 lets exits out and refuses entries with a
  recorded verdict).
- Fractional qty (EXE-5): ``submit`` behaves like SimBroker's: a fractional order for a symbol
  known not to take it (validate_fractional, params, an earlier reject) raises
  FractionalNotSupported without a request, and Alpaca's fractional 422 raises it too; the
  caller (the order path, tradebook.phases.order_path) re-gates floor(qty) as a new attempt, so the
  gate sees every quantity sent: that is the one EXE-5 fallback. Every refusal is logged.
"""
from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Callable, TypeVar

from tradebook.broker.alpaca import convert as cv
from tradebook.broker.alpaca.resilience import CircuitBreaker, may_have_landed, or_none_on_404
from tradebook.broker.base import CancelResult, Order, OrderRequest, to_qty
from tradebook.errors import (BrokerRejected, BrokerUnavailable, CircuitOpen, DuplicateClientOrderId,
                              FractionalNotSupported, OrderOutcomeUnknown)

log = logging.getLogger("tradebook.broker.alpaca")
T = TypeVar("T")
Call = Callable[[str, Callable[[], Any]], Any]


class OrderDesk:
    """The order side of AlpacaBroker over one TradingClient (see the module docstring)."""

    def __init__(self, trading: Any, call: Call, breaker: CircuitBreaker, fractional_enabled: bool):
        self._trading, self._call, self.breaker = trading, call, breaker
        self.fractional_enabled = fractional_enabled
        self.fractionable: dict[str, bool] = {}   # learnt at start (validate_fractional) and from rejects
        self.not_equity: set[str] = set()         # symbols seen held as crypto/options/...: never traded

    def get_order(self, client_order_id: str) -> Order | None:
        found = self._call(f"get order {client_order_id}", or_none_on_404(
            lambda: self._trading.get_order_by_client_id(client_order_id)))
        return None if found is None else cv.to_order(found)

    # submit -----------------------------------------------------------------------------------
    def _refuse_non_equity(self, symbol: str) -> None:
        if symbol in self.not_equity or "/" in symbol:
            raise BrokerRejected(f"{symbol} is not a us_equity asset: tradebook reconciles and shows it but never "
                                 "trades it; manage it in Alpaca's dashboard", code="NOT_US_EQUITY")

    def submit(self, request: OrderRequest) -> Order:
        self._refuse_non_equity(request.symbol)
        fractional = request.qty != request.qty.to_integral_value()
        if fractional and not self.takes_fractional(request.symbol):
            why = f"{request.symbol} does not take fractional orders here"
            log.warning("order %s: fractional qty %s refused before sending (%s)", request.client_order_id,
                        request.qty, why)
            raise FractionalNotSupported(f"{why}; qty {request.qty} not sent, use whole shares")
        try:
            return self._submit_idempotent(request, cv.order_request(request))
        except FractionalNotSupported as exc:
            self.fractionable[request.symbol] = False
            log.warning("order %s: Alpaca refused fractional qty %s: %s", request.client_order_id, request.qty, exc)
            raise

    def takes_fractional(self, symbol: str) -> bool:
        """False when params, the account or the asset rule fractional orders out (unknown: try)."""
        return self.fractional_enabled and self.fractionable.get(symbol, True)

    def submit_notional(self, symbol: str, side: str, notional: Decimal, client_order_id: str,
                        time_in_force: str = "day") -> Order:
        if not self.takes_fractional(symbol):
            raise FractionalNotSupported(f"{symbol}: notional orders need fractional support; submit a qty")
        # The OrderRequest only carries symbol/side/client id for the idempotency checks; qty is unused.
        ident = OrderRequest(symbol, side, Decimal(1), client_order_id, "market")  # type: ignore[arg-type]
        sdk = cv.notional_request(symbol, side, notional, client_order_id, time_in_force)
        return self._submit_idempotent(ident, sdk)

    def _submit_idempotent(self, request: OrderRequest, sdk_request: Any, resend_when_open: bool = False) -> Order:
        """EXE-1: after an outcome that may have landed, look up by client id before any resubmit.

        With the API circuit open an order not found is not resubmitted here: CircuitOpen goes to the
        order path, which decides (an exit is sent again, an entry waits for GATE-1). A position close
        (the flatten's own request, ``resend_when_open``) keeps going.
        """
        cid, unknown = request.client_order_id, [False]

        def once() -> Any:
            if unknown[0]:
                found = or_none_on_404(lambda: self._trading.get_order_by_client_id(cid))()
                if found is not None:
                    log.warning("order %s: outcome was unknown; Alpaca has it, not resubmitting", cid)
                    return found
                if self.breaker.is_open and not resend_when_open:   # report it; the caller decides
                    raise CircuitOpen(f"{self.breaker.reason}; {request.side} {cid} not at Alpaca and not "
                                      "resubmitted while the API circuit is open")
            try:
                return self._trading.submit_order(sdk_request)
            except Exception as exc:
                unknown[0] = unknown[0] or may_have_landed(exc)
                raise

        try:
            placed = self._call(f"submit {request.side} {request.symbol} (client_order_id {cid})", once)
        except DuplicateClientOrderId:
            return self._existing(request)
        except FractionalNotSupported:
            raise   # nothing landed; a fallback resubmit under this client id meets the duplicate path
        except BrokerRejected as exc:
            # Never mark an order rejected that Alpaca actually holds (a reworded duplicate, a
            # retried POST that landed): look it up by client id first.
            found = self.get_order(cid)
            if found is None:
                raise
            log.warning("order %s: Alpaca answered %s but holds the order; using it", cid, exc.code)
            return self._checked(request, found)
        except BrokerUnavailable as exc:
            if unknown[0] and not isinstance(exc, CircuitOpen):
                raise OrderOutcomeUnknown(f"{exc}; the order may have reached Alpaca: look up client_order_id "
                                          f"{cid} before resubmitting") from None
            raise
        return self._checked(request, cv.to_order(placed))

    def _existing(self, request: OrderRequest) -> Order:
        """A duplicate client_order_id: the order is already at Alpaca; return it (never resubmit)."""
        found = self.get_order(request.client_order_id)
        if found is None:
            raise DuplicateClientOrderId(f"Alpaca reports client_order_id {request.client_order_id} as a duplicate "
                                         "but cannot find it; check the account before retrying")
        log.info("order %s already at Alpaca (duplicate client_order_id): returning it", request.client_order_id)
        return self._checked(request, found)

    @staticmethod
    def _checked(request: OrderRequest, order: Order) -> Order:
        if order.symbol and (order.symbol, order.side) != (request.symbol, request.side):
            raise DuplicateClientOrderId(f"client_order_id {request.client_order_id} belongs to a different order "
                                         f"({order.side} {order.symbol}); refusing to treat it as this one")
        return order

    # cancel and close --------------------------------------------------------------------------
    def cancel(self, client_order_id: str) -> None:
        """Look the broker id up by client id, then cancel (SimBroker's error codes)."""
        order = self.get_order(client_order_id)
        if order is None:
            raise BrokerRejected(f"order {client_order_id} not found at Alpaca", code="ORDER_NOT_FOUND")
        if not order.is_open:
            raise BrokerRejected(f"order {client_order_id} is not cancelable (status {order.status})",
                                 code="ORDER_NOT_CANCELABLE")
        try:
            self._call(f"cancel order {client_order_id}", lambda: self._trading.cancel_order_by_id(order.broker_id))
        except BrokerRejected as exc:   # it filled or vanished between the look-up and the cancel
            code = "ORDER_NOT_FOUND" if exc.code == "NOT_FOUND" else "ORDER_NOT_CANCELABLE"
            raise BrokerRejected(str(exc), code=code) from None

    def cancel_all(self, open_orders: list[Order]) -> CancelResult:
        """Cancel every open order; returns the client ids Alpaca accepted to cancel."""
        by_id = {o.broker_id: o.client_order_id for o in open_orders}
        if not by_id:
            return CancelResult()
        done = []
        for answer in self._call("cancel all orders", self._trading.cancel_orders) or []:
            oid = str(answer.get("id"))
            cid = by_id.get(oid) or (answer.get("body") or {}).get("client_order_id", oid)
            if 200 <= int(answer.get("status") or 0) < 300:
                done.append(cid)
            else:
                log.warning("cancel of %s answered HTTP %s", cid, answer.get("status"))
        return CancelResult(tuple(done))

    def close_position(self, symbol: str, client_order_id: str) -> Order | None:
        """Market order for the whole position under our client id (idempotent); None when flat.

        A fractional position in an asset that refuses fractional orders is closed with Alpaca's
        DELETE /v2/positions/{symbol} instead (that order carries Alpaca's own client id).
        """
        self._refuse_non_equity(symbol)
        pos = self._call(f"get position {symbol}", or_none_on_404(lambda: self._trading.get_open_position(symbol)))
        if pos is None or Decimal(str(pos["qty"])) == 0:
            return None
        if pos.get("asset_class", cv.EQUITY) != cv.EQUITY:
            self.not_equity.add(symbol)
            self._refuse_non_equity(symbol)
        held = Decimal(str(pos["qty"]))
        side = "buy" if held < 0 or pos.get("side") == "short" else "sell"
        qty = to_qty(abs(held))
        request = OrderRequest(symbol, side, qty, client_order_id, order_type="market")  # type: ignore[arg-type]
        if qty == qty.to_integral_value() or self.fractionable.get(symbol, True):
            try:
                return self._submit_idempotent(request, cv.order_request(request), resend_when_open=True)
            except FractionalNotSupported:
                self.fractionable[symbol] = False
        log.warning("closing fractional %s position %s via DELETE /v2/positions/%s", symbol, qty, symbol)
        return cv.to_order(self._call(f"close position {symbol}", lambda: self._trading.close_position(symbol)))
