"""STR-2 done-when: the external-signal and the model strategies run in `tradebook demo` on SimBroker
(real papermill phase notebooks), and their decisions reach the ledger as intents."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from test_research_model import _choice, _train
from tradebook.demo import run_demo
from tradebook.ledger import events
from tradebook.ledger.db import Ledger
from support.trading import stored_intents

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("demo")]
REPO = Path(__file__).resolve().parents[1]


def _project(tmp_path: Path) -> Path:
    for folder in ("params", "notebooks"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    (tmp_path / "runs").mkdir()
    return tmp_path


def test_str2_when_demo_runs_external_signals_then_fresh_files_become_intents(tmp_path):
    root = _project(tmp_path)
    (root / "signals").mkdir()
    pd.DataFrame([("MSFT", 0.35, "2011-07-26T18:00:00Z"), ("IBM", 0.02, "2011-07-26T18:00:00Z")],
                 columns=["symbol", "confidence", "generated_at"]).to_csv(root / "signals" / "desk.csv", index=False)
    summary = run_demo(2, overrides={"strategy.use": "external_signals"}, root=root)
    assert summary.failures == []
    ledger = Ledger(root / "runs" / "ledger.duckdb")
    assert [(i.symbol, i.side) for i in stored_intents(ledger)] == [("MSFT", "buy")]
    assert len([e for e in ledger.read(events.find, "DECISION") if "LOW_CONFIDENCE" in e.reason]) == 1
    assert summary.fills == 1


def test_str2_when_demo_runs_a_pinned_model_then_its_signals_become_intents(tmp_path):
    """STR-2 done-when: a real scikit-learn model (the `ml` extra), pinned by hash, trades in the demo."""
    root = _project(tmp_path)
    sha = _train(root)
    summary = run_demo(2, overrides={"strategy": _choice(sha)}, root=root)
    assert summary.failures == []
    ledger = Ledger(root / "runs" / "ledger.duckdb")
    reasons = [e.reason for e in ledger.read(events.find, "DECISION")]
    assert reasons and all("MODEL" in r for r in reasons)
    assert stored_intents(ledger), "the trained model's signals must become intents"


def test_str2_when_demo_runs_a_model_whose_hash_differs_then_refused_with_a_clear_message(tmp_path):
    """STR-2: a model file changed after it was pinned is refused at start; the demo reports it, no intents."""
    root = _project(tmp_path)
    sha = _train(root)
    with open(root / "models" / "clf.pkl", "ab") as f:
        f.write(b"changed after review")
    summary = run_demo(1, overrides={"strategy": _choice(sha)}, root=root)
    assert summary.failures, "a model whose hash differs must fail the decide run"
    assert any("params pin " + sha in str(f) and "refusing" in str(f) for f in summary.failures), summary.failures
    ledger = Ledger(root / "runs" / "ledger.duckdb")
    assert stored_intents(ledger) == []
    assert [e for e in ledger.read(events.find, "STRATEGY_ERROR") if f"params pin {sha}; refusing" in e.reason]
