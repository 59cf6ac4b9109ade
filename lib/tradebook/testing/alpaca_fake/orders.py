"""Orders of the loopback Alpaca fake: validation, funds and held shares, wash trades, fills, cancels.

Rules (simple and deterministic): market orders fill at the ask (buy) or bid (sell) as soon
as the session is open; limit orders fill when marketable, at the better of the limit and the
touch at the start of the interval (or at the limit if the price reaches it later in the
interval); day orders expire at the close. Validation mirrors the Trading API: duplicate
client_order_id and fractional rules give 422; buying power, shares held for other orders
("insufficient qty available", with ``held_for_orders``) and wash trades give 403. With
``cancel_delay_s`` a cancel leaves the order ``pending_cancel`` and a fill may still win.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any

from tradebook.testing.alpaca_fake.models import CENT, NAMESPACE, OPEN, Q9, FakeOrder, Reply, num
from tradebook.testing.alpaca_fake.venue import Holding, wash_trade

if TYPE_CHECKING:
    from tradebook.testing.alpaca_fake.state import FakeBrokerState


class FakeOrders:
    """Mixin of FakeBrokerState: every public method takes ``self.lock``."""

    def submit(self: "FakeBrokerState", body: dict[str, Any]) -> dict[str, Any]:
        """POST /v2/orders: validate like Alpaca, record, fill at once when marketable."""
        with self.lock:
            order = self._validate(body)
            if body.get("_partial"):
                order.partial = True
            self._check_wash(order)
            self._check_funds(order)
            return self._record(order)

    def _record(self: "FakeBrokerState", order: FakeOrder) -> dict[str, Any]:
        self.orders[order.id] = order
        self.by_client_id[order.client_order_id] = order.id
        if self.market.is_open(self.now):
            self._try_fill(order, self.now, self.now)
        return order.to_json()

    def _new_id(self: "FakeBrokerState") -> str:
        self._seq += 1
        return str(uuid.uuid5(NAMESPACE, f"order:{self._seq}"))

    def _validate(self: "FakeBrokerState", body: dict[str, Any]) -> FakeOrder:
        symbol, side, kind = body.get("symbol"), body.get("side"), body.get("type", "market")
        tif = body.get("time_in_force", "day")
        if side not in ("buy", "sell") or kind not in ("market", "limit"):
            raise Reply(422, 40010001, "invalid side or order type")
        if symbol not in self.fractionable or self.market.mid(symbol, self.now) is None:
            raise Reply(422, 40010001, f'asset "{symbol}" not found')
        qty, notional = _dec(body.get("qty")), _dec(body.get("notional"))
        if (qty is None) == (notional is None) or (qty is not None and qty <= 0):
            raise Reply(422, 40010001, "qty or notional is required, not both")
        limit = _dec(body.get("limit_price"))
        if kind == "limit" and (limit is None or limit <= 0):
            raise Reply(422, 40010001, "limit_price is required for limit orders")
        cid = str(body.get("client_order_id") or uuid.uuid4())
        if len(cid) > 48:
            raise Reply(422, 40010001, "client_order_id must be no more than 48 characters")
        if cid in self.by_client_id:
            raise Reply(422, 40010001, "client_order_id must be unique")
        if notional is not None or qty != qty.to_integral_value():
            self._check_fractional(symbol, kind, tif, notional)
        return FakeOrder(self._new_id(), cid, symbol, side, kind, tif, qty, notional, limit, self.now,
                         status="new" if self.market.is_open(self.now) else "accepted")

    def _check_fractional(self: "FakeBrokerState", symbol: str, kind: str, tif: str,
                          notional: Decimal | None) -> None:
        if not self.account_fractional:
            raise Reply(422, 42210000, "fractional trading is not enabled for this account")
        if not self.fractionable[symbol]:
            raise Reply(422, 42210000, f'asset "{symbol}" is not fractionable')
        if tif != "day":
            raise Reply(422, 42210000, "fractional orders must be DAY orders")
        if notional is not None and kind != "market":
            raise Reply(422, 42210000, "notional orders must be market orders")

    def _working(self: "FakeBrokerState", symbol: str, side: str | None = None) -> list[FakeOrder]:
        return [o for o in self.orders.values()
                if o.status in OPEN and o.symbol == symbol and (side is None or o.side == side)]

    def _check_wash(self: "FakeBrokerState", order: FakeOrder) -> None:
        if not self.venue.wash_trade_check:
            return
        other = wash_trade(order, self._working(order.symbol))
        if other is not None:
            raise Reply(403, 40310000, "potential wash trade detected. use complex orders",
                        reject_reason=f"opposite side {other.type} order exists",
                        existing_order_id=other.id)

    def held_for_orders(self: "FakeBrokerState", symbol: str) -> Decimal:
        """Shares of ``symbol`` held back by working sell orders."""
        return sum((o.remaining for o in self._working(symbol, "sell")), Decimal(0))

    def _check_funds(self: "FakeBrokerState", order: FakeOrder) -> None:
        touch = self._touch(order.symbol, order.side, self.now) or Decimal(0)
        if order.side == "buy":
            cost = order.notional or (order.qty or 0) * (order.limit_price or touch)
            bp = self.buying_power()
            if cost > bp:
                raise Reply(403, 40310000, "insufficient buying power", buying_power=num(bp),
                            cost_basis=num(cost.quantize(CENT)))
            return
        holding = self.positions.get(order.symbol)
        held = holding.qty if holding else Decimal(0)
        pending = self.held_for_orders(order.symbol)
        wanted = order.qty if order.qty is not None else (order.notional / touch).quantize(Q9, ROUND_DOWN)
        if wanted > held - pending:
            raise Reply(403, 40310000, f"insufficient qty available for order (requested: {num(wanted)}, "
                                       f"available: {num(held - pending)})", existing_qty=num(held),
                        held_for_orders=num(pending), symbol=order.symbol,
                        related_orders=[o.id for o in self._working(order.symbol, "sell")])

    # fills ---------------------------------------------------------------------------------
    def _match(self: "FakeBrokerState", a: datetime, b: datetime) -> None:
        for order in sorted(self.orders.values(), key=lambda o: o.created_at):
            if order.status in OPEN and order.created_at <= b:
                self._try_fill(order, max(a, order.created_at), b)

    def _try_fill(self: "FakeBrokerState", order: FakeOrder, a: datetime, b: datetime) -> None:
        if order.cancel_due is not None and order.cancel_due < a:
            return   # the cancel won the race
        first, last = self._touch(order.symbol, order.side, a), self._touch(order.symbol, order.side, b)
        if first is None or last is None:
            return
        if order.type == "market":
            self._fill(order, first)
            return
        better = (lambda p: p <= order.limit_price) if order.side == "buy" else (lambda p: p >= order.limit_price)
        if better(first):
            self._fill(order, first)
        elif better(min(first, last) if order.side == "buy" else max(first, last)):
            # The straight-line path crosses the limit inside the interval: filled at the limit.
            self._fill(order, order.limit_price)

    def _fill(self: "FakeBrokerState", order: FakeOrder, price: Decimal) -> None:
        if order.qty is None:   # notional: the whole amount at once
            order.qty = (order.notional / price).quantize(Q9, ROUND_DOWN)
        qty = order.remaining
        if order.partial and order.filled_qty == 0:
            qty = (qty / 2).quantize(Decimal(1) if qty == qty.to_integral_value() and qty > 1 else Q9, ROUND_DOWN)
        sign = 1 if order.side == "buy" else -1
        self.cash = (self.cash - sign * qty * price).quantize(CENT)
        holding = self.positions.get(order.symbol)
        if sign > 0:
            if holding is None:
                holding = self.positions[order.symbol] = Holding(Decimal(0), Decimal(0))
            holding.buy(qty, price)
        elif holding is not None:
            holding.sell(qty)
            if holding.qty <= 0:
                self.positions.pop(order.symbol, None)
        total = order.filled_qty + qty
        order.filled_avg_price = ((order.filled_avg_price or Decimal(0)) * order.filled_qty + qty * price) / total
        order.filled_avg_price = order.filled_avg_price.quantize(Decimal("0.0001"))
        order.filled_qty = total
        order.status = "filled" if order.remaining <= 0 else "partially_filled"
        order.filled_at = order.updated_at = self.now

    def _expire(self: "FakeBrokerState", close: datetime) -> None:
        for order in self.orders.values():
            if order.status in OPEN and order.time_in_force == "day" and order.created_at < close:
                order.status, order.expired_at, order.updated_at = "expired", close, close

    def _settle_cancels(self: "FakeBrokerState") -> None:
        for order in self.orders.values():
            if order.status == "pending_cancel" and order.cancel_due is not None and order.cancel_due <= self.now:
                order.status, order.canceled_at, order.updated_at = "canceled", order.cancel_due, order.cancel_due

    # look-ups and cancels ------------------------------------------------------------------
    def order_json(self: "FakeBrokerState", order_id: str) -> dict[str, Any]:
        with self.lock:
            if order_id not in self.orders:
                raise Reply(404, 40410000, "order not found")
            return self.orders[order_id].to_json()

    def order_by_client_id(self: "FakeBrokerState", cid: str) -> dict[str, Any]:
        with self.lock:
            if cid not in self.by_client_id:
                raise Reply(404, 40410000, "order not found")
            return self.orders[self.by_client_id[cid]].to_json()

    def list_orders(self: "FakeBrokerState", status: str = "open", limit: int = 50, symbols: list[str] | None = None,
                    direction: str = "desc") -> list[dict[str, Any]]:
        with self.lock:
            chosen = [o for o in self.orders.values()
                      if (status == "all" or (o.status in OPEN) == (status == "open"))
                      and (not symbols or o.symbol in symbols)]
            chosen.sort(key=lambda o: (o.created_at, o.id), reverse=direction != "asc")
            return [o.to_json() for o in chosen[:max(1, min(limit, 500))]]

    def cancel(self: "FakeBrokerState", order_id: str) -> None:
        """DELETE /v2/orders/{id}: 204; with a cancel delay the order is pending_cancel meanwhile."""
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                raise Reply(404, 40410000, "order not found")
            if order.status not in OPEN:
                raise Reply(422, 42210000, "order is not cancelable")
            if order.status == "pending_cancel":
                return
            if self.venue.cancel_delay_s > 0:
                order.status, order.updated_at = "pending_cancel", self.now
                order.cancel_due = self.now + timedelta(seconds=self.venue.cancel_delay_s)
            else:
                order.status, order.canceled_at, order.updated_at = "canceled", self.now, self.now

    def cancel_all(self: "FakeBrokerState") -> list[dict[str, Any]]:
        with self.lock:
            out = []
            for order in self.orders.values():
                if order.status in OPEN:
                    self.cancel(order.id)
                    out.append({"id": order.id, "status": 200, "body": order.to_json()})
            return out

    def close_position(self: "FakeBrokerState", symbol: str, qty: str | None = None,
                       percentage: str | None = None) -> dict:
        """DELETE /v2/positions/{symbol}: a market sell for the (part of the) position."""
        with self.lock:
            if symbol not in self.positions:
                raise Reply(404, 40410000, "position does not exist")
            held = self.positions[symbol].qty
            amount = Decimal(qty) if qty else (held * Decimal(percentage or 100) / 100).quantize(Q9, ROUND_DOWN)
            order = FakeOrder(self._new_id(), str(uuid.uuid4()), symbol, "sell", "market", "day",
                              min(amount, held), None, None, self.now)
            self._check_funds(order)
            return self._record(order)

    def show_status(self: "FakeBrokerState", client_order_id: str, status: str | None) -> None:
        """Show an order with a status value Alpaca's spec lacks (None: back to the real one)."""
        with self.lock:
            self.orders[self.by_client_id[client_order_id]].shown_status = status


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        raise Reply(422, 40010001, f"invalid number {value!r}") from None
