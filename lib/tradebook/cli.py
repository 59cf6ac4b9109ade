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

# --- operations: daemon, health, ledger backup/restore/check (ops) ---------------------------

# --- report ---------------------------------------------------------------------------------

# --- control panel server --------------------------------------------------------------------


def main() -> None:
    """Console entry point: typed errors become one readable line and exit code 2."""
    try:
        app(standalone_mode=False)
    except TradebookError as exc:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:
        sys.exit(getattr(exc, "exit_code", getattr(exc, "code", 0)) or 0)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
