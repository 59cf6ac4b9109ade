"""Backtest results: fills, gate rejections, round trips, equity curve, statistics, display."""
from __future__ import annotations

import math
from functools import cached_property
from datetime import date
from typing import TYPE_CHECKING, Any

from tradebook.research.arrays import pd_ffill
from tradebook.research.simulator import Book

if TYPE_CHECKING:
    import pandas as pd

FILL_COLUMNS = ["date", "symbol", "side", "qty", "price", "kind", "reason", "confidence", "decision_price",
                "commission", "reference_price"]
REJECTION_COLUMNS = ["date", "symbol", "side", "qty", "kind", "rule", "code", "detail"]


class BacktestResult:
    """Fills, gate rejections, round trips, the daily equity curve and headline statistics.

    Each table is computed from the finished book the first time it is read, so a
    caller that only needs the trades (the parity check) pays for nothing else.
    """

    def __init__(self, book: Book, cash: float):
        self.book, self.cash = book, cash
        self.indicators: "pd.DataFrame | None" = None  # the strategy's indicator table, for signal plots
        self.closes: "pd.DataFrame | None" = None      # symbol, date, close: any strategy's signal plot
        self.rsi_levels: tuple[float, ...] = ()           # entry / exit RSI levels drawn on those plots
        self.strategy = ""                                # the strategy's label
        self.strategy_errors: list[tuple[date, str]] = []  # sessions a StrategyError kept from trading

    @classmethod
    def build(cls, book: Book, cash: float) -> "BacktestResult":
        return cls(book, cash)

    @cached_property
    def fills(self) -> "pd.DataFrame":
        """FILL_COLUMNS, in execution order."""
        return _frame(self.book.fills, FILL_COLUMNS)

    @cached_property
    def rejections(self) -> "pd.DataFrame":
        """REJECTION_COLUMNS: the orders the gate refused."""
        return _frame(self.book.rejections, REJECTION_COLUMNS)

    @cached_property
    def equity(self) -> "pd.DataFrame":
        """Index date: cash, holdings, equity, drawdown, exposure."""
        return equity_curve(self.book, self.cash)

    @cached_property
    def round_trips(self) -> "pd.DataFrame":
        return round_trips(self.fills)

    @cached_property
    def stats(self) -> dict[str, Any]:
        return {**statistics(self.equity, self.round_trips, self.fills, self.rejections),
                **frictions_summary(self.fills, self.book.freeze)}

    def trades(self) -> list[tuple[date, str, str, float, float]]:
        """(date, symbol, side, qty, price) per fill, sorted: the parity record."""
        return sorted((d.item(), s, side, float(q), float(p)) for d, s, side, q, p, *_ in self.book.fills)

    def tables(self) -> dict[str, "pd.DataFrame"]:
        import pandas as pd

        stats = pd.DataFrame({"value": self.stats}).rename_axis("statistic")
        by_code = (self.rejections.groupby(["rule", "code"]).size().rename("rejections").reset_index()
                   if len(self.rejections) else pd.DataFrame(columns=["rule", "code", "rejections"]))
        return {"statistics": stats, "round trips": self.round_trips, "fills": self.fills,
                "gate rejections by reason": by_code}

    def stats_table(self) -> "pd.DataFrame":
        """The statistics as readable (label, value) rows."""
        import pandas as pd

        s = self.stats
        rows = [("period", f"{s['start']} → {s['end']} ({s['sessions']:,} sessions)"),
                ("equity", f"{s['start_equity']:,.0f} → {s['end_equity']:,.0f}"),
                ("total return", f"{s['total_return_pct']:+.2f}%"), ("CAGR", f"{s['cagr_pct']:+.2f}%"),
                ("volatility (annualised)", f"{s['volatility_pct']:.2f}%"), ("Sharpe (rf = 0)", f"{s['sharpe']:.2f}"),
                ("max drawdown", f"{s['max_drawdown_pct']:.2f}%"), ("average exposure", f"{s['avg_exposure_pct']:.1f}%"),
                ("round trips", f"{s['round_trips']:,}"), ("win rate", f"{s['win_rate_pct']:.1f}%"),
                ("average trade", f"{s['avg_trade_pct']:+.2f}%"), ("average holding", f"{s['avg_days_held']:.1f} days"),
                ("realized P&L", f"{s['realized_pnl']:+,.2f}"), ("fills", f"{s['fills']:,}"),
                ("gate rejections", f"{s['rejections']:,}"),
                ("costs (commission + spread/slippage)", f"{s['commission']:,.2f} + {s['spread_slippage']:,.2f}"),
                ("stop-loss / profit-target exits", f"{s['stop_exits']:,} / {s['target_exits']:,}"),
                ("breaker freeze", s["frozen"] or "none")]
        return pd.DataFrame(rows, columns=["statistic", "figure"])

    @property
    def failed_everywhere(self) -> bool:
        """The strategy failed on every session: nothing here is the strategy's."""
        return bool(self.strategy_errors) and len(self.strategy_errors) >= int(self.stats["sessions"])

    def failure_note(self) -> str | None:
        """One plain sentence when the strategy failed on some sessions (None when it never did)."""
        if not self.strategy_errors:
            return None
        failed, sessions = len(self.strategy_errors), int(self.stats["sessions"])
        day, message = self.strategy_errors[0]
        what = (f"every session ({sessions} of {sessions}): nothing was traded, so there are no figures to show"
                if self.failed_everywhere else f"{failed} of {sessions} sessions; those traded nothing, so the "
                "figures below are not the strategy's")
        return f"the strategy failed on {what}. First, {day}: {message}"

    def by_exit_reason(self) -> "pd.DataFrame":
        """Round trips grouped by why they ended."""
        t = self.round_trips
        return (t.groupby("exit_reason", as_index=False)
                 .agg(trades=("pnl", "size"), win_rate=("pnl", lambda p: float((p > 0).mean())),
                      avg_return_pct=("return_pct", "mean"), pnl=("pnl", "sum"), avg_days=("days", "mean"))
                 .sort_values("trades", ascending=False))

    def show(self, section: str = "summary", **kw: Any) -> None:
        """Display a section in a notebook: summary | equity | trades | rejections | signals (symbol=, year=)."""
        from IPython.display import Image, Markdown, display

        from tradebook.research import figures
        from tradebook.style import png, style

        if section == "summary":
            failure = self.failure_note()
            if failure:   # first and plainly, as `tradebook backtest` does
                display(Markdown(f"**Strategy failed:** {failure}"))
            display(Markdown(self.summary()))
            display(style(self.stats_table()))
        elif section == "equity":
            display(Image(png(figures.backtest_equity_figure(self))))
        elif section == "trades":
            if not len(self.round_trips):
                display(Markdown("**No round trips** in this period."))
                return
            display(Image(png(figures.trade_returns_figure(self))))
            display(style(self.by_exit_reason()))
            display(Markdown("Latest round trips:"))
            display(style(self.round_trips.iloc[::-1].head(kw.get("rows", 15))))
        elif section == "rejections":
            table = self.tables()["gate rejections by reason"]
            display(style(table) if len(table) else Markdown("**No gate rejections** in this period."))
        elif section == "signals":
            display(Image(png(figures.signals_figure(self, kw.get("symbol", "AAPL"), kw.get("year")))))
        else:
            raise ValueError(f"unknown backtest section {section!r}")

    def summary(self) -> str:
        s = self.stats
        return (f"{s['start']} → {s['end']}: equity {s['start_equity']:,.0f} → {s['end_equity']:,.0f} "
                f"({s['total_return_pct']:+.1f}%, CAGR {s['cagr_pct']:+.1f}%, max drawdown "
                f"{s['max_drawdown_pct']:.1f}%, Sharpe {s['sharpe']:.2f}); {s['round_trips']} round trips, "
                f"win rate {s['win_rate_pct']:.0f}%, {s['fills']} fills, {s['rejections']} gate rejections; costs "
                f"{s['commission'] + s['spread_slippage']:,.0f}, {s['stop_exits']} stops, {s['target_exits']} targets"
                + (f"; FROZEN {s['frozen']}" if s["frozen"] else ""))


