"""Account side of the loopback Alpaca fake: cash, positions, the clock; orders in ``alpaca_fake_orders``.

A cash account by default; with ``VenueOptions.margin`` a Reg-T margin account like a real
paper account (buying power about 2x, ``non_marginable_buying_power`` = cash, cash may go
negative). Average entry prices follow Alpaca's rules (``alpaca_fake_venue.Holding``).

``last_equity`` is what Alpaca documents: "Equity as of previous trading day at 16:00:00 ET"
(Trading API spec, Account; ``balance_asof`` is that day). The fake takes it when its clock
passes a session close (cash plus holdings at the closing price); until the first close it
has seen, it is the starting cash plus seeded positions at the previous close.
"""
from __future__ import annotations

import threading
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from tradebook.testing.alpaca_fake.market import NY, FakeMarket, iso_z
from tradebook.testing.alpaca_fake.models import CENT, EXCHANGES, NAMESPACE, OPEN, FakeOrder, Reply, asset_uuid, num
from tradebook.testing.alpaca_fake.orders import FakeOrders
from tradebook.testing.alpaca_fake.venue import Holding, VenueOptions, margin_numbers


class FakeBrokerState(FakeOrders):
    """Thread-safe account state; every public method takes the lock."""

    def __init__(self, market: FakeMarket, now: datetime, cash: float = 100_000.0,
                 account_fractional: bool = True, non_fractionable: tuple[str, ...] = (),
                 venue: VenueOptions | None = None):
        self.market = market
        self.venue = venue or VenueOptions()
        self.lock = threading.RLock()
        self.now = now
        self.cash = Decimal(str(cash)).quantize(CENT)
        self.account_fractional = account_fractional
        self.fractionable = {s: s not in non_fractionable for s in market.symbols}
        self.positions: dict[str, Holding] = {}
        self.orders: dict[str, FakeOrder] = {}
        self.by_client_id: dict[str, str] = {}
        self._seq = 0
        self.last_equity = self.cash   # at the previous session's close (see the module docstring)
        last = market.last_session_closed_by(now)
        self.balance_asof: date | None = last.day if last else None

    # time --------------------------------------------------------------------------------
    def set_time(self, now: datetime) -> None:
        """Move the simulated clock forward: fills, settled cancels, expiries, end-of-day averages."""
        if now.tzinfo is None:
            raise ValueError("the fake's clock needs a timezone-aware datetime")
        with self.lock:
            if now < self.now:
                raise ValueError(f"the fake's clock only moves forward ({iso_z(self.now)} -> {iso_z(now)})")
            start = self.now
            for session in self.market.sessions(start.astimezone(NY).date(), now.astimezone(NY).date()):
                a, b = max(start, session.open), min(now, session.close)
                if a <= b and a < session.close:
                    self.now = b
                    self._match(a, b)
                if now >= session.close > start:
                    self._expire(session.close)
                    for holding in self.positions.values():
                        holding.end_of_day()
                    self._close_books(session)
            self.now = now
            self._settle_cancels()

    def _close_books(self, session: Any) -> None:
        """A session closed: its closing equity becomes ``last_equity`` (Alpaca's daily snapshot)."""
        marks = {s: self.market.mid(s, session.close) for s in self.positions}
        value = sum((h.qty * Decimal(str(marks[s] or 0)) for s, h in self.positions.items()), Decimal(0))
        self.last_equity = (self.cash + value).quantize(CENT)
        self.balance_asof = session.day

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
                total += o.notional if o.notional is not None and o.qty is None else o.remaining * price
        return total

    def _long_value(self) -> Decimal:
        return sum((h.qty * self._mid(s) for s, h in self.positions.items()), Decimal(0))

    def buying_power(self) -> Decimal:
        if self.venue.margin:
            return margin_numbers(self.cash, self._long_value(), self._reserved())["buying_power"].quantize(CENT)
        return max(self.cash - self._reserved(), Decimal(0)).quantize(CENT)

    def account_json(self) -> dict[str, Any]:
        with self.lock:
            long_value = self._long_value().quantize(CENT)
            equity = (self.cash + long_value).quantize(CENT)
            bp = self.buying_power()
            figures = {"buying_power": bp, "regt_buying_power": bp, "non_marginable_buying_power": bp,
                       "initial_margin": Decimal(0), "maintenance_margin": Decimal(0)}
            if self.venue.margin:
                figures = margin_numbers(self.cash, long_value, self._reserved())
            money = {k: num(v.quantize(CENT)) for k, v in figures.items()}
            return {"id": str(uuid.uuid5(NAMESPACE, "account")), "account_number": "PA3FAKE00001", "status": "ACTIVE",
                    "crypto_status": "INACTIVE", "currency": "USD", **money, "daytrading_buying_power": "0",
                    "cash": num(self.cash), "accrued_fees": "0", "portfolio_value": num(equity),
                    "equity": num(equity), "last_equity": num(self.last_equity),
                    "balance_asof": self.balance_asof.isoformat() if self.balance_asof else "",
                    "long_market_value": num(long_value),
                    "short_market_value": "0", "last_maintenance_margin": money["maintenance_margin"], "sma": "0",
                    "multiplier": "2" if self.venue.margin else "1", "shorting_enabled": False,
                    "pattern_day_trader": False, "daytrade_count": 0, "trading_blocked": False,
                    "transfers_blocked": False, "account_blocked": False, "trade_suspended_by_user": False,
                    "created_at": "2011-01-03T14:30:00Z"}

    def config_json(self) -> dict[str, Any]:
        return {"dtbp_check": "entry", "fractional_trading": self.account_fractional,
                "max_margin_multiplier": "2" if self.venue.margin else "1", "no_shorting": True,
                "pdt_check": "entry", "suspend_trade": False, "trade_confirm_email": "all",
                "ptp_no_exception_entry": False}

    def asset_json(self, symbol: str) -> dict[str, Any]:
        if symbol not in self.fractionable:
            raise Reply(404, 40410000, "asset not found")
        return {"id": asset_uuid(symbol), "class": "us_equity", "exchange": EXCHANGES.get(symbol, "NASDAQ"),
                "symbol": symbol, "name": symbol, "status": "active", "tradable": True,
                "marginable": True, "shortable": False, "easy_to_borrow": False,
                "fractionable": self.fractionable[symbol], "attributes": []}

    def position_json(self, symbol: str) -> dict[str, Any]:
        with self.lock:
            if symbol not in self.positions:
                raise Reply(404, 40410000, "position does not exist")
            h = self.positions[symbol]
            price = self._mid(symbol) or h.avg
            prev = self.market.previous_bar(symbol, self.now.astimezone(NY).date())
            last = Decimal(str(round(prev.close, 2))) if prev else price
            cost = (h.qty * h.avg).quantize(CENT)
            value = (h.qty * price).quantize(CENT)
            return {"asset_id": asset_uuid(symbol), "symbol": symbol,
                    "exchange": EXCHANGES.get(symbol, "NASDAQ") if h.asset_class == "us_equity" else "",
                    "asset_class": h.asset_class, "asset_marginable": h.asset_class == "us_equity",
                    "avg_entry_price": num(h.avg), "qty": num(h.qty),
                    "qty_available": num(h.qty - self.held_for_orders(symbol)), "side": "long",
                    "market_value": num(value), "cost_basis": num(cost), "unrealized_pl": num(value - cost),
                    "unrealized_plpc": num(_ratio(value - cost, cost)),
                    "unrealized_intraday_pl": num(((price - last) * h.qty).quantize(CENT)),
                    "unrealized_intraday_plpc": num(_ratio(price - last, last)),
                    "current_price": num(price), "lastday_price": num(last),
                    "change_today": num(_ratio(price - last, last))}

    def positions_json(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self.position_json(s) for s in sorted(self.positions)]

    def seed_position(self, symbol: str, qty: float, avg_price: float, asset_class: str = "us_equity") -> None:
        """A position opened outside tradebook (EXTERNAL reconcile demos; crypto/options on demand).

        Held since before the previous close: ``last_equity`` counts it at that close."""
        with self.lock:
            old = self.positions.get(symbol)
            new = Holding.seeded(Decimal(str(qty)), Decimal(str(avg_price)), asset_class)
            asof = self.balance_asof
            prev = self.market.previous_bar(symbol, asof + timedelta(days=1)) if asof else None
            mark = Decimal(str(round(prev.close, 2))) if prev else Decimal(0)   # as equity values it (_mid)
            self.last_equity += ((new.qty - (old.qty if old else Decimal(0))) * mark).quantize(CENT)
            self.positions[symbol] = new

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


def _ratio(part: Decimal, whole: Decimal) -> Decimal:
    return (part / whole).quantize(Decimal("0.000001")) if whole else Decimal(0)
