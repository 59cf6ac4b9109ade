"""CFG-1..3: params are validated at start; errors name the key and the file."""
from __future__ import annotations

from pathlib import Path

import pytest

from tradebook.errors import ConfigError
from tradebook.params import Params, load_params, parse_override

REPO = Path(__file__).resolve().parents[1]


def test_defaults_when_loaded_then_match_spec_table():
    """CFG-3: the safe defaults are the table in SPEC §6."""
    p = Params()
    assert (p.mode, p.max_position_pct, p.max_gross_exposure_pct) == ("sim", 0.05, 0.60)
    assert (p.max_order_notional, p.min_order_notional, p.allow_shorts) == (10_000, 50, False)
    assert (p.stale_signal_seconds, p.max_signal_age_hours, p.max_gap_pct) == (120, 24, 0.02)
    assert (p.max_slip_pct, p.spread_limit_bps, p.symbol_move_limit_pct) == (0.005, 50, 0.10)
    assert (p.orders_per_symbol_day, p.orders_per_day, p.orders_per_run) == (5, 200, 10)
    assert (p.daily_loss_pct, p.max_drawdown_pct, p.session_drawdown_pct) == (0.02, 0.10, 0.01)
    assert (p.stop_loss_pct, p.buying_power_use_pct, p.sector_cap_pct) == (0.05, 0.95, 0.30)
    assert (p.tier_caps["TIER3"], p.cap_buffer_pct, p.signal_threshold) == (0.30, 0.05, 0.1)
    assert (p.exit_window_start_min, p.exit_window_end_min) == (5, 30)
    assert (p.execution_timeout_s, p.reconcile_interval_s) == (30, 60)
    assert (p.api_breaker_failures, p.api_breaker_window_s) == (5, 60)
    assert (p.rearm_cooldown_min, p.max_incidents_per_day) == (30, 3)
    assert (p.cooldown_minutes_per_ticker, p.max_concurrent_positions) == (15, 16)


@pytest.mark.parametrize("name", ["sim.yaml", "alpaca-paper.yaml"])
def test_shipped_params_files_when_loaded_then_valid(name):
    """CFG-1: every shipped params file validates."""
    assert load_params(REPO / "params" / name).mode in ("sim", "paper")


def test_unknown_key_when_loaded_then_error_names_key_and_file(tmp_path):
    """CFG-1: unknown keys are errors naming the key and the file."""
    f = tmp_path / "p.yaml"
    f.write_text("max_positon_pct: 0.03\n")
    with pytest.raises(ConfigError) as err:
        load_params(f)
    assert "max_positon_pct" in str(err.value) and str(f) in str(err.value)
    assert "unknown key" in str(err.value)


def test_wrong_type_when_loaded_then_error_names_key(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("orders_per_day: lots\n")
    with pytest.raises(ConfigError, match="orders_per_day"):
        load_params(f)


def test_contradiction_when_position_exceeds_gross_then_error(tmp_path):
    """CFG-1: cross-field rule max_position_pct <= max_gross_exposure_pct."""
    f = tmp_path / "p.yaml"
    f.write_text("max_position_pct: 0.08\nmax_gross_exposure_pct: 0.06\n")
    with pytest.raises(ConfigError, match="max_position_pct"):
        load_params(f)


def test_dangerous_value_when_not_acknowledged_then_error_and_when_acknowledged_then_ok():
    """CFG-3: max position > 10% needs i_understand_the_risk."""
    with pytest.raises(ConfigError, match="i_understand_the_risk"):
        load_params(None, {"max_position_pct": 0.2})
    p = load_params(None, {"max_position_pct": 0.2, "i_understand_the_risk": True,
                           "strategy.position_size_pct": 0.04})
    assert p.max_position_pct == 0.2


def test_overrides_when_given_then_win_over_file_and_are_named_as_override():
    """CFG-2: papermill/CLI parameters override the params file."""
    p = load_params(REPO / "params" / "sim.yaml", {"max_position_pct": 0.045, "sim.seed": 11})
    assert (p.max_position_pct, p.sim.seed) == (0.045, 11)
    with pytest.raises(ConfigError, match=r"orders_per_run.*\[from -p override\]"):
        load_params(REPO / "params" / "sim.yaml", {"orders_per_run": -1})


def test_cross_field_error_when_bad_value_came_from_override_then_named_as_override_not_file():
    """CFG-1 (issue 13): a rule between keys names the -p override that broke it, not the file."""
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params" / "sim.yaml", {"max_gross_exposure_pct": 0.01})
    line = next(ln for ln in str(err.value).splitlines() if "exceeds max_gross_exposure_pct" in ln)
    assert "max_gross_exposure_pct from -p override" in line
    assert "max_position_pct from " + str(REPO / "params" / "sim.yaml") in line
    with pytest.raises(ConfigError) as err:
        load_params(REPO / "params" / "sim.yaml", {"max_position_pct": 0.5})
    dangerous = next(ln for ln in str(err.value).splitlines() if "dangerous" in ln)
    assert dangerous.endswith("[from -p override]") and "sim.yaml" not in dangerous


def test_error_when_value_is_a_default_then_named_as_default(tmp_path):
    """CFG-1: a key in neither the file nor -p is a built-in default, and says so."""
    f = tmp_path / "p.yaml"
    f.write_text("max_order_notional: 10\n")
    with pytest.raises(ConfigError) as err:
        load_params(f)
    assert "min_order_notional from default" in str(err.value)
    assert f"max_order_notional from {f}" in str(err.value)


def test_parse_override_when_yaml_values_then_typed():
    assert parse_override("max_position_pct=0.03") == ("max_position_pct", 0.03)
    assert parse_override("symbols=[AAPL, IBM]") == ("symbols", ["AAPL", "IBM"])
    with pytest.raises(ConfigError):
        parse_override("novalue")


def test_digest_when_params_differ_then_hash_differs_and_is_stable():
    """CFG-2: the merged params are hashed per run."""
    assert Params().digest() == Params().digest()
    assert Params().digest() != load_params(None, {"orders_per_run": 3}).digest()


def test_error_message_when_bad_value_then_value_not_echoed(tmp_path):
    """OPS-6: a pasted secret in a wrong place is never echoed back."""
    f = tmp_path / "p.yaml"
    f.write_text("mode: PKSECRETVALUE123\n")
    with pytest.raises(ConfigError) as err:
        load_params(f)
    assert "PKSECRETVALUE123" not in str(err.value)


def test_missing_file_when_loaded_then_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")


def test_load_params_when_overrides_is_a_string_then_config_error_saying_use_papermill_y():
    """CFG-1: `papermill -p overrides '{...}'` hands the notebook a string; it is refused with what to
    do (old code: AttributeError 'str' object has no attribute 'items' from load_params)."""
    from tradebook.errors import ConfigError
    from tradebook.params import load_params

    with pytest.raises(ConfigError, match=r"overrides must be a mapping of key: value, got str .*-y '\{\"overrides\""):
        load_params(None, '{"strategy.use": "strategies.breakout:Breakout"}')
    with pytest.raises(ConfigError, match="got list"):
        load_params(None, ["max_position_pct=0.03"])
