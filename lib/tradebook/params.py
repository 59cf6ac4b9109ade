"""Validated run parameters (SPEC §6, CFG-1..3).

Params are parsed once from ``params/*.yaml``, papermill/CLI overrides win, and the
result is a frozen model whose hash is stored with every run. Unknown keys, wrong
types and contradictory values are errors that name the key and the file.
"""
from __future__ import annotations

import copy
import hashlib
import json
from datetime import date
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tradebook.errors import ConfigError

Fraction = Field(ge=0.0, le=1.0)
DEFAULT_PARAMS_FILE = "params/sim.yaml"


class CrossFieldError(ValueError):
    """Rules between keys; each problem is (key, message, other keys involved), to name each value's source."""

    def __init__(self, problems: list[tuple[str, str, tuple[str, ...]]]):
        super().__init__("; ".join(f"{k}: {msg}" for k, msg, _ in problems))
        self.problems = problems


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class StrategyChoice(_Frozen):
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


class DataParams(_Frozen):
    """The local market data store (DATA-1): ``tradebook data fetch`` writes it, backtests replay it."""

    store_dir: str = "data/bars"   # relative to the project root; one Parquet file per symbol


class BacktestCosts(_Frozen):
    """What every backtest fill costs (BT-1); the demo's SimBroker models its own spread."""

    commission_per_share: float = Field(0.0, ge=0, le=1)    # Alpaca: commission-free US equities
    commission_min: float = Field(0.0, ge=0, le=100)         # per order, when commission_per_share > 0
    commission_pct: float = Field(0.0, ge=0, le=0.01)        # of notional (other brokers, fees)
    spread_bps: float = Field(4.0, ge=0, le=500)             # full quoted spread; half is paid per fill
    slippage_bps: float = Field(2.0, ge=0, le=500)           # market impact beyond the half spread


class ScheduleParams(_Frozen):
    """Phase times in exchange time, as minutes relative to the session open/close."""

    reconcile_before_open_min: int = Field(15, ge=0, le=240)
    decide_after_close_min: int = Field(15, ge=0, le=240)
    report_after_close_min: int = Field(20, ge=0, le=300)
    monitor_points: int = Field(3, ge=0, le=400)  # demo/sim: monitor calls per session


class SimParams(_Frozen):
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


class AlpacaParams(_Frozen):
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


class AlertParams(_Frozen):
    apprise_urls: list[str] = []


# OPS-8: simulation and each Alpaca mode keep their own ledger by default (names that do not
# share a prefix, so backups `<stem>-<stamp>` of one are never taken for the other's).
DEFAULT_LEDGER_FILES = {"sim": "ledger.duckdb", "paper": "paper-ledger.duckdb", "live": "live-ledger.duckdb"}


class Params(_Frozen):
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


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` (value as YAML, so numbers/bools/lists work)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def load_params(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Params:
    """Load a params YAML file, apply dotted-key overrides, validate; errors name key and file."""
    _require_mapping(overrides)
    source = Path(path) if path else None
    data: dict[str, Any] = {}
    loaded_file: dict[str, Any] = {}
    if source is not None:
        if not source.exists():
            raise ConfigError(f"params file {source} does not exist")
        try:
            loaded = yaml.safe_load(source.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"params file {source} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"params file {source} must be a mapping of key: value")
        data = loaded
        loaded_file = copy.deepcopy(loaded)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return validate_params(data, source=str(source) if source else "<defaults>",
                           override_keys=set(overrides or {}), file_keys=_dotted_keys(loaded_file))


def _require_mapping(overrides: Any) -> None:
    """Overrides are a mapping; a string is the usual slip of `papermill -p overrides '{...}'`."""
    if overrides is None or isinstance(overrides, Mapping):
        return
    hint = (" papermill's -p passes text: give the mapping as YAML with -y, e.g. "
            "-y '{\"overrides\": {\"strategy.use\": \"strategies.breakout:Breakout\"}}'"
            if isinstance(overrides, str) else "")
    raise ConfigError(f"overrides must be a mapping of key: value, got {type(overrides).__name__} "
                      f"{str(overrides)[:80]!r}.{hint}")


def validate_params(data: dict[str, Any], source: str = "<params>", override_keys: set[str] | None = None,
                    file_keys: set[str] | None = None) -> Params:
    """Validate merged params; a ConfigError names, per bad key, where its value came from."""
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, override_keys or set(), file_keys)) from None


def _dotted_keys(data: Any, prefix: str = "") -> set[str]:
    """Every key of a nested mapping, dotted (``strategy.fast_sma``), sections included."""
    if not isinstance(data, dict):
        return set()
    keys = set()
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys |= {dotted} | _dotted_keys(value, dotted + ".")
    return keys


def value_source(key: str, source: str, override_keys: set[str], file_keys: set[str] | None) -> str:
    """Where the value of ``key`` came from: a -p override, the params file, or the built-in default."""
    parts = key.split(".")
    prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    if prefixes & override_keys or any(o.startswith(key + ".") for o in override_keys):
        return "-p override"
    if file_keys is None or prefixes & file_keys:
        return source
    return "default"


def _describe(exc: ValidationError, source: str, override_keys: set[str], file_keys: set[str] | None) -> str:
    lines = []
    for err in exc.errors():
        cross = (err.get("ctx") or {}).get("error")
        if isinstance(cross, CrossFieldError):
            for key, msg, others in cross.problems:
                where = "; ".join(f"{k} from {value_source(k, source, override_keys, file_keys)}"
                                  for k in (key, *others)) if others else \
                    f"from {value_source(key, source, override_keys, file_keys)}"
                lines.append(f"  {key}: {msg} [{where}]")
            continue
        key = ".".join(str(p) for p in err["loc"]) or "(params)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against SPEC §6 / params/sim.yaml)"
        # Never echo the offending value: it could be a pasted secret.
        lines.append(f"  {key}: {msg} [from {value_source(key, source, override_keys, file_keys)}]")
    via = f" with {len(override_keys)} -p override(s)" if override_keys else ""
    return f"invalid params (file {source}{via}):\n" + "\n".join(lines)
