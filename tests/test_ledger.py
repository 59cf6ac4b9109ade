"""Ledger: versioned migrations, short-lived connections, lock retry, corrupt-file errors (OPS-1..3)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tradebook.errors import LedgerCorrupt, LedgerLocked
from tradebook.ledger import events as event_store
from tradebook.ledger.db import Ledger, utcnow
from tradebook.ledger.schema import MIGRATIONS

SPEC_TABLES = {"runs", "events", "intents", "verdicts", "orders", "fills", "positions", "trades",
               "closed_today", "cooldowns", "equity_snapshots", "controls", "incidents", "schema_version",
               "ledger_meta"}


def _hold_lock(path, seconds: float) -> subprocess.Popen:
    """A real second process that opens the ledger read-write and keeps it."""
    code = (f"import duckdb, time, sys; c = duckdb.connect({str(path)!r}); "
            f"print('locked', flush=True); time.sleep({seconds})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_new_ledger_when_opened_then_all_spec_tables_exist_at_latest_version(tmp_path):
    ledger = Ledger(tmp_path / "ledger.duckdb")
    counts = ledger.check()
    assert SPEC_TABLES <= set(counts)
    assert ledger.schema_version() == len(MIGRATIONS)


def test_migrations_when_reopened_then_not_reapplied(tmp_path):
    path = tmp_path / "ledger.duckdb"
    Ledger(path).check()
    Ledger(path).check()
    assert Ledger(path).scalar("SELECT count(*) FROM schema_version") == len(MIGRATIONS)


def test_transaction_when_body_raises_then_nothing_is_written(tmp_path):
    """OPS-2: a state change commits whole or not at all."""
    ledger = Ledger(tmp_path / "ledger.duckdb")
    with pytest.raises(RuntimeError):
        with ledger.transaction() as con:
            event_store.record(con, "TEST", reason="half-done")
            raise RuntimeError("crash mid-change")
    assert ledger.read(event_store.count) == 0
    with ledger.transaction() as con:
        event_store.record(con, "TEST", reason="done", data={"x": 1})
    assert ledger.read(event_store.count) == 1


def test_connection_when_closed_then_another_process_can_open_the_file(tmp_path):
    """OPS-1: the ledger is never held open between calls."""
    path = tmp_path / "ledger.duckdb"
    Ledger(path).check()
    out = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(path)!r}).close(); print('ok')"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_locked_ledger_when_lock_outlasts_timeout_then_clear_error_naming_file(tmp_path):
    """OPS-1: a lock held by another process gives LedgerLocked naming the file, not a hang."""
    path = tmp_path / "ledger.duckdb"
    Ledger(path).check()
    holder = _hold_lock(path, 30)
    try:
        with pytest.raises(LedgerLocked) as err:
            Ledger(path, lock_timeout_s=0.5).check()
        assert str(path) in str(err.value) and "tradebook halt" in str(err.value)
    finally:
        holder.kill()
        holder.wait()


def test_locked_ledger_when_lock_released_soon_then_retry_succeeds(tmp_path):
    """OPS-1: short-lived connections retry on the lock error."""
    path = tmp_path / "ledger.duckdb"
    Ledger(path).check()
    holder = _hold_lock(path, 1.0)
    try:
        started = time.monotonic()
        assert Ledger(path, lock_timeout_s=20).check()["events"] == 0
        assert time.monotonic() - started < 20
    finally:
        holder.kill()
        holder.wait()


def test_corrupt_ledger_when_opened_then_clear_error_and_file_untouched(tmp_path):
    """OPS-3: a corrupt ledger is never replaced by an empty new one."""
    path = tmp_path / "ledger.duckdb"
    garbage = b"this is not a duckdb file" * 100
    path.write_bytes(garbage)
    with pytest.raises(LedgerCorrupt) as err:
        Ledger(path).check()
    assert str(path) in str(err.value) and "Nothing was written" in str(err.value)
    assert path.read_bytes() == garbage


def test_corrupt_ledger_when_backups_exist_then_error_names_newest_good_backup(tmp_path):
    """OPS-3/OPS-7: the error names the newest backup that is whole; a damaged newer one is skipped."""
    import shutil

    path = tmp_path / "ledger.duckdb"
    Ledger(path).check()
    (tmp_path / "backups").mkdir()
    good = tmp_path / "backups" / "ledger-20110705T000000Z.duckdb"
    shutil.copyfile(path, good)
    (tmp_path / "backups" / "ledger-20110706T000000Z.duckdb").write_bytes(b"half a copy")
    path.write_bytes(b"garbage" * 500)
    with pytest.raises(LedgerCorrupt, match="ledger-20110705T000000Z"):
        Ledger(path).check()


def test_record_event_when_written_then_queryable(tmp_path):
    """REC-6 building block: audit events carry symbol, qty, price, reason."""
    ledger = Ledger(tmp_path / "ledger.duckdb")
    with ledger.transaction() as con:
        event_store.record(con, "BACKFILL", symbol="AAPL", qty=10, price=101.5, reason="external", ts=utcnow())
    event, = ledger.read(event_store.find)
    assert (event.kind, event.symbol, event.qty, event.price, event.reason) == ("BACKFILL", "AAPL", 10.0, 101.5, "external")


def test_lock_timeout_when_env_value_is_bad_then_config_error_naming_env(tmp_path, monkeypatch):
    """CFG-1 (issue 13): a bad value from the environment is named as such, never a raw ValueError."""
    from tradebook.errors import ConfigError

    monkeypatch.setenv("TRADEBOOK_LEDGER_LOCK_TIMEOUT_S", "fifteen")
    with pytest.raises(ConfigError, match=r"TRADEBOOK_LEDGER_LOCK_TIMEOUT_S.*\[from env\]"):
        Ledger(tmp_path / "ledger.duckdb")
