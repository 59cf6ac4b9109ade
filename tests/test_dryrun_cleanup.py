"""Dry runs (phase notebooks opened by hand) leave no copies of the ledger behind.

Each dry run copies the ledger and the sim state into a temporary folder; the process that
made it removes it at exit, and a new dry run removes leftovers of killed processes older
than a day. Nothing that is not a dry-run folder is ever removed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tradebook import dryrun

REPO = Path(__file__).resolve().parents[1]
TWO_DAYS = 2 * 24 * 3600


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def _folder(base: Path, name: str, pid: int | None, age_s: float = 0, marker: bool = True) -> Path:
    folder = base / name
    folder.mkdir()
    (folder / "ledger.duckdb").write_bytes(b"copy")
    if marker:
        (folder / dryrun.MARKER).write_text(json.dumps({"pid": pid, "created": time.time() - age_s}))
        old = time.time() - age_s
        os.utime(folder / dryrun.MARKER, (old, old))
    return folder


def test_clean_stale_when_dry_run_folders_of_dead_processes_older_than_a_day_then_only_those_removed(tmp_path):
    """Leftovers of killed kernels go; a recent one, one whose process lives, one without the marker,
    other folders and a symlink to a dry-run folder stay (and the symlink's target is untouched)."""
    dead = _dead_pid()
    stale = _folder(tmp_path, "tradebook-dryrun-execute-a1b2c3d4", dead, TWO_DAYS)
    recent = _folder(tmp_path, "tradebook-dryrun-decide-e5f6g7h8", dead, 3600)
    alive = _folder(tmp_path, "tradebook-dryrun-report-i9j0k1l2", os.getpid(), TWO_DAYS)
    unmarked = _folder(tmp_path, "tradebook-dryrun-execute-nomarker", dead, TWO_DAYS, marker=False)
    os.utime(unmarked, (time.time() - TWO_DAYS,) * 2)
    other = _folder(tmp_path, "not-a-dryrun-execute", dead, TWO_DAYS)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = _folder(outside, "tradebook-dryrun-execute-target00", dead, TWO_DAYS)
    link = tmp_path / "tradebook-dryrun-execute-symlink0"
    link.symlink_to(target, target_is_directory=True)
    garbled = _folder(tmp_path, "tradebook-dryrun-execute-garbled0", dead, TWO_DAYS)
    (garbled / dryrun.MARKER).write_text("not json")

    assert dryrun.clean_stale(tmp_path) == [stale]
    assert not stale.exists()
    assert all(p.exists() for p in (recent, alive, unmarked, other, link, target, garbled))
    assert (target / "ledger.duckdb").read_bytes() == b"copy"


def test_clean_stale_when_temp_dir_missing_then_nothing_and_no_error(tmp_path):
    assert dryrun.clean_stale(tmp_path / "gone") == []


@pytest.mark.integration
def test_dry_context_when_process_exits_then_its_copy_is_removed_and_a_killed_ones_later(root, tmp_path):
    """A dry run's copy lives as long as its process: a normal exit removes it; a killed process
    leaves it, and the next dry run removes it once it is older than a day."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(REPO / "lib")}
    script = ("import os, sys\nfrom tradebook.context import Context\nfrom tradebook.dryrun import dry_context\n"
              "ctx = Context.load('params/sim.yaml', {}, root=sys.argv[1])\n"
              "dry = dry_context(ctx, 'execute')\nprint(dry.runs_dir, flush=True)\n"
              "assert dry.params.ledger_path(dry.root).parent.is_dir()\n"
              "if sys.argv[2] == 'kill': os.kill(os.getpid(), 9)\n")
    done = subprocess.run([sys.executable, "-c", script, str(root), "exit"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).parent == temp and not Path(done.stdout.strip()).exists()
    killed = subprocess.run([sys.executable, "-c", script, str(root), "kill"], env=env, capture_output=True,
                            text=True, timeout=120)
    left = Path(killed.stdout.strip())
    assert killed.returncode == -9 and dryrun.is_dry_run_folder(left)
    assert dryrun.clean_stale(temp) == []             # not a day old yet: maybe still in use
    old = time.time() - TWO_DAYS
    os.utime(left / dryrun.MARKER, (old, old))
    again = subprocess.run([sys.executable, "-c", script, str(root), "exit"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert not left.exists() and list(temp.iterdir()) == []


def test_remove_own_when_called_in_a_forked_child_then_parents_folder_kept(monkeypatch, tmp_path):
    """A child forked after a dry run (a pool worker, a helper process) inherits the exit handler;
    its exit must not take the parent's copy away while the parent still works on it."""
    monkeypatch.setattr(dryrun.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(dryrun, "_OWN", [])
    folder = dryrun._new_folder("decide")
    pid = os.fork()
    if pid == 0:   # the child: run the handler as its exit would, then leave without pytest's cleanup
        dryrun.remove_own()
        os._exit(0)
    os.waitpid(pid, 0)
    assert folder.exists() and dryrun.is_dry_run_folder(folder)
    dryrun.remove_own()
    assert not folder.exists()
