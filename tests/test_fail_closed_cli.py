"""Issue 13, items 1, 2, 5: every command with a damaged ledger, halt with nothing, status/health exit codes.

OPS-7: with a damaged ledger every command exits non-zero with one message naming the
file and the newest good backup, the file's bytes stay the same, `halt` succeeds and
`flatten` closes at the broker. CTL-6: `halt` needs no valid params, ledger or broker;
`status` and `health` answer from the flag file. Commands run in-process through
``tradebook.cli.main`` (the console entry point), so exit codes are the real ones.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from test_ledger_integrity import age, big_ledger, truncate_to, zero_block
from tradebook.context import Context


@pytest.fixture(autouse=True)
def _no_env_kill_switch(monkeypatch):
    monkeypatch.delenv("KILL_SWITCH", raising=False)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


COMMANDS = [("status",), ("health",), ("ledger", "check"), ("ledger", "backup"), ("run", "reconcile"),
            ("run", "execute"), ("report",), ("resume", "--reason", "fixed", "--yes"), ("demo", "--days", "1")]


@pytest.mark.parametrize("damage", [truncate_to(0.5), truncate_to(0.95), zero_block(6)], ids=lambda d: d.__name__)
def test_every_command_when_ledger_damaged_then_nonzero_naming_backup_bytes_unchanged_halt_and_flatten_work(
        root: Path, cli, damage):
    """OPS-7 + CTL-6 + CTL-5: the done-when of issue 13 item 1, command by command."""
    ledger = root / "runs" / "ledger.duckdb"
    big_ledger(ledger)
    good = sorted((root / "runs" / "backups").glob("ledger-*"))[-1]
    Context.load(None, {}, root=root).broker.seed_position("AAPL", 10, 300.0)
    damage(ledger)
    age(ledger)
    before = sha(ledger)
    for command in COMMANDS:
        code, text = cli(*command)
        assert code != 0, (command, text)
        assert str(ledger) in text and str(good) in text, (command, text)
        assert "Traceback" not in text
    code, text = cli("halt", "--reason", "emergency")
    assert code == 0 and "HALTED" in text and "not recorded in the ledger" in text and str(good) in text
    assert json.loads((root / "runs" / "KILL_SWITCH").read_text())["reason"] == "emergency"   # bare halt: all
    code, text = cli("flatten", "--reason", "get out", "--yes")
    assert code == 0, text
    assert "submitted 1 closing order" in text and "flatten-unrecorded-" in text
    broker = Context.load(None, {}, root=root).broker
    closing = [o for o in broker.open_orders() if o.client_order_id.startswith("flat-") and o.symbol == "AAPL"]
    assert broker.positions() == [] or len(closing) == 1  # closed, or closing while the market is shut
    journal, = (root / "runs").glob("flatten-unrecorded-*.json")
    assert json.loads(journal.read_text())["closing_orders"][0]["symbol"] == "AAPL"
    assert json.loads((root / "runs" / "KILL_SWITCH-ledger").read_text())["state"] == "FROZEN"
    assert sha(ledger) == before and not Path(f"{ledger}.wal").exists()


def test_halt_when_params_file_has_a_typo_then_flag_written_and_status_health_show_halted(root: Path, cli):
    """CTL-6: one typo in params/sim.yaml: halt still writes the flag; status/health show HALTED, exit 2."""
    sim = root / "params" / "sim.yaml"
    sim.write_text(sim.read_text() + "\nmax_positon_pct: 0.03\n")
    code, text = cli("halt", "--reason", "emergency")
    assert code == 0, text
    assert json.loads((root / "runs" / "KILL_SWITCH").read_text())["reason"] == "emergency"
    assert "params invalid" in text and "max_positon_pct" in text
    code, text = cli("status")
    assert code == 2 and "HALTED" in text and "emergency" in text
    code, text = cli("health")
    assert code == 2 and "trading is HALTED" in text and "params invalid" in text


def test_halt_when_params_file_missing_or_not_yaml_then_flag_in_runs_dir(root: Path, cli):
    """CTL-6: --params naming a missing file, or YAML that does not parse: the flag goes to runs/."""
    code, text = cli("halt", "--params", "params/nope.yaml")
    assert code == 0 and (root / "runs" / "KILL_SWITCH").exists(), text
    (root / "runs" / "KILL_SWITCH").unlink()
    (root / "params" / "sim.yaml").write_text("mode: [sim\n")
    code, text = cli("halt", "-r", "broken yaml")
    assert code == 0 and (root / "runs" / "KILL_SWITCH").exists(), text
    assert "not valid YAML" in text


def test_halt_when_params_invalid_but_runs_dir_set_then_flag_in_that_runs_dir(root: Path, cli, tmp_path: Path):
    """CTL-6: runs_dir is read from the broken file, so the running daemon sees the flag."""
    elsewhere = tmp_path / "elsewhere"
    (root / "params" / "sim.yaml").write_text(f"runs_dir: {elsewhere}\nmax_position_pct: lots\n")
    code, text = cli("halt", "-r", "x")
    assert code == 0 and (elsewhere / "KILL_SWITCH").exists(), text
    assert not (elsewhere / "ledger.duckdb").exists()  # a guessed place never gets a new ledger


def test_status_and_health_when_broker_down_then_exit_5_and_halt_still_works(root: Path, cli, monkeypatch):
    """Issue 13 item 5 / CTL-6: paper mode against a closed port: status/health exit 5; halt exits 0."""
    monkeypatch.setenv("APCA_API_KEY_ID", "PKTEST")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "secret-test")
    down = ["--params", "params/sim.yaml", "-p", "mode=paper", "-p", "alpaca.url_override=http://127.0.0.1:9",
            "-p", "alpaca.data_url_override=http://127.0.0.1:9", "-p", "alpaca.retries=0",
            "-p", "alpaca.timeout_s=1"]
    code, text = cli("status", *down)
    assert code == 5 and "broker unavailable" in text, text
    code, text = cli("health", *down)
    assert code == 5 and "broker unreachable" in text, text
    code, text = cli("halt", "-r", "broker down", *down)
    assert code == 0 and (root / "runs" / "KILL_SWITCH-paper-ledger").exists(), text
    code, text = cli("status", *down)
    assert code == 5 and "HALTED" in text


def test_status_when_running_then_0_and_when_halted_then_3(root: Path, cli):
    """Issue 13 item 5: status exits 0 only when RUNNING with ledger and broker fine."""
    code, text = cli("status")
    assert code == 0 and "RUNNING" in text, text
    cli("halt", "-r", "stop")
    code, text = cli("status")
    assert code == 3 and "HALTED" in text and "exit 3" in text


def test_halt_when_params_invalid_and_sim_state_exists_then_row_on_simulated_clock_flag_on_wall_clock(
        root: Path, cli):
    """CTL-6 + the one-clock rule: `halt` with a broken params file next to a simulation stamps its
    ledger row with the simulated time (the row's source says which clock), but the all-accounts flag
    with the wall clock: it halts paper and live too, whose status must not say "since 2011"."""
    from support.trading import EXEC_DAY, control_rows, make_ctx, ny

    ctx = make_ctx(root)
    sim_time = ny(EXEC_DAY, 10, 0)
    ctx.broker.advance_to(sim_time)
    control_rows(ctx)                                           # the ledger exists
    sim = root / "params" / "sim.yaml"
    sim.write_text(sim.read_text() + "\nmax_positon_pct: 0.03\n")
    code, text = cli("halt", "--reason", "drill")
    assert code == 0, text
    assert "ledger row with the simulated clock of sim.duckdb" in text
    ts, source = [(c["ts"], c["source"]) for c in control_rows(ctx) if c["state"] == "HALTED"][0]
    assert ts == sim_time and source == "cli (params invalid; simulated clock of sim.duckdb)"
    flag_ts = datetime.fromisoformat(json.loads((root / "runs" / "KILL_SWITCH").read_text())["ts"])
    assert abs(flag_ts - datetime.now(timezone.utc)) < timedelta(minutes=5), flag_ts


def test_halt_when_params_invalid_and_no_sim_state_then_wall_clock_named_in_the_row(root: Path, cli):
    """CTL-6: with no simulation to take the time from (or a paper params file), the wall clock stamps
    the halt, and the row's source says so; the halt itself never fails over it."""
    from tradebook.ledger import controls as control_store
    from tradebook.ledger.db import Ledger

    Ledger(root / "runs" / "ledger.duckdb").read(control_store.control_history)   # the ledger exists
    sim = root / "params" / "sim.yaml"
    sim.write_text(sim.read_text() + "\nmax_positon_pct: 0.03\n")
    before = datetime.now(timezone.utc)
    code, text = cli("halt", "--reason", "drill")
    assert code == 0 and "stamped with the wall clock" in text, text
    first = Ledger(root / "runs" / "ledger.duckdb").read(control_store.control_history)[0]
    ts, source = first["ts"], first["source"]
    assert ts >= before - timedelta(seconds=1) and source == "cli (params invalid; wall clock)"
    (root / "runs" / "sim.duckdb").write_bytes(b"not a duckdb file")   # damaged sim state: still halts
    code, text = cli("halt", "--reason", "again")
    assert code == 0 and "stamped with the wall clock" in text, text
