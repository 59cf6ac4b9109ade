"""Ledger connections ATTACH the file to one in-memory DuckDB per process (OPS-1, OPS-2, OPS-7).

The speed-up must change nothing a caller can see: the lock is released once the last
connection closes, a connection's session settings stay its own, nested connections
see each other's committed rows, a damaged file is still refused, a forked child
gets its own instance.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tradebook.errors import LedgerCorrupt, LedgerError
from tradebook.ledger import attach, events, heartbeats
from tradebook.ledger.db import Ledger, read_all


def _other_process_opens(path: Path) -> bool:
    code = f"import duckdb; duckdb.connect({str(path)!r}).close()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).returncode == 0


def test_connect_when_nested_then_one_attachment_released_only_after_the_outer_closes(tmp_path):
    """OPS-1: while this process uses the ledger nobody else can; once it is done, anyone can."""
    path = tmp_path / "ledger.duckdb"
    ledger = Ledger(path)
    with ledger.transaction() as outer:
        heartbeats.put(outer, "outer", datetime.now(timezone.utc), {})
        with ledger.connect() as inner:   # a second connection of the same process: no lock wait
            assert heartbeats.components(inner) == []  # not committed yet
        assert attach.is_attached(path)
        assert not _other_process_opens(path)
    assert not attach.is_attached(path)
    assert _other_process_opens(path)
    assert ledger.read(heartbeats.components) == ["outer"]


def test_connect_when_a_connection_sets_timezone_then_the_next_connection_does_not_see_it(tmp_path):
    """Session settings (the report's SET TimeZone) stay in their connection, as with one instance per call."""
    ledger = Ledger(tmp_path / "ledger.duckdb")
    with ledger.connect() as con:
        default = con.execute("SELECT current_setting('TimeZone')").fetchone()[0]
        con.execute("SET TimeZone = 'Asia/Tokyo'")
        with ledger.connect() as nested:
            assert nested.execute("SELECT current_setting('TimeZone')").fetchone()[0] == default
    with ledger.connect() as con:
        assert con.execute("SELECT current_setting('TimeZone')").fetchone()[0] == default


def test_connect_when_file_damaged_after_a_clean_close_then_refused(tmp_path):
    """OPS-7: this process trusted the bytes it closed; bytes changed behind its back are checked again."""
    path = tmp_path / "ledger.duckdb"
    ledger = Ledger(path)
    with ledger.transaction() as con:  # raw bulk SQL on purpose: the subject is a file of many blocks
        con.execute("INSERT INTO events (ts, kind, reason) SELECT now(), 'TEST', 'row ' || i FROM range(30000) r(i)")
    assert ledger.read(events.count) == 30000   # trusted, attached and detached again
    os.truncate(path, path.stat().st_size // 2)
    old = time.time() - 60
    os.utime(path, (old, old))
    with pytest.raises(LedgerCorrupt):
        Ledger(path).read(events.count)
    assert not attach.is_attached(path)


def test_connect_when_ledger_read_write_in_this_process_then_read_only_refused_clearly(tmp_path):
    """Read-only and read-write never mix in one process (DuckDB refused that before too)."""
    path = tmp_path / "ledger.duckdb"
    ledger = Ledger(path)
    with ledger.connect():
        with pytest.raises(LedgerError, match="already open read-write"):
            with ledger.connect(read_only=True):
                pass
    with ledger.connect(read_only=True) as con:   # on its own it works
        assert con.execute("SELECT count(*) FROM schema_version").fetchone()[0] >= 1


def test_read_all_when_connection_has_temporary_tables_then_only_ledger_tables_counted(tmp_path):
    """`ledger check` counts the ledger's tables, never the connection's temporary ones."""
    ledger = Ledger(tmp_path / "ledger.duckdb")
    with ledger.connect() as con:
        con.execute("CREATE TEMP TABLE scratch (x INTEGER)")
        counts = read_all(con)
    assert "scratch" not in counts and "runs" in counts


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_connect_when_forked_child_writes_then_parent_reads_it_and_neither_shares_an_instance(tmp_path):
    """A forked kernel makes its own DuckDB instance (never the parent's) and releases the file."""
    path = tmp_path / "ledger.duckdb"
    ledger = Ledger(path)
    with ledger.transaction() as con:
        heartbeats.put(con, "parent", datetime.now(timezone.utc), {})
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            with Ledger(path).transaction() as con:
                heartbeats.put(con, "child", datetime.now(timezone.utc), {})
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ledger.read(heartbeats.components) == ["child", "parent"]


def test_held_when_calls_made_inside_then_one_check_one_attachment_and_released_after(tmp_path, monkeypatch):
    """OPS-1/OPS-7: a held burst (the demo's monitor tick) checks and attaches the file once, commits
    every transaction as usual, and releases the file when it ends."""
    from tradebook.ledger import file as ledger_file

    path = tmp_path / "ledger.duckdb"
    ledger = Ledger(path)
    ledger.check()
    ledger_file.forget(path)
    checks, attaches = [], []
    real_check, real_attach = ledger_file.check_once, attach._attach
    monkeypatch.setattr(ledger_file, "check_once", lambda p: checks.append(p) or real_check(p))
    monkeypatch.setattr(attach, "_attach", lambda *a: attaches.append(a) or real_attach(*a))
    with ledger.held():
        for k in range(5):
            with ledger.transaction() as con:
                heartbeats.put(con, f"c{k}", datetime.now(timezone.utc), {})
            assert len(ledger.read(heartbeats.components)) == k + 1
        assert not _other_process_opens(path)
    assert len(checks) == 1 and len(attaches) == 1
    assert _other_process_opens(path)
    out = subprocess.run([sys.executable, "-c", f"import duckdb; print(duckdb.connect({str(path)!r}, read_only=True)"
                          ".execute('SELECT count(*) FROM heartbeats').fetchone()[0])"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "5", out.stderr   # committed and checkpointed into the file
