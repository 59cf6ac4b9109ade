"""One parameter set through the backtest, and the results row it becomes.

Two strategies until the general strategy interface exists (issue 16): ``swing``
(the reference swing strategy with the decide phase's entry policy and, unless
switched off, the live gate: ``backtest.run_strategy``) and ``sma`` (the parity
reference, SMA fast/slow crossover with a fixed size: ``backtest.SmaCross``). Every
evaluation is a pure function of (job, params set, bars): that is what lets serial,
process-pool and Ray runs give identical rows.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Mapping

from tradebook.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from tradebook.backtest_results import BacktestResult

STRATEGIES = ("swing", "sma")
SMA_NAMES = ("fast", "slow", "size")
METRICS = ("final_equity", "cagr_pct", "max_drawdown_pct", "sharpe", "trades", "fills", "rejections", "costs")


@dataclass(frozen=True)
class Job:
    """Everything but the parameter set: the same for every set of one sweep."""

    strategy: str
    symbols: tuple[str, ...]
    start: date | None = None
    end: date | None = None
    use_gate: bool = True
    cash: float = 100_000.0
    base: Mapping[str, Any] = field(default_factory=dict)  # swing: the validated base params (model_dump)

    def scope(self) -> dict[str, Any]:
        """What, besides the set itself, decides a result (part of each set's key)."""
        from tradebook.params import Params

        digest = Params.model_validate(dict(self.base)).digest() if self.base else ""
        return {"strategy": self.strategy, "symbols": list(self.symbols), "start": str(self.start or ""),
                "end": str(self.end or ""), "gate": self.use_gate, "cash": self.cash, "base": digest}


def check_names(strategy: str, names: list[str]) -> None:
    """Refuse unknown strategies and parameter names before anything runs."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if strategy == "sma":
        bad = [n for n in names if n not in SMA_NAMES]
        if bad:
            raise ConfigError(f"sma strategy has no parameter {', '.join(bad)}; it takes {', '.join(SMA_NAMES)}")
        return
    from tradebook.params import Params, StrategyParams

    bad = [n for n in names if n not in StrategyParams.model_fields and n.split(".")[0] not in Params.model_fields]
    if bad:
        raise ConfigError(f"swing strategy has no parameter {', '.join(bad)}; use a params.strategy field "
                          f"({', '.join(StrategyParams.model_fields)}) or a dotted params key")


def swing_params(base: Mapping[str, Any], params: Mapping[str, Any]):
    """The base params with a set applied; bare names are ``params.strategy`` fields."""
    import copy

    from tradebook.params import StrategyParams, _set_dotted, validate_params

    data = copy.deepcopy(dict(base))
    for name, value in params.items():
        _set_dotted(data, f"strategy.{name}" if name in StrategyParams.model_fields else name, value)
    return validate_params(data, source="<sweep parameter set>", override_keys=set())


def backtest(job: Job, params: Mapping[str, Any], bars: "pd.DataFrame") -> "BacktestResult":
    """Run one set; raises ConfigError for a set the params model rejects (e.g. fast >= slow)."""
    if job.strategy == "swing":
        from tradebook.backtest import run_strategy

        return run_strategy(swing_params(job.base, params), start=job.start, end=job.end, cash=job.cash,
                            use_gate=job.use_gate, bars=bars)
    return _run_sma(job, params, bars)


def _run_sma(job: Job, params: Mapping[str, Any], bars: "pd.DataFrame") -> "BacktestResult":
    import numpy as np

    from tradebook.backtest import SmaCross
    from tradebook.backtest_engine import Market, simulate
    from tradebook.backtest_results import BacktestResult

    fast, slow, size = int(params.get("fast", 20)), int(params.get("slow", 50)), float(params.get("size", 10))
    if not 1 <= fast < slow:
        raise ConfigError(f"sma needs 1 <= fast < slow, got fast={fast} slow={slow}")
    market = Market.from_bars(bars)
    first = int(np.searchsorted(market.dates, np.datetime64(job.start, "D"))) if job.start else 0
    last = int(np.searchsorted(market.dates, np.datetime64(job.end, "D"), side="right")) if job.end else None
    book = simulate(market, SmaCross(market, fast, slow, size), cash=job.cash, start=first, end=last)
    return BacktestResult.build(book, job.cash)


def evaluate(job: Job, params: Mapping[str, Any], bars: "pd.DataFrame") -> dict[str, Any]:
    """The metrics of one set (METRICS, plus ``error`` when the set is invalid, and ``seconds``)."""
    started = time.perf_counter()
    try:
        result = backtest(job, params, bars)
    except ConfigError as exc:
        row = {m: None for m in METRICS}
        row["error"] = str(exc)
    else:
        row = metrics(result)
    row["seconds"] = time.perf_counter() - started
    return row


def metrics(result: "BacktestResult") -> dict[str, Any]:
    """The table's figures from a finished backtest.

    ``costs`` is the backtest's own cost figure when it models costs (BT-1); the
    current engine fills at the open without commission or spread, so it is 0.
    """
    s = result.stats
    return {"final_equity": s["end_equity"], "cagr_pct": s["cagr_pct"], "max_drawdown_pct": s["max_drawdown_pct"],
            "sharpe": s["sharpe"], "trades": s["round_trips"], "fills": s["fills"], "rejections": s["rejections"],
            "costs": float(s.get("costs", 0.0)), "error": None}
