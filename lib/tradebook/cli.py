"""The `tradebook` command line (typer + rich).

Commands stay thin: parse arguments, call one library function, print the result.
Typed tradebook errors are printed as one clear line (no traceback, nothing secret)
and exit with status 2.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from tradebook.errors import TradebookError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="tradebook: reconcile, decide, execute, report — on SimBroker or Alpaca.")
ledger_app = typer.Typer(no_args_is_help=True, help="Ledger backup, restore and checks.")
app.add_typer(ledger_app, name="ledger")

ParamsOpt = typer.Option(None, "--params", help="params YAML file (default params/sim.yaml)")
OverrideOpt = typer.Option(None, "-p", "--param", help="override as key=value (repeatable)")


def _context(params_file: Optional[Path], overrides: Optional[list[str]] = None):
    from tradebook.context import Context
    from tradebook.params import parse_override

    pairs = dict(parse_override(o) for o in overrides or [])
    return Context.load(str(params_file) if params_file else None, pairs)


# --- phases, demo, status (runner) ---------------------------------------------------------
PHASE_NAMES = ("reconcile", "decide", "execute", "report")


@app.command()
def run(phase: str = typer.Argument(..., help="reconcile | decide | execute | report"),
        params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """Run one phase notebook with papermill into runs/<date>/<HHMMSS>-<phase>.ipynb."""
    from tradebook.errors import ConfigError
    from tradebook.params import parse_override
    from tradebook.engine.notebook_files import printed_summary
    from tradebook.engine.runner import run_phase

    if phase not in PHASE_NAMES:
        raise ConfigError(f"unknown phase {phase!r}; choose one of {', '.join(PHASE_NAMES)}")
    overrides = dict(parse_override(p) for p in param or [])
    record = run_phase(phase, params_file=str(params_file) if params_file else None, overrides=overrides)
    typer.echo(f"{phase}: {record.status} · {record.notebook_path}")
    summary = printed_summary(record.notebook_path, phase)   # e.g. what execute sent and what was refused
    if summary:
        typer.echo(summary)


@app.command()
def demo(days: int = typer.Option(20, "--days", min=1, max=2000, help="trading sessions to replay"),
         fresh: bool = typer.Option(False, "--fresh", help="move previous runs/ content to runs/archive/ first"),
         broker: str = typer.Option("sim", "--broker", help="sim (default) or alpaca-fake"),
         params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """Replay N sessions through reconcile → execute → monitor → decide → report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tradebook.demo import check_broker, run_demo
    from tradebook.params import parse_override

    check_broker(broker)   # bad input is refused before the progress bar is drawn
    overrides = dict(parse_override(p) for p in param or [])
    steps_per_day = 4
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=_console(), transient=False) as progress:
        task = progress.add_task("demo", total=days * steps_per_day)

        def on_step(day: str, step: str) -> None:
            if step != "monitor":
                progress.update(task, advance=1, description=f"{day} {step:<9}")

        def on_start(lines: list[str]) -> None:   # HALTED / REDUCE_ONLY: said before the first session
            for line in lines:
                progress.console.print(line, style="bold yellow", markup=False, highlight=False)

        summary = run_demo(days, params_file=str(params_file) if params_file else None,
                           overrides=overrides, fresh=fresh, broker=broker, on_step=on_step, on_start=on_start)
    console = _console()
    for line in summary.lines():
        console.print(line, markup=False, highlight=False)
    for failure in summary.failures:
        console.print(f"[red]failed:[/] {failure}", highlight=False)
    if summary.failures:
        raise typer.Exit(1)

# --- controls: halt / resume / flatten (controls) ------------------------------------------
YesOpt = typer.Option(False, "--yes", "-y", help="skip the typed confirmation")


def _actor() -> str:
    import getpass

    try:
        return f"{getpass.getuser()}@cli"
    except Exception:  # no user database (containers)
        return "operator@cli"


def _confirm(word: str, yes: bool, what: str) -> None:
    """Typed confirmation: the operator must type ``word`` exactly, or nothing happens."""
    if yes:
        return
    try:
        typed = typer.prompt(f"{what}\nType {word} to confirm", default="", show_default=False)
    except typer.Abort:  # no answer: stdin closed (cron, a pipe, </dev/null) or Ctrl-C at the prompt
        typer.echo(f"\nnot confirmed (no answer typed); nothing changed. Type {word} at the prompt, "
                   "or pass --yes when running without a terminal", err=True)
        raise typer.Exit(1) from None
    if typed.strip() != word:
        typer.echo("not confirmed; nothing changed", err=True)
        raise typer.Exit(1)


