"""The backtest engine: bars as arrays, a book of cash and positions, one tight session loop.

Each session: pending orders fill at the open of their symbol's next bar (through
the gate when asked, exactly as the execute phase builds its inputs), then the
rules look at the close and queue orders. ``tradebook.research.backtest`` holds the rule
sets and turns a finished ``Book`` into tables and statistics.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol, Sequence

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from tradebook.params import Params

NY = "America/New_York"


@dataclass
class Market:
    """Bars as [session, symbol] arrays on the union of dates (NaN where a symbol has no bar)."""

    dates: "np.ndarray"           # datetime64[D], sorted
    symbols: list[str]
    open: "np.ndarray"
    close: "np.ndarray"
    has_bar: "np.ndarray"         # bool
    rows: list["np.ndarray"]      # per symbol: the session indices of its bars, in order
    low: "np.ndarray | None" = None
    high: "np.ndarray | None" = None

    @classmethod
    def from_bars(cls, bars: "pd.DataFrame") -> "Market":
        """Build from long bars (symbol, date, open, close, ...), sorted by symbol then date."""
        import numpy as np
        import pandas as pd

        day = to_days(bars["date"])
        col, uniques = pd.factorize(bars["symbol"])
        symbols = [str(s) for s in uniques]
        dates = np.unique(day)
        row = np.searchsorted(dates, day)
        shape = (len(dates), len(symbols))
        arrays = {}
        for name in ("open", "close", "low", "high"):
            source = name if name in bars.columns else ("open" if name == "low" else "close")
            arrays[name] = np.full(shape, np.nan)
            arrays[name][row, col] = bars[source].to_numpy(dtype=float)
        if "low" not in bars.columns or "high" not in bars.columns:  # no range: the body is all we know
            arrays["low"] = np.fmin(arrays["open"], arrays["close"])
            arrays["high"] = np.fmax(arrays["open"], arrays["close"])
        has_bar = np.zeros(shape, dtype=bool)
        has_bar[row, col] = True
        rows = [row[col == j] for j in range(len(symbols))]
        return cls(dates, symbols, arrays["open"], arrays["close"], has_bar, rows, arrays["low"], arrays["high"])

    def scatter(self, long_values: "np.ndarray") -> "np.ndarray":
        """Put a per-bar column (long order: symbol, then date) into a [session, symbol] array."""
        import numpy as np

        dtype = long_values.dtype
        out = np.zeros(self.has_bar.shape, dtype=dtype) if dtype.kind == "b" else np.full(self.has_bar.shape, np.nan)
        start = 0
        for j, r in enumerate(self.rows):
            out[r, j] = long_values[start:start + len(r)]
            start += len(r)
        return out


@dataclass(slots=True)
class Order:
    """An order queued after a close for the next open of its symbol."""

    col: int
    side: str
    qty: float | None             # None: sell the whole position at fill time
    reason: str
    decided: int                  # session index of the decision close
    confidence: float | None = None
    kind: str = "ENTRY"


class Rules(Protocol):
    def decide(self, t: int, book: "Book") -> Sequence[Order]: ...


@dataclass
class Book:
    """Cash, positions and the record of what happened; the rules read it, the engine writes it."""

    market: Market
    cash: float
    qty: "np.ndarray"
    entry_session: dict[int, int] = field(default_factory=dict)
    avg_price: dict[int, float] = field(default_factory=dict)
    fills: list[tuple] = field(default_factory=list)
    rejections: list[tuple] = field(default_factory=list)
    span: tuple[int, int] = (0, 0)  # the sessions simulated: [start, end)
    freeze: Any = None              # research.frictions.Freeze once a breaker froze the run
    intents: list[tuple] = field(default_factory=list)  # (decision date, symbol, side, qty, kind): decide's output

    def equity_at_close(self, t: int, close_ff: "np.ndarray") -> float:
        held = self.qty != 0
        return self.cash + float((self.qty[held] * close_ff[t, held]).sum()) if held.any() else self.cash

    def fill(self, t: int, order: Order, qty: float, price: float, commission: float = 0.0,
             reference: float | None = None) -> None:
        """Book a fill at ``price`` (costs included) plus ``commission``; ``reference`` is the pre-cost price."""
        signed = qty if order.side == "buy" else -qty
        self.cash -= signed * price + commission
        before = self.qty[order.col]
        self.qty[order.col] = after = 0.0 if abs(before + signed) < 1e-9 else before + signed
        if before == 0:
            self.entry_session[order.col] = t
        elif after == 0:
            self.entry_session.pop(order.col, None)
            self.avg_price.pop(order.col, None)
        if order.side == "buy" and after:
            self.avg_price[order.col] = (before * self.avg_price.get(order.col, 0.0) + qty * price) / after
        m = self.market
        self.fills.append((m.dates[t], m.symbols[order.col], order.side, qty, price, order.kind,
                           order.reason, order.confidence, float(m.close[order.decided, order.col]),
                           commission, price if reference is None else reference))


# --- the engine -----------------------------------------------------------------------------
def simulate(market: Market, rules: Rules, *, cash: float, params: "Params | None" = None,
             use_gate: bool = False, start: int = 0, end: int | None = None, frictions: Any = None) -> Book:
    """Walk sessions ``start..end-1``: fill pending orders at the open, stops and targets on the bar,
    breakers on the close, then let the rules decide (``frictions``: research.frictions.Frictions)."""
    import numpy as np

    book = Book(market, float(cash), np.zeros(len(market.symbols)))
    gate = GateAdapter(market, params) if use_gate else None
    if use_gate and params is None:
        raise ValueError("use_gate needs params (the gate limits)")
    pending: list[Order] = []
    last = len(market.dates) if end is None else end
    close_ff = pd_ffill(market.close) if frictions is not None else None
    for t in range(start, last):
        if book.freeze is not None:
            continue  # frozen: nothing is decided or filled again (CTL-2: freezes never auto-clear)
        if pending:
            pending = _fill_at_open(t, pending, book, gate, frictions)
        if frictions is not None:
            _stops_and_breakers(t, book, frictions, close_ff)
            if book.freeze is not None:
                continue
        new = rules.decide(t, book)
        if new:
            pending.extend(new)
            book.intents += [(market.dates[t].item(), market.symbols[o.col], o.side,
                              float(book.qty[o.col]) if o.qty is None else float(o.qty), o.kind) for o in new]
    book.span = (start, last)
    return book


def _stops_and_breakers(t: int, book: Book, frictions: Any, close_ff: "np.ndarray") -> None:
    """BT-1 on session ``t``: stop / target exits on the day's range, then the breakers on the close."""
    m = book.market
    for col, reference, reason in frictions.triggered(t, book, m.low, m.high):
        qty = float(book.qty[col])
        price = frictions.fill_price("sell", reference)
        order = Order(col, "sell", None, reason, t, kind="EXIT")
        book.fill(t, order, qty, price, frictions.commission(qty, price), reference)
    book.freeze = frictions.breaker(m.dates[t].item(), book.equity_at_close(t, close_ff))


