"""Protective exit checks for the intraday monitor (EXIT-4, EXIT-5). Pure functions.

- STOP_LOSS: the price is ``stop_loss_pct`` or more below the average price.
- PROFIT_TARGET: the price is ``profit_target_pct`` or more above it (when set).
- EOD_LIQUIDATION: ``eod_liquidation`` is on and the close is within EOD_MINUTES.

The price is a real one (EXIT-8, item 9 of issue 12): the quote's mid, and only from a
quote no older than ``stale_signal_seconds`` whose spread is within
``spread_limit_bps``. A stale or wide quote (one bad print, a crossed or empty book)
fires nothing; the symbol is named in the tick's warnings and checked again next tick.

Stop loss and profit target protect positions tradebook opened (STRATEGY); an
EXTERNAL position is only exited by a strategy exit signal or an operator, except by
EOD liquidation, which flattens everything (a day-trading params set ends flat, the
seed's "untracked position" safety net). Each hit becomes an urgency=immediate EXIT
intent executed at once with a market order through the gate (monitor.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Iterable, Mapping

if TYPE_CHECKING:
    from tradebook.broker.base import Quote
    from tradebook.params import Params
    from tradebook.phases.positions import LedgerPosition

EOD_MINUTES = 15
TOL = 1e-9   # 115 / 100 - 1 is 0.1499999...: a price exactly at the level counts as reached
STOP_LOSS, PROFIT_TARGET, EOD_LIQUIDATION = "STOP_LOSS", "PROFIT_TARGET", "EOD_LIQUIDATION"


@dataclass(frozen=True)
class ExitCheck:
    symbol: str
    code: str
    qty: float
    price: float          # the mid the check used
    reason: str


def check_position(symbol: str, qty: float, avg_price: float, origin: str, price: float, *, params: "Params",
                   now: datetime, close: datetime | None) -> ExitCheck | None:
    """The protective exit one position needs now, or None."""
    if qty <= 0 or price <= 0:
        return None
    if params.eod_liquidation and close is not None and now >= close - timedelta(minutes=EOD_MINUTES):
        return ExitCheck(symbol, EOD_LIQUIDATION, qty, price,
                         f"EOD liquidation: {(close - now).total_seconds() / 60:.0f} min to the close")
    if origin != "STRATEGY" or avg_price <= 0:
        return None
    move = price / avg_price - 1.0
    if move <= -params.stop_loss_pct + TOL:
        return ExitCheck(symbol, STOP_LOSS, qty, price,
                         f"stop loss: mid {price:.2f} is {move:.2%} from avg {avg_price:.2f} "
                         f"(limit -{params.stop_loss_pct:.2%})")
    target = params.profit_target_pct
    if target is not None and move >= target - TOL:
        return ExitCheck(symbol, PROFIT_TARGET, qty, price,
                         f"profit target: mid {price:.2f} is +{move:.2%} over avg {avg_price:.2f} (target {target:.2%})")
    return None


def quote_problem(q: "Quote", *, params: "Params", now: datetime) -> str | None:
    """Why a quote may not trigger an exit now (None: it is fresh and tight enough)."""
    age = (now - q.ts).total_seconds()
    if age > params.stale_signal_seconds:
        return f"quote is {age:.0f}s old (limit {params.stale_signal_seconds}s)"
    if q.bid <= 0 or q.ask <= 0 or q.ask < q.bid:
        return f"quote bid {q.bid:g} / ask {q.ask:g} is not a market"
    if q.spread_bps > params.spread_limit_bps:
        return f"spread {q.spread_bps:.0f} bps is over the limit {params.spread_limit_bps:g} bps"
    return None


def check_positions(positions: Iterable["LedgerPosition"], quotes: Mapping[str, "Quote"], *, params: "Params",
                    now: datetime, close: datetime | None,
                    unpriced: dict[str, str] | None = None) -> list[ExitCheck]:
    """Every protective exit needed now, by symbol, on fresh tight quotes (mid). Positions without a
    usable quote are skipped and, when ``unpriced`` is given, named there with the reason."""
    out = []
    for p in sorted(positions, key=lambda p: p.symbol):
        q = quotes.get(p.symbol)
        problem = "no quote" if q is None else quote_problem(q, params=params, now=now)
        if problem is not None:
            if unpriced is not None and p.qty > 0:
                unpriced[p.symbol] = problem
            continue
        hit = check_position(p.symbol, p.qty, p.avg_price, p.origin, q.mid, params=params, now=now, close=close)
        if hit is not None:
            out.append(hit)
    return out
