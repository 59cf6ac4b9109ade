"""The reference swing strategy: signals on constructed price series, and on the demo window."""
from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from tradebook.strategies import swing_rules as strategy
from tradebook.marketdata import load_bars
from tradebook.params import Params
from tradebook.strategies.swing import SwingParams as StrategyParams

SP = StrategyParams()


def make_bars(closes, symbol="TEST", start=date(2010, 1, 4)) -> pd.DataFrame:
    """Long-format daily bars (weekdays) with the given closes."""
    closes = np.asarray(closes, dtype=float)
    days = pd.bdate_range(start, periods=len(closes)).date
    return pd.DataFrame({"symbol": symbol, "date": days, "open": closes, "high": closes * 1.01,
                         "low": closes * 0.99, "close": closes, "volume": 1e6})


def uptrend(n=160, rate=0.003):
    return list(100 * (1 + rate) ** np.arange(n))


def with_dip(series, *drops):
    out = list(series)
    for d in drops:
        out.append(out[-1] * (1 - d))
    return out


def test_generate_when_sharp_dip_in_uptrend_then_entry_with_confidence_and_reason():
    bars = make_bars(with_dip(uptrend(), 0.02, 0.02))
    signals = strategy.generate(bars, SP, held={})
    assert signals.exits == []
    (entry,) = signals.entries
    assert entry.symbol == "TEST"
    assert 0.0 < entry.confidence <= 1.0
    assert entry.price == pytest.approx(bars["close"].iloc[-1])
    assert entry.asof == bars["date"].iloc[-1]
    assert entry.reason.startswith("PULLBACK: RSI2")


def test_generate_when_dip_in_downtrend_then_no_entry():
    falling = list(100 * 0.997 ** np.arange(160))
    signals = strategy.generate(make_bars(with_dip(falling, 0.02, 0.02)), SP, held={})
    assert signals.entries == [] and signals.exits == []


def test_generate_when_steady_uptrend_without_pullback_then_no_entry():
    assert strategy.generate(make_bars(uptrend()), SP, held={}).entries == []


def test_generate_when_deeper_pullback_then_higher_confidence():
    shallow = strategy.generate(make_bars(with_dip(uptrend(), 0.004, 0.004)), SP, held={}).entries
    deep = strategy.generate(make_bars(with_dip(uptrend(), 0.03, 0.03)), SP, held={}).entries
    assert shallow and deep
    assert deep[0].confidence > shallow[0].confidence


def test_generate_when_stronger_trend_then_higher_confidence():
    weak = strategy.generate(make_bars(with_dip(uptrend(rate=0.001), 0.02, 0.02)), SP, held={}).entries
    strong = strategy.generate(make_bars(with_dip(uptrend(rate=0.004), 0.02, 0.02)), SP, held={}).entries
    assert weak and strong
    assert strong[0].confidence > weak[0].confidence


def test_exit1_when_held_and_close_falls_below_trend_sma_then_trend_break_exit():
    """EXIT-1 (decide side): trend invalidation produces a planned exit with its reason."""
    crash = with_dip(uptrend(), *[0.04] * 8)
    bars = make_bars(crash)
    signals = strategy.generate(bars, SP, held={"TEST": bars["date"].iloc[-5]})
    (exit_,) = signals.exits
    assert exit_.code == strategy.EXIT_TREND
    assert exit_.reason.startswith("TREND_BREAK: close") and "SMA100" in exit_.reason
    assert exit_.urgency == "normal" and exit_.asof == bars["date"].iloc[-1]
    assert signals.entries == []


def test_exit1_when_held_and_short_rsi_above_exit_level_then_rsi_exit():
    """EXIT-1: the bounce is done (RSI above rsi_exit) -> exit."""
    bounce = with_dip(uptrend(), 0.02, 0.02, -0.03, -0.03)
    bars = make_bars(bounce)
    signals = strategy.generate(bars, SP, held={"TEST": bars["date"].iloc[-3]})
    assert [e.code for e in signals.exits] == [strategy.EXIT_RSI]