def _print_control(console, status) -> None:
    colour = {"RUNNING": "green", "REDUCE_ONLY": "yellow", "HALTED": "red", "FROZEN": "magenta"}[status.state]
    since = f" since {status.since:%Y-%m-%d %H:%M:%S %Z}" if status.since else ""
    console.print(f"[bold {colour}]{status.state}[/]{since}", highlight=False)
    for reason in status.reasons:
        console.print(f"  - {reason}", markup=False, highlight=False)
    for note in status.notes:
        console.print(f"  note: {note}", markup=False, highlight=False)
    if status.ledger_error:
        console.print("  ledger busy or unreadable: state shown from the flag file / env, failing closed",
                      style="yellow", highlight=False)


@app.command("halt")
def halt_cmd(reason: str = typer.Option("halted from the CLI", "--reason", "-r", help="why (recorded)"),
             params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """Kill switch (CTL-1, CTL-6): write this account's flag runs/KILL_SWITCH-<ledger> now, record it
    in the ledger if it can.

    Needs nothing else: with a damaged or locked ledger, or the broker down, the flag file is
    still written and the output says what could not be done. With invalid params the account
    is unknown, so the all-accounts flag runs/KILL_SWITCH is written (it halts every account).
    """
    from tradebook.clock import fallback_now
    from tradebook.safety.controls import halt, halt_at

    ctx, fallback = _load_leniently(params_file, param)
    console = _console()
    if ctx is not None:
        status = halt(ctx.params, ctx.root, reason, _actor(), "cli")
    else:
        where, problem = fallback
        now, clock = fallback_now(where.mode, where.sim_state)   # one clock: a simulation's if there is one
        # Only an existing ledger is written: a guessed path must never start a new one.
        status = halt_at(where.flag, where.ledger, reason, _actor(), f"cli (params invalid; {clock})", now=now,
                         create_ledger=False, also=where.flags)
        _plain(console, f"params invalid, so the account is unknown: the all-accounts flag {where.flag} "
                        f"({where.how}) halts EVERY account in {where.runs}; stamped with the {clock}. Clearing "
                        f"it takes `tradebook resume -r <reason> --all-accounts`.\n{problem}")
    _print_control(console, status)
    _plain(console, "  note: the broker was not contacted: orders already sent stay open at the broker; "
                    "`tradebook flatten` cancels them and closes positions")


def _load_leniently(params_file: Optional[Path], param: Optional[list[str]]):
    """(ctx, None), or (None, (where, problem)) when the params cannot be loaded (CTL-6)."""
    from tradebook.context import project_root
    from tradebook.errors import ConfigError
    from tradebook.safety.killswitch import locate
    from tradebook.params import parse_override

    try:
        return _context(params_file, param), None
    except ConfigError as exc:
        overrides = {}
        for text in param or []:
            try:
                key, value = parse_override(text)
                overrides[key] = value
            except ConfigError:
                continue
        return None, (locate(project_root(), params_file, overrides), str(exc))


def _plain(console, text: str) -> None:
    console.print(text, markup=False, highlight=False)


@app.command("resume")
def resume_cmd(reason: str = typer.Option(..., "--reason", "-r", help="why it is safe to trade again (recorded)"),
               yes: bool = YesOpt, params_file: Optional[Path] = ParamsOpt,
               param: Optional[list[str]] = OverrideOpt,
               reset_peak: bool = typer.Option(False, "--reset-peak", help="after a max-drawdown freeze "
                                               "(BRK-2): restart the peak at today's equity, recorded"),
               all_accounts: bool = typer.Option(False, "--all-accounts", help="also remove runs/KILL_SWITCH, "
                                                 "the flag that halts every account (a halt without valid params)"),
               ) -> None:
    """Clear a halt or freeze (CTL-2): needs a reason; removes this account's flag file; recorded."""
    from tradebook.safety.controls import resume

    ctx = _context(params_file, param)
    # OPS-8: clearing a halt writes this account's ledger; another account's is refused here, untouched.
    _ = ctx.ledger
    _confirm("RESUME", yes, "Trading will resume: new entries and exits will be sent to the broker.")
    if reset_peak:
        # Without this, a drawdown freeze trips again at the next breaker check.
        from tradebook.safety.breakers import reset_peak as reset

        equity = ctx.broker.account().equity
        with ctx.ledger.transaction() as con:
            reset(con, ctx.now(), equity, reason, _actor())
    _print_control(_console(), resume(ctx.params, ctx.root, reason, _actor(), "cli", all_accounts=all_accounts))


@app.command("flatten")
def flatten_cmd(reason: str = typer.Option(..., "--reason", "-r", help="why (recorded)"), yes: bool = YesOpt,
                params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """CTL-5: cancel all open orders, close every position at market, then freeze."""
    from tradebook.phases.flatten import flatten

    ctx = _context(params_file, param)
    _confirm("FLATTEN", yes, "ALL open orders will be cancelled and ALL positions sold at market; then FROZEN.")
    result = flatten(ctx, reason, _actor(), "cli")
    console = _console()
    console.print(result.summary(), markup=False, highlight=False)
    _print_control(console, result.status)
    if result.failed:
        raise typer.Exit(1)


@app.command("status")
def status_cmd(params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """Control state and reasons, account, positions, last 10 runs (works while the ledger is busy).

    Exit 0 only when trading is RUNNING, the ledger reads and the broker answers; otherwise
    2 params invalid, 3 not RUNNING, 4 ledger unreadable, 5 broker unreachable (README "Health").
    """
    from tradebook.safety.controls import effective_state, state_at
    from tradebook.ops.health import EXIT_BROKER, EXIT_PARAMS, exit_code, state_code

    console = _console()
    ctx, fallback = _load_leniently(params_file, param)
    if ctx is None:  # CTL-6: the kill-switch state still shows
        where, problem = fallback
        _print_control(console, state_at(where.flags, where.ledger))
        _plain(console, f"params invalid: account, positions and runs need valid params; state read from "
                        f"{where.flag} ({where.how}):\n{problem}")
        raise typer.Exit(EXIT_PARAMS)
    status = effective_state(ctx.params, ctx.root)
    _print_control(console, status)
    broker_ok = _print_account(console, ctx)
    _print_runs(console, ctx, status)
    code = exit_code(state_code(status) | (set() if broker_ok else {EXIT_BROKER}))
    if code:
        _plain(console, f"exit {code}: " + _EXIT_MEANING[code])
    raise typer.Exit(code)


_EXIT_MEANING = {2: "params invalid", 3: "trading is not RUNNING", 4: "the ledger cannot be read",
                 5: "the broker cannot be reached", 1: "the daemon is not beating"}


def _print_account(console, ctx) -> bool:
    from rich.table import Table

    from tradebook.broker import make_broker

    try:
        # Read-only: no ledger needed (OPS-1), and failures never count toward the trading breaker (EXE-4).
        broker = make_broker(ctx.params, ctx.root, read_only=True)
        account, positions = broker.account(), broker.positions()
    except Exception as exc:  # status must still show the control state when the broker is down
        console.print(f"broker unavailable: {type(exc).__name__}: {exc}", style="yellow", markup=False)
        return False
    console.print(f"equity {account.equity:,.2f} · cash {account.cash:,.2f} · "
                  f"buying power {account.buying_power:,.2f}", highlight=False)
    table = Table(title="positions")
    for col in ("symbol", "qty", "avg price", "price", "value", "% equity"):
        table.add_column(col, justify="left" if col == "symbol" else "right")
    for p in sorted(positions, key=lambda p: p.symbol):
        value = p.qty * p.market_price
        table.add_row(p.symbol, f"{p.qty:g}", f"{p.avg_price:,.2f}", f"{p.market_price:,.2f}", f"{value:,.2f}",
                      f"{value / account.equity:.1%}" if account.equity else "-")
    console.print(table if positions else "positions: none")
    return True


def _print_runs(console, ctx, status) -> None:
    from rich.table import Table

    from tradebook.safety.controls import STATUS_LOCK_TIMEOUT_S
    from tradebook.ledger import runs as run_store
    from tradebook.ledger.db import Ledger
    from tradebook.engine.run_liveness import identities, is_gone

    path = ctx.params.ledger_path(ctx.root)
    if status.ledger_error or not path.exists():
        console.print("runs: ledger busy or unreadable, try again" if status.ledger_error else "runs: none yet",
                      highlight=False)
        return
    try:
        with Ledger(path, lock_timeout_s=STATUS_LOCK_TIMEOUT_S, create=False).connect() as con:
            rows = run_store.latest(con, 10)
            running = identities(con, [r.run_id for r in rows if r.status == "RUNNING"])
    except TradebookError as exc:
        console.print(f"runs: ledger busy or unreadable ({exc})", markup=False, highlight=False)
        return
    table = Table(title="last 10 runs")
    for col in ("started", "phase", "status", "ended", "error", "notebook"):
        table.add_column(col, overflow="fold")  # a narrow terminal wraps a cell, never cuts a path to "…"
    for run in rows:
        state, error = run.status, run.error or ""
        if state == "RUNNING" and is_gone(running.get(run.run_id)):  # marked at the next start; shown now
            state, error = "ABANDONED", "its process is gone (killed or crashed)"
        table.add_row(f"{run.started_at:%Y-%m-%d %H:%M:%S}", run.phase, state,
                      f"{run.ended_at:%H:%M:%S}" if run.ended_at else "-", error[:60],
                      _under_root(run.notebook_path or "", ctx.root))
    console.print(table if rows else "runs: none yet")


def _under_root(path: str, root) -> str:
    """A notebook path relative to the project root when it lies inside it (short enough to read)."""
    try:
        return str(Path(path).relative_to(root)) if path else path
    except ValueError:
        return path


# --- operations: daemon, health, ledger backup/restore/check (ops) ---------------------------
@app.command("daemon")
def daemon_cmd(speed: Optional[str] = typer.Option(None, "--speed", help="sim only: simulated seconds per real "
                                                   "second (default 60), or 'max' to jump from event to event"),
               until: Optional[str] = typer.Option(None, "--until", help="stop cleanly when the clock reaches this "
                                                   "time (ISO; exchange time when no offset is given)"),
               hold_at: Optional[str] = typer.Option(None, "--hold-at", help="sim only: stop the simulated clock "
                                                     "at this time and wait (demos, crash drills)"),
               params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """OPS-4: run the phases on the exchange calendar, unattended (one daemon per runs/ folder)."""
    from tradebook.context import project_root
    from tradebook.ops.daemon import EXIT_ALREADY_RUNNING, run_daemon
    from tradebook.ops.health import DaemonAlreadyRunning
    from tradebook.ops.schedule import parse_clock_time
    from tradebook.params import parse_override

    overrides = dict(parse_override(o) for o in param or [])
    try:
        code = run_daemon(str(params_file) if params_file else None, overrides, project_root(), speed=speed,
                          until=parse_clock_time(until), hold_at=parse_clock_time(hold_at))
    except DaemonAlreadyRunning as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_ALREADY_RUNNING) from None
    raise typer.Exit(code)


@app.command("health")
def health_cmd(params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """OPS-4: exit non-zero, saying why, unless the daemon beats, the ledger reads, the broker answers
    and trading is RUNNING (codes: README "Health"). Works without valid params (CTL-6)."""
    from tradebook.ops.health import check_health, check_health_at

    ctx, fallback = _load_leniently(params_file, param)
    report = check_health(ctx.params, ctx.root) if ctx is not None else check_health_at(*fallback)
    for line in report.lines():
        typer.echo(line)
    raise typer.Exit(report.code)


@ledger_app.command("backup")
def ledger_backup_cmd(dest: Optional[Path] = typer.Option(None, "--dest", help="folder (default runs/backups)"),
                      params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """OPS-3: consistent copy to runs/backups/ledger-<UTC stamp>.duckdb; prunes by backup_retention_days."""
    from tradebook.ledger.backup import backup
    from tradebook.clock import operator_now

    ctx = _context(params_file, param)
    # The daemon's clock (simulated in sim mode): a wall-clock stamp would sort after every later
    # daemon backup (restore would pick older data) and its retention cut would delete them.
    path = backup(ctx.params.ledger_path(ctx.root), dest, operator_now(ctx.params, ctx.root),
                  retention_days=ctx.params.backup_retention_days)
    typer.echo(f"backup written: {path}")


@ledger_app.command("restore")
def ledger_restore_cmd(path: Optional[Path] = typer.Argument(None, help="backup file (default: the newest)"),
                       force: bool = typer.Option(False, "--force", help="replace a healthy ledger too"),
                       params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """OPS-3: put a backup in place; the replaced ledger is kept as ledger.duckdb.corrupt-<stamp>."""
    from tradebook.ledger.backup import restore

    ctx = _context(params_file, param)
    result = restore(path, ctx.params.ledger_path(ctx.root), force=force)
    typer.echo(f"restored {result.ledger} from {result.restored_from}")
    for aside in result.set_aside:
        typer.echo(f"kept the previous file as {aside}")
    typer.echo("rows: " + ", ".join(f"{k}={v}" for k, v in sorted(result.counts.items()) if v))
    from tradebook.phases.flatten_adopt import restore_notes

    for line in restore_notes(ctx.runs_dir, ctx.ledger):   # CTL-5/OPS-7: what the next reconcile adopts
        typer.echo(line)


@ledger_app.command("check")
def ledger_check_cmd(params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """OPS-3/OPS-7: check the file's blocks and read every table in full; a damaged file names the backup."""
    from tradebook.ledger.backup import check

    ctx = _context(params_file, param)
    result = check(ctx.params.ledger_path(ctx.root))
    typer.echo(f"ledger {result.ledger}: ok, schema v{result.schema_version}, {result.blocks_verified} blocks "
               "in use pass their checksums, every table read in full")
    typer.echo("rows: " + ", ".join(f"{k}={v}" for k, v in sorted(result.counts.items())))
    typer.echo(f"newest backup: {result.newest_backup or 'none (run `tradebook ledger backup`)'}")


# --- report ---------------------------------------------------------------------------------
@app.command()
def report(html: bool = typer.Option(False, "--html", help="also write runs/report.html (outputs only, no code)"),
           params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """Run the report notebook (P&L, exposure, fills, rejections, incidents); --html exports it."""
    from tradebook.params import parse_override
    from tradebook.report.build import export_html
    from tradebook.engine.runner import run_phase

    overrides = dict(parse_override(p) for p in param or [])
    record = run_phase("report", params_file=str(params_file) if params_file else None, overrides=overrides)
    typer.echo(f"report: {record.status} · {record.notebook_path}")
    if html:
        out = export_html(record.notebook_path, _context(params_file, param).runs_dir / "report.html")
        typer.echo(f"html: {out}")


# --- first contact ---------------------------------------------------------------------------
@app.command("doctor")
def doctor_cmd(params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """First contact: keys, paper/live, account, margin, fractional, assets, data feeds, clock (exit 1 on a blocker)."""
    from tradebook.ops.doctor import failed, run_doctor

    ctx = _context(params_file, param)
    checks = run_doctor(ctx.params, ctx.root)
    for check in checks:
        typer.echo(check.line())
    if failed(checks):
        typer.echo("doctor: something above would stop trading (FAIL); fix it and run doctor again")
        raise typer.Exit(1)
    typer.echo("doctor: ready to trade with these params")


# --- control panel server --------------------------------------------------------------------
@app.command("panel")
def panel_cmd(port: int = typer.Option(8866, "--port", min=1, max=65535, help="port on 127.0.0.1"),
              params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """CTL-4: serve the control panel page (Voilà, no code shown) on 127.0.0.1 with a token printed here."""
    from tradebook.context import project_root
    from tradebook.panel.server import serve
    from tradebook.params import parse_override

    overrides = dict(parse_override(p) for p in param or [])
    serve(project_root(), port=port, params_file=str(params_file) if params_file else None,
          overrides=overrides, echo=lambda line: typer.echo(line))


def print_error(message: str) -> None:
    """An error as plain text on stderr: never wrapped, shortened or marked up by the terminal width.

    rich wraps (and tables ellipsize) at the console width, which a pipe or a small
    COLUMNS makes narrow, so a long path in a message would come out broken or as `...`.
    """
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def _register_research() -> None:
    from tradebook.research.commands import register

    register(app)


_register_research()

# --- research: sweeps (SWP-1, SWP-2) ---------------------------------------------------------
from tradebook.research.sweep_cli import sweep_cmd  # noqa: E402  (typer only; the work imports lazily)

app.command("sweep")(sweep_cmd)


def _click_exceptions() -> tuple[type, ...]:
    """Usage-error classes: typer >= 0.16 raises its vendored click's, older ones click's own."""
    import importlib

    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _console():
    """A rich console that never breaks a line at the terminal width (soft wrap): messages with
    long paths stay whole when piped or in a narrow terminal; tables still fit the width."""
    from rich.console import Console

    return Console(soft_wrap=True)


def main() -> None:
    """Console entry point: typed errors become one readable line and exit code 2."""
    try:
        # Without standalone mode click *returns* a typer.Exit's code instead of exiting with it.
        code = app(standalone_mode=False)
    except TradebookError as exc:
        print_error(str(exc))
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:
        sys.exit(getattr(exc, "exit_code", getattr(exc, "code", 0)) or 0)
    except typer.Abort:  # Ctrl-C or end of input at a prompt: click's own one-line message, no traceback
        print("Aborted.", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # click usage errors and the like
        if isinstance(exc, _click_exceptions()):
            exc.show()  # type: ignore[attr-defined]  # click's ClickException: usage, hint, "Error: ..."
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        raise
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
