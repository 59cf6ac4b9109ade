"""SWP-1: reading the sweep table: best sets, heatmap, promotion of a set to params."""
from __future__ import annotations

import pandas as pd
import pytest

from tradebook.errors import ConfigError
from tradebook.research import views


def _rows() -> pd.DataFrame:
    sets = [(10, 50, 0.2), (10, 100, 0.9), (20, 50, -0.1), (20, 100, 0.4), (30, 100, None)]
    return pd.DataFrame({
        "fast": [f for f, _, _ in sets], "slow": [s for _, s, _ in sets], "sweep": "t",
        "key": [f"k{i}" for i in range(len(sets))], "params": [f'{{"fast": {f}, "slow": {s}}}' for f, s, _ in sets],
        "sharpe": [m for _, _, m in sets], "cagr_pct": 1.0, "final_equity": 1.0, "max_drawdown_pct": -1.0,
        "trades": 3, "rejections": 0, "costs": 0.0,
        "error": [None, None, None, None, "invalid params"]})


def test_swp1_when_top_sets_then_ordered_by_metric_without_failed_sets():
    top = views.top_sets(_rows(), "sharpe", 3)
    assert list(zip(top["fast"], top["slow"])) == [(10, 100), (20, 100), (10, 50)]
    assert list(top.columns[:2]) == ["fast", "slow"]


def test_swp1_when_heatmap_then_metric_by_two_parameters():
    grid = views.heatmap_table(_rows(), "fast", "slow", "sharpe")
    assert grid.loc[100, 10] == 0.9 and grid.loc[50, 20] == -0.1 and 30 not in grid.columns  # failed set left out
    with pytest.raises(ConfigError, match="not a swept parameter"):
        views.heatmap_table(_rows(), "fast", "trend", "sharpe")
    assert views.heatmap_figure(_rows(), "fast", "slow").axes


def test_swp1_when_promoting_a_swing_set_then_only_changed_params_keys_listed(make_params):
    params = make_params()
    assert params.strategy.use == "swing"
    change = views.promotion({"rsi_entry": 20.0, "max_hold_days": 15, "max_position_pct": 0.03}, params)
    assert change.to_dict("records") == [
        {"key": "strategy.params.rsi_entry", "current": 30.0, "proposed": 20.0},
        {"key": "max_position_pct", "current": params.max_position_pct, "proposed": 0.03}]
    switch = views.promotion({"fast": 10, "slow": 50}, params, "sma_cross")
    assert switch["key"].tolist()[0] == "strategy.use" and switch["proposed"].tolist()[0] == "sma_cross"
    assert "strategy.params.fast" in switch["key"].tolist()
    with pytest.raises(ConfigError, match="parity reference"):
        views.promotion({"fast": 10}, params, "sma_reference")


def test_swp1_when_choosing_a_set_then_best_by_default_or_by_key():
    assert views.chosen_set(_rows()) == {"fast": 10, "slow": 100}
    assert views.chosen_set(_rows(), key="k2") == {"fast": 20, "slow": 50}
    with pytest.raises(ConfigError, match="no finished set"):
        views.chosen_set(_rows(), key="k4")
