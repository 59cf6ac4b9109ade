"""BT-1: the backtest charges costs on every fill, simulates stops and targets on daily bars and
freezes on the account breakers, and reports all of it in the result."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tradebook.research import backtest
from tradebook.params import Params
from tradebook.research import EntrySignal, Signals, Strategy

DAYS = pd.bdate_range("2012-01-03", periods=12).date


class BuyOnce(Strategy):
    """Enter TEST on the first close only: everything after is the frictions' doing."""

    def history_days(self) -> int:
        return 1

    def generate(self, bars, held):
        last = bars.iloc[-1]
        if last["date"] != DAYS[0] or held:
            return Signals([], [])
        return Signals([EntrySignal("TEST", 0.9, float(last["close"]), "BUY_ONCE", last["date"])], [])


def _bars(opens, lows, highs, closes):
    return pd.DataFrame({"symbol": "TEST", "date": DAYS[:len(opens)], "open": opens, "high": highs, "low": lows,
                         "close": closes, "volume": 1e6})


def _flat(n, price=100.0):
    return [price] * n


def _params(**kw) -> Params:
    return Params.model_validate({"symbols": ["TEST"], "sim": {"fractionable": []}, **kw})


def _run(bars, **kw):
    return backtest.run_backtest(_params(**kw), strategy=BuyOnce(), bars=bars, use_gate=False)


def test_bt1_when_filling_then_half_spread_slippage_and_commission_are_paid():
    """BT-1: a buy pays (spread/2 + slippage) bps over the open plus commission; cash and equity agree."""
    bars = _bars(_flat(4), _flat(4, 99.0), _flat(4, 101.0), _flat(4))
    result = _run(bars, backtest={"spread_bps": 10, "slippage_bps": 5, "commission_per_share": 0.01,
                                  "commission_min": 1.0}, stop_loss_pct=0.5, profit_target_pct=None)
    fill = result.fills.iloc[0]
    assert fill["reference_price"] == 100.0 and fill["price"] == pytest.approx(100.0 * (1 + 10e-4))
    assert fill["qty"] == 40 and fill["commission"] == pytest.approx(1.0)          # 40 sh * 1c < $1 minimum
    held_value = 40 * 100.0
    assert result.equity["equity"].iloc[-1] == pytest.approx(100_000 - 40 * fill["price"] - 1.0 + held_value)
    assert result.stats["commission"] == pytest.approx(1.0)
    assert result.stats["spread_slippage"] == pytest.approx(40 * 100.0 * 10e-4)


def test_bt1_when_the_open_gaps_through_the_stop_then_the_stop_fills_at_the_open():
    """BT-1 stop on daily bars: a gap below the stop level fills at the (worse) open, less costs."""
    bars = _bars([100, 100, 90, 90], [99, 99, 88, 89], [101, 101, 91, 91], [100, 100, 90, 90])
    result = _run(bars, backtest={"spread_bps": 0, "slippage_bps": 0}, stop_loss_pct=0.05)
    sell = result.fills[result.fills["side"] == "sell"].iloc[0]
    assert (sell["date"], sell["price"]) == (DAYS[2], 90.0)
    assert sell["reason"].startswith("STOP_LOSS") and result.stats["stop_exits"] == 1


def test_bt1_when_the_low_touches_the_stop_then_the_stop_fills_at_the_stop_level():
    bars = _bars([100, 100, 99, 99], [99, 99, 94, 98], [101, 101, 100, 100], [100, 100, 96, 99])
    result = _run(bars, backtest={"spread_bps": 0, "slippage_bps": 0}, stop_loss_pct=0.05)
    sell = result.fills[result.fills["side"] == "sell"].iloc[0]
    assert (sell["date"], sell["price"]) == (DAYS[2], pytest.approx(95.0))


def test_bt1_when_the_high_reaches_the_target_then_the_target_fills_at_its_level():
    bars = _bars([100, 100, 104, 104], [99, 99, 103, 103], [101, 101, 111, 105], [100, 100, 105, 104])
    result = _run(bars, backtest={"spread_bps": 0, "slippage_bps": 0}, stop_loss_pct=0.05, profit_target_pct=0.10)
    sell = result.fills[result.fills["side"] == "sell"].iloc[0]
    assert (sell["date"], sell["price"], sell["reason"][:13]) == (DAYS[2], pytest.approx(110.0), "PROFIT_TARGET")
    assert result.stats["target_exits"] == 1


def test_bt1_brk1_when_a_day_loses_more_than_the_daily_limit_then_the_backtest_freezes_for_good():
    """BT-1 / BRK-1: a 2% account loss at a close freezes the run: no stop, no order after it."""
    closes = [100, 100, 40, 30, 20, 10]
    bars = _bars(closes, [c * 0.99 for c in closes], [c * 1.01 for c in closes], closes)
    result = _run(bars, backtest={"spread_bps": 0, "slippage_bps": 0}, stop_loss_pct=0.9,
                  strategy={"position_size_pct": 0.05})
    assert result.book.freeze is not None and result.book.freeze.code == "DAILY_LOSS"
    assert result.book.freeze.day == DAYS[2]
    assert result.fills["side"].tolist() == ["buy"]        # frozen: the position is carried, never sold
    assert "FROZEN" in result.summary() and "DAILY_LOSS" in result.stats["frozen"]
    assert result.equity["equity"].iloc[-1] == pytest.approx(result.equity["cash"].iloc[-1] + 49 * 10.0)


def test_bt1_when_frictions_off_then_fills_are_the_bare_open():
    bars = _bars(_flat(4), _flat(4, 99.0), _flat(4, 101.0), _flat(4))
    result = backtest.run_backtest(_params(), strategy=BuyOnce(), bars=bars, use_gate=False, frictions=False)
    assert result.fills["price"].tolist() == [100.0] and result.fills["commission"].tolist() == [0.0]


def test_bt1_when_swing_over_history_then_costs_and_stops_make_it_worse_than_frictionless():
    """BT-1: the honest backtest of the default strategy earns less than the flattering one."""
    honest = backtest.run_backtest(Params())
    flattering = backtest.run_backtest(Params(), frictions=False)
    assert honest.stats["commission"] + honest.stats["spread_slippage"] > 0
    assert honest.stats["stop_exits"] > 0
    assert honest.stats["end_equity"] < flattering.stats["end_equity"]
    assert np.isfinite(honest.equity["equity"]).all()
