"""Train a model for ``use: model`` (STR-2) on the store's bars, the research-notebook step.

``labelled_table`` joins the causal features of ``tradebook.strategies.features`` with a
forward label (the close ``horizon`` sessions later is higher); ``train_model`` fits a
scikit-learn-style classifier on the rows up to ``until`` (default: a seeded
``GradientBoostingClassifier``, from the ``ml`` extra); ``model_choice`` is the params
block that pins the saved file's hash. Save with ``strategies.model.save_model``.
"""
from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from tradebook.strategies import features as feat

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_FEATURES = ["ret_5", "rsi_2", "sma_ratio_20_100", "vol_20"]


def labelled_table(bars: "pd.DataFrame", names: list[str], horizon: int = 5) -> "pd.DataFrame":
    """symbol, date, the features and ``label`` (1.0 when the close ``horizon`` sessions later is higher).

    Rows without enough history or without a future close are dropped: the label looks
    ahead by construction, the features never do.
    """
    if unknown := feat.unknown(names):
        raise ValueError(f"unknown features {unknown}; choose from {sorted(feat.FEATURES)}")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 session, got {horizon}")
    table = feat.feature_table(bars, names)
    close = bars.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)["close"].astype(float)
    future = close.groupby(table["symbol"]).shift(-horizon)
    table["label"] = (future > close).astype(float).where(future.notna())
    return table.dropna(subset=[*names, "label"]).reset_index(drop=True)


def default_classifier(seed: int = 0) -> Any:
    """A small seeded gradient-boosting classifier (deterministic for a given seed)."""
    try:
        from sklearn.ensemble import GradientBoostingClassifier
    except ImportError:
        raise ImportError("training a model needs scikit-learn: pip install -e '.[ml]' "
                          "(or pass model= any object with fit and predict_proba)") from None
    return GradientBoostingClassifier(n_estimators=60, max_depth=2, learning_rate=0.1, subsample=0.8,
                                      random_state=seed)


def train_model(bars: "pd.DataFrame", names: list[str], *, until: date, horizon: int = 5,
                model: Any = None) -> Any:
    """Fit ``model`` (default: ``default_classifier()``) on the labelled rows dated up to ``until``.

    Rows whose label window ends after ``until`` are dropped too, so nothing after
    ``until`` leaks into the fit and a backtest that starts after it is out of sample.
    """
    table = labelled_table(bars, names, horizon)
    dates = sorted(set(bars["date"]))
    cutoff_index = max((i for i, d in enumerate(dates) if d <= until), default=-1) - horizon
    if cutoff_index < 0:
        raise ValueError(f"no bars with a {horizon}-session label on or before {until}; choose a later date")
    train = table[table["date"] <= dates[cutoff_index]]
    if train["label"].nunique() < 2:
        raise ValueError(f"the {len(train)} training rows up to {until} hold one label only; use more history")
    model = default_classifier() if model is None else model
    return model.fit(train[names].to_numpy(dtype=float), train["label"].to_numpy(dtype=int))


def model_choice(sha256: str, model_path: str, features_path: str, min_probability: float = 0.55,
                 exit_below: float | None = 0.4) -> dict[str, Any]:
    """The ``strategy`` params block that trades the saved model, its hash pinned."""
    return {"use": "model", "params": {"model_path": model_path, "features_path": features_path,
                                       "sha256": sha256, "min_probability": min_probability,
                                       "exit_below": exit_below}}
