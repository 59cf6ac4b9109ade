"""Commands that run the phases: ``run`` (one notebook), ``demo`` (N simulated sessions),
``daemon`` (the exchange calendar, unattended) and ``report``.

Each parses its arguments, calls one library function and prints the result; the heavy
imports (papermill, the engine) happen inside the command, never at `import tradebook.cli`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tradebook.cli.common import OverrideOpt, ParamsOpt, console, context, overrides, params_path, print_error

PHASE_NAMES = ("reconcile", "decide", "execute", "report")


def run(phase: str = typer.Argument(..., help="reconcile | decide | execute | report"),
        params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """Run one phase notebook with papermill into runs/<date>/<HHMMSS>-<phase>.ipynb."""
    from tradebook.engine.notebook_files import printed_summary
    from tradebook.engine.runner import run_phase
    from tradebook.errors import ConfigError

    if phase not in PHASE_NAMES:
        raise ConfigError(f"unknown phase {phase!r}; choose one of {', '.join(PHASE_NAMES)}")
    record = run_phase(phase, params_file=params_path(params_file), overrides=overrides(param))
    typer.echo(f"{phase}: {record.status} · {record.notebook_path}")
    summary = printed_summary(record.notebook_path, phase)   # e.g. what execute sent and what was refused
    if summary:
        typer.echo(summary)


def demo(days: int = typer.Option(20, "--days", min=1, max=2000, help="trading sessions to replay"),
         fresh: bool = typer.Option(False, "--fresh", help="move previous runs/ content to runs/archive/ first"),
         broker: str = typer.Option("sim", "--broker", help="sim (default) or alpaca-fake"),
         params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """Replay N sessions through reconcile → execute → monitor → decide → report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tradebook.demo import check_broker, run_demo

    check_broker(broker)   # bad input is refused before the progress bar is drawn
    pairs = overrides(param)
    steps_per_day = 4
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console(), transient=False) as progress:
        task = progress.add_task("demo", total=days * steps_per_day)

        def on_step(day: str, step: str) -> None:
            if step != "monitor":
                progress.update(task, advance=1, description=f"{day} {step:<9}")

        def on_start(lines: list[str]) -> None:   # HALTED / REDUCE_ONLY: said before the first session
            for line in lines:
                progress.console.print(line, style="bold yellow", markup=False, highlight=False)

        summary = run_demo(days, params_file=params_path(params_file), overrides=pairs, fresh=fresh,
                           broker=broker, on_step=on_step, on_start=on_start)
    out = console()
    for line in summary.lines():
        out.print(line, markup=False, highlight=False)
    for failure in summary.failures:
        out.print(f"[red]failed:[/] {failure}", highlight=False)
    if summary.failures:
        raise typer.Exit(1)


def daemon(speed: Optional[str] = typer.Option(None, "--speed", help="sim only: simulated seconds per real "
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

    pairs = overrides(param)
    try:
        code = run_daemon(params_path(params_file), pairs, project_root(), speed=speed,
                          until=parse_clock_time(until), hold_at=parse_clock_time(hold_at))
    except DaemonAlreadyRunning as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_ALREADY_RUNNING) from None
    raise typer.Exit(code)


def report(html: bool = typer.Option(False, "--html", help="also write runs/report.html (outputs only, no code)"),
           params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """Run the report notebook (P&L, exposure, fills, rejections, incidents); --html exports it."""
    from tradebook.engine.runner import run_phase
    from tradebook.report.build import export_html

    record = run_phase("report", params_file=params_path(params_file), overrides=overrides(param))
    typer.echo(f"report: {record.status} · {record.notebook_path}")
    if html:
        out = export_html(record.notebook_path, context(params_file, param).runs_dir / "report.html")
        typer.echo(f"html: {out}")
