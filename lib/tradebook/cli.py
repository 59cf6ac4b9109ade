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
    from tradebook.runner import run_phase

    if phase not in PHASE_NAMES:
        raise ConfigError(f"unknown phase {phase!r}; choose one of {', '.join(PHASE_NAMES)}")
    overrides = dict(parse_override(p) for p in param or [])
    record = run_phase(phase, params_file=str(params_file) if params_file else None, overrides=overrides)
    typer.echo(f"{phase}: {record.status} · {record.notebook_path}")


@app.command()
def demo(days: int = typer.Option(20, "--days", min=1, max=2000, help="trading sessions to replay"),
         fresh: bool = typer.Option(False, "--fresh", help="move previous runs/ content to runs/archive/ first"),
         broker: str = typer.Option("sim", "--broker", help="sim (default) or alpaca-fake"),
         params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """Replay N sessions through reconcile → execute → monitor → decide → report."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tradebook.demo import run_demo
    from tradebook.params import parse_override

    overrides = dict(parse_override(p) for p in param or [])
    steps_per_day = 4
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=False) as progress:
        task = progress.add_task("demo", total=days * steps_per_day)

        def on_step(day: str, step: str) -> None:
            if step != "monitor":
                progress.update(task, advance=1, description=f"{day} {step:<9}")

        summary = run_demo(days, params_file=str(params_file) if params_file else None,
                           overrides=overrides, fresh=fresh, broker=broker, on_step=on_step)
    console = Console()
    for line in summary.lines():
        console.print(line, highlight=False)
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
    typed = typer.prompt(f"{what}\nType {word} to confirm", default="", show_default=False)
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
    """Kill switch (CTL-1): write runs/KILL_SWITCH now, record it in the ledger if it is free."""
    from rich.console import Console

    from tradebook.controls import halt

    ctx = _context(params_file, param)
    _print_control(Console(), halt(ctx.params, ctx.root, reason, _actor(), "cli"))


@app.command("resume")
def resume_cmd(reason: str = typer.Option(..., "--reason", "-r", help="why it is safe to trade again (recorded)"),
               yes: bool = YesOpt, params_file: Optional[Path] = ParamsOpt,
               param: Optional[list[str]] = OverrideOpt,
               reset_peak: bool = typer.Option(False, "--reset-peak", help="after a max-drawdown freeze "
                                               "(BRK-2): restart the peak at today's equity, recorded")) -> None:
    """Clear a halt or freeze (CTL-2): needs a reason; removes the flag file; recorded."""
    from rich.console import Console

    from tradebook.controls import resume

    ctx = _context(params_file, param)
    _confirm("RESUME", yes, "Trading will resume: new entries and exits will be sent to the broker.")
    if reset_peak:
        # Without this, a drawdown freeze trips again at the next breaker check.
        from tradebook.breakers import reset_peak as reset

        equity = ctx.broker.account().equity
        with ctx.ledger.transaction() as con:
            reset(con, ctx.now(), equity, reason, _actor())
    _print_control(Console(), resume(ctx.params, ctx.root, reason, _actor(), "cli"))


@app.command("flatten")
def flatten_cmd(reason: str = typer.Option(..., "--reason", "-r", help="why (recorded)"), yes: bool = YesOpt,
                params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """CTL-5: cancel all open orders, close every position at market, then freeze."""
    from rich.console import Console

    from tradebook.flatten import flatten

    ctx = _context(params_file, param)
    _confirm("FLATTEN", yes, "ALL open orders will be cancelled and ALL positions sold at market; then FROZEN.")
    result = flatten(ctx, reason, _actor(), "cli")
    console = Console()
    console.print(result.summary(), markup=False, highlight=False)
    _print_control(console, result.status)
    if result.failed:
        raise typer.Exit(1)


@app.command("status")
def status_cmd(params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """Control state and reasons, account, positions, last 10 runs (works while the ledger is busy)."""
    from rich.console import Console

    from tradebook.controls import effective_state

    ctx = _context(params_file, param)
    console = Console()
    status = effective_state(ctx.params, ctx.root)
    _print_control(console, status)
    _print_account(console, ctx)
    _print_runs(console, ctx, status)


def _print_account(console, ctx) -> None:
    from rich.table import Table

    try:
        account, positions = ctx.broker.account(), ctx.broker.positions()
    except Exception as exc:  # status must still show the control state when the broker is down
        console.print(f"broker unavailable: {type(exc).__name__}: {exc}", style="yellow", markup=False)
        return
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


def _print_runs(console, ctx, status) -> None:
    from rich.table import Table

    from tradebook.controls import STATUS_LOCK_TIMEOUT_S
    from tradebook.ledger import Ledger

    path = ctx.params.ledger_path(ctx.root)
    if status.ledger_error or not path.exists():
        console.print("runs: ledger busy or unreadable, try again" if status.ledger_error else "runs: none yet",
                      highlight=False)
        return
    try:
        rows = Ledger(path, lock_timeout_s=STATUS_LOCK_TIMEOUT_S, create=False).rows(
            "SELECT started_at, phase, status, ended_at, coalesce(error, ''), coalesce(notebook_path, '') "
            "FROM runs ORDER BY started_at DESC LIMIT 10")
    except TradebookError as exc:
        console.print(f"runs: ledger busy or unreadable ({exc})", markup=False, highlight=False)
        return
    table = Table(title="last 10 runs")
    for col in ("started", "phase", "status", "ended", "error", "notebook"):
        table.add_column(col)
    for started, phase, state, ended, error, nb in rows:
        table.add_row(f"{started:%Y-%m-%d %H:%M:%S}", phase, state, f"{ended:%H:%M:%S}" if ended else "-",
                      error[:60], nb)
    console.print(table if rows else "runs: none yet")


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
    from tradebook.daemon import EXIT_ALREADY_RUNNING, run_daemon
    from tradebook.health import DaemonAlreadyRunning
    from tradebook.schedule import parse_clock_time
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
    """OPS-4: exit 1 when the daemon's heartbeat is stale or trading is FROZEN/HALTED, saying why."""
    from tradebook.health import check_health

    ctx = _context(params_file, param)
    report = check_health(ctx.params, ctx.root)
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)


