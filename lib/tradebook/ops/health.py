"""Liveness (OPS-4): the daemon's heartbeat, systemd notifications, ``tradebook health``.

The heartbeat lives next to the ledger it drives, named after it (``runs/heartbeat-ledger.json``
for ``ledger.duckdb``, ``runs/heartbeat-paper-ledger.json``, ...; written atomically), so
`health` for one account never reports another account's daemon; it is also kept in the
ledger's ``heartbeats`` table. ``tradebook health`` reads only the file and the control state
(which reads the kill-switch flag before the ledger), so it answers while another
process holds the ledger (OPS-1). A heartbeat is stale after 3 x reconcile_interval_s
of the clock the daemon runs on, converted to wall seconds (never below a floor that
covers one phase run, during which the loop does not beat).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebook.errors import TradebookError
from tradebook.engine.run_liveness import pid_alive
from tradebook.logs import log_event

if TYPE_CHECKING:
    from tradebook.ledger.db import Ledger
    from tradebook.params import Params

HEARTBEAT_PREFIX = "heartbeat-"
COMPONENT = "daemon"
STALE_INTERVALS = 3
MIN_STALE_S = 120.0  # a notebook run (kernel start, execute timeout) blocks the loop this long at most


@dataclass(frozen=True)
class Heartbeat:
    pid: int
    host: str
    wall: datetime            # real UTC time of the beat
    clock: datetime           # the daemon's clock (SimBroker time in sim mode)
    mode: str
    state: str                # running | holding | stopped
    stale_after_s: float      # wall seconds after which this beat is stale
    speed: float | None = None  # sim: clock seconds per wall second; None = as fast as possible
    next_event: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["wall"], data["clock"] = self.wall.isoformat(), self.clock.isoformat()
        return json.dumps(data, default=str, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Heartbeat":
        data = json.loads(text)
        data["wall"] = datetime.fromisoformat(data["wall"])
        data["clock"] = datetime.fromisoformat(data["clock"])
        return cls(**data)


def stale_after_s(interval_s: float, speed: float | None) -> float:
    """Wall seconds after which a heartbeat is stale: 3 intervals of the daemon's clock."""
    if speed is None:  # sim as fast as possible: clock time has no wall equivalent
        return MIN_STALE_S
    return max(STALE_INTERVALS * interval_s / speed, MIN_STALE_S)


def heartbeat_path(params: "Params", root: Path | None) -> Path:
    """The heartbeat file of the daemon that drives this account's ledger."""
    return heartbeat_at(params.ledger_path(root))


def heartbeat_at(ledger: Path) -> Path:
    """``heartbeat-<ledger stem>.json`` next to the ledger: one heartbeat per account."""
    return ledger.with_name(f"{HEARTBEAT_PREFIX}{ledger.stem}.json")


def write_heartbeat(path: Path, beat: Heartbeat) -> None:
    """Atomic replace, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(beat.to_json())
    os.replace(tmp, path)


def read_heartbeat(path: Path) -> Heartbeat | None:
    try:
        return Heartbeat.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as exc:
        log_event("health", "warning", f"unreadable heartbeat file {path}: {exc}")
        return None


def record_heartbeat(ledger: "Ledger", beat: Heartbeat) -> None:
    """Upsert the daemon's row in the ledger's ``heartbeats`` table."""
    detail = {"pid": beat.pid, "host": beat.host, "wall": beat.wall.isoformat(), "state": beat.state,
              "next_event": beat.next_event, **beat.detail}
    from tradebook.ledger import heartbeats as heartbeat_store

    with ledger.transaction() as con:
        heartbeat_store.put(con, COMPONENT, beat.clock, detail)


def sd_notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``, ``WATCHDOG=1``) to systemd's NOTIFY_SOCKET; False if none."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError as exc:
        log_event("health", "warning", f"sd_notify failed: {exc}")
        return False


def watchdog_interval_s() -> float | None:
    """Half of systemd's WatchdogSec (from WATCHDOG_USEC) when the watchdog is on for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


# Exit codes of `tradebook status` and `tradebook health`, for scripts and monitors (README "Health").
EXIT_OK = 0
EXIT_DAEMON = 1        # health only: no heartbeat, stale heartbeat, daemon gone or stopped
EXIT_PARAMS = 2        # params invalid (state still shown from the flag file / env); bad arguments
EXIT_NOT_RUNNING = 3   # trading is REDUCE_ONLY, HALTED or FROZEN
EXIT_LEDGER = 4        # the ledger cannot be read (damaged, or locked past the timeout)
EXIT_BROKER = 5        # the broker cannot be reached
# When several hold, the first of this order is the exit code (every problem is printed).
_PRECEDENCE = (EXIT_PARAMS, EXIT_LEDGER, EXIT_BROKER, EXIT_DAEMON, EXIT_NOT_RUNNING)


def exit_code(codes: "set[int] | list[int]") -> int:
    """One exit code for several problems: the most fundamental one (see ``_PRECEDENCE``)."""
    return next((c for c in _PRECEDENCE if c in set(codes)), EXIT_OK)