def test_exit1_when_held_max_hold_days_then_time_exit_and_no_add_on():
    """EXIT-1: a position held max_hold_days sessions exits even while the entry rule fires."""
    bars = make_bars(with_dip(uptrend(), 0.02, 0.02))
    entered = bars["date"].iloc[-1 - SP.max_hold_days]
    signals = strategy.generate(bars, SP, held={"TEST": entered})
    assert [e.code for e in signals.exits] == [strategy.EXIT_MAX_HOLD]
    assert f"held {SP.max_hold_days} sessions" in signals.exits[0].reason
    assert signals.entries == []


def test_pos1_when_held_entry_date_unknown_then_no_time_exit_but_entry_is_add_on_candidate():
    """REC-2/POS-1: EXTERNAL positions (entry unknown) never get the time exit; decide filters add-ons."""
    bars = make_bars(with_dip(uptrend(), 0.02, 0.02))
    signals = strategy.generate(bars, SP, held={"TEST": None})
    assert signals.exits == []
    assert [e.symbol for e in signals.entries] == ["TEST"]


def test_generate_when_too_little_history_then_no_signals():
    short = make_bars(with_dip(uptrend(n=60), 0.03, 0.03))
    assert strategy.generate(short, SP, held={"TEST": None}) == strategy.Signals([], [])
    assert strategy.generate(short.iloc[0:0], SP, held={}) == strategy.Signals([], [])


def test_generate_when_several_symbols_then_entries_sorted_by_confidence():
    bars = pd.concat([make_bars(with_dip(uptrend(), 0.01, 0.01), "AAA"),
                      make_bars(with_dip(uptrend(), 0.03, 0.03), "BBB")], ignore_index=True)
    entries = strategy.generate(bars, SP, held={}).entries
    assert [e.symbol for e in entries] == ["BBB", "AAA"]


def test_res1_when_history_truncated_then_signals_equal_full_history_indicators():
    """RES-1: indicators are causal, so decide (truncated bars) and the backtest (full bars) agree."""
    bars = load_bars(["AAPL", "IBM"])
    full = strategy.indicators(bars, SP).set_index(["symbol", "date"])
    seen: set[str] = set()
    for day in (date(2000, 9, 12), date(2003, 10, 24), date(2008, 10, 6), date(2011, 7, 27)):
        signals = strategy.generate(bars[bars["date"] <= day], SP, held={})
        expected = {s for s in ("AAPL", "IBM") if full.loc[(s, day), "entry"]}
        seen.update(expected)
        assert {e.symbol for e in signals.entries} == expected
        for e in signals.entries:
            assert e.confidence == pytest.approx(full.loc[(e.symbol, day), "confidence"])
    assert seen == {"AAPL", "IBM"}  # the chosen days do exercise entries for both


def test_indicators_when_computed_then_rsi_bounded_and_flags_consistent():
    table = strategy.indicators(load_bars(["MSFT"]), SP)
    rsi = table["rsi"].dropna()
    assert rsi.between(0, 100).all()
    assert not (table["entry"] & ~table["uptrend"]).any()
    assert table["confidence"].between(0, 1).all()
    assert not (table["exit_trend"] & table["uptrend"]).any()


def test_generate_when_demo_window_then_a_handful_of_entries_and_exits():
    """The default params trade a few times in the demo's 20 sessions from sim.start_date."""
    params = Params()
    bars = load_bars(params.symbols)
    days = sorted(d for d in bars["date"].unique() if d >= params.sim.start_date)[:20]
    held: dict[str, date] = {}
    entries = exits = 0
    for day in days:
        signals = strategy.generate(bars[bars["date"] <= day], StrategyParams(**params.strategy.params), held)
        for e in signals.exits:
            held.pop(e.symbol)
            exits += 1
        for e in signals.entries:
            if e.symbol not in held and e.confidence >= params.signal_threshold:
                held[e.symbol] = day + timedelta(days=1)
                entries += 1
    assert 3 <= entries <= 12
    assert exits >= 1

