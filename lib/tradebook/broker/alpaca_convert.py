"""alpaca-py models ⇄ tradebook broker types (pure functions, no I/O).

Money arrives from the Trading API as decimal strings; results are floats (broker/base.py).
Order quantities and prices leave as floats built from our quantised Decimals (the SDK
serialises qty, notional and limit_price as JSON floats).
"""
from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from tradebook.broker.base import Account, Asset, Clock, Order, OrderRequest, Position, Quote, Session

if TYPE_CHECKING:
    import pandas as pd

NY = ZoneInfo("America/New_York")


def _f(value: Any, default: float = 0.0) -> float:
    return default if value is None or value == "" else float(value)


def _v(value: Any) -> str:
    """Enum wire value (or the string itself)."""
    return str(getattr(value, "value", value))


def to_account(acct: Any, fractional: bool) -> Account:
    return Account(equity=_f(acct.equity), cash=_f(acct.cash), buying_power=_f(acct.buying_power),
                   currency=acct.currency or "USD", status=_v(acct.status), fractional_enabled=fractional)


def to_position(pos: Any) -> Position:
    qty = _f(pos.qty)
    if _v(pos.side) == "short" and qty > 0:
        qty = -qty
    price = _f(pos.current_price, _f(pos.avg_entry_price))
    return Position(symbol=pos.symbol, qty=qty, avg_price=_f(pos.avg_entry_price), market_price=price)


def to_order(order: Any) -> Order:
    kind = _v(order.type or order.order_type)
    qty = order.qty if order.qty is not None else order.filled_qty
    return Order(
        broker_id=str(order.id), client_order_id=order.client_order_id, symbol=order.symbol or "",
        side=_v(order.side), qty=_f(qty), order_type=kind,  # type: ignore[arg-type]
        status=_v(order.status), limit_price=None if order.limit_price is None else float(order.limit_price),
        filled_qty=_f(order.filled_qty), filled_avg_price=None if order.filled_avg_price is None
        else float(order.filled_avg_price), submitted_at=order.submitted_at, updated_at=order.updated_at,
        reject_reason="rejected by Alpaca" if _v(order.status) == "rejected" else None)


def to_clock(clock: Any) -> Clock:
    return Clock(now=clock.timestamp.astimezone(NY), is_open=bool(clock.is_open),
                 next_open=clock.next_open.astimezone(NY), next_close=clock.next_close.astimezone(NY))


def to_session(cal: Any) -> Session:
    """The SDK combines date and 'HH:MM' into naive datetimes; Alpaca's calendar is New York time."""
    return Session(day=cal.date, open=cal.open.replace(tzinfo=NY), close=cal.close.replace(tzinfo=NY))


def to_asset(asset: Any) -> Asset:
    return Asset(symbol=asset.symbol, tradable=bool(asset.tradable), fractionable=bool(asset.fractionable))


def to_quote(symbol: str, snap: Any) -> Quote | None:
    """A Quote from a snapshot: bid/ask from latestQuote; day_open and prev_close from the daily bars.

    Before the open Alpaca's dailyBar is the previous session's bar, so it becomes prev_close and
    day_open stays unknown.
    """
    q = getattr(snap, "latest_quote", None)
    if q is None or not q.bid_price or not q.ask_price:
        return None
    ts = q.timestamp.astimezone(NY)
    daily, prev = snap.daily_bar, snap.previous_daily_bar
    day_open = prev_close = None
    if daily is not None and daily.timestamp.astimezone(NY).date() == ts.date():
        day_open = float(daily.open)
        prev_close = float(prev.close) if prev is not None else None
    elif daily is not None:
        prev_close = float(daily.close)
    return Quote(symbol=symbol, bid=float(q.bid_price), ask=float(q.ask_price), ts=ts,
                 day_open=day_open, prev_close=prev_close)


def bars_frame(barset: Any, start: date, end: date) -> "pd.DataFrame":
    """Long-format adjusted daily bars (symbol, date, open, high, low, close, volume)."""
    import pandas as pd

    from tradebook.marketdata import COLUMNS

    data = barset.data if barset is not None else {}
    rows = [(sym, b.timestamp.astimezone(NY).date(), b.open, b.high, b.low, b.close, b.volume)
            for sym, bars in data.items() for b in bars]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame = frame[(frame["date"] >= start) & (frame["date"] <= end)]
    return frame.sort_values(["symbol", "date"]).reset_index(drop=True)


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, end 23:59:59] New York, so the daily bar stamped at midnight NY is included."""
    return (datetime.combine(start, time(0), tzinfo=NY), datetime.combine(end, time(23, 59, 59), tzinfo=NY))


def order_request(req: OrderRequest, qty: Decimal | None = None) -> Any:
    """The SDK request for one of our orders (qty overridable for the whole-share fallback)."""
    from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

    common = dict(symbol=req.symbol, qty=float(qty if qty is not None else req.qty), side=req.side,
                  time_in_force=req.time_in_force, client_order_id=req.client_order_id)
    if req.order_type == "limit":
        return LimitOrderRequest(limit_price=float(req.limit_price), **common)  # type: ignore[arg-type]
    return MarketOrderRequest(**common)


def notional_request(symbol: str, side: str, notional: Decimal, client_order_id: str,
                     time_in_force: str = "day") -> Any:
    from alpaca.trading.requests import MarketOrderRequest

    return MarketOrderRequest(symbol=symbol, notional=float(notional.quantize(Decimal("0.01"))), side=side,
                              time_in_force=time_in_force, client_order_id=client_order_id)