@ledger_app.command("backup")
def ledger_backup_cmd(dest: Optional[Path] = typer.Option(None, "--dest", help="folder (default runs/backups)"),
                      params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """OPS-3: consistent copy to runs/backups/ledger-<UTC stamp>.duckdb; prunes by backup_retention_days."""
    from tradebook.backup import backup

    ctx = _context(params_file, param)
    path = backup(ctx.params.ledger_path(ctx.root), dest, retention_days=ctx.params.backup_retention_days)
    typer.echo(f"backup written: {path}")


@ledger_app.command("restore")
def ledger_restore_cmd(path: Optional[Path] = typer.Argument(None, help="backup file (default: the newest)"),
                       force: bool = typer.Option(False, "--force", help="replace a healthy ledger too"),
                       params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """OPS-3: put a backup in place; the replaced ledger is kept as ledger.duckdb.corrupt-<stamp>."""
    from tradebook.backup import restore

    ctx = _context(params_file, param)
    result = restore(path, ctx.params.ledger_path(ctx.root), force=force)
    typer.echo(f"restored {result.ledger} from {result.restored_from}")
    for aside in result.set_aside:
        typer.echo(f"kept the previous file as {aside}")
    typer.echo("rows: " + ", ".join(f"{k}={v}" for k, v in sorted(result.counts.items()) if v))


@ledger_app.command("check")
def ledger_check_cmd(params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """OPS-3: open the ledger, count rows per table; a corrupt file names the backup to restore."""
    from tradebook.backup import check

    ctx = _context(params_file, param)
    result = check(ctx.params.ledger_path(ctx.root))
    typer.echo(f"ledger {result.ledger}: ok, schema v{result.schema_version}")
    typer.echo("rows: " + ", ".join(f"{k}={v}" for k, v in sorted(result.counts.items())))
    typer.echo(f"newest backup: {result.newest_backup or 'none (run `tradebook ledger backup`)'}")


# --- report ---------------------------------------------------------------------------------
@app.command()
def report(html: bool = typer.Option(False, "--html", help="also write runs/report.html (outputs only, no code)"),
           params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """Run the report notebook (P&L, exposure, fills, rejections, incidents); --html exports it."""
    from tradebook.params import parse_override
    from tradebook.report import export_html
    from tradebook.runner import run_phase

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
    from tradebook.doctor import failed, run_doctor

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
    from tradebook.panel_server import serve
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
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
