"""The params model (SPEC §6, CFG-1/2): every key with its safe default, the rules between keys, paths, the hash.

Params are a frozen model; the rules between keys (and the dangerous values that need
``i_understand_the_risk``) are checked together, each problem naming the keys involved,
so the loader can say where each value came from. Loading and overrides are ``loading``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from tradebook.params.sections import (AlertParams, AlpacaParams, BacktestCosts, DataParams, Frozen, ScheduleParams,
                                       SimParams, StrategyChoice)

class CrossFieldError(ValueError):
    """Rules between keys; each problem is (key, message, other keys involved), to name each value's source."""

    def __init__(self, problems: list[tuple[str, str, tuple[str, ...]]]):
        super().__init__("; ".join(f"{k}: {msg}" for k, msg, _ in problems))
        self.problems = problems


# OPS-8: simulation and each Alpaca mode keep their own ledger by default (names that do not
# share a prefix, so backups `<stem>-<stamp>` of one are never taken for the other's).
DEFAULT_LEDGER_FILES = {"sim": "ledger.duckdb", "paper": "paper-ledger.duckdb", "live": "live-ledger.duckdb"}


class Params(Frozen):
    """Every key of SPEC §6 with its safe default."""

    mode: Literal["sim", "paper", "live"] = "sim"
    i_understand_the_risk: bool = False
    symbols: list[str] = ["AAPL", "GOOG", "IBM", "MSFT"]
    runs_dir: str = "runs"
    # relative to runs_dir; unset: one ledger per mode (OPS-8), see DEFAULT_LEDGER_FILES
    ledger_file: str | None = None

    max_position_pct: float = Field(0.05, gt=0.0, le=1.0)
    max_gross_exposure_pct: float = Field(0.60, gt=0.0, le=2.0)
    max_order_notional: float = Field(10_000.0, gt=0)
    min_order_notional: float = Field(50.0, ge=0)
    allow_shorts: bool = False
    stale_signal_seconds: int = Field(120, gt=0)
    max_signal_age_hours: float = Field(24.0, gt=0)
    max_gap_pct: float = Field(0.02, ge=0, le=1)
    max_slip_pct: float = Field(0.005, ge=0, le=0.2)
    spread_limit_bps: float = Field(50.0, gt=0)
    symbol_move_limit_pct: float = Field(0.10, gt=0, le=1)
    orders_per_symbol_day: int = Field(5, ge=0)
    orders_per_day: int = Field(200, ge=0)
    orders_per_run: int = Field(10, ge=0)
    daily_loss_pct: float = Field(0.02, gt=0, le=1)
    daily_loss_usd: float | None = Field(None, gt=0)
    max_drawdown_pct: float = Field(0.10, gt=0, le=1)
    session_drawdown_pct: float = Field(0.01, gt=0, le=1)
    min_equity_usd: float = Field(25_000.0, ge=0)
    stop_loss_pct: float = Field(0.05, gt=0, le=1)
    profit_target_pct: float | None = Field(0.15, gt=0)
    eod_liquidation: bool = False
    buying_power_use_pct: float = Field(0.95, gt=0, le=1)
    sector_cap_pct: float = Field(0.30, gt=0, le=1)
    tier_caps: dict[str, float] = {"TIER1": 0.60, "TIER2": 0.45, "TIER3": 0.30}
    cap_buffer_pct: float = Field(0.05, ge=0, le=1)
    symbol_tiers: dict[str, str] = {"AAPL": "TIER3", "GOOG": "TIER3", "IBM": "TIER2", "MSFT": "TIER2"}
    symbol_sectors: dict[str, str] = {
        "AAPL": "Technology", "GOOG": "Communication", "IBM": "Technology", "MSFT": "Technology",
    }
    correlation_limit: float = Field(0.90, gt=0, le=1)
    correlation_lookback_days: int = Field(60, ge=10, le=500)
    signal_threshold: float = Field(0.1, ge=0, le=1)
    add_on_enabled: bool = True
    add_on_confidence: float = Field(0.6, ge=0, le=1)
    exit_window_start_min: int = Field(5, ge=0, le=390)
    exit_window_end_min: int = Field(30, ge=1, le=390)
    execution_timeout_s: float = Field(30.0, gt=0, le=600)
    reconcile_interval_s: float = Field(60.0, gt=0)
    api_breaker_failures: int = Field(5, ge=1)
    api_breaker_window_s: float = Field(60.0, gt=0)
    rearm_cooldown_min: float = Field(30.0, ge=0)
    max_incidents_per_day: int = Field(3, ge=0)
    cooldown_minutes_per_ticker: float = Field(15.0, ge=0)
    max_concurrent_positions: int = Field(16, ge=0)
    fractional_enabled: bool = True
    backup_retention_days: int = Field(14, ge=1)

    strategy: StrategyChoice = StrategyChoice()
    backtest: BacktestCosts = BacktestCosts()
    data: DataParams = DataParams()
    schedule: ScheduleParams = ScheduleParams()
    sim: SimParams = SimParams()
    alpaca: AlpacaParams = AlpacaParams()
    alerts: AlertParams = AlertParams()

    @model_validator(mode="after")
    def _cross_field_rules(self) -> "Params":
        problems: list[tuple[str, str, tuple[str, ...]]] = []
        if self.max_position_pct > self.max_gross_exposure_pct:
            problems.append(("max_position_pct", f"{self.max_position_pct} exceeds max_gross_exposure_pct "
                                                  f"{self.max_gross_exposure_pct}", ("max_gross_exposure_pct",)))
        if self.min_order_notional > self.max_order_notional:
            problems.append(("min_order_notional", "is larger than max_order_notional", ("max_order_notional",)))
        if self.exit_window_start_min >= self.exit_window_end_min:
            problems.append(("exit_window_start_min", "must be before exit_window_end_min", ("exit_window_end_min",)))
        if self.strategy.position_size_pct > self.max_position_pct:
            problems.append(("strategy.position_size_pct", "exceeds max_position_pct", ("max_position_pct",)))
        for sym, tier in self.symbol_tiers.items():
            if tier not in self.tier_caps:
                problems.append((f"symbol_tiers.{sym}", f"tier {tier!r} has no entry in tier_caps", ("tier_caps",)))
        dangerous = [k for k, v, limit in (
            ("max_position_pct", self.max_position_pct, 0.10),
            ("max_gross_exposure_pct", self.max_gross_exposure_pct, 1.0),
            ("daily_loss_pct", self.daily_loss_pct, 0.05),
            ("max_drawdown_pct", self.max_drawdown_pct, 0.25),
        ) if v > limit]
        if self.allow_shorts:
            dangerous.append("allow_shorts")
        if dangerous and not self.i_understand_the_risk:
            problems.append((dangerous[0], "is a dangerous value; set i_understand_the_risk: true to allow "
                                           f"({', '.join(dangerous)})", tuple(dangerous[1:])))
        if problems:
            raise CrossFieldError(problems)
        return self

    # paths -----------------------------------------------------------------------------
    def runs_path(self, root: Path | None = None) -> Path:
        base = Path(self.runs_dir)
        return base if base.is_absolute() or root is None else root / base

    def ledger_path(self, root: Path | None = None) -> Path:
        return self.runs_path(root) / (self.ledger_file or DEFAULT_LEDGER_FILES[self.mode])

    def sim_state_path(self, root: Path | None = None) -> Path:
        return self.runs_path(root) / self.sim.state_file

    def as_dict(self) -> dict[str, Any]:
        """The merged params as plain JSON-able data, safe to store with a run.

        Keys never live in params; alert URLs often embed tokens, so they are masked here.
        """
        data = self.model_dump(mode="json")
        data["alerts"]["apprise_urls"] = [_mask_url(u) for u in self.alerts.apprise_urls]
        return data

    def digest(self) -> str:
        """Stable short hash stored with each run (CFG-2)."""
        raw = json.dumps(self.as_dict(), sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


def _mask_url(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return f"{scheme}://<redacted>" if sep else "<redacted>"
