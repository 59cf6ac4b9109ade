"""The backtest engine: bars as arrays, a book of cash and positions, one tight session loop.

Each session: pending orders fill at the open of their symbol's next bar (through
the gate when asked, exactly as the execute phase builds its inputs), then the
rules look at the close and queue orders. ``tradebook.research.backtest`` holds the rule
sets and turns a finished ``Book`` into tables and statistics; the live gate the
backtest may use is ``gate_adapter``, the array helpers ``arrays``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from tradebook.research.arrays import pd_ffill, to_days
from tradebook.research.gate_adapter import GateAdapter

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from tradebook.params import Params

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
