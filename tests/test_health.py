"""OPS-4: heartbeat staleness, control state and systemd notifications behind `tradebook health`."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tradebook.safety import controls
from tradebook.ops.health import (Heartbeat, check_health, heartbeat_path, read_heartbeat, sd_notify, stale_after_s,
                              watchdog_interval_s, write_heartbeat)

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


def beat(**changes) -> Heartbeat:
    base = Heartbeat(pid=os.getpid(), host=socket.gethostname(), wall=NOW, clock=NOW, mode="sim",
                     state="running", stale_after_s=180.0, speed=1.0, next_event="decide")
    return replace(base, **changes)


def test_ops4_when_heartbeat_fresh_and_running_then_healthy(make_params, root: Path):
    params = make_params()
    write_heartbeat(heartbeat_path(params, root), beat())
    report = check_health(params, root, wall_now=NOW + timedelta(seconds=60))
    assert report.ok, report.problems
    assert any("trading state RUNNING" in n for n in report.notes)


def test_ops4_when_heartbeat_older_than_three_intervals_then_unhealthy_saying_why(make_params, root: Path):
    """OPS-4: stale = more than 3 x reconcile_interval_s of the daemon's clock."""
    params = make_params()
    write_heartbeat(heartbeat_path(params, root), beat())
    report = check_health(params, root, wall_now=NOW + timedelta(seconds=181))
    assert not report.ok and "heartbeat is stale: 181s old, limit 180s" in report.problems[0]


def test_ops4_when_no_heartbeat_or_clean_stop_or_dead_pid_then_unhealthy(make_params, root: Path):
    params = make_params()
    assert "no heartbeat" in check_health(params, root).problems[0]
    write_heartbeat(heartbeat_path(params, root), beat(state="stopped"))
    assert "stopped" in check_health(params, root, wall_now=NOW).problems[0]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_heartbeat(heartbeat_path(params, root), beat(pid=int(dead.stdout)))
    assert "is not running" in check_health(params, root, wall_now=NOW).problems[0]


def test_ctl1_when_kill_switch_set_then_health_fails_with_the_reason(make_params, root: Path):
    """OPS-4 + CTL-1: HALTED (flag file) makes health fail and says why."""
    params = make_params()
    write_heartbeat(heartbeat_path(params, root), beat())
    controls.halt(params, root, "operator drill", now=NOW)
    report = check_health(params, root, wall_now=NOW)
    assert not report.ok and "trading is HALTED" in report.problems[0] and "operator drill" in report.problems[0]


def test_ops4_when_stale_limit_computed_then_scaled_by_clock_speed():
    """Three intervals of the daemon's clock, in wall seconds; never below one phase run."""
    assert stale_after_s(60, 1.0) == 180
    assert stale_after_s(60, 0.25) == 720
    assert stale_after_s(60, 60.0) == 120  # 3 s of wall time would not cover one notebook run
    assert stale_after_s(60, None) == 120


def test_ops4_when_heartbeat_written_then_read_back_atomically(tmp_path: Path):
    path = tmp_path / "runs" / "heartbeat.json"
    write_heartbeat(path, beat(detail={"session": "2011-11-25"}))
    assert read_heartbeat(path) == beat(detail={"session": "2011-11-25"})
    assert [p.name for p in path.parent.iterdir()] == ["heartbeat.json"]
    path.write_text("{half")
    assert read_heartbeat(path) is None


@pytest.mark.parametrize("abstract", [False, True])
def test_ops4_when_notify_socket_set_then_sd_notify_sends_datagram(tmp_path: Path, monkeypatch, abstract: bool):
    """OPS-4: sd_notify speaks systemd's NOTIFY_SOCKET protocol (path or @abstract) without a dependency."""
    name = f"tradebook-test-{os.getpid()}-{tmp_path.name}"
    address = "\0" + name if abstract else str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        server.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name if abstract else address)
        assert sd_notify("WATCHDOG=1")
        assert server.recv(64) == b"WATCHDOG=1"


def test_ops4_when_no_notify_socket_then_sd_notify_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False


def test_ops4_when_watchdog_usec_set_for_us_then_half_interval(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "300000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval_s() == 150.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval_s() is None


def test_ops4_when_cli_health_then_exit_code_tells_the_state(make_params, root: Path):
    """`tradebook health`: 0 when healthy, 1 with the reason when not."""
    params = make_params()
    env = {"TRADEBOOK_ROOT": str(root), "PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "tradebook.cli", "health"]
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "no heartbeat" in out.stdout
    write_heartbeat(heartbeat_path(params, root), beat(wall=datetime.now(timezone.utc)))
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("healthy"), out.stdout + out.stderr