def state_code(status: Any) -> set[int]:
    """Problem codes of a control status: ledger unreadable, trading not RUNNING."""
    codes = {EXIT_LEDGER} if status.ledger_error else set()
    return codes | ({EXIT_NOT_RUNNING} if status.state != "RUNNING" else set())


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    heartbeat: Heartbeat | None = None
    code: int = EXIT_OK

    def lines(self) -> list[str]:
        head = "healthy" if self.ok else f"UNHEALTHY (exit {self.code})"
        return [head, *(f"problem: {p}" for p in self.problems), *(f"  {n}" for n in self.notes)]


def check_health(params: "Params", root: Path | None, *, wall_now: datetime | None = None,
                 broker: Any = None) -> HealthReport:
    """Heartbeat fresh, daemon alive, ledger readable, broker reachable, trading RUNNING; each failure says why.

    ``broker`` is the broker to ask (None: built from the params).
    """
    from tradebook.safety import controls

    wall_now = wall_now or datetime.now(timezone.utc)
    notes: list[str] = []
    beat = read_heartbeat(heartbeat_path(params, root))
    found = [(EXIT_DAEMON, p) for p in _heartbeat_problems(beat, wall_now, notes)]
    found += _control_problems(controls.effective_state(params, root), notes)
    found += _broker_problems(params, root, broker, notes)
    return _report(found, notes, beat)


def check_health_at(where: Any, params_problem: str, *, wall_now: datetime | None = None) -> HealthReport:
    """CTL-6: health without valid params: heartbeat and kill-switch state from the located runs/ folder."""
    from tradebook.safety import controls

    wall_now = wall_now or datetime.now(timezone.utc)
    notes = [f"runs folder {where.runs} ({where.how}); the broker was not asked (it needs valid params)"]
    beat = read_heartbeat(heartbeat_at(where.ledger))
    found = [(EXIT_PARAMS, f"params invalid: {' '.join(params_problem.split())}")]
    found += [(EXIT_DAEMON, p) for p in _heartbeat_problems(beat, wall_now, notes)]
    found += _control_problems(controls.state_at(where.flags, where.ledger), notes)
    return _report(found, notes, beat)


def _report(found: list[tuple[int, str]], notes: list[str], beat: Heartbeat | None) -> HealthReport:
    code = exit_code([c for c, _ in found])
    return HealthReport(not found, tuple(p for _, p in found), tuple(notes), beat, code)


def _broker_problems(params: "Params", root: Path | None, broker: Any, notes: list[str]) -> list[tuple[int, str]]:
    try:
        if broker is None:
            from tradebook.broker import make_broker

            broker = make_broker(params, root or Path.cwd(), read_only=True)
        clock = broker.clock()
    except Exception as exc:  # any failure to reach it is the answer
        return [(EXIT_BROKER, f"broker unreachable: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")]
    notes.append(f"broker reachable (clock {clock.now.isoformat()})")
    return []


def _heartbeat_problems(beat: Heartbeat | None, wall_now: datetime, notes: list[str]) -> list[str]:
    if beat is None:
        return ["no heartbeat file: the daemon has not run here (start it: `tradebook daemon`)"]
    age = (wall_now - beat.wall).total_seconds()
    notes.append(f"heartbeat {age:.0f}s ago (pid {beat.pid}, state {beat.state}, clock {beat.clock.isoformat()}, "
                 f"next {beat.next_event or '-'})")
    if beat.state == "stopped":
        return [f"the daemon stopped at {beat.wall.isoformat()} (clean stop); start it again"]
    problems = []
    if age > beat.stale_after_s:
        problems.append(f"heartbeat is stale: {age:.0f}s old, limit {beat.stale_after_s:.0f}s "
                        f"({STALE_INTERVALS} x reconcile_interval_s of the daemon's clock)")
    if beat.host == socket.gethostname() and not pid_alive(beat.pid):
        problems.append(f"daemon process {beat.pid} is not running")
    return problems


def _control_problems(status: Any, notes: list[str]) -> list[tuple[int, str]]:
    # The ledger's own failure is its own problem line; the state only says it fails closed because of it.
    reasons = "; ".join(r for r in status.reasons if not r.startswith("ledger unreadable, failing closed")) \
        or ("failing closed because the ledger cannot be read" if status.ledger_error else "no reason recorded")
    found = []
    if status.ledger_error:
        found.append((EXIT_LEDGER, f"ledger unreadable: {status.ledger_error}"))
    if status.state != "RUNNING":
        found.append((EXIT_NOT_RUNNING, f"trading is {status.state}: {reasons} "
                                        f"(sources: {', '.join(status.sources) or '-'})"))
    else:
        notes.append("trading state RUNNING")
    return found


# --- one daemon per runs/ folder ------------------------------------------------------------
class DaemonAlreadyRunning(TradebookError):
    """Another daemon holds runs/daemon.lock; only one may run per runs/ folder."""


class DaemonLock:
    """An exclusive, non-blocking fcntl lock; the kernel drops it when the process dies."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh: Any = None

    def __enter__(self) -> "DaemonLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown pid"
            fh.close()
            raise DaemonAlreadyRunning(f"another tradebook daemon is running ({holder}; lock {self.path}); "
                                       "stop it first (systemctl stop tradebook)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
