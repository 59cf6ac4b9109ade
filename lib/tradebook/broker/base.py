"""The broker boundary: one small Protocol and the value types that cross it.

SimBroker and AlpacaBroker are peers behind this protocol; nothing above it knows
which one it talks to. Results are plain floats (fast to compute with); order
requests carry Decimal quantities and prices, quantised at construction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit"]
TimeInForce = Literal["day", "gtc", "ioc"]
# VEN-1: every order status the broker reports (Alpaca wire values) is working or final.
# Working: the order may still trade or change, so it is looked up again until final.
WORKING_STATUSES = frozenset({
    "new", "accepted", "pending_new", "accepted_for_bidding", "partially_filled", "pending_cancel",
    "pending_replace", "done_for_day", "held", "calculated", "stopped", "suspended"})
FINAL_STATUSES = frozenset({"filled", "canceled", "expired", "rejected", "replaced"})
# Refusals that mean "our own working order is in the way": cancel it first, then retry (VEN-2).
# Alpaca answers both with HTTP 403 code 40310000, told apart only by the message.
CANCEL_FIRST_CODES = frozenset({"INSUFFICIENT_QTY", "WASH_TRADE"})
CANCEL_FIRST_MESSAGES = ("insufficient qty available", "potential wash trade")

QTY_STEP = Decimal("0.000000001")  # Alpaca allows at most 9 decimals


def is_final(status: str) -> bool:
    """VEN-1: the broker will not change this order any more."""
    return status in FINAL_STATUSES


def is_working(status: str) -> bool:
    """VEN-1: the order may still trade; an unknown status is working (and an incident for the caller)."""
    return status not in FINAL_STATUSES


def is_known_status(status: str) -> bool:
    return status in WORKING_STATUSES or status in FINAL_STATUSES


def needs_cancel_first(exc: BaseException) -> bool:
    """A refusal caused by our own working order on the symbol (held qty, potential wash trade)."""
    code = getattr(exc, "code", None)
    text = str(exc).lower()
    return code in CANCEL_FIRST_CODES or any(m in text for m in CANCEL_FIRST_MESSAGES)


def to_qty(value: float | Decimal | str) -> Decimal:
    """Quantise a share quantity to the broker's 9-decimal grid, rounding toward zero."""
    return Decimal(str(value)).quantize(QTY_STEP, rounding=ROUND_DOWN)


@dataclass(frozen=True, slots=True)
class Account:
    equity: float
    cash: float
    buying_power: float
    currency: str = "USD"
    status: str = "ACTIVE"
    fractional_enabled: bool = True
    # Equity at the previous trading day's close (Alpaca ``last_equity``: "equity as of previous
    # trading day at 16:00:00 ET"); the breakers' start of day (BRK-1/2). None: unknown.
    last_equity: float | None = None


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    qty: float
    avg_price: float
    market_price: float
    asset_class: str = "us_equity"   # others (crypto, options) are reconciled and shown, never traded

    @property
    def market_value(self) -> float:
        return self.qty * self.market_price


@dataclass(frozen=True, slots=True)
class OrderRequest:
    symbol: str
    side: Side
    qty: Decimal
    client_order_id: str
    order_type: OrderType = "limit"
    limit_price: Decimal | None = None
    time_in_force: TimeInForce = "day"

    def __post_init__(self) -> None:
        if self.qty <= 0:
            raise ValueError(f"order qty must be positive, got {self.qty}")
        if self.order_type == "limit" and self.limit_price is None:
            raise ValueError("limit orders need a limit_price")
        if self.order_type == "market" and self.limit_price is not None:
            raise ValueError("market orders take no limit_price")
        if not self.client_order_id or len(self.client_order_id) > 48:
            raise ValueError("client_order_id must be 1..48 characters")


@dataclass(frozen=True, slots=True)
class Order:
    broker_id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: float
    order_type: OrderType
    status: str  # alpaca wire values (WORKING_STATUSES | FINAL_STATUSES)
    limit_price: float | None = None
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    submitted_at: datetime | None = None
    updated_at: datetime | None = None
    reject_reason: str | None = None
    filled_at: datetime | None = None   # when the (last) fill happened; fills are stamped with it

    @property
    def is_open(self) -> bool:
        """Still working at the broker (an unknown status counts as working, VEN-1)."""
        return is_working(self.status)


@dataclass(frozen=True, slots=True)
class Quote:
    symbol: str
    bid: float
    ask: float
    ts: datetime
    day_open: float | None = None      # today's open, for SYMBOL_MOVE
    prev_close: float | None = None    # yesterday's close, for gaps

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0

    @property
    def spread_bps(self) -> float:
        mid = self.mid
        return (self.ask - self.bid) / mid * 1e4 if mid > 0 else float("inf")


@dataclass(frozen=True, slots=True)
class Clock:
    now: datetime          # timezone-aware
    is_open: bool
    next_open: datetime
    next_close: datetime


@dataclass(frozen=True, slots=True)
class Session:
    day: date
    open: datetime         # timezone-aware
    close: datetime


@dataclass(frozen=True, slots=True)
class Asset:
    symbol: str
    tradable: bool
    fractionable: bool


@dataclass(frozen=True, slots=True)
class CancelResult:
    client_order_ids: tuple[str, ...] = field(default_factory=tuple)


@runtime_checkable
class Broker(Protocol):
    """What tradebook needs from a broker. The broker is the truth for positions, orders, cash."""

    name: str

    def account(self) -> Account: ...
    def positions(self) -> list[Position]: ...
    def open_orders(self) -> list[Order]: ...
    def get_order(self, client_order_id: str) -> Order | None:
        """Look an order up by client id; None when the broker has never seen it."""
    def submit(self, request: OrderRequest) -> Order: ...
    def cancel(self, client_order_id: str) -> None: ...
    def cancel_all(self) -> CancelResult: ...
    def close_position(self, symbol: str, client_order_id: str) -> Order | None:
        """Market-sell the whole position; None when there is nothing to close."""
    def clock(self) -> Clock: ...
    def calendar(self, start: date, end: date) -> list[Session]: ...
    def quotes(self, symbols: list[str]) -> dict[str, Quote]: ...
    def daily_bars(self, symbols: list[str], start: date, end: date) -> "pd.DataFrame":
        """Adjusted daily bars, long format: symbol, date, open, high, low, close, volume."""
    def asset(self, symbol: str) -> Asset: ...
