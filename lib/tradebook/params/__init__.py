"""Validated run parameters (SPEC §6, CFG-1..3).

Params are parsed once from ``params/*.yaml``, papermill/CLI overrides win, and the
result is a frozen model whose hash is stored with every run. Unknown keys, wrong
types and contradictory values are errors that name the key and the file.

The params are a package: ``sections`` (strategy, backtest, data, schedule, sim, alpaca,
alerts), ``model`` (``Params``: the top-level keys, the rules between keys, paths, the
hash) and ``loading`` (the file, overrides, errors naming each value's source). Callers
import from here.
"""
from tradebook.params.loading import (DEFAULT_PARAMS_FILE, load_params, parse_override, set_dotted, validate_params,
                                      value_source)
from tradebook.params.model import DEFAULT_LEDGER_FILES, CrossFieldError, Params
from tradebook.params.sections import (AlertParams, AlpacaParams, BacktestCosts, DataParams, ScheduleParams,
                                       SimParams, StrategyChoice)

__all__ = ["DEFAULT_PARAMS_FILE", "DEFAULT_LEDGER_FILES", "Params", "CrossFieldError", "load_params",
           "parse_override", "set_dotted", "validate_params", "value_source", "AlertParams", "AlpacaParams",
           "BacktestCosts", "DataParams", "ScheduleParams", "SimParams", "StrategyChoice"]
