"""OPS-5: alerts are logged, stored as ALERT events and delivered through Apprise."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tradebook import alerts
from tradebook.errors import ConfigError
from tradebook.ledger import events
from tradebook.ledger.db import Ledger
from tradebook.logs import reset_logging, setup_logging

from support.webhook import WebhookReceiver


@pytest.fixture(autouse=True)
def clean_state():
    reset_logging()
    alerts._defaults.clear()
    yield
    reset_logging()
    alerts._defaults.clear()


@pytest.fixture
def webhook():
    with WebhookReceiver() as receiver:
        yield receiver


def stored(ledger: Ledger) -> list[tuple]:
    return [(e.kind, e.reason, e.data) for e in ledger.read(events.find, "ALERT")]


def test_ops5_when_alert_with_apprise_url_then_delivered_stored_and_logged(make_params, root: Path, webhook):
    """OPS-5: a FREEZE alert reaches the local JSON webhook, the ledger and the JSON log."""
    params = make_params(**{"alerts.apprise_urls": [webhook.url]})
    logs_dir = setup_logging(params, root)
    ledger = Ledger(params.ledger_path(root))

    result = alerts.alert(ledger, "FREEZE", "daily loss limit hit", data={"loss_pct": 0.021}, params=params)

    assert result.stored and result.delivered is True
    assert webhook.titles() == ["[tradebook sim] FREEZE"]
    assert "daily loss limit hit" in webhook.received[0]["message"]
    assert webhook.received[0]["type"] == "failure"
    (kind, reason, data), = stored(ledger)
    assert reason == "daily loss limit hit" and data == {"alert": "FREEZE", "loss_pct": 0.021}
    log = [json.loads(x) for p in logs_dir.glob("*.jsonl") for x in p.read_text().splitlines()]
    assert any(line["message"] == "ALERT FREEZE: daily loss limit hit" and line["level"] == "CRITICAL"
               for line in log)


def test_ops5_when_alert_inside_caller_transaction_then_it_commits_or_rolls_back_with_it(make_params, root: Path):
    """OPS-5/OPS-2: an alert written on the caller's connection is part of its state change."""
    params = make_params()
    ledger = Ledger(params.ledger_path(root))
    with ledger.transaction() as con:
        alerts.alert(con, "BREAKER", "drawdown breaker", params=params)
    with pytest.raises(RuntimeError):
        with ledger.transaction() as con:
            alerts.alert(con, "INCIDENT", "rolled back with the caller", params=params)
            raise RuntimeError("the caller's state change failed")
    assert [r[1] for r in stored(ledger)] == ["drawdown breaker"]


def test_ops5_when_webhook_unreachable_then_alert_stored_and_no_exception(make_params, root: Path, webhook):
    """OPS-5: a failed delivery is logged and reported, never raised into trading code."""
    dead_port = webhook.port
    webhook.__exit__()
    params = make_params(**{"alerts.apprise_urls": [f"json://127.0.0.1:{dead_port}/"]})
    ledger = Ledger(params.ledger_path(root))
    result = alerts.alert(ledger, "RUN_FAILED", "execute failed", params=params)
    assert result.delivered is False and result.stored
    assert len(stored(ledger)) == 1


def test_ops5_when_webhook_answers_500_then_delivered_false(make_params, root: Path):
    with WebhookReceiver(status=500) as failing:
        params = make_params(**{"alerts.apprise_urls": [failing.url]})
        result = alerts.alert(None, "DIVERGENCE", "positions differ", params=params)
    assert result.delivered is False and not result.stored and len(failing.received) == 1


def test_ops5_when_urls_set_and_apprise_missing_then_config_error_at_start(make_params, monkeypatch, webhook):
    """OPS-5: configured delivery that cannot work is a ConfigError when the daemon starts."""
    monkeypatch.setitem(sys.modules, "apprise", None)  # import apprise -> ImportError
    params = make_params(**{"alerts.apprise_urls": [webhook.url]})
    with pytest.raises(ConfigError, match="apprise"):
        alerts.configure(params)
    # ...and an alert raised anyway is still logged and stored, not lost in an exception.
    assert alerts.alert(None, "FREEZE", "x", params=params).delivered is False


def test_ops5_when_url_not_understood_then_config_error_without_the_url(make_params):
    params = make_params(**{"alerts.apprise_urls": ["nosuchscheme://token-abc123@host/"]})
    with pytest.raises(ConfigError) as err:
        alerts.check_delivery(params)
    assert "token-abc123" not in str(err.value) and "nosuchscheme" in str(err.value)


def test_ops5_when_urls_in_environment_then_used_and_configure_sets_default(make_params, root: Path, webhook,
                                                                          monkeypatch):
    """OPS-5: URLs carrying tokens can live in TRADEBOOK_APPRISE_URLS (the EnvironmentFile)."""
    monkeypatch.setenv("TRADEBOOK_APPRISE_URLS", webhook.url)
    alerts.configure(make_params())
    result = alerts.alert(None, "MISSED_WINDOW", "execute window missed")
    assert result.delivered is True and webhook.titles() == ["[tradebook sim] MISSED_WINDOW"]


def test_ops5_when_ledger_corrupt_then_alert_still_delivered(make_params, root: Path, webhook):
    """OPS-5: the alert about a broken ledger cannot depend on that ledger."""
    params = make_params(**{"alerts.apprise_urls": [webhook.url]})
    path = params.ledger_path(root)
    path.write_bytes(b"not a duckdb file" * 100)
    result = alerts.alert(Ledger(path), "INCIDENT", "ledger unreadable", params=params)
    assert result.stored is False and result.delivered is True


def test_ops5_when_message_has_secret_then_redacted_everywhere(make_params, root: Path, webhook, monkeypatch):
    """OPS-6 via OPS-5: an alert message never carries the API secret to the chat server."""
    monkeypatch.setenv("APCA_API_SECRET_KEY", "topSECRETvalue42")
    params = make_params(**{"alerts.apprise_urls": [webhook.url]})
    ledger = Ledger(params.ledger_path(root))
    alerts.alert(ledger, "INCIDENT", "auth error with topSECRETvalue42", params=params)
    assert "topSECRETvalue42" not in json.dumps(webhook.received)
    assert "topSECRETvalue42" not in str(stored(ledger))
    assert alerts.recent_alerts(ledger, "INCIDENT")[0]["alert"] == "INCIDENT"


def test_ops5_when_alert_stored_inside_a_transaction_then_delivered_only_after_commit(make_params, root: Path,
                                                                                       webhook):
    """OPS-5/OPS-2 (issue 12 item 12): an alert stored in the caller's transaction is delivered after
    the commit -- no network call while the transaction holds the ledger -- and an alert whose
    state change rolls back is never delivered."""
    params = make_params(**{"alerts.apprise_urls": [webhook.url]})
    ledger = Ledger(params.ledger_path(root))
    with ledger.transaction() as con:
        result = alerts.alert(con, "BREAKER", "drawdown breaker", params=params)
        assert webhook.received == [] and result.deferred        # nothing sent while inside
    assert webhook.titles() == ["[tradebook sim] BREAKER"]
    with pytest.raises(RuntimeError):
        with ledger.transaction() as con:
            alerts.alert(con, "INCIDENT", "a change that rolls back", params=params)
            raise RuntimeError("the caller's state change failed")
    assert webhook.titles() == ["[tradebook sim] BREAKER"] and [r[1] for r in stored(ledger)] == ["drawdown breaker"]
