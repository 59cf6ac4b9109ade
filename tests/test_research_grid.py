"""SPEC §7 sweep target / SWP-1: the vectorised SMA grid equals one-at-a-time reference runs, bit for bit."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradebook.research import backtest
from tradebook.marketdata import load_bars
from tradebook.research.grid import sma_grid, sma_pairs

SIZE, CASH = 10.0, 100_000.0


def one_at_a_time(bars: pd.DataFrame, symbol: str, fast: int, slow: int) -> tuple[float, int]:
    """(final equity, fills) of ``run_reference`` on one symbol and one pair: the reference."""
    frame = bars[bars["symbol"] == symbol].reset_index(drop=True)
    result = backtest.run_reference([symbol], fast=fast, slow=slow, size=SIZE, cash=CASH, bars=frame)
    return float(result.equity["equity"].iloc[-1]), len(result.book.fills)


def test_sweep_when_default_grid_then_174_pairs_fast_below_slow():
    """§7: fast 5..50 step 5, slow 20..200 step 10, fast < slow."""
    pairs = sma_pairs()
    assert len(pairs) == 174
    assert all(f < s for f, s in pairs) and (5, 20) in pairs and (50, 200) in pairs and (50, 50) not in pairs


def test_sweep_when_full_grid_on_four_tickers_then_final_values_identical_to_one_at_a_time_runs():
    """§7 / SWP-1: all 696 (pair, symbol) portfolios equal run_reference exactly (==, not approx)."""
    bars = load_bars(list(backtest.REFERENCE_SYMBOLS))
    grid = sma_grid(bars)
    assert len(grid) == 174 * 4
    mismatches = []
    for row in grid.itertuples(index=False):
        value, fills = one_at_a_time(bars, row.symbol, row.fast, row.slow)
        if value != row.final_value or fills != row.fills:
            mismatches.append((row.symbol, row.fast, row.slow, value, row.final_value, fills, row.fills))
    assert not mismatches, mismatches[:5]
    assert grid["fills"].sum() > 10_000  # real trading, not an agreement on empty books
    assert grid["final_value"].nunique() > 600


def test_sweep_when_exact_ties_and_cross_on_last_bar_then_grid_equals_reference():
    """§7: tie semantics (zero differences) and an unfilled cross on the last bar, as in the parity test."""
    closes = np.array([11.0, 10.5, 10.0, 9.5, 9.0, 9.0, 12.0, 12.0, 12.0, 12.0, 8.0, 8.0, 8.0, 8.0, 13.0] * 3)
    bars = _frame(closes)
    pairs = [(1, 2), (2, 4), (2, 3), (3, 5), (4, 9), (2, 45), (5, 60)]
    grid = sma_grid(bars, pairs)
    for row in grid.itertuples(index=False):
        assert (row.final_value, row.fills) == one_at_a_time(bars, "TEST", row.fast, row.slow), row


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.sampled_from([-2.0, -1.0, 0.0, 0.0, 1.0, 2.0, 0.5]), min_size=5, max_size=120),
       pairs=st.lists(st.tuples(st.integers(1, 12), st.integers(2, 30)).filter(lambda p: p[0] < p[1]),
                      min_size=1, max_size=6, unique=True))
def test_sweep_when_random_walks_with_plateaus_then_grid_equals_reference(steps, pairs):
    """§7: on random price paths with flat stretches (many exact ties) every pair matches run_reference."""
    closes = 50.0 + np.cumsum(steps)
    grid = sma_grid(_frame(closes), pairs)
    for row in grid.itertuples(index=False):
        assert (row.final_value, row.fills) == one_at_a_time(_frame(closes), "TEST", row.fast, row.slow), row


def test_sweep_when_no_pairs_then_clear_error():
    with pytest.raises(ValueError, match="at least one"):
        sma_grid(load_bars(["IBM"]), [])


def _frame(closes: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"symbol": "TEST", "date": pd.bdate_range("2012-01-02", periods=len(closes)).date,
                         "open": closes + 0.25, "high": closes + 1, "low": closes - 1, "close": closes,
                         "volume": 1.0})
