"""OPS-6: JSON-lines logs under runs/logs/, one event per line, secrets never written."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tradebook.logs import REDACTED, Redactor, get_logger, log_event, reset_logging, setup_logging

SECRET_ID = "PKTESTKEYID0123456789"
SECRET_KEY = "sEcReTvAlUe0123456789abcdefghijklmnopqrst"


@pytest.fixture(autouse=True)
def clean_logging():
    reset_logging()
    yield
    reset_logging()


def read_lines(logs_dir: Path) -> list[dict]:
    lines = []
    for path in sorted(logs_dir.glob("tradebook-*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


def test_ops6_when_event_logged_then_one_json_line_with_run_id_and_fields(make_params, root: Path):
    """OPS-6: ts, level, logger, run_id, message, fields on one line in runs/logs/tradebook-<date>.jsonl."""
    logs_dir = setup_logging(make_params(), root, run_id="run-42")
    log_event("daemon", "info", "phase done", phase="decide", orders=3)
    get_logger("gate").warning("plain stdlib call")

    files = list(logs_dir.glob("tradebook-*.jsonl"))
    assert len(files) == 1 and files[0].name.startswith("tradebook-20")
    first, second = read_lines(logs_dir)
    assert first["message"] == "phase done" and first["level"] == "INFO"
    assert first["logger"] == "tradebook.daemon" and first["run_id"] == "run-42"
    assert first["fields"] == {"phase": "decide", "orders": 3}
    assert first["ts"].endswith("+00:00")
    assert second["logger"] == "tradebook.gate" and second["fields"] == {}


def test_ops6_when_env_keys_appear_in_message_fields_and_traceback_then_redacted(make_params, root: Path,
                                                                                monkeypatch):
    """OPS-6: the values of APCA_API_KEY_ID / APCA_API_SECRET_KEY never reach the file."""
    monkeypatch.setenv("APCA_API_KEY_ID", SECRET_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET_KEY)
    logs_dir = setup_logging(make_params(), root)
    log = get_logger("broker")
    log_event(log, "error", f"auth failed for {SECRET_ID}", headers={"key": SECRET_KEY, "list": [SECRET_ID]})
    try:
        raise RuntimeError(f"boom with {SECRET_KEY}")
    except RuntimeError:
        log.exception("call failed %s", SECRET_ID)

    text = "".join(p.read_text() for p in logs_dir.glob("*.jsonl"))
    assert SECRET_ID not in text and SECRET_KEY not in text
    first, second = read_lines(logs_dir)
    assert first["message"] == f"auth failed for {REDACTED}"
    assert first["fields"]["headers"] == {"key": REDACTED, "list": [REDACTED]}
    assert "RuntimeError" in second["exc"] and REDACTED in second["exc"]


@pytest.mark.parametrize("leak", [
    "APCA-API-SECRET-KEY: abcSECRET123",
    "{'APCA-API-SECRET-KEY': 'abcSECRET123'}",
    "APCA_API_SECRET_KEY=abcSECRET123",
    "apca-api-key-id:abcSECRET123",
    "Authorization: Bearer abcSECRET123",
])
def test_ops6_when_header_shaped_secret_logged_then_value_redacted(leak: str, make_params, root: Path):
    """OPS-6: credentials shaped like Alpaca's auth headers are redacted even when not in the env."""
    logs_dir = setup_logging(make_params(), root)
    log_event("broker", "warning", f"request failed: {leak}", sent=leak)
    text = "".join(p.read_text() for p in logs_dir.glob("*.jsonl"))
    assert "abcSECRET123" not in text and REDACTED in text


def test_ops6_when_setup_twice_then_one_handler_and_run_id_updated(make_params, root: Path):
    """OPS-6: setup_logging is idempotent (notebooks and the daemon may both call it)."""
    params = make_params()
    before = len(logging.getLogger().handlers)
    logs_dir = setup_logging(params, root, run_id="a")
    setup_logging(params, root, run_id="b")
    assert len(logging.getLogger().handlers) == before + 1
    log_event("x", "info", "once")
    lines = read_lines(logs_dir)
    assert len(lines) == 1 and lines[0]["run_id"] == "b"


def test_ops6_when_library_logs_info_then_skipped_but_warnings_kept(make_params, root: Path):
    """OPS-6: other libraries' chatter stays out below WARNING; their warnings are kept (redacted)."""
    logs_dir = setup_logging(make_params(), root)
    logging.getLogger("urllib3.connectionpool").info("Starting new HTTPS connection")
    logging.getLogger("urllib3.connectionpool").warning("Retrying APCA-API-KEY-ID: zzzSECRET")
    lines = read_lines(logs_dir)
    assert [line["logger"] for line in lines] == ["urllib3.connectionpool"]
    assert "zzzSECRET" not in lines[0]["message"]


def test_ops6_when_secret_contains_another_then_longest_removed_whole():
    """OPS-6: overlapping secrets leave no fragment behind."""
    red = Redactor(["abc", "xxabcxx"])
    assert red.text("token xxabcxx and abc") == f"token {REDACTED} and {REDACTED}"
