"""CTL-5 / OPS-1: `tradebook flatten` when the ledger is locked by another process or the broker is down.

A locked ledger is handled like a damaged one (close at the broker, journal to
runs/flatten-unrecorded-*.json, FROZEN flag); a broker that does not answer gets a plain
"nothing was sold" and a flag whose reason says the flatten did not complete.
Real CLI subprocesses, output captured (as through a pipe).
"""
from __future__ import annotations

import json
from pathlib import Path

import duckdb

from test_cli import tradebook

DOWN = ["--params", "params/alpaca-paper.yaml", "-p", "alpaca.url_override=http://127.0.0.1:9",
        "-p", "alpaca.data_url_override=http://127.0.0.1:9", "-p", "alpaca.retries=0", "-p", "alpaca.timeout_s=1"]


def test_flatten_when_ledger_locked_by_another_process_then_closes_at_broker_and_journals(root: Path):
    """CTL-5/OPS-1: the ledger held open elsewhere: flatten still closes the position at the broker,
    journals what it did, freezes via the flag, and leaves no "flatten in progress" flag behind."""
    from tradebook.context import Context
    from tradebook.ledger.db import Ledger

    ledger = root / "runs" / "ledger.duckdb"
    with Ledger(ledger).connect():
        pass
    Context.load(None, {}, root=root).broker.seed_position("AAPL", 10, 300.0)
    holder = duckdb.connect(str(ledger))
    try:
        out = tradebook(root, "flatten", "-r", "get out", "--yes", env={"TRADEBOOK_LEDGER_LOCK_TIMEOUT_S": "1"})
    finally:
        holder.close()
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "submitted 1 closing order" in text and "flatten-unrecorded-" in text and "held by another" in text
    journal, = (root / "runs").glob("flatten-unrecorded-*.json")
    assert json.loads(journal.read_text())["closing_orders"][0]["symbol"] == "AAPL"
    flag = json.loads((root / "runs" / "KILL_SWITCH-ledger").read_text())
    assert flag["state"] == "FROZEN" and "in progress" not in flag["reason"]
    broker = Context.load(None, {}, root=root).broker
    closing = [o for o in broker.open_orders() if o.client_order_id.startswith("flat-") and o.symbol == "AAPL"]
    assert broker.positions() == [] or len(closing) == 1  # closed, or closing while the market is shut


def test_flatten_when_broker_down_then_says_nothing_sold_and_flag_says_not_completed(root: Path):
    """CTL-5: the broker does not answer: a plain error (nothing was sold, HALTED, run it again), no
    traceback, and the flag's reason says the flatten did not complete (never "in progress" forever)."""
    out = tradebook(root, "flatten", "-r", "get out", "--yes", *DOWN,
                    env={"APCA_API_KEY_ID": "PKTEST", "APCA_API_SECRET_KEY": "secret-test"})
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert "nothing was sold" in out.stderr.lower() and "HALTED" in out.stderr
    assert "run flatten again when the broker answers" in out.stderr
    flag = json.loads((root / "runs" / "KILL_SWITCH-paper-ledger").read_text())
    assert flag["state"] == "HALTED" and "did NOT complete" in flag["reason"] and "in progress" not in flag["reason"]
