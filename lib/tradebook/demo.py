"""`tradebook demo`: replay trading days through the four phase notebooks.

Each simulated session runs reconcile (open-15 min), execute (open+5), a few
intraday monitor ticks (library calls, no notebook), decide (close+15) and report
(close+20). Every notebook is a real papermill run kept under ``runs/<date>/``.
The clock is the broker's: SimBroker's simulated time, or the loopback Alpaca
fake's when ``broker="alpaca-fake"``.
"""
from __future__ import annotations

import json
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

from tradebook.context import Context, project_root
from tradebook.errors import ConfigError
from tradebook.logs import log_event, setup_logging

PHASES = ("reconcile", "execute", "decide", "report")
BROKERS = ("sim", "alpaca-fake")
# The loopback fake's account is not the paper account: its demo keeps everything (ledger,
# kill-switch flag, heartbeat, notebooks) in a runs folder of its own, under the params' runs_dir.
FAKE_RUNS_SUBDIR = "demo-alpaca-fake"
# Other accounts' files a --fresh sim demo never moves aside (nor the kill-switch flag: a halt
# is cleared only by `tradebook resume`, never by archiving).
_NEVER_ARCHIVED = ("README.md", "archive", FAKE_RUNS_SUBDIR, "backups")


@dataclass
class DemoSummary:
    days: int
    notebooks: int
    wall_s: float
    fills: int
    equity_start: float
    equity_end: float
    rejects_by_reason: dict[str, int]
    report_html: Path | None
    first_day: str = ""
    last_day: str = ""
    failures: list[str] = field(default_factory=list)
    start_lines: list[str] = field(default_factory=list)   # trading state at the start, when not RUNNING
    ledger_path: Path | None = None

    @property
    def pnl(self) -> float:
        return self.equity_end - self.equity_start

    def lines(self) -> list[str]:
        rejects = ", ".join(f"{k}={v}" for k, v in sorted(self.rejects_by_reason.items())) or "none"
        return [
            *self.start_lines,
            f"sessions {self.days} ({self.first_day} → {self.last_day}), {self.notebooks} notebooks in {self.wall_s:.1f}s",
            f"fills {self.fills}, equity {self.equity_start:,.2f} → {self.equity_end:,.2f} (P&L {self.pnl:+,.2f})",
            f"gate rejections: {rejects}",
            f"report: {self.report_html or '(not written)'}",
            *([f"ledger: {self.ledger_path}"] if self.ledger_path else []),
        ]


def check_broker(broker: str) -> None:
    """Refuse an unknown ``--broker`` before anything starts (no progress bar, no fake server)."""
    if broker not in BROKERS:
        raise ConfigError(f"demo broker must be 'sim' or 'alpaca-fake', not {broker!r}; "
                          "use --broker sim (SimBroker) or --broker alpaca-fake (the loopback Alpaca fake)")


def start_state_lines(ctx: Context) -> list[str]:
    """What the operator must know before the first session: trading is not RUNNING (CTL-1).

    Empty when trading is RUNNING. A halt or freeze is never cleared by the demo: it replays
    the sessions under it, so the lines say what that means and how to clear it.
    """
    from tradebook.safety import controls, killswitch

    status = controls.effective_state(ctx.params, ctx.root)
    if status.state == "RUNNING":
        return []
    effect = ("entries are refused; exits and stops still go out" if status.state == "REDUCE_ONLY"
              else "no order (entry or exit) will be sent")
    lines = [f"trading is {status.state} at the start of this demo: {effect}."]
    lines += [f"  - {reason}" for reason in status.reasons]
    hint = "`tradebook resume --reason ...` with the same --params/-p clears it"
    if killswitch.all_accounts_flag(ctx.params, ctx.root).exists():
        hint += " (with --all-accounts for the all-accounts flag)"
    if "env" in status.sources:
        hint += "; unset KILL_SWITCH in the environment first"
    lines.append(f"  {hint}; ledger {ctx.params.ledger_path(ctx.root)}.")
    return lines