def _frame(rows: list[tuple], columns: list[str]) -> "pd.DataFrame":
    import pandas as pd

    frame = pd.DataFrame(rows, columns=columns)
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    return frame


def equity_curve(book: Book, cash: float) -> "pd.DataFrame":
    """Daily cash, holdings value, equity, drawdown and gross exposure, rebuilt from the fills."""
    import numpy as np
    import pandas as pd

    m = book.market
    start, end = book.span
    delta = np.zeros(m.close.shape)
    flow = np.zeros(len(m.dates))
    if book.fills:
        when = np.searchsorted(m.dates, np.array([f[0] for f in book.fills], dtype="datetime64[D]"))
        col = np.array([m.symbols.index(f[1]) for f in book.fills])
        signed = np.array([f[3] if f[2] == "buy" else -f[3] for f in book.fills], dtype=float)
        np.add.at(delta, (when, col), signed)
        np.add.at(flow, when, -signed * np.array([f[4] for f in book.fills], dtype=float)
                  - np.array([f[9] for f in book.fills], dtype=float))
    qty = np.cumsum(delta, axis=0)[start:end]
    held = np.nan_to_num(qty * pd_ffill(m.close)[start:end])
    cash_path = cash + np.cumsum(flow)[start:end]
    equity = cash_path + held.sum(axis=1)
    peak = np.maximum.accumulate(equity) if len(equity) else equity
    return pd.DataFrame({"cash": cash_path, "holdings": held.sum(axis=1), "equity": equity,
                         "drawdown": equity / peak - 1.0, "exposure": np.abs(held).sum(axis=1) / equity},
                        index=pd.Index(pd.to_datetime(m.dates[start:end]).date, name="date"))


