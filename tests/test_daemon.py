"""OPS-4 done-when: the daemon runs a trading week unattended on simulated time, survives kills.

The week 2011-11-21 .. 2011-11-28 has Thanksgiving (Thu 24, no session) and a half day
(Fri 25, close 13:00). The daemon is a real subprocess on the real phase notebooks
(papermill, real runs/ folders), SimBroker's clock as fast as possible:

1. first start Monday 09:31, hold the clock at Tue 09:20 (after Tuesday's pre-open
   reconcile); a second daemon is refused; SIGKILL the first (its whole process group);
2. downtime: the simulated clock moves to Tue 11:00, past Tuesday's execute window;
   restart, hold at Wed 16:05 (before Wednesday's decide); SIGTERM (clean stop);
3. downtime into the holiday (Thu 10:00); restart and run to Mon 28 17:00, clean stop.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tradebook.broker.sim.broker import SimBroker
from tradebook.ops.health import DaemonAlreadyRunning, DaemonLock, check_health, heartbeat_path, read_heartbeat
from tradebook.ledger import events, heartbeats, runs
from tradebook.ledger import fills as fill_store
from tradebook.ledger.backup import BACKUP_EVENT
from tradebook.ledger.db import Ledger
from tradebook.ops.schedule import day_plan, parse_clock_time
from support.trading import stored_intents, stored_orders

from support.webhook import WebhookReceiver

pytestmark = pytest.mark.integration
NY = ZoneInfo("America/New_York")
SESSIONS = [date(2011, 11, 21), date(2011, 11, 22), date(2011, 11, 23), date(2011, 11, 25), date(2011, 11, 28)]


def ny(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=NY)


class DaemonDriver:
    """Starts `tradebook daemon` subprocesses against one project root and watches its heartbeat."""

    def __init__(self, root: Path, overrides: dict):
        self.root = root
        self.args = [a for k, v in overrides.items() for a in ("-p", f"{k}={json.dumps(v)}")]
        self.env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        self.env.update(TRADEBOOK_ROOT=str(root), COLUMNS="200")
        self.logs: list[Path] = []

    def start(self, *extra: str) -> subprocess.Popen:
        log = self.root / f"daemon-{len(self.logs)}.log"
        self.logs.append(log)
        return subprocess.Popen([sys.executable, "-m", "tradebook.cli", "daemon", "--speed", "max", *self.args,
                                 *extra], cwd=self.root, env=self.env, stdout=log.open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return "\n".join(p.read_text() for p in self.logs)

    def wait_holding(self, proc: subprocess.Popen, at: datetime, timeout: float = 150.0) -> None:
        deadline = time.monotonic() + timeout
        path = self.root / "runs" / "heartbeat-ledger.json"
        while time.monotonic() < deadline:
            beat = read_heartbeat(path) if path.exists() else None
            if beat and beat.state == "holding" and beat.pid == proc.pid and beat.clock == at:
                return
            assert proc.poll() is None, f"daemon exited early ({proc.returncode}):\n{self.output()}"
            time.sleep(0.1)
        pytest.fail(f"daemon never held at {at}:\n{self.output()}")

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGKILL)  # the daemon and its kernel fork server, as systemd would
        proc.wait(timeout=30)


class RecordingRunner:
    """Stands in for the notebook runner in the fast in-process tests: records the ``runs`` row the
    runner would (phase, sim_time, status) and fails the phases it is told to, like a broken notebook."""

    def __init__(self, ledger: Ledger, clock, fail: set[str] = frozenset()):
        self.ledger, self.clock, self.fail = ledger, clock, set(fail)
        self.calls: list[tuple[str, datetime]] = []

    def __call__(self, phase: str):
        from tradebook.errors import PhaseFailed

        now = self.clock.now()
        run_id = f"{now:%Y%m%d%H%M%S}-{phase}-{len(self.calls)}"
        self.calls.append((phase, now))
        status = "FAILED" if phase in self.fail else "OK"
        with self.ledger.transaction() as con:
            runs.start(con, run_id, phase, started_at=datetime.now(timezone.utc), sim_time=now)
            runs.finish(con, run_id, status, datetime.now(timezone.utc),
                        "ValueError: boom" if status == "FAILED" else None)
        if status == "FAILED":
            raise PhaseFailed(f"phase {phase} failed", run_id=run_id, phase=phase, error="ValueError: boom",
                              notebook_path=f"runs/{run_id}.ipynb")
        return type("Record", (), {"run_id": run_id, "status": "OK", "notebook_path": f"runs/{run_id}.ipynb"})()


def make_daemon(params, root: Path, **kwargs):
    from tradebook.ops.daemon import Daemon
    from tradebook.ops.schedule import SimClock

    clock = SimClock(SimBroker.from_params(params, root), speed=None)
    runner = RecordingRunner(Ledger(params.ledger_path(root)), clock, kwargs.pop("fail", set()))
    return Daemon(params, root, clock=clock, runner=runner, **kwargs), runner


def alerts_of(ledger: Ledger) -> list[dict]:
    from tradebook.alerts import recent_alerts

    return recent_alerts(ledger, limit=500)


def run_counts(ledger: Ledger, params) -> dict[tuple[date, str], int]:
    """Runs of each phase inside each session's slot window (see schedule.py)."""
    counts = {}
    for day in SESSIONS:
        for slot in day_plan(day, params):
            if slot.phase == "backup":
                continue
            lo = slot.done_from if slot.phase != "reconcile" else slot.done_from.replace(hour=0, minute=0)
            counts[(day, slot.phase)] = ledger.read(runs.count, phase=slot.phase, since=lo, until=slot.done_until)
    return counts