def _fill_at_open(t: int, pending: list[Order], book: Book, gate: "GateAdapter | None",
                  frictions: Any = None) -> list[Order]:
    """Fill the orders whose symbol trades at ``t``; exits first, then entries by confidence."""
    m = book.market
    ready = [o for o in pending if m.has_bar[t, o.col]]
    if not ready:
        return pending
    ready.sort(key=lambda o: (o.side != "sell", -(o.confidence or 0.0)))
    run = gate.start(t, book) if gate else None
    for order in ready:
        price = float(m.open[t, order.col])
        qty = float(book.qty[order.col]) if order.qty is None else float(order.qty)
        if qty <= 0:
            continue
        if run is not None:
            rejection = gate.check(run, t, order, qty, price)
            if rejection is not None:
                book.rejections.append((m.dates[t], m.symbols[order.col], order.side, qty, order.kind,
                                        rejection.rule, rejection.code, dict(rejection.detail)))
                continue
        if frictions is None:
            book.fill(t, order, qty, price)
        else:
            paid = frictions.fill_price(order.side, price)
            book.fill(t, order, qty, paid, frictions.commission(qty, paid), price)
    return [o for o in pending if not m.has_bar[t, o.col]]


class GateAdapter:
    """Builds the execute phase's gate inputs for a backtest session (open + exit window start)."""

    def __init__(self, market: Market, params: "Params"):
        import numpy as np
        from zoneinfo import ZoneInfo

        from tradebook.safety.gate import GateContext

        self.m, self.p, self.tz = market, params, ZoneInfo(NY)
        self.close_ff = pd_ffill(market.close)
        days = market.dates
        weekdays = np.arange(days[0], days[-1] + 1, dtype="datetime64[D]")
        weekdays = weekdays[np.is_busday(weekdays)]
        holidays = frozenset(d.item() for d in np.setdiff1d(weekdays, days))
        names = {f.name for f in fields(GateContext)}
        self.extra: dict[str, Any] = {"non_trading_days": holidays} if "non_trading_days" in names else {}
        self.corr = rolling_correlation(self.close_ff, params.correlation_lookback_days)
        self.last_order_at: dict[str, datetime] = {}

    def _at(self, t: int, clock: time, minutes: int = 0) -> datetime:
        day = self.m.dates[t].item()
        return datetime.combine(day, clock, self.tz) + timedelta(minutes=minutes)

    def start(self, t: int, book: Book):
        """A GateRun for session ``t``: portfolio at the open, quotes, correlations as of t-1."""
        import numpy as np

        from tradebook.broker.base import Quote
        from tradebook.safety.gate import GateContext, GateRun
        from tradebook.safety.portfolio_view import Holding, PortfolioView

        m, p = self.m, self.p
        price = np.where(m.has_bar[t], m.open[t], self.close_ff[t - 1] if t else np.nan)
        held = np.flatnonzero(book.qty)
        holdings = {m.symbols[j]: Holding(float(book.qty[j]), float(price[j])) for j in held}
        equity = book.cash + sum(h.value for h in holdings.values())
        view = PortfolioView(equity, book.cash, holdings, p.symbol_tiers, p.symbol_sectors)
        now = self._at(t, time(9, 30), p.exit_window_start_min)
        half = p.sim.spread_bps / 2e4
        quotes = {m.symbols[j]: Quote(m.symbols[j], m.open[t, j] * (1 - half), m.open[t, j] * (1 + half), now,
                                      day_open=float(m.open[t, j]),
                                      prev_close=float(self.close_ff[t - 1, j]) if t else None)
                  for j in np.flatnonzero(m.has_bar[t])}
        corr = {}
        if t and len(held):
            c = self.corr[t - 1]
            for i, a in enumerate(m.symbols):
                for j in held:
                    if i != j and not np.isnan(c[i, j]):
                        corr[(a, m.symbols[j])] = corr[(m.symbols[j], a)] = float(c[i, j])
        ctx = GateContext(now=now, params=p, quotes=quotes, last_order_at=dict(self.last_order_at),
                          correlations=corr, **self.extra)
        return GateRun(view, ctx)

    def check(self, run: Any, t: int, order: Order, qty: float, price: float):
        """Gate one order; returns the rejecting verdict, or None when it may fill."""
        from tradebook.safety.gate import ProposedOrder

        symbol = self.m.symbols[order.col]
        proposed = ProposedOrder(
            intent_id=f"bt-{t}-{symbol}-{order.side}", symbol=symbol, side=order.side, qty=qty,  # type: ignore[arg-type]  # str holds a Literal value
            price=price, kind=order.kind, order_type="limit", limit_price=price,  # type: ignore[arg-type]  # str holds a Literal value
            confidence=order.confidence, decision_price=float(self.m.close[order.decided, order.col]),
            decision_time=self._at(order.decided, time(16, 0), self.p.schedule.decide_after_close_min))
        result = run.check(proposed)
        if result.passed:
            self.last_order_at[symbol] = run.ctx.now
            return None
        return result.rejection