def round_trips(fills: "pd.DataFrame") -> "pd.DataFrame":
    """Flat-to-flat trades per symbol: entry/exit dates, average prices, P&L, exit reason."""
    import pandas as pd

    out: list[tuple] = []
    open_: dict[str, Any] = {}
    names = ("date", "symbol", "side", "qty", "price", "reason", "confidence", "commission")
    columns = [fills[c].tolist() for c in names]
    for day, symbol, side, qty, price, reason, confidence, commission in zip(*columns):
        trip = open_.get(symbol)
        if trip is None:
            trip = open_[symbol] = {"entry_date": day, "qty": 0.0, "max_qty": 0.0, "cost": 0.0, "proceeds": 0.0,
                                    "sold": 0.0, "confidence": confidence}
        if side == "buy":
            trip["qty"] += qty
            trip["cost"] += qty * price + commission
            trip["max_qty"] = max(trip["max_qty"], trip["qty"])
        else:
            trip["qty"] -= qty
            trip["proceeds"] += qty * price - commission
            trip["sold"] += qty
        if abs(trip["qty"]) < 1e-9:
            del open_[symbol]
            sold = max(trip["sold"], 1e-12)
            out.append((symbol, trip["entry_date"], day, trip["max_qty"], trip["cost"] / sold,
                        trip["proceeds"] / sold, trip["proceeds"] - trip["cost"],
                        (trip["proceeds"] / trip["cost"] - 1.0) * 100 if trip["cost"] else 0.0,
                        (day - trip["entry_date"]).days, str(reason).split(":")[0], trip["confidence"]))
    columns = ["symbol", "entry_date", "exit_date", "qty", "entry_price", "exit_price", "pnl", "return_pct",
               "days", "exit_reason", "confidence"]
    return pd.DataFrame(out, columns=columns)


def statistics(equity: "pd.DataFrame", trips: "pd.DataFrame", fills: "pd.DataFrame",
               rejections: "pd.DataFrame") -> dict[str, Any]:
    """Headline numbers: returns, risk, trade quality, gate activity."""
    import numpy as np

    eq = equity["equity"].to_numpy()
    if len(eq) < 2:
        eq = np.array([eq[0], eq[0]]) if len(eq) else np.array([0.0, 0.0])
    daily = np.diff(eq) / eq[:-1]
    years = max(len(eq) / 252.0, 1e-9)
    vol = float(np.std(daily, ddof=1)) if len(daily) > 1 else 0.0
    wins = trips["pnl"] > 0
    return {
        "start": equity.index[0] if len(equity) else None, "end": equity.index[-1] if len(equity) else None,
        "sessions": len(equity), "start_equity": float(eq[0]), "end_equity": float(eq[-1]),
        "total_return_pct": float(eq[-1] / eq[0] - 1) * 100 if eq[0] else 0.0,
        "cagr_pct": float((eq[-1] / eq[0]) ** (1 / years) - 1) * 100 if eq[0] > 0 and eq[-1] > 0 else 0.0,
        "volatility_pct": vol * math.sqrt(252) * 100,
        "sharpe": float(np.mean(daily)) / vol * math.sqrt(252) if vol > 0 else 0.0,
        "max_drawdown_pct": float(equity["drawdown"].min() * 100) if len(equity) else 0.0,
        "avg_exposure_pct": float(equity["exposure"].mean() * 100) if len(equity) else 0.0,
        "round_trips": len(trips), "win_rate_pct": float(wins.mean() * 100) if len(trips) else 0.0,
        "avg_trade_pct": float(trips["return_pct"].mean()) if len(trips) else 0.0,
        "avg_days_held": float(trips["days"].mean()) if len(trips) else 0.0,
        "realized_pnl": float(trips["pnl"].sum()), "fills": len(fills), "rejections": len(rejections),
    }


def frictions_summary(fills: "pd.DataFrame", freeze: Any) -> dict[str, Any]:
    """BT-1 in the result: what costs took, how many stops and targets fired, whether a breaker froze it."""
    reason = fills["reason"].astype(str)
    slip = ((fills["price"] - fills["reference_price"]).abs() * fills["qty"]).sum() if len(fills) else 0.0
    return {"commission": float(fills["commission"].sum()) if len(fills) else 0.0,
            "spread_slippage": float(slip),
            "stop_exits": int(reason.str.startswith("STOP_LOSS").sum()),
            "target_exits": int(reason.str.startswith("PROFIT_TARGET").sum()),
            "frozen": f"{freeze.day} {freeze.code}: {freeze.reason}" if freeze is not None else None}


def compare(results: "dict[str, BacktestResult]") -> "pd.DataFrame":
    """Headline statistics side by side, one column per named result."""
    import pandas as pd

    return pd.DataFrame({name: r.stats_table().set_index("statistic")["figure"] for name, r in results.items()}
                        ).reset_index()


def show_compare(results: "dict[str, BacktestResult]") -> None:
    """Display ``compare(results)`` as a styled table in a notebook."""
    from IPython.display import display

    from tradebook.style import style

    display(style(compare(results)))
