"""Venue realism for the loopback Alpaca fake (VEN-2): what the real Trading and Data APIs do.

* ``VenueOptions``: switches for behaviour a real account shows (all off by default so the
  simple fake stays simple; ``tradebook demo --broker alpaca-fake`` turns them on):
  asynchronous cancels (``pending_cancel`` for ``cancel_delay_s`` of simulated time, a fill
  may win the race), a Reg-T margin account (buying power 2x, cash may go negative), a rate
  limit answered with 429 and ``X-RateLimit-*`` headers (never ``Retry-After``), a market-data
  plan (``free``: no SIP data newer than 15 minutes, quotes only from IEX) and IEX-only bars.
* ``Holding``: Alpaca's average entry price: weighted average intraday (sells leave it
  alone), compressed FIFO at the end of the day (each day's buys become one lot; sells
  consume the oldest lots first).
* ``RateLimiter``: N requests per window; the reset is UNIX epoch seconds.
* ``wash_trade``: an order that could execute against a working opposite order of the same
  symbol is refused with 403 ("potential wash trade detected").
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Iterable

BAR_FEEDS = ("iex", "otc", "sip", "boats")                                  # stock_historical_feed
LATEST_FEEDS = ("delayed_sip", "iex", "otc", "sip", "boats", "overnight")   # stock_latest_feed
SIP_RECENT = timedelta(minutes=15)
SIP_REFUSED = "subscription does not permit querying recent SIP data"
IEX_VOLUME_SHARE = 0.025   # IEX prints a few percent of consolidated volume


@dataclass
class VenueOptions:
    cancel_delay_s: float = 0.0          # simulated seconds an order stays pending_cancel
    margin: bool = False                 # Reg-T margin account (multiplier 2)
    wash_trade_check: bool = False       # 403 on an order against a working opposite order
    rate_limit: int = 0                  # requests per rate_window_s (0: unlimited)
    rate_window_s: float = 60.0
    data_plan: str = "free"              # free | unlimited (SIP and recent data for all feeds)


@dataclass
class Holding:
    """A position and its lots (Alpaca's average-price rules)."""

    qty: Decimal
    avg: Decimal
    lots: list[list[Decimal]] = field(default_factory=list)   # [qty, price], oldest first, one per day
    today: list[Decimal] = field(default_factory=lambda: [Decimal(0), Decimal(0)])   # [qty, cost] bought today
    asset_class: str = "us_equity"

    @classmethod
    def seeded(cls, qty: Decimal, avg: Decimal, asset_class: str = "us_equity") -> "Holding":
        return cls(qty, avg, [[qty, avg]], asset_class=asset_class)

    def buy(self, qty: Decimal, price: Decimal) -> None:
        """Intraday: weighted average of what is held and what was bought."""
        self.avg = ((self.qty * self.avg + qty * price) / (self.qty + qty)).quantize(Decimal("0.0001"))
        self.qty += qty
        self.today = [self.today[0] + qty, self.today[1] + qty * price]

    def sell(self, qty: Decimal) -> None:
        """Intraday the average stays; the sold shares leave the oldest lots first (FIFO)."""
        self.qty -= qty
        left = qty
        for lot in self.lots:
            used = min(lot[0], left)
            lot[0] -= used
            left -= used
        self.lots = [lot for lot in self.lots if lot[0] > 0]
        if left > 0 and self.today[0] > 0:   # sold some of today's buys too
            price = self.today[1] / self.today[0]
            self.today = [self.today[0] - left, (self.today[0] - left) * price]

    def end_of_day(self) -> None:
        """Compress today's buys into one lot and re-average the remaining lots (FIFO)."""
        if self.today[0] > 0:
            self.lots.append([self.today[0], self.today[1] / self.today[0]])
        self.today = [Decimal(0), Decimal(0)]
        total = sum((q for q, _ in self.lots), Decimal(0))
        if total > 0:
            self.avg = (sum((q * p for q, p in self.lots), Decimal(0)) / total).quantize(Decimal("0.0001"))


class RateLimiter:
    """A fixed window of ``limit`` requests per ``window_s`` wall seconds."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.time):
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._start, self._used = 0.0, 0
        self._lock = threading.Lock()

    def take(self) -> tuple[bool, dict[str, str]]:
        """(allowed, X-RateLimit-* headers) for one request."""
        with self._lock:
            now = self._clock()
            if now >= self._start + self.window_s:
                self._start, self._used = now, 0
            allowed = self._used < self.limit
            self._used += allowed
            reset = math.ceil(self._start + self.window_s)
            return allowed, {"X-RateLimit-Limit": str(self.limit),
                             "X-RateLimit-Remaining": str(max(self.limit - self._used, 0)),
                             "X-RateLimit-Reset": str(reset)}


def wash_trade(new: Any, working: Iterable[Any]) -> Any | None:
    """The working opposite-side order of the same symbol the new order could trade against."""
    for other in working:
        if other.symbol != new.symbol or other.side == new.side:
            continue
        if new.type == "market" or other.type == "market":
            return other
        buy, sell = (new, other) if new.side == "buy" else (other, new)
        if buy.limit_price >= sell.limit_price:
            return other
    return None


def feed_refusal(feed: str | None, kind: str, end: datetime | None, now: datetime,
                 plan: str) -> tuple[int, str] | None:
    """(status, message) when the key's plan may not query this feed/time (None: allowed)."""
    allowed = BAR_FEEDS if kind == "bars" else LATEST_FEEDS
    if feed is not None and feed not in allowed:
        return 400, f"invalid feed: {feed}"
    if plan == "unlimited":
        return None
    feed = feed or ("sip" if kind == "bars" else "iex")
    if kind == "bars" and feed == "sip" and (end is None or end > now - SIP_RECENT):
        return 403, SIP_REFUSED
    if kind != "bars" and feed in ("sip", "boats", "overnight"):
        return 403, SIP_REFUSED if feed == "sip" else f"subscription does not permit {feed} data"
    return None


def iex_bar(bar: dict[str, Any]) -> dict[str, Any]:
    """A consolidated daily bar as the IEX feed would show it: a few percent of the volume."""
    return {**bar, "v": int(bar["v"] * IEX_VOLUME_SHARE), "n": int(bar["n"] * IEX_VOLUME_SHARE)}


def margin_numbers(cash: Decimal, long_value: Decimal, reserved: Decimal) -> dict[str, Decimal]:
    """Reg-T figures of a long-only margin account (initial margin 50%, maintenance 25%)."""
    equity = cash + long_value
    regt = max(Decimal(2) * equity - long_value - reserved, Decimal(0))
    return {"buying_power": regt, "regt_buying_power": regt,
            "non_marginable_buying_power": max(min(cash, equity) - reserved, Decimal(0)),
            "initial_margin": long_value / 2, "maintenance_margin": long_value / 4}
