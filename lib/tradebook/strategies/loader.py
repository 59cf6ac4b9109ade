"""Params choose the strategy: ``strategy: {use: ..., params: {...}}`` (STR-1).

``use`` is a built-in name (``swing``, ``sma_cross``, ``external_signals``, ``model``)
or ``module:Class``. User strategies live in the project's ``strategies/`` folder and
are named ``strategies.<file>:<Class>``: the project root is put on ``sys.path`` so
decide, the daemon, the backtest and notebooks all import them the same way.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from pydantic import ValidationError

from tradebook.strategies.base import Strategy, StrategyError

if TYPE_CHECKING:
    from tradebook.params import StrategyChoice

BUILTINS = {
    "swing": "tradebook.strategies.swing:Swing",
    "sma_cross": "tradebook.strategies.sma_cross:SmaCrossover",
    "external_signals": "tradebook.strategies.external:ExternalSignals",
    "model": "tradebook.strategies.model:ModelSignals",
}


def target(use: str) -> str:
    """The module:Class a ``use`` value names."""
    return BUILTINS.get(use, use)


def check_use(use: str) -> str | None:
    """A problem with the shape of ``use`` (no import), or None."""
    if use in BUILTINS:
        return None
    module, sep, cls = use.partition(":")
    if not sep or not module or not cls or not all(p.isidentifier() for p in (*module.split("."), *cls.split("."))):
        return (f"{use!r} is neither a built-in ({', '.join(BUILTINS)}) nor module:Class "
                "(e.g. strategies.breakout:Breakout for strategies/breakout.py)")
    return None


def strategy_class(use: str, root: Path | None = None) -> type[Strategy]:
    """Import the class ``use`` names; a StrategyError says why it cannot be loaded."""
    problem = check_use(use)
    if problem:
        raise StrategyError(f"strategy {use}: {problem}", strategy=use)
    module_name, _, cls_name = target(use).partition(":")
    if root is not None and use not in BUILTINS:
        _use_project(Path(root), module_name)
    try:
        obj: Any = importlib.import_module(module_name)
        for part in cls_name.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # ImportError, SyntaxError, AttributeError, anything the module raises
        raise StrategyError(f"strategy {use} cannot be loaded: {type(exc).__name__}: {exc}"
                            f"{' (is the file under ' + str(root / 'strategies') + '?)' if root else ''}",
                            strategy=use) from exc
    if not (isinstance(obj, type) and issubclass(obj, Strategy)):
        raise StrategyError(f"strategy {use} is not a tradebook.research.Strategy subclass", strategy=use)
    return obj


def _use_project(root: Path, module_name: str) -> None:
    """Put the project root first on sys.path; forget a same-named package imported from elsewhere."""
    root = root.resolve()
    if str(root) in sys.path:
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))  # strategies/ under the project root, as notebooks see it
    top = module_name.split(".")[0]
    cached = sys.modules.get(top)
    where = getattr(cached, "__file__", None) or next(iter(getattr(cached, "__path__", [])), None)
    if cached is not None and where and root not in Path(where).resolve().parents:
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]
    importlib.invalidate_caches()


def build(use: str, params: Mapping[str, Any], root: Path | None = None) -> Strategy:
    """An instance of the strategy ``use`` with validated ``params`` (unknown keys refused)."""
    cls = strategy_class(use, root)
    try:
        strategy = cls(cls.Params.model_validate(dict(params)))
    except ValidationError as exc:
        lines = [f"  strategy.params.{'.'.join(str(p) for p in e['loc']) or '(all)'}: "
                 f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg'].removeprefix('Value error, ')}"
                 for e in exc.errors()]
        raise StrategyError(f"invalid params for strategy {use}:\n" + "\n".join(lines), strategy=use) from None
    except StrategyError:
        raise
    except Exception as exc:
        raise StrategyError(f"strategy {use} failed to start: {type(exc).__name__}: {exc}", strategy=use) from exc
    if not strategy.name:
        strategy.name = use  # instance attribute: errors name it as params do
    strategy.root = root     # for strategies that read project files (signals, models)
    return strategy


def load_strategy(choice: "StrategyChoice", root: Path | None = None) -> Strategy:
    """The strategy params choose (``params.strategy``), ready to call."""
    return build(choice.use, choice.params, root)


def validate_builtin(use: str, params: Mapping[str, Any]) -> str | None:
    """Validate a built-in's params at params load (no user code imported); a message or None."""
    if use not in BUILTINS:
        return None
    cls = strategy_class(use)
    try:
        cls.Params.model_validate(dict(params))
    except ValidationError as exc:
        return "; ".join(f"strategy.params.{'.'.join(str(p) for p in e['loc']) or '(all)'}: "
                         f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg'].removeprefix('Value error, ')}"
                         for e in exc.errors())
    return None