def archive_runs(runs_dir: Path) -> Path | None:
    """Move previous demo output aside (never delete a ledger): runs/archive/<stamp>/."""
    if not runs_dir.exists():
        return None
    from tradebook.params import DEFAULT_LEDGER_FILES
    from tradebook.safety.killswitch import FLAG_FILE

    # A sim demo's --fresh must not move the paper/live accounts' files away with it: their ledgers (and
    # WAL), heartbeats, API breaker state and unrecorded-flatten journals (the next reconcile of the
    # ledger a journal belongs to adopts it).
    others = [(mode, Path(name).stem) for mode, name in DEFAULT_LEDGER_FILES.items() if mode != "sim"]
    kept = (FLAG_FILE, *(stem for _, stem in others),
            *(f"heartbeat-{stem}" for _, stem in others), *(f"api_breaker-{mode}" for mode, _ in others))
    movable = [p for p in runs_dir.iterdir() if p.name not in _NEVER_ARCHIVED and not p.name.startswith(kept)
               and not _journal_of_another_ledger(p, DEFAULT_LEDGER_FILES["sim"])]
    if not movable:
        return None
    dest = runs_dir / "archive" / datetime.now().strftime("%Y%m%dT%H%M%S")
    dest.mkdir(parents=True)
    for p in movable:
        shutil.move(str(p), dest / p.name)
    return dest


def _journal_of_another_ledger(path: Path, sim_ledger: str) -> bool:
    """An unrecorded-flatten journal that names a ledger other than the simulator's (or cannot be read)."""
    if not (path.name.startswith("flatten-unrecorded-") and path.suffix == ".json"):
        return False
    try:
        return json.loads(path.read_text()).get("ledger") != sim_ledger
    except (OSError, ValueError, AttributeError):
        return True   # unreadable: not ours to move


def _schedule(session, params) -> list[tuple[datetime, str]]:
    """The day's steps: (broker time, phase or 'monitor')."""
    s = params.schedule
    steps = [(session.open - timedelta(minutes=s.reconcile_before_open_min), "reconcile"),
             (session.open + timedelta(minutes=params.exit_window_start_min), "execute")]
    span = (session.close - session.open) - timedelta(minutes=params.exit_window_end_min + 10)
    for i in range(1, s.monitor_points + 1):
        steps.append((session.open + timedelta(minutes=params.exit_window_end_min) + span * i / s.monitor_points,
                      "monitor"))
    steps += [(session.close + timedelta(minutes=s.decide_after_close_min), "decide"),
              (session.close + timedelta(minutes=s.report_after_close_min), "report")]
    return steps


def _sessions(sim, days: int) -> Iterator[Any]:
    """The next ``days`` sessions whose reconcile time is still ahead of the broker clock."""
    now = sim.clock().now
    session = sim.first_session_on_or_after(now.date())
    while session.open - timedelta(minutes=30) < now:
        session = sim.first_session_on_or_after(session.day + timedelta(days=1))
    for _ in range(days):
        yield session
        session = sim.first_session_on_or_after(session.day + timedelta(days=1))


def direct_phase(phase: str, ctx: Context) -> None:
    """Run a phase's library function in-process (fixtures and research; no notebook kept)."""
    from importlib import import_module

    module, func = {"reconcile": ("tradebook.phases.reconcile", "run_reconcile"),
                    "execute": ("tradebook.phases.execute", "run_execute"),
                    "decide": ("tradebook.phases.decide", "run_decide"),
                    "report": ("tradebook.report.build", "build_report")}[phase]
    getattr(import_module(module), func)(ctx)


def replay(ctx: Context, clock: Any, days: int, run_step: Callable[[str], None],
           on_step: Callable[[str, str], None] | None = None) -> list[Any]:
    """Drive ``days`` sessions: move the clock to each step, then run it. Returns the sessions."""
    from tradebook.phases.monitor import run_monitor

    sessions = list(_sessions(clock, days))
    for session in sessions:
        for when, step in _schedule(session, ctx.params):
            clock.advance_to(when)
            if on_step:
                on_step(str(session.day), step)
            if step == "monitor":
                # Simulated venue, nothing waits: one attachment for the tick's dozen ledger calls.
                with ctx.ledger.held():
                    run_monitor(ctx)
            else:
                run_step(step)
    return sessions


