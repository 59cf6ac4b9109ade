"""Model signals (``use: model``): not built in this version.

STR-2 describes an XGBoost / scikit-learn-style model file plus its feature
definition, pinned by content hash, behind the ``ml`` extra. Until it is built,
choosing it is refused when params load, with this explanation, rather than trading
on a stub.
"""
from __future__ import annotations

from typing import Any

from pydantic import model_validator

from tradebook.research.strategies.base import Strategy, StrategyParams

NOT_BUILT = ("model signals (strategy use: model) are not built in this version of tradebook; "
             "write the model's predictions to files and use `use: external_signals`, or wrap the model "
             "in your own strategy under strategies/ (see README, 'Your own strategy')")


class ModelParams(StrategyParams):
    model_path: str | None = None
    features_path: str | None = None
    sha256: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_built(cls, data: Any) -> Any:
        raise ValueError(NOT_BUILT)


class ModelSignals(Strategy):
    Params = ModelParams
