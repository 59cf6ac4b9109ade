"""OPS-2/OPS-3: consistent ledger backups, retention, restore, and a corrupt ledger named as such."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tradebook.ledger.backup import backup, check, list_backups, prune, restore
from tradebook.errors import LedgerCorrupt, LedgerError, LedgerLocked
from tradebook.ledger import events as event_store
from tradebook.ledger.db import Ledger, newest_backup

T0 = datetime(2011, 11, 21, 21, 20, tzinfo=timezone.utc)


def make_ledger(path: Path, events: int = 3) -> Ledger:
    ledger = Ledger(path)
    with ledger.transaction() as con:
        for i in range(events):
            event_store.record(con, "TEST", reason=f"event {i}")
    return ledger


def count_events(path: Path) -> int:
    return Ledger(path, create=False).read(event_store.count, "TEST")


def test_ops3_when_backup_taken_then_named_copy_opens_with_same_rows(tmp_path: Path):
    """OPS-3: runs/backups/ledger-<UTC stamp>.duckdb, found by ledger.newest_backup."""
    path = tmp_path / "runs" / "ledger.duckdb"
    make_ledger(path, events=5)
    made = backup(path, now=T0)
    assert made == tmp_path / "runs" / "backups" / "ledger-20111121T212000Z.duckdb"
    assert newest_backup(path) == made
    assert count_events(made) == 5
    assert not list(made.parent.glob(".*"))  # no partial file left behind


def test_ops3_when_ledger_corrupt_then_error_names_newest_backup_and_restore_brings_data_back(tmp_path: Path):
    """OPS-3: garbage in the ledger file -> LedgerCorrupt naming the backup -> restore -> data back."""
    path = tmp_path / "runs" / "ledger.duckdb"
    make_ledger(path, events=4)
    backup(path, now=T0)
    newest = backup(path, now=T0 + timedelta(days=1))
    path.write_bytes(b"\x00garbage, not a database" * 500)

    with pytest.raises(LedgerCorrupt) as err:
        Ledger(path).rows("SELECT 1")
    assert f"tradebook ledger restore {newest}" in str(err.value)

    result = restore(None, path, now=T0 + timedelta(days=2))
    assert result.restored_from == newest and result.counts["events"] == 4
    assert count_events(path) == 4
    aside, = result.set_aside
    assert aside.name == "ledger.duckdb.corrupt-20111123T212000Z"
    assert aside.read_bytes().startswith(b"\x00garbage")  # never deleted


def test_ops3_when_ledger_healthy_then_restore_refuses_unless_forced(tmp_path: Path):
    """OPS-3: restoring over a healthy ledger would drop history: it needs --force."""
    path = tmp_path / "runs" / "ledger.duckdb"
    ledger = make_ledger(path, events=2)
    made = backup(path, now=T0)
    with ledger.transaction() as con:
        event_store.record(con, "TEST", reason="after the backup")
    with pytest.raises(LedgerError, match="healthy"):
        restore(made, path)
    assert count_events(path) == 3
    result = restore(made, path, force=True, now=T0)
    assert count_events(path) == 2 and result.set_aside[0].name.startswith("ledger.duckdb.replaced-")
    assert count_events(result.set_aside[0]) == 3


def test_ops3_when_backups_older_than_retention_then_pruned_but_newest_kept(tmp_path: Path):
    """OPS-3: retention N days; the newest backup survives whatever its age."""
    path = tmp_path / "runs" / "ledger.duckdb"
    make_ledger(path)
    for day in range(5):
        backup(path, now=T0 + timedelta(days=day))
    removed = prune(path.parent / "backups", path, retention_days=2, now=T0 + timedelta(days=4))
    assert [p.name[7:15] for p in removed] == ["20111121", "20111122"]
    assert [p.name[7:15] for p in list_backups(path)] == ["20111123", "20111124", "20111125"]
    assert prune(path.parent / "backups", path, retention_days=1, now=T0 + timedelta(days=400))
    assert len(list_backups(path)) == 1


def test_ops3_when_backup_with_retention_then_prunes_in_the_same_call(tmp_path: Path):
    path = tmp_path / "runs" / "ledger.duckdb"
    make_ledger(path)
    backup(path, now=T0)
    backup(path, now=T0 + timedelta(days=20), retention_days=14)
    assert [p.name for p in list_backups(path)] == ["ledger-20111211T212000Z.duckdb"]


def test_ops1_when_another_process_holds_the_ledger_then_backup_waits_for_it(tmp_path: Path):
    """OPS-1: the copy is taken under DuckDB's lock, after the writer lets go, never half-way."""
    path = tmp_path / "runs" / "ledger.duckdb"
    make_ledger(path, events=1)
    holder = subprocess.Popen([sys.executable, "-c", (  # a raw connection: it holds DuckDB's lock for a second
        "import duckdb, sys, time\n"
        "from tradebook.ledger import events\n"
        f"con = duckdb.connect({str(path)!r})\n"
        "events.record(con, 'TEST', reason='held')\n"
        "print('held', flush=True)\n"
        "time.sleep(1.0)\n"
        "con.close()\n")], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "lib")})
    try:
        assert holder.stdout.readline().strip() == "held"
        made = backup(path, now=T0)
    finally:
        holder.wait(timeout=30)
    assert count_events(made) == 2


