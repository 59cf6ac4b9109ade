"""`tradebook daemon`: runs the phases on the exchange calendar, unattended (OPS-4, §3).

One instance per runs/ folder (an fcntl lock on ``runs/daemon.lock``). On start it
reconciles, then walks the plan of ``schedule.py``: each due slot runs once through the
runner (papermill, warm kernels), monitor ticks call ``monitor.run_monitor`` in process,
and a slot found already done in the ``runs`` table is skipped, so a restart never
repeats a phase. Missed slots follow the rules: a missed execute window leaves planned
intents for the next window (MISSED_WINDOW alert); a missed decide runs late while the
next session has not opened, else it is skipped with an alert. A failed run is recorded
by the runner, alerted (RUN_FAILED) and not retried.

Time comes from an injected clock: the wall clock, or in sim mode SimBroker's clock,
advanced with ``advance_to`` either at ``speed`` x real time or straight to the next
event, so no wall-clock sleep ever happens in an as-fast-as-possible sim.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tradebook import alerts
from tradebook.ops import schedule
from tradebook.errors import TradebookError
from tradebook.ledger import events
from tradebook.ops.health import (DaemonLock, Heartbeat, heartbeat_path, read_heartbeat, record_heartbeat, sd_notify,
                              stale_after_s, watchdog_interval_s, write_heartbeat)
from tradebook.logs import log_event, setup_logging
from tradebook.ops.schedule import SimClock, WallClock, parse_speed

if TYPE_CHECKING:
    from tradebook.params import Params

LOCK_FILE = "daemon.lock"
EXIT_ALREADY_RUNNING = 3
LEDGER_BEAT_S = 60.0


PhaseRunner = Callable[[str], Any]  # phase -> runner.RunRecord; raises PhaseFailed


class Daemon:
    """The scheduling loop; ``run()`` returns when stopped, at ``until``, or never (``hold_at``)."""

    def __init__(self, params: "Params", root: Path, *, clock: Any, runner: PhaseRunner,
                 until: datetime | None = None, hold_at: datetime | None = None):
        from tradebook.ledger.db import Ledger

        self.params, self.root, self.clock, self.runner = params, Path(root), clock, runner
        self.until, self.hold_at = until, hold_at
        self.ledger = Ledger(params.ledger_path(root))
        self.stop = threading.Event()
        self.handled: set[tuple] = set()
        self.last_tick: datetime | None = None
        self.monitor_runs = 0
        self.broker: Any = None
        self.reconciled_at: datetime | None = None  # clock time of the last reconcile that succeeded
        self.monitor_failed_on: set = set()
        self.beat_path = heartbeat_path(params, root)
        self.state = "running"
        self.next_event: str | None = None
        self.quiet_before: datetime | None = None
        self.ledger_beat: tuple[datetime, str] | None = None  # (wall time, state) of the last ledger row

    # lifecycle ---------------------------------------------------------------------------
    def run(self) -> int:
        """Start (reconcile first), loop until stopped; returns the process exit code."""
        previous = read_heartbeat(self.beat_path)
        self.ledger.check()  # a corrupt ledger stops us here with the backup to restore
        sd_notify("READY=1")
        down = f"; previous heartbeat {previous.wall.isoformat()} ({previous.state})" if previous else ""
        self._alert("DAEMON_START", f"daemon started, pid {os.getpid()}, mode {self.params.mode}, "
                                    f"clock {self.clock.now().isoformat()}{down}")
        # Slots missed before the daemon first ran on this ledger were never its job: logged, not alerted.
        self.quiet_before = self.ledger.read(events.first_ts, "ALERT", alert="DAEMON_START")
        crash = None
        try:
            self._run_phase("reconcile", reason="startup")
            while not self.stop.is_set() and self._step():
                pass
        except Exception as exc:  # systemd restarts us; the operator hears why first
            crash = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._goodbye(crash)
        return 0

    def _goodbye(self, crash: str | None) -> None:
        """Last heartbeat (state stopped) and the stop alert; never masks the original error."""
        self.state = "stopped"
        sd_notify("STOPPING=1")
        try:
            self._beat()
        except Exception as exc:
            log_event("daemon", "error", f"final heartbeat failed: {exc}")
        self._alert("INCIDENT" if crash else "DAEMON_STOP",
                    f"daemon {'crashed: ' + crash if crash else 'stopped'}, pid {os.getpid()}")

    def request_stop(self, *_: Any) -> None:
        self.stop.set()

    # one iteration -------------------------------------------------------------------------
    def _step(self) -> bool:
        now = self.clock.now()
        if self.until is not None and now >= self.until:
            return False
        if self.hold_at is not None and now >= self.hold_at:
            self._hold()
            return False
        slot = self._next_slot(now)
        tick = self._next_tick(now)
        if slot is not None and slot.at <= now:
            self._missed(slot) if now >= slot.deadline else self._run_slot(slot)
        elif tick is not None and tick <= now:
            self._monitor(tick)
        else:
            targets = [t for t in (slot.at if slot else None, tick, self.until, self.hold_at) if t is not None]
            self.next_event = slot.describe() if slot else (f"monitor at {tick.isoformat()}" if tick else None)
            target = min(targets)
            self._wait_until(target)
            now = target  # where an as-fast-as-possible clock now stands
        # Notebooks never move the clock, so the step's time is the clock's (real time moved on).
        self._beat(now if self.clock.speed is None else None)
        return True

    def _next_slot(self, now: datetime) -> "schedule.Slot | None":
        for slot in schedule.slots_around(now, self.params):
            if slot.key not in self.handled:
                return slot
        return None

    def _next_tick(self, now: datetime) -> datetime | None:
        from tradebook import sessions

        session = sessions.current_or_next_session(now)
        # The tick after the last one run; a backlog older than one interval is skipped.
        floor = now - timedelta(seconds=self.params.reconcile_interval_s)
        after = max(self.last_tick, floor) if self.last_tick else floor
        return schedule.next_monitor_tick(session, self.params.reconcile_interval_s, after)

    def _wait_until(self, when: datetime) -> None:
        """Advance the clock; on a real-time clock in chunks so the heartbeat and watchdog keep beating."""
        if self.clock.speed is None:
            self.clock.advance_to(when, self.stop)
            return
        chunk = self.params.reconcile_interval_s
        watchdog = watchdog_interval_s()
        if watchdog:
            chunk = min(chunk, watchdog * self.clock.speed)
        while not self.stop.is_set():
            now = self.clock.now()
            if now >= when:
                return
            self.clock.advance_to(min(when, now + timedelta(seconds=chunk)), self.stop)
            self._beat()

    def _hold(self) -> None:
        """Sim only: freeze the clock at ``hold_at`` and wait (wall time) for a stop or a kill."""
        self.clock.advance_to(self.hold_at, self.stop)
        self.state, self.next_event = "holding", f"held at {self.hold_at.isoformat()}"
        log_event("daemon", "info", f"holding the simulated clock at {self.hold_at.isoformat()}")
        while not self.stop.is_set():
            self._beat()
            self.stop.wait(1.0)

    # slots -------------------------------------------------------------------------------
    def _run_slot(self, slot: "schedule.Slot") -> None:
        self.handled.add(slot.key)
        if schedule.phase_done(self.ledger, slot):
            log_event("daemon", "info", f"{slot.describe()}: already ran, skipped", phase=slot.phase,
                      session=slot.session.isoformat())
            return
        if slot.phase == "backup":
            self._backup(slot)
            return
        if slot.phase == "execute" and not self._reconciled_for(slot):
            ok = self._run_phase("reconcile", slot=slot, reason="before execute")
            if not ok:
                self._alert("RUN_FAILED", f"execute for {slot.session} skipped: the reconcile before it failed; "
                                          "planned intents wait for the next window",
                            phase="execute", session=slot.session.isoformat())
                return
        self._run_phase(slot.phase, slot=slot)

    def _reconciled_for(self, slot: "schedule.Slot") -> bool:
        """Execute needs a reconcile that succeeded this session (pre-open or at start), else one now."""
        session_open = slot.at - timedelta(minutes=self.params.exit_window_start_min)
        since = session_open - timedelta(minutes=self.params.schedule.reconcile_before_open_min)
        return self.reconciled_at is not None and self.reconciled_at >= since

    def _missed(self, slot: "schedule.Slot") -> None:
        self.handled.add(slot.key)
        if schedule.phase_done(self.ledger, slot):
            return
        quiet = self.quiet_before is not None and slot.deadline <= self.quiet_before
        if slot.phase in ("execute", "decide") and not quiet:
            if schedule.missed_alert_sent(self.ledger, slot):
                return
            what = (f"{schedule.planned_intents(self.ledger)} planned intent(s) wait for the next execute window"
                    if slot.phase == "execute" else "no new intents were planned from this session")
            self._alert("MISSED_WINDOW", f"{slot.phase} for {slot.session} missed (due {slot.at.isoformat()}, "
                                         f"window closed {slot.deadline.isoformat()}): {what}",
                        phase=slot.phase, session=slot.session.isoformat())
        else:
            log_event("daemon", "warning", f"{slot.describe()} missed (window closed {slot.deadline.isoformat()})",
                      phase=slot.phase, session=slot.session.isoformat())

    def _run_phase(self, phase: str, *, slot: "schedule.Slot | None" = None, reason: str = "scheduled") -> bool:
        """One runner call; a failure is alerted, never retried. Returns True on success."""
        from tradebook.errors import PhaseFailed

        session = slot.session.isoformat() if slot else None
        self.next_event = f"running {phase}"
        self._beat()
        log_event("daemon", "info", f"running {phase} ({reason})", phase=phase, session=session)
        try:
            record = self.runner(phase)
        except PhaseFailed as exc:  # recorded FAILED by the runner, notebook kept: a human must look
            self._alert("RUN_FAILED", f"{phase} run {exc.run_id} failed: {exc.error}; notebook {exc.notebook_path}",
                        phase=phase, session=session, run_id=exc.run_id, notebook=str(exc.notebook_path or ""))
            return False
        except Exception as exc:  # could not even start (bad params, ledger locked, ...)
            self._alert("RUN_FAILED", f"{phase} could not run: {type(exc).__name__}: {exc}",
                        phase=phase, session=session, reason=reason)
            return False
        if phase == "reconcile":
            self.reconciled_at = self.clock.now()
        log_event("daemon", "info", f"{phase} {record.status}", phase=phase, session=session, run_id=record.run_id,
                  notebook=str(record.notebook_path))
        return True

    def _monitor(self, tick: datetime) -> None:
        from tradebook.phases import monitor
        from tradebook.context import Context

        self.last_tick = tick
        self.monitor_runs += 1
        ctx = Context(self.params, self.root, run_id=f"monitor-{tick:%Y%m%dT%H%M%S}")
        try:
            if self.broker is None:  # one broker client for every tick; in sim the clock's own
                self.broker = self.clock.broker if isinstance(self.clock, SimClock) else ctx.broker
            ctx.__dict__["broker"] = self.broker
            monitor.run_monitor(ctx)
        except Exception as exc:
            log_event("daemon", "error", f"monitor tick {tick.isoformat()} failed: {exc}", exc_info=True)
            day = tick.date()
            if day not in self.monitor_failed_on:  # one alert per session, every failure logged
                self.monitor_failed_on.add(day)
                self._alert("RUN_FAILED", f"monitor failed at {tick.isoformat()}: {type(exc).__name__}: {exc}",
                            phase="monitor")

    def _backup(self, slot: "schedule.Slot") -> None:
        from tradebook.ledger.backup import daily_backup

        try:
            daily_backup(self.ledger, slot.session, self.clock.now(), self.params.backup_retention_days)
        except Exception as exc:
            self._alert("RUN_FAILED", f"daily ledger backup failed: {exc}", phase="backup",
                        session=slot.session.isoformat())

    # signals of life -----------------------------------------------------------------------
    def _beat(self, now: datetime | None = None) -> None:
        speed = self.clock.speed
        beat = Heartbeat(pid=os.getpid(), host=socket.gethostname(), wall=datetime.now(timezone.utc),
                         clock=now or self.clock.now(), mode=self.params.mode, state=self.state,
                         stale_after_s=stale_after_s(self.params.reconcile_interval_s, speed),
                         speed=speed, next_event=self.next_event)
        write_heartbeat(self.beat_path, beat)
        sd_notify("WATCHDOG=1")
        # The ledger row is for status views (each write costs a checkpoint): once a minute of
        # real time, and whenever the state changes, is plenty.
        last_wall, last_state = self.ledger_beat or (None, None)
        if last_wall is None or last_state != self.state or (beat.wall - last_wall).total_seconds() >= LEDGER_BEAT_S:
            try:
                record_heartbeat(self.ledger, beat)
                self.ledger_beat = (beat.wall, self.state)
            except TradebookError as exc:  # the file beat is what health reads; keep going
                log_event("daemon", "warning", f"ledger heartbeat not written: {exc}")

    def _alert(self, kind: str, message: str, **data: Any) -> None:
        try:
            now = self.clock.now()
        except Exception:  # the broker may be what failed: the alert still goes out
            now = None
        alerts.alert(self.ledger, kind, message, data={"clock": now, **data}, params=self.params, now=now)


def run_daemon(params_file: str | None, overrides: dict[str, Any] | None, root: Path, *,
               speed: str | float | None = None, until: datetime | None = None,
               hold_at: datetime | None = None) -> int:
    """Everything `tradebook daemon` does: lock, logging, alert check, clock, runner, loop."""
    from tradebook.errors import ConfigError, LedgerError
    from tradebook.params import DEFAULT_PARAMS_FILE, load_params

    path = Path(params_file or DEFAULT_PARAMS_FILE)
    path = path if path.is_absolute() else root / path
    params = load_params(path, overrides)
    if params.mode != "sim" and (hold_at is not None or speed is not None):
        raise ConfigError("--speed and --hold-at change the simulated clock: sim mode only")
    from tradebook.broker import check_can_start

    check_can_start(params)  # live opt-in, keys: refused before the lock, the logs or the ledger
    with DaemonLock(params.runs_path(root) / LOCK_FILE):
        setup_logging(params, root, run_id="daemon", console=True)
        alerts.configure(params)  # ConfigError now, not a silent failure at the first freeze
        clock = _make_clock(params, root, parse_speed(speed))
        from tradebook.engine.runner import KernelPool, run_phase

        with KernelPool(root, fork=True) as pool:
            import papermill  # noqa: F401  (~2 s, paid while the pool's first kernel starts)

            def runner(phase: str) -> Any:
                return run_phase(phase, params_file=str(path), overrides=overrides, root=root, pool=pool)

            daemon = Daemon(params, root, clock=clock, runner=runner, until=until, hold_at=hold_at)
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, daemon.request_stop)
            try:
                return daemon.run()
            except LedgerError as exc:  # corrupt/locked at start: the operator must hear it
                alerts.alert(None, "INCIDENT", f"daemon cannot start: {exc}", params=params)
                raise


def _make_clock(params: "Params", root: Path, speed: float | None) -> Any:
    if params.mode != "sim":
        return WallClock()
    from tradebook.broker import make_broker

    return SimClock(make_broker(params, root), speed)
