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


# A parent that made its DuckDB instances (ledger and simulated venue), then forks children that end as
# kernels and scripts do: a normal interpreter exit (SystemExit), never os._exit.
FORK_SCRIPT = """
import os, sys, time
from datetime import datetime, timezone
from pathlib import Path
from tradebook.broker.sim.store import _memory_connection
from tradebook.ledger import heartbeats
from tradebook.ledger.db import Ledger

path, hold = Path(sys.argv[1]), sys.argv[2] == "hold"
ledger = Ledger(path, lock_timeout_s=1)
ledger.check()
_memory_connection()
held = ledger.connect()
if hold:
    held.__enter__()

def child(name):
    try:
        with Ledger(path, lock_timeout_s=1).transaction() as con:
            heartbeats.put(con, name, datetime.now(timezone.utc), {})
        print(name, "wrote", flush=True)
    except Exception as exc:
        print(name, type(exc).__name__, flush=True)
    sys.exit(0)   # the interpreter's normal exit: finalizers run

pids = []
for name in ("first", "second"):
    pid = os.fork()
    if pid == 0:
        child(name)
    pids.append(pid)
    if hold:
        time.sleep(1.5)
        held.__exit__(None, None, None)
        hold = False
for pid in pids:
    print("exit", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
print("rows", sorted(Ledger(path).read(heartbeats.components)), flush=True)
"""


def _fork_script(path: Path, mode: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", FORK_SCRIPT, str(path), mode], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_fork_when_parent_made_duckdb_instances_then_children_exit_cleanly_and_write_the_ledger(tmp_path):
    """OPS-1/OPS-2 (fork safety): a child forked by a process that has its in-memory DuckDB instances (between
    ledger calls) writes the ledger with an instance of its own and exits with 0. The old child read the
    ledger, then died at exit with SIGABRT ("terminate called without an active exception") or SIGSEGV:
    the inherited instance's destructor ran without its threads."""
    out = _fork_script(tmp_path / "ledger.duckdb", "between")
    assert out.count("exit 0") == 2, out
    assert "first wrote" in out and "second wrote" in out
    assert out[-1] == "rows ['first', 'second']"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_fork_when_parent_holds_the_ledger_then_child_gets_ledger_locked_and_exits_cleanly(tmp_path):
    """OPS-1: a child forked while its parent holds the ledger gets LedgerLocked after its lock timeout
    (the old one got a bare LedgerError "Unique file handle conflict", and aborted at exit); a child forked
    after the parent let go writes it."""
    out = _fork_script(tmp_path / "ledger.duckdb", "hold")
    assert "first LedgerLocked" in out and "second wrote" in out, out
    assert out.count("exit 0") == 2, out
    assert out[-1] == "rows ['second']"


def _mp_child(path: str, timeout: float, answers) -> None:
    try:
        with Ledger(path, lock_timeout_s=timeout).transaction() as con:
            heartbeats.put(con, "mp-child", datetime.now(timezone.utc), {})
        answers.put("wrote")
    except Exception as exc:   # reported to the parent, which asserts on it
        answers.put(type(exc).__name__)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_multiprocessing_fork_when_parent_holds_then_locked_and_after_release_child_writes(tmp_path):
    """OPS-1: multiprocessing's fork children (the sweep pool's kind): LedgerLocked while the parent holds
    the ledger, a write once it released it; both end with exit code 0."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    path = tmp_path / "ledger.duckdb"
    ledger = Ledger(path)
    ledger.check()
    answers = ctx.Queue()
    with ledger.connect():
        locked = ctx.Process(target=_mp_child, args=(str(path), 0.5, answers))
        locked.start()
        assert answers.get(timeout=60) == "LedgerLocked"
        locked.join(60)
    writer = ctx.Process(target=_mp_child, args=(str(path), 5.0, answers))
    writer.start()
    assert answers.get(timeout=60) == "wrote"
    writer.join(60)
    assert (locked.exitcode, writer.exitcode) == (0, 0)
    assert ledger.read(heartbeats.components) == ["mp-child"]
