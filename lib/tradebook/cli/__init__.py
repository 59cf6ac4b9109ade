"""The `tradebook` command line (typer + rich): the app, every command in the order
``tradebook --help`` lists them, and ``main``, the console entry point.

Commands stay thin: parse arguments, call one library function, print the result. They
live by what they do: ``trading`` (run, demo, daemon, report), ``operator`` (halt, resume,
flatten, health, doctor, panel), ``status``, ``ledger`` (backup, restore, check), and
research's own (backtest, lab, data, sweep) in ``tradebook.research``. Typed tradebook
errors are printed as one clear line (no traceback, nothing secret) and exit with status 2.
"""
from __future__ import annotations

import sys

import typer

from tradebook.cli import ledger, operator, status, trading
from tradebook.cli.common import print_error
from tradebook.errors import TradebookError

__all__ = ["app", "main", "print_error"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="tradebook: reconcile, decide, execute, report — on SimBroker or Alpaca.")
app.add_typer(ledger.ledger_app, name="ledger")

app.command("run")(trading.run)
app.command("demo")(trading.demo)
app.command("halt")(operator.halt)
app.command("resume")(operator.resume)
app.command("flatten")(operator.flatten)
app.command("status")(status.status)
app.command("daemon")(trading.daemon)
app.command("health")(operator.health)
app.command("report")(trading.report)
app.command("doctor")(operator.doctor)
app.command("panel")(operator.panel)


def _register_research() -> None:
    from tradebook.research.commands import register
    from tradebook.research.sweep_cli import sweep_cmd  # typer only; the work imports lazily

    register(app)   # backtest, lab, data fetch|check
    app.command("sweep")(sweep_cmd)   # SWP-1, SWP-2


_register_research()


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