def run_demo(days: int = 20, *, params_file: str | None = None, overrides: dict[str, Any] | None = None,
             root: Path | None = None, fresh: bool = False, broker: str = "sim",
             on_step: Callable[[str, str], None] | None = None,
             on_start: Callable[[list[str]], None] | None = None) -> DemoSummary:
    """Replay ``days`` sessions through reconcile → execute → monitor → decide → report notebooks.

    ``on_start`` gets the start lines (trading HALTED / REDUCE_ONLY at the start) before the
    first session; they also head the summary.
    """
    from tradebook.engine.runner import KernelPool, run_phase

    check_broker(broker)
    root = (root or project_root()).resolve()
    overrides = dict(overrides or {})
    with ExitStack() as stack:
        fake: Any = None
        if broker == "alpaca-fake":
            overrides, fake = _start_fake(stack, params_file, overrides, root)
        ctx = Context.load(params_file, overrides, root=root)
        if broker == "sim" and ctx.params.mode != "sim":
            raise ConfigError("the demo replays history on SimBroker: use a params file with mode: sim")
        if fresh:
            archive_runs(ctx.runs_dir)
        # OPS-6: logged as the daemon logs, to runs/logs/tradebook-<UTC date>.jsonl (after --fresh moved the
        # old runs/ aside). No console handler: the progress bar and the summary are the demo's console.
        setup_logging(ctx.params, root)
        log_event("demo", "info", f"demo started: {days} sessions on {broker}", days=days, broker=broker)
        # Bound to the root now, so the fork server starts importing at once, while this process
        # builds the broker and its session table (~1 s), instead of at the first notebook.
        pool = stack.enter_context(KernelPool(root, fork=True))
        start_lines = start_state_lines(ctx)
        if on_start:
            on_start(start_lines)
        clock = fake or ctx.broker
        started, failures, notebooks = time.monotonic(), [], 0
        equity_start, since = ctx.broker.account().equity, ctx.now()

        def run_step(phase: str) -> None:
            nonlocal notebooks
            # One clock: the fake's simulated time files its notebooks under the simulated session.
            record = run_phase(phase, params_file=params_file, overrides=overrides, root=root,
                               pool=pool, raise_on_failure=False, now=fake.now if fake else None)
            notebooks += 1
            log_event("demo", "info" if record.status == "OK" else "error", f"{phase} {record.status}",
                      run_id=record.run_id, phase=phase, sim_time=record.sim_time, notebook=record.notebook_path,
                      error=record.error)
            if record.status != "OK":
                failures.append(f"{phase}: {record.error} ({record.notebook_path})")

        sessions = replay(ctx, clock, days, run_step, on_step)
        html = _export_report(ctx)
        fills, rejects = _own_activity(ctx, since)
        log_event("demo", "info" if not failures else "error", f"demo finished: {len(sessions)} sessions, "
                  f"{notebooks} notebooks, {len(failures)} failed", sessions=len(sessions), failures=failures)
        return DemoSummary(
            days=len(sessions), notebooks=notebooks, wall_s=time.monotonic() - started, fills=fills,
            equity_start=equity_start, equity_end=ctx.broker.account().equity, rejects_by_reason=rejects,
            report_html=html, first_day=str(sessions[0].day) if sessions else "",
            last_day=str(sessions[-1].day) if sessions else "", failures=failures,
            start_lines=start_lines, ledger_path=ctx.params.ledger_path(root))


def _start_fake(stack: ExitStack, params_file: str | None, overrides: dict[str, Any],
                root: Path) -> tuple[dict[str, Any], Any]:
    """Start the loopback fake; the overrides point the run at it and at its own runs folder.

    The fake's account is not the paper account: its ledger (``FAKE_LEDGER_FILE``), kill-switch
    flag, heartbeat and notebooks live in ``<runs_dir>/demo-alpaca-fake`` and win over the user's
    overrides, so the demo never reads or writes the paper (or live) account's files.
    """
    from tradebook.testing.alpaca_fake.server import demo_fake

    params = Context.load(params_file, overrides, root=root).params
    fake_overrides, fake = stack.enter_context(demo_fake(start=params.sim.start_date))
    return {**overrides, **fake_overrides, "runs_dir": str(Path(params.runs_dir) / FAKE_RUNS_SUBDIR)}, fake


def _own_activity(ctx: Context, since: datetime) -> tuple[int, dict[str, int]]:
    """Fills and gate rejections of this demo's sessions only (the ledger may hold earlier runs)."""
    from tradebook.ledger import fills as fill_store
    from tradebook.ledger import intents as intent_store

    fills = ctx.ledger.read(fill_store.count_since, since) or 0
    rejects = ctx.ledger.read(intent_store.gate_rejections_since, since)
    return fills, rejects


def _export_report(ctx: Context) -> Path | None:
    """Write runs/report.html from the newest executed report notebook."""
    from tradebook.ledger import runs
    from tradebook.report.build import export_html

    with ctx.ledger.connect() as con:
        latest = runs.latest_notebook(con, "report")
    if not latest:
        return None
    out = ctx.runs_dir / "report.html"
    export_html(Path(latest), out)
    return out
