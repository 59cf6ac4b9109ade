"""STR-2 model signals: a scikit-learn-style model file pinned by SHA-256, trained on the bars'
causal features; a file whose hash differs is refused at start and nothing is traded."""
from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest

from tradebook.research import backtest
from tradebook.errors import ConfigError
from tradebook.marketdata import load_bars
from tradebook.params import Params, load_params
from tradebook.research import StrategyError, training
from tradebook.strategies import features
from tradebook.strategies.loader import load_strategy
from tradebook.strategies.model import save_model
from support.trading import make_ctx, ny, stored_intents

# A hand-written classifier with only predict_proba: the strategy needs the interface, not a library.
# It lives in the project's strategies/ folder so that any process (decide kernels, the demo) can
# unpickle it. The real-model tests below train scikit-learn (the `ml` extra, installed by `make`).
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
NAMES = training.DEFAULT_FEATURES
SYMBOLS = ["AAPL", "GOOG", "IBM", "MSFT"]


def _train(root: Path, until: date = date(2010, 12, 31)) -> str:
    """The research-notebook workflow with a real model: a seeded scikit-learn GradientBoostingClassifier
    fitted on the bundled bars' causal features (label: up over the next 5 sessions), saved pinned."""
    model = training.train_model(load_bars(SYMBOLS), NAMES, until=until)
    assert type(model).__module__.startswith("sklearn.")
    return save_model(model, NAMES, root / "models" / "clf.pkl", root / "models" / "clf.features.json")


def _choice(sha: str) -> dict:
    return training.model_choice(sha, "models/clf.pkl", "models/clf.features.json", min_probability=0.5)


def _train_tiny(root: Path, until: date = date(2010, 12, 31)) -> str:
    """A user-written class from the project's strategies/ folder, fitted on the same labelled table."""
    import importlib
    import sys

    (root / "strategies").mkdir(exist_ok=True)
    (root / "strategies" / "__init__.py").write_text("")
    (root / "strategies" / "tiny_model.py").write_text(textwrap.dedent(TINY_MODEL))
    sys.path.insert(0, str(root))
    for name in [n for n in sys.modules if n == "strategies" or n.startswith("strategies.")]:
        del sys.modules[name]
    tiny = importlib.import_module("strategies.tiny_model").TinyLogit()
    model = training.train_model(load_bars(SYMBOLS), NAMES, until=until, model=tiny)
    return save_model(model, NAMES, root / "models" / "clf.pkl", root / "models" / "clf.features.json")


def test_str2_when_real_sklearn_model_pinned_by_hash_then_backtest_and_decide_trade_its_probabilities(root):
    """STR-2: a trained scikit-learn classifier's predict_proba on today's causal features is the entry
    confidence, in the backtest and in decide (checked against the model's own answer on the same bars)."""
    import pickle

    import numpy as np

    sha = _train(root)
    params = Params.model_validate({"strategy": _choice(sha)})
    result = backtest.run_backtest(params, root=root, start=date(2011, 1, 3), end=date(2011, 12, 30))
    assert result.strategy == "model" and len(result.fills) > 0 and not result.strategy_errors
    entries = result.fills[result.fills["kind"] == "ENTRY"]
    assert entries["reason"].str.contains("MODEL: p=").all() and (entries["confidence"] >= 0.5).all()
    ctx = make_ctx(root, **{"strategy": _choice(sha)})
    ctx.broker.advance_to(ny(date(2011, 7, 28), 16, 15))
    from tradebook.phases.decide import run_decide

    report = run_decide(ctx)
    assert report.n_entry_signals + report.n_exit_signals >= 1
    assert all("MODEL" in d.reason for d in report.decisions)
    model = pickle.loads((root / "models" / "clf.pkl").read_bytes())
    last, x = features.last_rows(load_bars(SYMBOLS).query("date <= @date(2011, 7, 28)"), NAMES)
    expected = dict(zip(last["symbol"], np.round(model.predict_proba(x)[:, 1], 4)))
    checked = [d for d in report.decisions if d.kind == "ENTRY"]
    assert checked, "the model should signal at least one entry on 2011-07-28"
    for d in checked:
        assert d.confidence == pytest.approx(expected[d.symbol], abs=1e-4)


def test_str2_when_model_is_any_object_with_predict_proba_then_it_trades(root):
    """STR-2 interface: a hand-written class from the project's strategies/ folder works like sklearn."""
    sha = _train_tiny(root)
    params = Params.model_validate({"strategy": _choice(sha)})
    result = backtest.run_backtest(params, root=root, start=date(2011, 1, 3), end=date(2011, 6, 30))
    assert not result.strategy_errors and len(result.fills) > 0


def test_str2_when_model_is_trained_until_a_date_then_no_label_reaches_past_it():
    """The research step: training rows stop `horizon` sessions before `until`, so a backtest
    after `until` is out of sample; a seeded model trains to the same file bytes twice."""
    import pickle

    bars = load_bars(SYMBOLS)
    seen = []

    class Spy:
        def fit(self, x, y):
            seen.append((x, y))
            return self

    training.train_model(bars, NAMES, until=date(2010, 12, 31), model=Spy())
    table = training.labelled_table(bars, NAMES)
    used = table[table["date"] <= date(2010, 12, 31)]
    assert len(seen[0][0]) < len(used) and len(seen[0][0]) == len(used) - 5 * len(SYMBOLS)
    first = pickle.dumps(training.train_model(bars, NAMES, until=date(2009, 12, 31)))
    assert pickle.dumps(training.train_model(bars, NAMES, until=date(2009, 12, 31))) == first
    with pytest.raises(ValueError, match="unknown features"):
        training.labelled_table(bars, ["ret_5", "tomorrow"])


def test_str2_when_model_file_hash_differs_then_refused_at_start_and_nothing_traded(root):
    """STR-2: a model file that is not the pinned one is never unpickled; decide plans nothing."""
    sha = _train(root)
    with open(root / "models" / "clf.pkl", "ab") as f:
        f.write(b"tampered")
    choice = Params.model_validate({"strategy": _choice(sha)}).strategy
    with pytest.raises(StrategyError, match=r"has SHA-256 [0-9a-f]{64}, params pin " + sha + "; refusing"):
        load_strategy(choice, root).history_days()
    ctx = make_ctx(root, **{"strategy": _choice(sha)})
    ctx.broker.advance_to(ny(date(2011, 7, 28), 16, 15))
    from tradebook.phases.decide import run_decide

    with pytest.raises(StrategyError, match="refusing"):
        run_decide(ctx)
    assert stored_intents(ctx.ledger) == []


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
