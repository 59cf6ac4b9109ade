"""One parameter set through the backtest, and the results row it becomes.

The strategy is any strategy of the strategy interface (``params.strategy.use``:
``swing``, ``sma_cross``, ``external_signals``, ``model`` or ``module:Class``), run by
``backtest.run_backtest`` with the live gate and the backtest's costs, stops and
breakers unless switched off; or ``sma_reference``, the parity reference (SMA
fast/slow crossover, fixed size, no gate, no costs: ``backtest.SmaCross``), the rule
set of the §7 speed grid. Every evaluation is a pure function of (job, set, bars):
that is what lets serial, process-pool and Ray runs give identical rows.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Mapping

from tradebook.errors import ConfigError, TradebookError

if TYPE_CHECKING:
    import pandas as pd

    from tradebook.research.results import BacktestResult
    from tradebook.params import Params

REFERENCE = "sma_reference"
REFERENCE_NAMES = ("fast", "slow", "size")
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
    base: Mapping[str, Any] = field(default_factory=dict)  # the validated base params (model_dump)
    frictions: bool = True
    root: str | None = None  # the project root: user strategies live in its strategies/

    def scope(self) -> dict[str, Any]:
        """What, besides the set itself, decides a result (part of each set's key)."""
        from tradebook.params import Params

        digest = Params.model_validate(dict(self.base)).digest() if self.base else ""
        return {"strategy": self.strategy, "symbols": list(self.symbols), "start": str(self.start or ""),
                "end": str(self.end or ""), "gate": self.use_gate, "cash": self.cash, "base": digest,
                "frictions": self.frictions}


def base_params(strategy: str, params: "Params") -> dict[str, Any]:
    """The base of every set: ``params`` with ``strategy.use`` switched to the swept strategy."""
    data = params.model_dump()
    if strategy == REFERENCE:
        return data
    if data["strategy"]["use"] != strategy:
        data["strategy"] = {**data["strategy"], "use": strategy, "params": {}}
    return data


def check_names(strategy: str, names: list[str], root: str | None = None) -> None:
    """Refuse unknown strategies and parameter names before anything runs."""
    if strategy == REFERENCE:
        bad = [n for n in names if n not in REFERENCE_NAMES]
        if bad:
            raise ConfigError(f"{REFERENCE} has no parameter {', '.join(bad)}; it takes {', '.join(REFERENCE_NAMES)}")
        return
    from pathlib import Path

    from tradebook.params import Params
    from tradebook.strategies.loader import strategy_class

    fields = strategy_class(strategy, Path(root) if root else None).Params.model_fields
    bad = [n for n in names if n not in fields and n.split(".")[0] not in Params.model_fields]
    if bad:
        raise ConfigError(f"strategy {strategy} has no parameter {', '.join(bad)}; use one of its params "
                          f"({', '.join(fields) or 'none'}) or a dotted params key such as max_position_pct")


def set_params(job: Job, params: Mapping[str, Any]) -> "Params":
    """The base params with a set applied; bare names are the strategy's own params."""
    from pathlib import Path

    from tradebook.params import set_dotted, validate_params
    from tradebook.strategies.loader import strategy_class

    fields = strategy_class(job.strategy, Path(job.root) if job.root else None).Params.model_fields
    data = copy.deepcopy(dict(job.base))
    for name, value in params.items():
        set_dotted(data, f"strategy.params.{name}" if name in fields else name, value)
    return validate_params(data, source="<sweep parameter set>", override_keys=set())


def backtest(job: Job, params: Mapping[str, Any], bars: "pd.DataFrame") -> "BacktestResult":
    """Run one set; raises a TradebookError for a set that cannot run (invalid params, strategy error)."""
    if job.strategy == REFERENCE:
        return _run_reference(job, params, bars)
    from pathlib import Path

    from tradebook.research.backtest import run_backtest

    return run_backtest(set_params(job, params), bars=bars, start=job.start, end=job.end, cash=job.cash,
                        use_gate=job.use_gate, frictions=job.frictions, root=Path(job.root) if job.root else None)


def _run_reference(job: Job, params: Mapping[str, Any], bars: "pd.DataFrame") -> "BacktestResult":
    import numpy as np

    from tradebook.research.backtest import SmaCross
    from tradebook.research.simulator import Market, simulate
    from tradebook.research.results import BacktestResult

    fast, slow, size = int(params.get("fast", 20)), int(params.get("slow", 50)), float(params.get("size", 10))
    if not 1 <= fast < slow:
        raise ConfigError(f"{REFERENCE} needs 1 <= fast < slow, got fast={fast} slow={slow}")
    market = Market.from_bars(bars)
    first = int(np.searchsorted(market.dates, np.datetime64(job.start, "D"))) if job.start else 0
    last = int(np.searchsorted(market.dates, np.datetime64(job.end, "D"), side="right")) if job.end else None
    book = simulate(market, SmaCross(market, fast, slow, size), cash=job.cash, start=first, end=last)
    return BacktestResult.build(book, job.cash)


def evaluate(job: Job, params: Mapping[str, Any], bars: "pd.DataFrame") -> dict[str, Any]:
    """The metrics of one set (METRICS, plus ``error`` when the set cannot run, and ``seconds``)."""
    started = time.perf_counter()
    try:
        result = backtest(job, params, bars)
        row = metrics(result)
        errors = getattr(result, "strategy_errors", None)
        if errors:  # sessions where the strategy failed traded nothing: the figures are not the strategy's
            row["error"] = f"{len(errors)} session(s) without trading, strategy failed; first {errors[0][0]}: " \
                           f"{errors[0][1]}"
    except TradebookError as exc:
        row = {m: None for m in METRICS}
        row["error"] = str(exc)
    row["seconds"] = time.perf_counter() - started
    return row


def metrics(result: "BacktestResult") -> dict[str, Any]:
    """The table's figures from a finished backtest (costs: commission + spread/slippage, BT-1)."""
    s = result.stats
    return {"final_equity": s["end_equity"], "cagr_pct": s["cagr_pct"], "max_drawdown_pct": s["max_drawdown_pct"],
            "sharpe": s["sharpe"], "trades": s["round_trips"], "fills": s["fills"], "rejections": s["rejections"],
            "costs": float(s.get("commission", 0.0)) + float(s.get("spread_slippage", 0.0)), "error": None}