def rolling_correlation(close: "np.ndarray", window: int) -> "np.ndarray":
    """[session, i, j] correlation of daily returns over the last ``window`` sessions (NaN if incomplete)."""
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"):
        r = close[1:] / close[:-1] - 1.0
    r = np.vstack([np.full((1, close.shape[1]), np.nan), r])
    ok = ~np.isnan(r)
    x = np.where(ok, r, 0.0)
    both = ok[:, :, None] & ok[:, None, :]

    def wsum(a: "np.ndarray") -> "np.ndarray":
        c = np.cumsum(a, axis=0)
        out = c.copy()
        out[window:] = c[window:] - c[:-window]
        return out

    n = wsum(both.astype(float))
    sx = wsum(x[:, :, None] * both)
    sy = wsum(x[:, None, :] * both)
    sxy = wsum(x[:, :, None] * x[:, None, :])
    sxx = wsum(x[:, :, None] ** 2 * both)
    syy = wsum(x[:, None, :] ** 2 * both)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sy / n
        corr = cov / np.sqrt((sxx - sx ** 2 / n) * (syy - sy ** 2 / n))
    corr[n < window] = np.nan
    return corr


def to_days(values: "pd.Series") -> "np.ndarray":
    """datetime.date objects (or datetimes) as datetime64[D], fast (numpy's own object path is slow)."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values):
        return values.to_numpy().astype("datetime64[D]")
    epoch = 719163  # date(1970, 1, 1).toordinal()
    ordinals = np.array([d.toordinal() for d in values.tolist()], dtype=np.int64)
    return (ordinals - epoch).astype("datetime64[D]")


def pd_ffill(values: "np.ndarray") -> "np.ndarray":
    """Forward-fill NaNs down each column (last known close for sessions without a bar)."""
    import pandas as pd

    return pd.DataFrame(values).ffill().to_numpy()