@pytest.mark.timeout(600)  # ~21 notebook runs and 4 daemon processes: generous for a loaded CI machine
def test_ops4_when_daemon_runs_a_week_killed_and_restarted_then_each_phase_once_no_duplicates_alerts_sent(
        root: Path, make_params):
    """OPS-4, OPS-5, EXIT-3: a week on simulated time with a holiday, a half day, a SIGKILL and a SIGTERM."""
    with WebhookReceiver() as webhook:
        overrides = {"sim.start_date": "2011-11-21", "reconcile_interval_s": 3600,
                     "alerts.apprise_urls": [webhook.url], "runs_dir": str(root / "runs")}
        params = make_params(**overrides)
        driver = DaemonDriver(root, overrides)
        SimBroker.from_params(params, root).advance_to(ny("2011-11-21T09:31"))  # first start: just after the open

        first = driver.start("--hold-at", "2011-11-22T09:20")
        driver.wait_holding(first, ny("2011-11-22T09:20"))
        assert check_health(params, root).ok, check_health(params, root).problems
        second = driver.start("--until", "2011-11-22T10:00")
        assert second.wait(timeout=120) == 3, driver.output()
        assert "another tradebook daemon is running" in driver.logs[-1].read_text()
        driver.kill(first)
        assert f"daemon process {first.pid} is not running" in check_health(params, root).problems[0]

        SimBroker.from_params(params, root).advance_to(ny("2011-11-22T11:00"))  # down past Tuesday's window
        restarted = driver.start("--hold-at", "2011-11-23T16:05")
        driver.wait_holding(restarted, ny("2011-11-23T16:05"))
        restarted.send_signal(signal.SIGTERM)  # this time a clean stop, as `systemctl stop` does
        assert restarted.wait(timeout=60) == 0, driver.output()
        assert read_heartbeat(heartbeat_path(params, root)).state == "stopped"

        SimBroker.from_params(params, root).advance_to(ny("2011-11-24T10:00"))  # down into Thanksgiving
        last = driver.start("--until", "2011-11-28T17:00")
        assert last.wait(timeout=300) == 0, driver.output()
        alerts_seen = webhook.titles()

    ledger = Ledger(params.ledger_path(root), create=False)
    counts = run_counts(ledger, params)
    # Every phase once per session; Tuesday's execute window was missed while the daemon was down.
    for day in SESSIONS:
        assert counts[(day, "execute")] == (0 if day == date(2011, 11, 22) else 1), (day, counts)
        assert counts[(day, "decide")] == 1 and counts[(day, "report")] == 1, (day, counts)
        assert counts[(day, "reconcile")] >= 1, (day, counts)
    every_run = sorted(ledger.read(runs.latest, None), key=lambda r: (r.sim_time, r.started_at))
    assert [(r.phase, r.status, r.error) for r in every_run if r.status != "OK"] == []

    # The holiday: no execute; Wednesday's decide caught up on Thursday, before Friday's open.
    holiday = [r.phase for r in every_run if ny("2011-11-24T00:00") <= r.sim_time < ny("2011-11-25T00:00")]
    assert holiday == ["reconcile", "decide", "report"]
    # The half day: decide after the 13:00 close.
    assert [r.sim_time for r in every_run if r.phase == "decide"
            and ny("2011-11-25T00:00") <= r.sim_time < ny("2011-11-26T00:00")] == [ny("2011-11-25T13:15")]

    # EXIT-3: what Monday's decide planned stayed PLANNED through Tuesday (no order sent then).
    intents, orders = stored_intents(ledger), stored_orders(ledger)
    monday = [i.intent_id for i in intents
              if i.decision_time and ny("2011-11-21T16:00") <= i.decision_time < ny("2011-11-22T00:00")]
    tuesday_orders = [o for o in orders
                      if o.submitted_at and ny("2011-11-22T00:00") <= o.submitted_at < ny("2011-11-23T00:00")]
    assert tuesday_orders == []
    assert [i.intent_id for i in intents if i.state == "PLANNED" and i.decision_time
            and i.decision_time < ny("2011-11-25T00:00")] == [], "intents left behind after the next windows"

    # No duplicate orders: one client id per intent attempt, fills never exceed the intent.
    attempts = [(o.intent_id, o.attempt) for o in orders]
    assert len(attempts) == len(set(attempts))
    intended = {i.intent_id: i.qty for i in intents}
    fills = ledger.read(fill_store.history)
    filled = {iid: sum(f["qty"] for f in fills if f["intent_id"] == iid) for iid in {f["intent_id"] for f in fills}}
    assert [iid for iid, q in filled.items() if iid in intended and q > intended[iid] + 1e-9] == []
    broker_ids = [o.client_order_id for o in SimBroker.from_params(params, root).fills()]
    assert len(fills) == len(broker_ids)

    # Alerts stored and delivered to the local webhook.
    stored = {e.data["alert"] for e in ledger.read(events.find, "ALERT")}
    assert {"DAEMON_START", "DAEMON_STOP", "MISSED_WINDOW"} <= stored
    assert alerts_seen.count("[tradebook sim] DAEMON_START") == 3
    assert alerts_seen.count("[tradebook sim] DAEMON_STOP") == 2  # the SIGKILLed one could not say goodbye
    assert "[tradebook sim] MISSED_WINDOW" in alerts_seen
    missed = [e.reason for e in ledger.read(events.find, "ALERT", alert="MISSED_WINDOW", phase="execute")]
    assert len(missed) == 1 and "execute for 2011-11-22 missed" in missed[0]
    assert monday  # Monday's decide planned something, so the missed window mattered

    # Liveness and backups.
    assert read_heartbeat(heartbeat_path(params, root)).state == "stopped"
    assert list(ledger.read(heartbeats.details, ["daemon"])) == ["daemon"]
    backups = {e.data["session"] for e in ledger.read(events.find, BACKUP_EVENT)}
    assert {d.isoformat() for d in SESSIONS} <= backups
    assert len(list((root / "runs" / "backups").glob("ledger-2011112*"))) >= 5


