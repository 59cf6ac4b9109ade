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
