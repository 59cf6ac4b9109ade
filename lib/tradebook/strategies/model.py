"""Model signals (``use: model``, STR-2): a trained scikit-learn-style model file pinned by hash.

The model is any pickled object with ``predict_proba(X)``: scikit-learn classifiers (the ``ml``
extra, ``pip install -e '.[ml]'``; ``tradebook.research.training`` fits one), XGBoost's
``XGBClassifier`` (the ``xgboost`` extra) or a class of the project's ``strategies/``.
Its feature definition is a JSON file ``{"features": [...]}`` naming causal features
from ``tradebook.strategies.features``. Params pin the model file's SHA-256: a file whose
hash differs is refused when the strategy starts (a pickle runs code on load, so only
the exact file that was reviewed may be loaded). ``save_model`` writes a model, its
features and returns the hash to put in params.

Each close: the probability of the positive class for the last bar of each symbol is
the entry confidence when at least ``min_probability`` (``signal_threshold`` also
applies in decide); a held symbol whose
probability falls below ``exit_below`` gets an exit.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from pydantic import Field

from tradebook.strategies import features as feat
from tradebook.strategies.base import (EntrySignal, ExitSignal, Held, Signals, Strategy,
                                                StrategyError, StrategyParams)

if TYPE_CHECKING:
    import pandas as pd


class ModelParams(StrategyParams):
    model_path: str                                  # relative to the project root
    features_path: str                               # JSON: {"features": ["ret_5", ...]}
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")   # the model file's content hash (save_model prints it)
    min_probability: float = Field(0.5, ge=0, le=1)  # entries only at or above this probability
    exit_below: float | None = Field(0.4, ge=0, le=1)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_model(model: Any, names: list[str], model_path: Path, features_path: Path) -> str:
    """Pickle ``model``, write its feature definition, return the SHA-256 to pin in params."""
    if unknown := feat.unknown(names):
        raise ValueError(f"unknown features {unknown}; choose from {sorted(feat.FEATURES)}")
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model_path.write_bytes(pickle.dumps(model))
    features_path.write_text(json.dumps({"features": names}, indent=1) + "\n")
    return file_sha256(model_path)


class ModelSignals(Strategy):
    """Entry confidence = the model's probability on today's features."""

    Params = ModelParams
    params: ModelParams

    def __init__(self, params: Any = None):
        super().__init__(params)
        self._model: Any = None
        self._names: list[str] | None = None

    def _path(self, text: str) -> Path:
        path = Path(text)
        return path if path.is_absolute() or self.root is None else Path(self.root) / path

    def _load(self) -> None:
        """Check the hash, then load the model and its features (once)."""
        if self._model is not None:
            return
        label, p = self.label, self.params
        model_file, features_file = self._path(p.model_path), self._path(p.features_path)
        for f in (model_file, features_file):
            if not f.is_file():
                raise StrategyError(f"strategy {label}: {f} does not exist", strategy=label)
        actual = file_sha256(model_file)
        if actual != p.sha256:
            raise StrategyError(f"strategy {label}: {model_file} has SHA-256 {actual}, params pin {p.sha256}; "
                                "refusing to load a model that is not the one reviewed (retrain and pin the new hash "
                                "with save_model, or restore the file)", strategy=label)
        try:
            names = json.loads(features_file.read_text())["features"]
        except (ValueError, KeyError, TypeError) as exc:
            raise StrategyError(f"strategy {label}: {features_file} is not {{\"features\": [...]}}: {exc}",
                                strategy=label) from None
        if not isinstance(names, list) or feat.unknown(names):
            raise StrategyError(f"strategy {label}: {features_file} names unknown features "
                                f"{feat.unknown(names) if isinstance(names, list) else names}", strategy=label)
        if self.root is not None and str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))   # a model class defined under strategies/ must import
        model = pickle.loads(model_file.read_bytes())  # safe only because the hash matched the pinned one
        if not callable(getattr(model, "predict_proba", None)):
            raise StrategyError(f"strategy {label}: the model in {model_file} has no predict_proba", strategy=label)
        self._model, self._names = model, names

    def history_days(self) -> int:
        self._load()
        return feat.history(self._names or []) + 5

    def generate(self, bars: "pd.DataFrame", held: Mapping[str, Held]) -> Signals:
        import numpy as np

        self._load()
        entries, exits = [], []
        if not len(bars):
            return Signals(entries, exits)
        last, x = feat.last_rows(bars, self._names or [])
        if not len(last):
            return Signals(entries, exits)
        proba = np.asarray(self._model.predict_proba(x), dtype=float)[:, -1]
        for row, p in zip(last.itertuples(index=False), proba):
            reason = f"MODEL: p={p:.3f} on {', '.join(self._names or [])}"
            if row.symbol in held and self.params.exit_below is not None and p < self.params.exit_below:
                exits.append(ExitSignal(row.symbol, f"MODEL_EXIT: p={p:.3f} < {self.params.exit_below:g}",
                                        float(row.close), asof=row.date))
            elif p >= self.params.min_probability and p > 0:
                entries.append(EntrySignal(row.symbol, round(float(p), 4), float(row.close), reason, row.date))
        entries.sort(key=lambda e: (-e.confidence, e.symbol))
        return Signals(entries, exits)
