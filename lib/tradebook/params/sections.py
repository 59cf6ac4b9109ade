"""The sections of the params (SPEC §6): strategy, backtest costs, data store, schedule, sim, alpaca, alerts.

Each is a frozen model that refuses unknown keys; ``tradebook.params.model.Params`` holds
one of each next to the top-level limits.
"""
from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Fraction = Field(ge=0.0, le=1.0)


class Frozen(BaseModel):
    """A params model: frozen, unknown keys refused, defaults validated too."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class StrategyChoice(Frozen):
    """Which strategy decides, and its own params (STR-1): ``strategy: {use: ..., params: {...}}``.

    ``use`` is a built-in (swing, sma_cross, external_signals, model) or ``module:Class``,
    e.g. ``strategies.breakout:Breakout`` for ``strategies/breakout.py`` in the project.
    ``params`` are validated by the strategy's own model (unknown keys refused): for
    built-ins when params load, for user strategies when the strategy loads (decide,
    backtest), so a broken strategy never stops reconcile, execute or the stops.
    ``position_size_pct`` sizes every entry, whatever the strategy (POS-1).
    """

    use: str = "swing"
    params: dict[str, Any] = {}
    position_size_pct: float = Field(0.04, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _strategy_known(self) -> "StrategyChoice":
        from tradebook.strategies.loader import check_use, validate_builtin

        problem = check_use(self.use) or validate_builtin(self.use, self.params)
        if problem:
            raise ValueError(f"strategy: {problem}")
        return self


class DataParams(Frozen):
    """The local market data store (DATA-1): ``tradebook data fetch`` writes it, backtests replay it."""

    store_dir: str = "data/bars"   # relative to the project root; one Parquet file per symbol


class BacktestCosts(Frozen):
    """What every backtest fill costs (BT-1); the demo's SimBroker models its own spread."""

    commission_per_share: float = Field(0.0, ge=0, le=1)    # Alpaca: commission-free US equities
    commission_min: float = Field(0.0, ge=0, le=100)         # per order, when commission_per_share > 0
    commission_pct: float = Field(0.0, ge=0, le=0.01)        # of notional (other brokers, fees)
    spread_bps: float = Field(4.0, ge=0, le=500)             # full quoted spread; half is paid per fill
    slippage_bps: float = Field(2.0, ge=0, le=500)           # market impact beyond the half spread


class ScheduleParams(Frozen):
    """Phase times in exchange time, as minutes relative to the session open/close."""

    reconcile_before_open_min: int = Field(15, ge=0, le=240)
    decide_after_close_min: int = Field(15, ge=0, le=240)
    report_after_close_min: int = Field(20, ge=0, le=300)
    monitor_points: int = Field(3, ge=0, le=400)  # demo/sim: monitor calls per session


class SimParams(Frozen):
    """The embedded simulator: replayed daily bars, a seeded intraday path."""

    start_date: date = date(2011, 7, 26)
    starting_cash: float = Field(100_000.0, gt=0)
    spread_bps: float = Field(4.0, ge=0, le=500)
    seed: int = 7
    fractionable: list[str] = ["AAPL", "GOOG", "IBM", "MSFT"]
    state_file: str = "sim.duckdb"  # relative to runs_dir
    # VEN-2, a real venue's habits: cancels confirmed only after this many order look-ups (or the
    # next clock move; 0 = at once), and orders crossing our own working order refused as wash trades.
    cancel_polls: int = Field(0, ge=0, le=20)
    wash_trade_check: bool = False


class AlpacaParams(Frozen):
    """alpaca-py settings; keys never live here (environment only)."""

    url_override: str | None = None
    data_url_override: str | None = None
    feed: Literal["iex", "sip", "delayed_sip"] = "iex"   # latest quotes / snapshots
    # Daily bars: sip, asked only up to now - 15 min, which any plan (free included) may query.
    bars_feed: Literal["sip", "iex"] = "sip"
    allow_margin: bool = False   # GATE-11 uses non-marginable buying power (cash) unless true
    rate_limit_max_wait_s: float = Field(60.0, ge=0, le=120)   # cap on waiting for X-RateLimit-Reset
    timeout_s: float = Field(10.0, gt=0, le=120)
    retries: int = Field(3, ge=0, le=10)
    # Alpaca adapter (issue 6): first retry wait, doubling; also caps a server's Retry-After.
    backoff_s: float = Field(0.5, ge=0, le=30)
    max_backoff_s: float = Field(8.0, ge=0, le=120)


class AlertParams(Frozen):
    apprise_urls: list[str] = []
