"""`tradebook doctor`: first contact, line by line, exit non-zero only on what would stop trading (issue 14)."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tradebook.testing.alpaca_fake.server import FakeAlpacaServer
from tradebook.testing.alpaca_fake.venue import VenueOptions
from tradebook.ops.doctor import FAIL, failed, run_doctor

NY = ZoneInfo("America/New_York")
KEYS = {"APCA_API_KEY_ID": "PKDOCTORTEST0001", "APCA_API_SECRET_KEY": "SKDOCTORTESTSECRET0001"}


@pytest.fixture
def fake():
    # A free-plan paper key on a margin account, like a fresh real paper account.
    with FakeAlpacaServer(start=datetime(2011, 7, 6, 10, 0, tzinfo=NY), venue=VenueOptions(margin=True)) as server:
        yield server


@pytest.fixture
def keys(monkeypatch):
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)


def params_for(make_params, fake, **extra):
    return make_params(mode="paper", **{"alpaca.url_override": fake.url, "alpaca.data_url_override": fake.url,
                                        "alpaca.retries": 0, **extra})


def test_doctor_when_free_plan_paper_key_then_sip_restriction_reported_and_passes(root: Path, fake):
    """Done-when of issue 14: against a free-plan paper key doctor reports the SIP restriction and passes."""
    args = ["-p", "mode=paper", "-p", f"alpaca.url_override={fake.url}", "-p", f"alpaca.data_url_override={fake.url}"]
    out = subprocess.run([sys.executable, "-m", "tradebook.cli", "doctor", "--params", "params/alpaca-paper.yaml",
                          *args], cwd=root, capture_output=True, text=True, timeout=120,
                         env={**os.environ, **KEYS, "TRADEBOOK_ROOT": str(root)})
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "recent SIP refused (free plan" in text and "alpaca.bars_feed sip: works" in text
    assert "alpaca.feed iex: works" in text and "margin account (multiplier 2" in text
    assert "asset AAPL" in text and "ACTIVE" in text and "clock" in text and "ready to trade" in text
    assert KEYS["APCA_API_SECRET_KEY"] not in text + out.stderr


def test_doctor_when_quotes_feed_not_in_plan_then_fail_and_exit_one(keys, fake, make_params):
    checks = run_doctor(params_for(make_params, fake, **{"alpaca.feed": "sip"}), None)
    bad = [c for c in checks if c.status == FAIL]
    assert failed(checks) and [c.name for c in bad] == ["quotes feed"]
    assert "subscription does not permit" in bad[0].detail


def test_doctor_when_symbol_unknown_then_asset_fail(keys, fake, make_params):
    checks = run_doctor(params_for(make_params, fake, symbols=["AAPL", "ZZZZ"]), None)
    assert [c.name for c in checks if c.status == FAIL] == ["asset ZZZZ"]


def test_doctor_when_keys_missing_then_fail_naming_variables(monkeypatch, fake, make_params):
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)
    checks = run_doctor(params_for(make_params, fake), None)
    assert failed(checks) and "APCA_API_KEY_ID" in checks[0].detail


def test_doctor_when_allow_margin_then_says_margin_used(keys, fake, make_params):
    checks = run_doctor(params_for(make_params, fake, **{"alpaca.allow_margin": True}), None)
    margin = next(c for c in checks if c.name == "margin")
    assert "margin allowed" in margin.detail and not failed(checks)
