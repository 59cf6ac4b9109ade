"""EXE-4: read-only commands (status, health, doctor) never count failures into the shared API
circuit breaker, so a monitoring cron against a broker that is down cannot open the trading
breaker; they still see a breaker the trading processes opened."""
from __future__ import annotations

import json
from pathlib import Path

from test_cli import tradebook

DOWN = ["--params", "params/alpaca-paper.yaml", "-p", "alpaca.url_override=http://127.0.0.1:9",
        "-p", "alpaca.data_url_override=http://127.0.0.1:9", "-p", "alpaca.retries=0", "-p", "alpaca.timeout_s=1",
        "-p", "api_breaker_failures=2"]
KEYS = {"APCA_API_KEY_ID": "PKTEST", "APCA_API_SECRET_KEY": "secret-test"}


def _recent_failures(root: Path) -> int:
    path = root / "runs" / "api_breaker-paper.json"
    return len(json.loads(path.read_text()).get("failures", [])) if path.exists() else 0


def test_status_health_doctor_when_broker_down_then_breaker_never_counts_or_opens(root: Path):
    """EXE-4: `status` run again and again (a cron), `health` and `doctor` against a dead broker: no
    failure counted, no "circuit breaker open", and the broker problem is still reported."""
    for command in ("status", "status", "status", "health", "doctor"):
        out = tradebook(root, command, *DOWN, env=KEYS)
        text = out.stdout + out.stderr
        assert out.returncode != 0 and "circuit breaker open" not in text, (command, text)
        assert "Traceback" not in text, (command, text)
    assert "broker unavailable" in tradebook(root, "status", *DOWN, env=KEYS).stdout
    assert _recent_failures(root) == 0


def test_read_only_breaker_when_trading_process_opened_it_then_seen_open_and_left_alone(tmp_path: Path):
    """EXE-4: the read-only view reports a breaker opened by a trading process and never changes it."""
    from tradebook.broker.alpaca.breaker import BreakerFile, CircuitBreaker, ReadOnlyBreakerFile

    path = tmp_path / "api_breaker-paper.json"
    trading = CircuitBreaker(2, 60, clock=lambda: 1000.0, store=BreakerFile(path))
    watcher = CircuitBreaker(2, 60, clock=lambda: 1000.0, store=ReadOnlyBreakerFile(path))
    for _ in range(3):
        watcher.record_failure("get clock: down")
    assert not path.exists() and not watcher.is_open
    trading.record_failure("get clock: down")
    trading.record_failure("get clock: down")
    before = path.read_text()
    assert watcher.is_open and "circuit breaker open" in watcher.reason
    watcher.record_success()
    watcher.record_failure("again")
    assert path.read_text() == before and trading.is_open


def test_report_when_broker_down_and_no_ledger_then_refused_no_ledger_created_breaker_untouched(root: Path):
    """EXE-4 + OPS-8: a report only looks: against a dead broker and no paper ledger it says there is
    nothing to report, creates no paper-ledger.duckdb and counts no failure toward the trading breaker."""
    out = tradebook(root, "report", *DOWN, env=KEYS)
    text = out.stdout + out.stderr
    assert out.returncode == 2 and "paper-ledger.duckdb" in text and "Traceback" not in text, text
    assert not (root / "runs" / "paper-ledger.duckdb").exists()
    assert _recent_failures(root) == 0


def test_report_when_broker_down_then_report_written_and_breaker_never_counts(root: Path):
    """EXE-4: `tradebook report` (twice, as a cron would) against a dead broker: the report is written
    from the ledger (positions at cost), and not one failure reaches the shared API breaker."""
    from tradebook.ledger import controls as control_store
    from tradebook.ledger.db import Ledger

    Ledger(root / "runs" / "paper-ledger.duckdb").read(control_store.control_history)   # the ledger exists
    for _ in range(2):
        out = tradebook(root, "report", *DOWN, env=KEYS, timeout=300)
        assert out.returncode == 0 and "report: OK" in out.stdout, out.stdout + out.stderr
    assert _recent_failures(root) == 0
