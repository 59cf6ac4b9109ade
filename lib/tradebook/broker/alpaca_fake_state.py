"""Account side of the loopback Alpaca fake: cash, positions, orders and their fills.

Rules (simple and deterministic): market orders fill in full at the ask (buy) or bid (sell)
as soon as the session is open; limit orders fill when marketable, at the better of the
limit and the touch at the start of the interval (or at the limit if the price reaches it
later in the interval); day orders expire at the close. Validation mirrors the Trading API:
duplicate client_order_id and fractional rules give 422, buying power and sellable qty 403.
"""
from __future__ import annotations

import threading
import uuid
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from tradebook.broker.alpaca_fake_market import NY, FakeMarket, iso_z
from tradebook.broker.alpaca_fake_models import (CENT, EXCHANGES, NAMESPACE, OPEN, Q9, FakeOrder, Reply,
                                                  asset_uuid, num)


class FakeBrokerState:
    """Thread-safe account state; every public method takes the lock."""

    def __init__(self, market: FakeMarket, now: datetime, cash: float = 100_000.0,
                 account_fractional: bool = True, non_fractionable: tuple[str, ...] = ()):
        self.market = market
        self.lock = threading.RLock()
        self.now = now
        self.cash = Decimal(str(cash)).quantize(CENT)
        self.account_fractional = account_fractional
        self.fractionable = {s: s not in non_fractionable for s in market.symbols}
        self.positions: dict[str, list[Decimal]] = {}   # symbol -> [qty, avg_entry_price]
        self.orders: dict[str, FakeOrder] = {}
        self.by_client_id: dict[str, str] = {}
        self._seq = 0

    # time --------------------------------------------------------------------------------
    def set_time(self, now: datetime) -> None:
        """Move the simulated clock forward, filling and expiring orders on the way."""
        if now.tzinfo is None:
            raise ValueError("the fake's clock needs a timezone-aware datetime")
        with self.lock:
            if now < self.now:
                raise ValueError(f"the fake's clock only moves forward ({iso_z(self.now)} -> {iso_z(now)})")
            start, self.now = self.now, now
            for session in self.market.sessions(start.astimezone(NY).date(), now.astimezone(NY).date()):
                a, b = max(start, session.open), min(now, session.close)
                if a <= b and a < session.close:
                    self._match(a, b)
                if now >= session.close:
                    self._expire(session.close)

    # account -----------------------------------------------------------------------------
    def _mid(self, symbol: str) -> Decimal:
        mid = self.market.mid(symbol, self.now)
        return Decimal(str(mid)) if mid is not None else Decimal(0)

    def _touch(self, symbol: str, side: str, when: datetime) -> Decimal | None:
        quote = self.market.quote(symbol, when)
        return None if quote is None else Decimal(str(quote[1] if side == "buy" else quote[0]))

    def _reserved(self) -> Decimal:
        total = Decimal(0)
        for o in self.orders.values():
            if o.status in OPEN and o.side == "buy":
                price = o.limit_price or self._touch(o.symbol, "buy", self.now) or Decimal(0)
                total += o.notional if o.notional is not None else (o.qty or 0) * price
        return total

    def buying_power(self) -> Decimal:
        return max(self.cash - self._reserved(), Decimal(0)).quantize(CENT)

    def account_json(self) -> dict[str, Any]:
        with self.lock:
            long_value = sum((q * self._mid(s) for s, (q, _) in self.positions.items()), Decimal(0))
            equity = (self.cash + long_value).quantize(CENT)
            bp = self.buying_power()
            return {"id": str(uuid.uuid5(NAMESPACE, "account")), "account_number": "PA3FAKE00001", "status": "ACTIVE",
                    "crypto_status": "INACTIVE", "currency": "USD", "buying_power": num(bp),
                    "regt_buying_power": num(bp), "daytrading_buying_power": "0",
                    "non_marginable_buying_power": num(bp), "cash": num(self.cash), "accrued_fees": "0",
                    "portfolio_value": num(equity), "equity": num(equity), "last_equity": num(equity),
                    "long_market_value": num(long_value.quantize(CENT)), "short_market_value": "0",
                    "initial_margin": "0", "maintenance_margin": "0", "last_maintenance_margin": "0",
                    "sma": "0", "multiplier": "1", "shorting_enabled": False, "pattern_day_trader": False,
                    "trading_blocked": False, "transfers_blocked": False, "account_blocked": False,
                    "trade_suspended_by_user": False, "created_at": "2011-01-03T14:30:00Z"}

    def config_json(self) -> dict[str, Any]:
        return {"dtbp_check": "entry", "fractional_trading": self.account_fractional,
                "max_margin_multiplier": "1", "no_shorting": True, "pdt_check": "entry",
                "suspend_trade": False, "trade_confirm_email": "all", "ptp_no_exception_entry": False}

    def asset_json(self, symbol: str) -> dict[str, Any]:
        if symbol not in self.fractionable:
            raise Reply(404, 40410000, "asset not found")
        return {"id": asset_uuid(symbol), "class": "us_equity", "exchange": EXCHANGES.get(symbol, "NASDAQ"),
                "symbol": symbol, "name": symbol, "status": "active", "tradable": True, "marginable": True,
                "shortable": False, "easy_to_borrow": False, "fractionable": self.fractionable[symbol],
                "attributes": []}

    def position_json(self, symbol: str) -> dict[str, Any]:
        with self.lock:
            if symbol not in self.positions:
                raise Reply(404, 40410000, "position does not exist")
            qty, avg = self.positions[symbol]
            price = self._mid(symbol)
            prev = self.market.previous_bar(symbol, self.now.astimezone(NY).date())
            held = sum((o.qty or 0 for o in self.orders.values()
                        if o.status in OPEN and o.side == "sell" and o.symbol == symbol), Decimal(0))
            return {"asset_id": asset_uuid(symbol), "symbol": symbol, "exchange": EXCHANGES.get(symbol, "NASDAQ"),
                    "asset_class": "us_equity", "asset_marginable": True, "avg_entry_price": num(avg),
                    "qty": num(qty), "qty_available": num(qty - held), "side": "long",
                    "market_value": num((qty * price).quantize(CENT)), "cost_basis": num((qty * avg).quantize(CENT)),
                    "unrealized_pl": num((qty * (price - avg)).quantize(CENT)), "unrealized_plpc": None,
                    "unrealized_intraday_pl": None, "unrealized_intraday_plpc": None,
                    "current_price": num(price), "lastday_price": num(round(prev.close, 2)) if prev else None,
                    "change_today": None}

    def positions_json(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self.position_json(s) for s in sorted(self.positions)]

    def seed_position(self, symbol: str, qty: float, avg_price: float) -> None:
        """A position opened outside tradebook (for EXTERNAL reconcile demos)."""
        with self.lock:
            self.positions[symbol] = [Decimal(str(qty)), Decimal(str(avg_price))]

    # orders ------------------------------------------------------------------------------
    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /v2/orders: validate like Alpaca, record, fill at once when marketable."""
        with self.lock:
            order = self._validate(body)
            self._check_funds(order)
            return self._record(order)

    def _record(self, order: "FakeOrder") -> dict[str, Any]:
        """Book an accepted order (caller holds the lock); it fills at once when marketable."""
        self.orders[order.id] = order
        self.by_client_id[order.client_order_id] = order.id
        if self.market.is_open(self.now):
            self._try_fill(order, self.now, self.now)
        return order.to_json()

    def _new_id(self) -> str:
        self._seq += 1
        return str(uuid.uuid5(NAMESPACE, f"order:{self._seq}"))

    def _validate(self, body: dict[str, Any]) -> FakeOrder:
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

    def _check_fractional(self, symbol: str, kind: str, tif: str, notional: Decimal | None) -> None:
        if not self.account_fractional:
            raise Reply(422, 42210000, "fractional trading is not enabled for this account")
        if not self.fractionable[symbol]:
            raise Reply(422, 42210000, f'asset "{symbol}" is not fractionable')
        if tif != "day":
            raise Reply(422, 42210000, "fractional orders must be DAY orders")
        if notional is not None and kind != "market":
            raise Reply(422, 42210000, "notional orders must be market orders")

    def _check_funds(self, order: FakeOrder) -> None:
        touch = self._touch(order.symbol, order.side, self.now) or Decimal(0)
        if order.side == "buy":
            cost = order.notional or (order.qty or 0) * (order.limit_price or touch)
            bp = self.buying_power()
            if cost > bp:
                raise Reply(403, 40310000, "insufficient buying power", buying_power=num(bp),
                            cost_basis=num(cost.quantize(CENT)))
            return
        held = self.positions.get(order.symbol, [Decimal(0)])[0]
        pending = sum((o.qty or 0 for o in self.orders.values()
                       if o.status in OPEN and o.side == "sell" and o.symbol == order.symbol), Decimal(0))
        wanted = order.qty if order.qty is not None else (order.notional / touch).quantize(Q9, ROUND_DOWN)
        if wanted > held - pending:
            raise Reply(403, 40310000, f"insufficient qty available for order (requested: {num(wanted)}, "
                                       f"available: {num(held - pending)})")

    def _match(self, a: datetime, b: datetime) -> None:
        for order in sorted(self.orders.values(), key=lambda o: o.created_at):
            if order.status in OPEN and order.created_at <= b:
                self._try_fill(order, max(a, order.created_at), b)

    def _try_fill(self, order: FakeOrder, a: datetime, b: datetime) -> None:
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

    def _fill(self, order: FakeOrder, price: Decimal) -> None:
        qty = order.qty if order.qty is not None else (order.notional / price).quantize(Q9, ROUND_DOWN)
        sign = 1 if order.side == "buy" else -1
        self.cash = (self.cash - sign * qty * price).quantize(CENT)
        held, avg = self.positions.get(order.symbol, [Decimal(0), Decimal(0)])
        new_qty = held + sign * qty
        if new_qty <= 0:
            self.positions.pop(order.symbol, None)
        else:
            new_avg = (held * avg + qty * price) / new_qty if sign > 0 else avg
            self.positions[order.symbol] = [new_qty, new_avg.quantize(Decimal("0.0001"))]
        order.status, order.filled_qty, order.filled_avg_price = "filled", qty, price
        order.filled_at = order.updated_at = self.now

    def _expire(self, close: datetime) -> None:
        for order in self.orders.values():
            if order.status in OPEN and order.time_in_force == "day" and order.created_at < close:
                order.status, order.expired_at, order.updated_at = "expired", close, close

    def order_json(self, order_id: str) -> dict[str, Any]:
        with self.lock:
            if order_id not in self.orders:
                raise Reply(404, 40410000, "order not found")
            return self.orders[order_id].to_json()

    def order_by_client_id(self, cid: str) -> dict[str, Any]:
        with self.lock:
            if cid not in self.by_client_id:
                raise Reply(404, 40410000, "order not found")
            return self.orders[self.by_client_id[cid]].to_json()

    def list_orders(self, status: str = "open", limit: int = 50, symbols: list[str] | None = None,
                    direction: str = "desc") -> list[dict[str, Any]]:
        with self.lock:
            chosen = [o for o in self.orders.values()
                      if (status == "all" or (o.status in OPEN) == (status == "open"))
                      and (not symbols or o.symbol in symbols)]
            chosen.sort(key=lambda o: (o.created_at, o.id), reverse=direction != "asc")
            return [o.to_json() for o in chosen[:max(1, min(limit, 500))]]

    def cancel(self, order_id: str) -> None:
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                raise Reply(404, 40410000, "order not found")
            if order.status not in OPEN:
                raise Reply(422, 42210000, "order is not cancelable")
            order.status, order.canceled_at, order.updated_at = "canceled", self.now, self.now

    def cancel_all(self) -> list[dict[str, Any]]:
        with self.lock:
            out = []
            for order in self.orders.values():
                if order.status in OPEN:
                    self.cancel(order.id)
                    out.append({"id": order.id, "status": 200, "body": order.to_json()})
            return out

    def close_position(self, symbol: str, qty: str | None = None, percentage: str | None = None) -> dict:
        """DELETE /v2/positions/{symbol}: a market sell for the (part of the) position."""
        with self.lock:
            if symbol not in self.positions:
                raise Reply(404, 40410000, "position does not exist")
            held = self.positions[symbol][0]
            amount = Decimal(qty) if qty else (held * Decimal(percentage or 100) / 100).quantize(Q9, ROUND_DOWN)
            order = FakeOrder(self._new_id(), str(uuid.uuid4()), symbol, "sell", "market", "day",
                              min(amount, held), None, None, self.now)
            self._check_funds(order)
            return self._record(order)

    # clock -------------------------------------------------------------------------------
    def clock_json(self) -> dict[str, Any]:
        with self.lock:
            next_open, next_close = self.market.next_open_close(self.now)
            return {"timestamp": self.now.astimezone(NY).isoformat(), "is_open": self.market.is_open(self.now),
                    "next_open": next_open.isoformat(), "next_close": next_close.isoformat()}

    def calendar_json(self, start: date, end: date) -> list[dict[str, str]]:
        return [{"date": s.day.isoformat(), "open": s.open.strftime("%H:%M"), "close": s.close.strftime("%H:%M"),
                 "session_open": "0400", "session_close": "2000",
                 "settlement_date": (s.day + timedelta(days=2)).isoformat()}
                for s in self.market.sessions(start, end)]


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        raise Reply(422, 40010001, f"invalid number {value!r}") from None