def test_ops3_when_daemon_running_then_restore_refuses(tmp_path: Path):
    """OPS-3: never swap the ledger under a running daemon."""
    path = tmp_path / "runs" / "ledger.duckdb"
    make_ledger(path)
    made = backup(path, now=T0)
    path.write_bytes(b"garbage" * 100)
    with open(path.parent / "daemon.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(LedgerLocked, match="daemon is running"):
            restore(made, path)
    assert path.read_bytes().startswith(b"garbage")


def test_ops3_when_backup_file_is_garbage_then_restore_refuses_and_keeps_ledger(tmp_path: Path):
    path = tmp_path / "runs" / "ledger.duckdb"
    make_ledger(path)
    fake = path.parent / "backups" / "ledger-20111121T000000Z.duckdb"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"nope" * 100)
    with pytest.raises(LedgerCorrupt, match="backup .* is damaged"):
        restore(fake, path, force=True)
    assert count_events(path) == 3


def test_ops3_when_check_then_counts_and_newest_backup(tmp_path: Path):
    path = tmp_path / "runs" / "ledger.duckdb"
    make_ledger(path, events=2)
    made = backup(path, now=T0)
    result = check(path)
    assert result.counts["events"] == 2 and result.schema_version >= 1 and result.newest_backup == made
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(LedgerCorrupt, match="restore"):
        check(path)


def test_ops3_when_cli_backup_check_restore_then_round_trip(root: Path, make_params):
    """OPS-3 through `tradebook ledger backup|check|restore` (exit codes and messages)."""
    params = make_params()
    path = params.ledger_path(root)
    make_ledger(path, events=3)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tradebook.cli", "ledger", *args], cwd=root,
                              capture_output=True, text=True, timeout=120,
                              env={"TRADEBOOK_ROOT": str(root), "PATH": "/usr/bin:/bin", "COLUMNS": "400"})

    out = cli("backup")
    assert out.returncode == 0, out.stderr
    assert "ledger-" in out.stdout and len(list_backups(path)) == 1
    assert cli("check").returncode == 0
    path.write_bytes(b"garbage" * 100)
    bad = cli("check")
    assert bad.returncode == 2 and "tradebook ledger restore" in bad.stderr and "Traceback" not in bad.stderr
    out = cli("restore")
    assert out.returncode == 0, out.stderr
    assert count_events(path) == 3 and list(path.parent.glob("ledger.duckdb.corrupt-*"))


def test_ops3_cli_backup_when_sim_mode_then_stamped_by_simulated_clock_and_daemon_backups_kept(root: Path, make_params):
    """OPS-3 with one clock in simulation: `tradebook ledger backup` is stamped like the daemon's
    backups (SimBroker time). A wall-clock stamp deleted every daemon backup as "older than
    retention" and, sorting last, made `ledger restore` pick it over newer daemon backups."""
    from tradebook.broker.sim.broker import SimBroker
    from tradebook.clock import sim_now

    params = make_params()
    path = params.ledger_path(root)
    make_ledger(path, events=2)
    sim = params.sim
    broker = SimBroker(params.sim_state_path(root), start_date=sim.start_date, starting_cash=sim.starting_cash,
                       spread_bps=sim.spread_bps, seed=sim.seed, fractionable=tuple(sim.fractionable))
    now = broker.now()
    del broker
    assert sim_now(params, root) == now
    daemon_backup = backup(path, now=now - timedelta(days=1), retention_days=14)
    out = subprocess.run([sys.executable, "-m", "tradebook.cli", "ledger", "backup"], cwd=root, capture_output=True,
                         text=True, timeout=120, env={"TRADEBOOK_ROOT": str(root), "PATH": "/usr/bin:/bin",
                                                      "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert out.returncode == 0, out.stderr
    assert daemon_backup.exists()
    assert newest_backup(path).name == f"ledger-{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}.duckdb"
