"""What every command of the CLI shares: the params options, loading a Context, typed
confirmation, the operator's name, and printing that survives a pipe.

Imports of the library stay inside the functions so that `import tradebook.cli` (every
`tradebook ...` start, `--help` included) stays cheap.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

ParamsOpt = typer.Option(None, "--params", help="params YAML file (default params/sim.yaml)")
OverrideOpt = typer.Option(None, "-p", "--param", help="override as key=value (repeatable)")
YesOpt = typer.Option(False, "--yes", "-y", help="skip the typed confirmation")


def overrides(param: Optional[list[str]]) -> dict[str, object]:
    """The ``-p key=value`` options as a dict (a malformed one is a ConfigError, exit 2)."""
    from tradebook.params import parse_override

    return dict(parse_override(p) for p in param or [])


def params_path(params_file: Optional[Path]) -> str | None:
    return str(params_file) if params_file else None


def context(params_file: Optional[Path], param: Optional[list[str]] = None):
    """The Context of these params (ConfigError when they are invalid)."""
    from tradebook.context import Context

    return Context.load(params_path(params_file), overrides(param))


def load_leniently(params_file: Optional[Path], param: Optional[list[str]]):
    """(ctx, None), or (None, (where, problem)) when the params cannot be loaded (CTL-6).

    Any failure to load counts, not only a ConfigError: halt must never fail because of the
    params, and status/health fail closed (exit 2) instead of ending in a traceback.
    """
    from tradebook.context import project_root
    from tradebook.errors import ConfigError
    from tradebook.params import parse_override
    from tradebook.safety.killswitch import locate

    try:
        return context(params_file, param), None
    except Exception as exc:  # noqa: BLE001 — see above
        problem = str(exc) if isinstance(exc, ConfigError) else \
            f"params could not be loaded: {type(exc).__name__}: {exc}"
        # The overrides that do parse still say where the account's files are (runs_dir, ledger).
        pairs = {}
        for text in param or []:
            try:
                key, value = parse_override(text)
                pairs[key] = value
            except ConfigError:
                continue
        return None, (locate(project_root(), params_file, pairs), problem)


def actor() -> str:
    """Who acts, as recorded with a halt, resume or flatten."""
    import getpass

    try:
        return f"{getpass.getuser()}@cli"
    except Exception:  # no user database (containers)
        return "operator@cli"


def confirm(word: str, yes: bool, what: str) -> None:
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


def console():
    """A rich console that never breaks a line at the terminal width (soft wrap): messages with
    long paths stay whole when piped or in a narrow terminal."""
    from rich.console import Console

    return Console(soft_wrap=True)


def plain(out, text: str) -> None:
    """``text`` as it is: no markup, no highlighting (paths and reasons come from the user)."""
    out.print(text, markup=False, highlight=False)


def print_error(message: str) -> None:
    """An error as plain text on stderr: never wrapped, shortened or marked up by the terminal width.

    rich wraps (and tables ellipsize) at the console width, which a pipe or a small
    COLUMNS makes narrow, so a long path in a message would come out broken or as `...`.
    """
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def print_control(out, status) -> None:
    """The trading state (CTL-1..6), since when, its reasons and notes."""
    colour = {"RUNNING": "green", "REDUCE_ONLY": "yellow", "HALTED": "red", "FROZEN": "magenta"}[status.state]
    since = f" since {status.since:%Y-%m-%d %H:%M:%S %Z}" if status.since else ""
    out.print(f"[bold {colour}]{status.state}[/]{since}", highlight=False)
    for reason in status.reasons:
        out.print(f"  - {reason}", markup=False, highlight=False)
    for note in status.notes:
        out.print(f"  note: {note}", markup=False, highlight=False)
    if status.ledger_error:
        out.print("  ledger busy or unreadable: state shown from the flag file / env, failing closed",
                  style="yellow", highlight=False)