def test_ops4_when_lock_already_held_then_second_daemon_refused(tmp_path: Path):
    """OPS-4: one daemon per runs/ folder; the message names the holder."""
    with DaemonLock(tmp_path / "daemon.lock"):
        with pytest.raises(DaemonAlreadyRunning, match=f"pid {os.getpid()}"):
            with DaemonLock(tmp_path / "daemon.lock"):
                pass
    with DaemonLock(tmp_path / "daemon.lock"):  # released on exit
        pass


def test_ops4_when_clock_time_has_no_offset_then_exchange_time():
    assert parse_clock_time("2011-11-25T13:00") == ny("2011-11-25T13:00")
    assert parse_clock_time("2011-11-25T18:00+00:00") == ny("2011-11-25T13:00")
    assert parse_clock_time(None) is None


def test_ops4_when_unit_file_read_then_notify_watchdog_restart_always_and_keys_from_env_file():
    """OPS-4: systemd unit with Restart=always, a watchdog the daemon feeds, secrets only via EnvironmentFile."""
    import configparser

    text = (Path(__file__).resolve().parents[1] / "deploy" / "tradebook.service").read_text()
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string(text)
    service = unit["Service"]
    assert service["Type"] == "notify" and service["Restart"] == "always"
    assert int(service["WatchdogSec"]) > 600  # longer than the runner's cell timeout
    assert service["EnvironmentFile"].startswith("/etc/")
    assert "/.venv/bin/tradebook daemon" in service["ExecStart"] and service["WorkingDirectory"]
    config_lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert not any("APCA_" in line for line in config_lines)


def test_ops4_when_phase_fails_then_alerted_once_and_never_retried_even_after_restart(root: Path, make_params):
    """§3/OPS-5: a failed run is recorded and alerted (RUN_FAILED); a restarted daemon does not rerun it."""
    params = make_params(**{"sim.start_date": "2011-11-21", "reconcile_interval_s": 7200})
    daemon, runner = make_daemon(params, root, fail={"decide"}, until=ny("2011-11-21T16:17"))
    daemon.clock.broker.advance_to(ny("2011-11-21T09:31"))  # first start after Friday's decide window
    assert daemon.run() == 0
    again, runner2 = make_daemon(params, root, fail={"decide"}, until=ny("2011-11-21T18:00"))
    assert again.run() == 0
    assert [p for p, _ in runner.calls] == ["reconcile", "execute", "decide"]  # the start-up reconcile serves execute
    assert [(p, t) for p, t in runner.calls + runner2.calls if p == "decide"] == [("decide", ny("2011-11-21T16:15"))]
    failed = [a for a in alerts_of(daemon.ledger) if a["alert"] == "RUN_FAILED"]
    assert len(failed) == 1 and failed[0]["phase"] == "decide" and "ValueError: boom" in failed[0]["message"]
    # the report after a failed decide still ran, once, in the second daemon
    assert [p for p, _ in runner2.calls] == ["reconcile", "report"]


