"""The whole Alpaca path in CI: papermill → library → alpaca-py → HTTP → loopback fake.

Also the secrets scan of issue 6: with keys in the environment, nothing under runs/
(executed notebooks included: papermill stores parameters), no log line and no error
output contains a key value.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from tradebook.testing.alpaca_fake.server import DEMO_KEYS, FAKE_LEDGER_FILE
from tradebook.demo import PHASES, run_demo
from tradebook.ledger import controls as control_store
from tradebook.ledger import positions as position_store
from tradebook.ledger import runs
from tradebook.ledger.db import Ledger

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("demo")]
FAKE_RUNS = lambda root: root / "runs" / "demo-alpaca-fake"   # noqa: E731  the fake demo's own runs folder
USER_KEYS = ("PKUSERKEYSHOULDNEVERLEAK01", "SKUSERSECRETSHOULDNEVERLEAK0123456789")


def test_demo_on_alpaca_fake_when_run_then_phases_ok_and_no_secret_anywhere(root: Path, monkeypatch, capfd):
    """OPS-6 / issue 6: every file under runs/ and all output are free of key values."""
    monkeypatch.setenv("APCA_API_KEY_ID", USER_KEYS[0])
    monkeypatch.setenv("APCA_API_SECRET_KEY", USER_KEYS[1])
    summary = run_demo(2, root=root, broker="alpaca-fake")
    assert summary.failures == [] and summary.notebooks == 2 * len(PHASES)
    ledger = Ledger(FAKE_RUNS(root) / FAKE_LEDGER_FILE)   # OPS-8: the fake account has its own ledger
    assert not (root / "runs" / "ledger.duckdb").exists()
    assert ledger.read(runs.count, status="OK") == 2 * len(PHASES)
    # One clock: notebooks are filed under the fake's simulated session dates, not today's.
    days = sorted(p.name for p in FAKE_RUNS(root).glob("20*") if p.is_dir())
    assert len(days) == 2 and all(d.startswith("2011-07-") for d in days), days
    assert ledger.read(runs.modes) == {"paper"}

    secrets = [*USER_KEYS, *DEMO_KEYS]
    files = [p for p in (root / "runs").rglob("*") if p.is_file()]
    assert any(p.suffix == ".ipynb" for p in files) and any(p.suffix == ".jsonl" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{secret[:4]}… found in {path}"
    out, err = capfd.readouterr()
    for secret in secrets:
        assert secret not in out and secret not in err


def test_demo_on_alpaca_fake_when_venue_realistic_then_ledger_equals_broker_and_no_incident(root: Path, monkeypatch):
    """Issue 14 done-when: async cancels, a margin account and a rate limit switched on (DEMO_VENUE);
    the demo ends with ledger = broker and no incident (no faults are injected)."""
    from contextlib import contextmanager

    from tradebook.testing.alpaca_fake import server as alpaca_fake

    seen: list[alpaca_fake.FakeAlpacaServer] = []
    real = alpaca_fake.demo_fake

    @contextmanager
    def spying(start=None):
        with real(start) as (overrides, fake):
            seen.append(fake)
            yield overrides, fake

    monkeypatch.setattr(alpaca_fake, "demo_fake", spying)
    limited: list[str] = []

    def count_429(method, path, status, *rest) -> None:
        if status == 429:
            limited.append(path)

    alpaca_fake.FakeAlpacaServer.observers.append(count_429)
    try:
        summary = run_demo(3, root=root, broker="alpaca-fake")
    finally:
        alpaca_fake.FakeAlpacaServer.observers.remove(count_429)
    assert summary.failures == [], summary.failures
    assert limited, "the rate limit was never hit: the demo venue does not exercise it"
    fake = seen[0]
    venue = fake.state.venue
    assert venue.margin and venue.cancel_delay_s > 0 and fake.limiter is not None
    ledger = Ledger(FAKE_RUNS(root) / FAKE_LEDGER_FILE)   # OPS-8: the fake account keeps its own ledger
    ours = {s: round(q, 6) for s, q, _ in ledger.read(position_store.quantities) if q != 0}
    theirs = {s: round(float(h.qty), 6) for s, h in fake.state.positions.items()}
    assert ours == theirs
    assert ledger.read(control_store.incident_history) == []


def test_demo_on_alpaca_fake_when_paper_account_halted_then_own_ledger_and_scope_and_paper_files_untouched(
        root: Path):
    """OPS-8 / CTL-1: the fake's account is not the paper account. With a paper ledger and a
    kill-switch flag in runs/, the fake demo neither creates, binds nor moves the paper ledger,
    nor obeys the paper account's halt: its ledger, flag and notebooks live in
    runs/demo-alpaca-fake/ (old code: runs/paper-ledger.duckdb bound to PA3FAKE00001, HALTED=7)."""
    from tradebook.safety import killswitch

    paper = root / "runs" / "paper-ledger.duckdb"
    paper.write_bytes(b"the paper account's ledger (opaque to this test)")
    for flag in (killswitch.ledger_flag(paper), root / "runs" / killswitch.FLAG_FILE):   # paper's own, and all of runs/
        killswitch.write_flag(flag, "HALTED", "paper account halted", "op", "cli", datetime.now(timezone.utc))
    before = {p.name: p.read_bytes() for p in (root / "runs").iterdir() if p.is_file()}

    summary = run_demo(2, root=root, broker="alpaca-fake", fresh=True)

    assert summary.failures == [] and summary.start_lines == []
    assert "HALTED" not in summary.rejects_by_reason, summary.rejects_by_reason
    assert {p.name: p.read_bytes() for p in (root / "runs").iterdir() if p.is_file()} == before
    assert summary.ledger_path == FAKE_RUNS(root) / FAKE_LEDGER_FILE
    ledger = Ledger(summary.ledger_path)
    assert ledger.read(runs.count, status="OK") == 2 * len(PHASES)
    assert not list((root / "runs").glob("20*")), "notebooks belong under the fake demo's folder"
