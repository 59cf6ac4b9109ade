"""The research backtest: same strategy and gate as the live phases, next-bar-open fills (RES-1)."""
from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from tradebook.research import backtest
from tradebook.strategies import swing_rules as strategy
from tradebook.research.arrays import rolling_correlation
from tradebook.research.simulator import Market
from tradebook.marketdata import load_bars
from tradebook.params import Params, load_params
from tradebook.strategies.swing import SwingParams


@pytest.fixture(scope="module")
def bars():
    return load_bars(["AAPL", "GOOG", "IBM", "MSFT"])


@pytest.fixture(scope="module")
def swing(bars):
    return backtest.run_strategy(Params(), bars=bars, frictions=False)  # costs/stops/breakers: test_backtest_frictions


CROSSING_CLOSES = [11.0, 10.5, 10.0, 9.5, 9.0, 9.0, 12.0, 12.0, 12.0, 12.0, 8.0, 8.0, 8.0, 8.0, 13.0]


def _bars(closes, symbol="TEST", opens=None):
    closes = np.asarray(closes, dtype=float)
    days = pd.bdate_range("2012-01-02", periods=len(closes)).date
    opens = closes + 0.5 if opens is None else np.asarray(opens, dtype=float)
    return pd.DataFrame({"symbol": symbol, "date": days, "open": opens, "high": np.maximum(opens, closes),
                         "low": np.minimum(opens, closes), "close": closes, "volume": 1.0})


def test_res1_when_sma_cross_on_constructed_series_then_fills_at_next_bar_open():
    """RES-1: a cross decided on bar i fills at bar i+1's open; a cross on the last bar never fills."""
    b = _bars(CROSSING_CLOSES)
    result = backtest.run_reference(["TEST"], fast=2, slow=4, size=5, bars=b)
    days = list(b["date"])
    # SMA(2)-SMA(4): up-cross at bar 6, a tie at bar 9 (ignored), down-cross at bar 10,
    # up-cross on the last bar (14) which has no next bar to fill on.
    assert result.trades() == [(days[7], "TEST", "buy", 5.0, 12.5), (days[11], "TEST", "sell", 5.0, 8.5)]
    assert result.round_trips["pnl"].tolist() == [pytest.approx(-20.0)]


def test_res1_when_swing_backtest_then_every_fill_is_the_next_open_after_its_decision(swing, bars):
    """RES-1: fills happen at the open of the session after the decision close."""
    opens = bars.set_index(["symbol", "date"])["open"]
    sample = swing.fills.iloc[:: max(len(swing.fills) // 50, 1)]
    for f in sample.itertuples():
        assert f.price == opens[(f.symbol, f.date)]
    assert (swing.fills["kind"].isin(["ENTRY", "ADD_ON", "EXIT"])).all()
    assert len(swing.round_trips) > 100


def test_res1_when_swing_backtest_then_entries_are_what_decide_would_generate(swing, bars):
    """RES-1: same strategy code as decide: each sampled entry is an EntrySignal on its decision day."""
    dates = np.array(sorted(bars["date"].unique()))
    entries = swing.fills[swing.fills["kind"] == "ENTRY"].iloc[::97]
    assert len(entries) >= 5
    for f in entries.itertuples():
        decided = dates[np.searchsorted(dates, f.date) - 1]
        signals = strategy.generate(bars[bars["date"] <= decided], SwingParams(), held={})
        match = [e for e in signals.entries if e.symbol == f.symbol]
        assert match, f"no entry signal for {f.symbol} on {decided}"
        assert match[0].confidence == pytest.approx(f.confidence)
        assert match[0].price == pytest.approx(f.decision_price)


def test_res1_when_swing_backtest_then_cash_accounting_matches_equity_curve(swing, bars):
    signed = np.where(swing.fills["side"] == "buy", 1.0, -1.0) * swing.fills["qty"]
    cash = Params().sim.starting_cash - float((signed * swing.fills["price"]).sum())
    held = swing.fills.assign(q=signed).groupby("symbol")["q"].sum()
    last = bars.groupby("symbol")["close"].last()
    expected = cash + float((held * last.reindex(held.index)).sum())
    assert swing.equity["equity"].iloc[-1] == pytest.approx(expected)
    assert swing.equity["drawdown"].max() <= 0.0
    assert swing.stats["end_equity"] == pytest.approx(expected)
    assert "round trips" in swing.summary()


def test_gate5_when_orders_exceed_max_notional_then_backtest_gate_rejects_them(bars, root):
    """GATE-5 in the backtest: the same gate as execute refuses every entry above max_order_notional."""
    params = load_params(root / "params" / "sim.yaml", {"max_order_notional": 1000})
    result = backtest.run_strategy(params, bars=bars, start=date(2010, 1, 1), end=date(2011, 12, 31))
    assert len(result.fills) == 0
    codes = result.tables()["gate rejections by reason"]
    assert set(codes["code"]) >= {"MAX_ORDER_NOTIONAL"}
    assert result.rejections["date"].min() >= date(2010, 1, 1)


def test_gate_when_disabled_then_no_rejections_and_at_least_as_many_fills(swing, bars):
    ungated = backtest.run_strategy(Params(), bars=bars, use_gate=False, frictions=False)
    assert len(ungated.rejections) == 0
    assert len(ungated.fills) >= len(swing.fills)
    assert len(swing.rejections) > 0  # the gate does bite on 13 years of history (gaps, caps)


def test_backtest_when_window_given_then_trades_only_inside_it(bars):
    result = backtest.run_strategy(Params(), bars=bars, start=date(2011, 7, 1), end=date(2011, 12, 30))
    assert result.equity.index[0] >= date(2011, 7, 1) and result.equity.index[-1] <= date(2011, 12, 30)
    assert result.fills["date"].between(date(2011, 7, 1), date(2011, 12, 30)).all()
    assert result.stats["start_equity"] == Params().sim.starting_cash


def test_rolling_correlation_when_compared_with_pandas_then_equal():
    rng = np.random.default_rng(3)
    close = np.cumprod(1 + rng.normal(0, 0.01, size=(200, 3)), axis=0)
    close[:30, 2] = np.nan  # a symbol listed later
    ours = rolling_correlation(close, 20)
    ref = pd.DataFrame(close).pct_change(fill_method=None).rolling(20).corr().to_numpy().reshape(200, 3, 3)
    mask = ~np.isnan(ref)
    assert np.allclose(ours[mask], ref[mask], atol=1e-9)
    assert np.isnan(ours[40, 0, 2]) and not np.isnan(ours[60, 0, 2])


def test_market_when_symbols_listed_at_different_dates_then_arrays_aligned(bars):
    m = Market.from_bars(bars)
    goog = m.symbols.index("GOOG")
    assert m.has_bar[:, goog].sum() == (bars["symbol"] == "GOOG").sum()
    assert np.isnan(m.close[0, goog]) and m.has_bar[0].sum() == 3


@pytest.mark.parametrize("start,end", [(date(2020, 1, 2), None), (date(2012, 1, 3), date(2011, 1, 3))])
def test_backtest_when_window_has_no_session_then_clear_error_not_a_zero_equity_result(bars, start, end):
    """BT-1: a window past the data (or --start after --end) is refused naming the range the bars
    cover; it used to print "None → None: equity 0 → 0" with a numpy warning and exit 0."""
    from tradebook.errors import ConfigError

    with pytest.raises(ConfigError, match=r"no session to trade .* the bars cover 2000-\d\d-\d\d → 2013-"):
        backtest.run_backtest(Params(), bars=bars, start=start, end=end)
