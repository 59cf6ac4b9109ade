"""STR-2 model signals: a scikit-learn-style model file pinned by SHA-256, trained on the bars'
causal features; a file whose hash differs is refused at start and nothing is traded."""
from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest

from tradebook import backtest
from tradebook.errors import ConfigError
from tradebook.marketdata import load_bars
from tradebook.params import Params, load_params
from tradebook.research import StrategyError, features
from tradebook.research.strategies.loader import load_strategy
from tradebook.research.strategies.model import save_model
from trading_helpers import make_ctx, ny

# A minimal scikit-learn-style classifier (predict_proba), fitted by gradient descent: the ml extra
# (scikit-learn / XGBoost) is optional and the strategy needs only the interface. It lives in the
# project's strategies/ folder so that any process (decide kernels, the demo) can unpickle it.
TINY_MODEL = '''
import numpy as np


class TinyLogit:
    def fit(self, x, y, steps=300, rate=0.5):
        self.mu, self.sd = x.mean(axis=0), x.std(axis=0) + 1e-12
        z = (x - self.mu) / self.sd
        self.w, self.b = np.zeros(z.shape[1]), 0.0
        for _ in range(steps):
            p = 1 / (1 + np.exp(-(z @ self.w + self.b)))
            self.w -= rate * z.T @ (p - y) / len(y)
            self.b -= rate * float(np.mean(p - y))
        return self

    def predict_proba(self, x):
        p = 1 / (1 + np.exp(-(((x - self.mu) / self.sd) @ self.w + self.b)))
        return np.column_stack([1 - p, p])
'''
NAMES = ["ret_5", "rsi_2", "sma_ratio_20_100", "vol_20"]


def _train(root: Path, until: date = date(2010, 12, 31)) -> str:
    """The research-notebook workflow: features on the bars, label = up over the next 5 sessions."""
    import importlib
    import sys

    (root / "strategies").mkdir(exist_ok=True)
    (root / "strategies" / "__init__.py").write_text("")
    (root / "strategies" / "tiny_model.py").write_text(textwrap.dedent(TINY_MODEL))
    sys.path.insert(0, str(root))
    for name in [n for n in sys.modules if n == "strategies" or n.startswith("strategies.")]:
        del sys.modules[name]
    TinyLogit = importlib.import_module("strategies.tiny_model").TinyLogit
    bars = load_bars(["AAPL", "GOOG", "IBM", "MSFT"])
    table = features.feature_table(bars, NAMES)
    close = bars.sort_values(["symbol", "date"]).reset_index(drop=True)["close"]
    table["label"] = (close.groupby(table["symbol"]).shift(-5) > close).astype(float)
    train = table[(table["date"] <= until)].dropna()
    model = TinyLogit().fit(train[NAMES].to_numpy(), train["label"].to_numpy())
    return save_model(model, NAMES, root / "models" / "tiny.pkl", root / "models" / "tiny.features.json")


def _choice(sha: str) -> dict:
    return {"use": "model", "params": {"model_path": "models/tiny.pkl", "features_path": "models/tiny.features.json",
                                       "sha256": sha, "min_probability": 0.5}}


def test_str2_when_model_file_pinned_by_hash_then_backtest_and_decide_trade_its_probabilities(root):
    """STR-2: the model's predict_proba on today's causal features is the entry confidence."""
    sha = _train(root)
    params = Params.model_validate({"strategy": _choice(sha)})
    result = backtest.run_backtest(params, root=root, start=date(2011, 1, 3), end=date(2011, 12, 30))
    assert result.strategy == "model" and len(result.fills) > 0 and not result.strategy_errors
    entries = result.fills[result.fills["kind"] == "ENTRY"]
    assert entries["reason"].str.contains("MODEL: p=").all() and (entries["confidence"] >= 0.5).all()
    ctx = make_ctx(root, **{"strategy": _choice(sha)})
    ctx.broker.advance_to(ny(date(2011, 7, 28), 16, 15))
    from tradebook.decide import run_decide

    report = run_decide(ctx)
    assert report.n_entry_signals + report.n_exit_signals >= 1
    assert all("MODEL" in d.reason for d in report.decisions)


def test_str2_when_model_file_hash_differs_then_refused_at_start_and_nothing_traded(root):
    """STR-2: a model file that is not the pinned one is never unpickled; decide plans nothing."""
    sha = _train(root)
    with open(root / "models" / "tiny.pkl", "ab") as f:
        f.write(b"tampered")
    choice = Params.model_validate({"strategy": _choice(sha)}).strategy
    with pytest.raises(StrategyError, match=r"has SHA-256 [0-9a-f]{64}, params pin " + sha + "; refusing"):
        load_strategy(choice, root).history_days()
    ctx = make_ctx(root, **{"strategy": _choice(sha)})
    ctx.broker.advance_to(ny(date(2011, 7, 28), 16, 15))
    from tradebook.decide import run_decide

    with pytest.raises(StrategyError, match="refusing"):
        run_decide(ctx)
    assert ctx.ledger.scalar("SELECT count(*) FROM intents") == 0


def test_str2_when_model_params_incomplete_then_refused_when_params_load(root):
    with pytest.raises(ConfigError, match=r"strategy\.params\.sha256"):
        load_params(root / "params" / "sim.yaml", {"strategy.use": "model",
                                                   "strategy.params": {"model_path": "m.pkl", "features_path": "f"}})


def test_str2_when_features_are_computed_then_they_are_causal():
    """A feature on day t is the same whether or not later bars exist (no look-ahead in training)."""
    bars = load_bars(["MSFT"])
    full = features.feature_table(bars, list(features.FEATURES)).set_index("date")
    cut = bars[bars["date"] <= date(2008, 6, 30)]
    part = features.feature_table(cut, list(features.FEATURES)).set_index("date")
    assert part.loc[date(2008, 6, 30)].drop("symbol").astype(float).tolist() == pytest.approx(
        full.loc[date(2008, 6, 30)].drop("symbol").astype(float).tolist())