def test_ops4_when_down_past_next_open_then_decide_skipped_with_alert_and_first_start_quiet(root: Path,
                                                                                         make_params):
    """§3: missed decide runs only before the next open; slots missed before the first start are not alerted."""
    params = make_params(**{"sim.start_date": "2011-11-21", "reconcile_interval_s": 7200})
    first, _ = make_daemon(params, root, until=ny("2011-11-21T12:00"))
    first.clock.broker.advance_to(ny("2011-11-21T11:00"))  # first ever start, after Monday's window
    first.run()
    assert not [a for a in alerts_of(first.ledger) if a["alert"] == "MISSED_WINDOW"]

    first.clock.broker.advance_to(ny("2011-11-22T10:30"))  # down over Monday's decide and Tuesday's window
    second, runner = make_daemon(params, root, until=ny("2011-11-22T10:45"))
    second.run()
    missed = {(a["phase"], a["session"]) for a in alerts_of(second.ledger) if a["alert"] == "MISSED_WINDOW"}
    assert missed == {("decide", "2011-11-21"), ("execute", "2011-11-22")}
    assert [p for p, _ in runner.calls] == ["reconcile"]  # the startup reconcile only: nothing run late

    third, runner = make_daemon(params, root, until=ny("2011-11-22T11:00"))
    third.run()
    assert len([a for a in alerts_of(third.ledger) if a["alert"] == "MISSED_WINDOW"]) == 2  # not repeated


def test_ops4_when_sim_speed_set_then_daemon_waits_real_time_and_monitor_ticks_run(root: Path, make_params):
    """Simulated time at a speed factor: 2 simulated hours in ~0.1 s at 72,000x, monitor ticks in between."""
    from tradebook.ops.daemon import Daemon
    from tradebook.ops.schedule import SimClock

    params = make_params(**{"sim.start_date": "2011-11-21", "reconcile_interval_s": 1800})
    broker = SimBroker.from_params(params, root)
    broker.advance_to(ny("2011-11-21T10:01"))
    clock = SimClock(broker, speed=72_000.0)
    daemon = Daemon(params, root, clock=clock, runner=RecordingRunner(Ledger(params.ledger_path(root)), clock),
                    until=ny("2011-11-21T12:01"))
    started = time.monotonic()
    daemon.run()
    assert time.monotonic() - started >= 0.1  # it did wait (2 h / 72,000 = 0.1 s); no upper bound asserted
    # 10:00 (at most one interval late at start: still run), 10:30, 11:00, 11:30, 12:00
    assert daemon.monitor_runs == 5 and daemon.last_tick == ny("2011-11-21T12:00")


def test_ops4_when_wall_clock_idle_then_it_keeps_feeding_the_systemd_watchdog(root: Path, make_params,
                                                                              monkeypatch, tmp_path: Path):
    """OPS-4: on real time an idle daemon wakes every WatchdogSec/2 to beat and send WATCHDOG=1."""
    import socket
    import threading

    from tradebook.ops.daemon import Daemon
    from tradebook.ops.schedule import WallClock

    params = make_params(**{"reconcile_interval_s": 86_400})  # idle: no monitor tick for a day
    clock = WallClock()
    address = str(tmp_path / "notify.sock")
    messages: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(address)
        notify.settimeout(0.1)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a 0.4 s watchdog: wake every 0.2 s
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        daemon = Daemon(params, root, clock=clock, runner=RecordingRunner(Ledger(params.ledger_path(root)), clock))
        loop = threading.Thread(target=daemon.run)
        loop.start()
        idle_at = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and loop.is_alive():
            try:
                messages.append(notify.recv(64).decode())
            except (TimeoutError, socket.timeout):
                pass
            beat = read_heartbeat(heartbeat_path(params, root))
            if idle_at is None and beat and beat.next_event and not beat.next_event.startswith("running"):
                idle_at = len(messages)  # waiting for a slot hours away from here on
            if idle_at is not None and messages[idle_at:].count("WATCHDOG=1") >= 3:
                break
        daemon.request_stop()
        loop.join(timeout=30)
    assert not loop.is_alive() and idle_at is not None
    assert messages[0] == "READY=1" and messages[idle_at:].count("WATCHDOG=1") >= 3
    assert read_heartbeat(heartbeat_path(params, root)).state == "stopped"
