"""What makes a backtest honest (BT-1): costs on every fill, daily-bar stops and targets, breakers.

* **Costs**: each fill pays half the quoted spread plus slippage (``params.backtest``,
  basis points of the reference price: the open, or the stop / target level) and a
  commission (per share with a per-order minimum, plus a share of notional).
* **Stops and targets** (``stop_loss_pct``, ``profit_target_pct``, from the average
  entry price, as the monitor applies them): on a daily bar a gap through the level
  fills at the open, otherwise at the level. When one bar touches both, the stop is
  assumed first (daily bars cannot order them; the conservative choice).
* **Breakers** (``tradebook.safety.breakers.check_breakers``, BRK-1..3) on each close: the
  daily loss against the previous close, the drawdown from the peak close, the
  minimum equity. A FROZEN trip freezes the backtest for good, as it freezes trading
  (CTL-2: never auto-clears): no order is decided or filled after it, positions are
  carried at market. Session drawdown (REDUCE_ONLY for the rest of a session) has no
  effect on daily bars: the session is over when the close is known.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from tradebook.research.simulator import Book
    from tradebook.params import BacktestCosts, Params

STOP_LOSS = "STOP_LOSS"
PROFIT_TARGET = "PROFIT_TARGET"


@dataclass(frozen=True)
class Freeze:
    """The breaker trip that froze the backtest."""

    day: date
    code: str
    reason: str


class Frictions:
    """Costs, stops/targets and breakers for one backtest (``None`` parts are off)."""

    def __init__(self, costs: "BacktestCosts | None", stop_loss_pct: float | None = None,
                 profit_target_pct: float | None = None, breakers: "Params | None" = None):
        self.costs, self.stop, self.target, self.breakers = costs, stop_loss_pct, profit_target_pct, breakers
        self.peak: float | None = None
        self.prev_equity: float | None = None

    @classmethod
    def from_params(cls, params: "Params") -> "Frictions":
        """Everything on, from the params the live phases use."""
        return cls(params.backtest, params.stop_loss_pct, params.profit_target_pct, params)

    def fill_price(self, side: str, reference: float) -> float:
        """What a fill at ``reference`` really costs per share: half spread plus slippage against us."""
        if self.costs is None:
            return reference
        bps = self.costs.spread_bps / 2 + self.costs.slippage_bps
        return reference * (1 + bps / 1e4) if side == "buy" else reference * (1 - bps / 1e4)

    def commission(self, qty: float, price: float) -> float:
        c = self.costs
        if c is None:
            return 0.0
        per_share = max(c.commission_per_share * qty, c.commission_min) if c.commission_per_share > 0 else 0.0
        return per_share + c.commission_pct * qty * price

    def triggered(self, t: int, book: "Book", low: "np.ndarray", high: "np.ndarray") -> list[tuple[int, float, str]]:
        """(column, reference price, reason) for held symbols whose stop or target the bar at ``t`` reached."""
        import numpy as np

        if self.stop is None and self.target is None:
            return []
        m, out = book.market, []
        for j in map(int, np.flatnonzero(book.qty > 0)):
            if not m.has_bar[t, j] or j not in book.avg_price:
                continue
            avg, open_ = book.avg_price[j], float(m.open[t, j])
            if self.stop is not None:
                level = avg * (1 - self.stop)
                if open_ <= level or low[t, j] <= level:
                    out.append((int(j), min(open_, level), f"{STOP_LOSS}: low {low[t, j]:.2f} <= {level:.2f} "
                                f"({-self.stop:.1%} from {avg:.2f})"))
                    continue
            if self.target is not None:
                level = avg * (1 + self.target)
                if open_ >= level or high[t, j] >= level:
                    out.append((int(j), max(open_, level), f"{PROFIT_TARGET}: high {high[t, j]:.2f} >= {level:.2f} "
                                f"(+{self.target:.1%} from {avg:.2f})"))
        return out

    def breaker(self, day: date, equity: float) -> Freeze | None:
        """A FROZEN breaker trip on this close's equity, or None (updates the references)."""
        if self.breakers is None:
            return None
        from tradebook.safety.breakers import check_breakers

        self.peak = equity if self.peak is None else max(self.peak, equity)
        trips = check_breakers(equity, self.prev_equity, self.peak, None, self.breakers)
        self.prev_equity = equity
        frozen = [trip for trip in trips if trip.action == "FROZEN"]
        return Freeze(day, frozen[0].code, frozen[0].reason) if frozen else None
