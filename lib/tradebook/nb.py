"""Small helpers that keep the phase notebooks thin: start a phase, show its report."""
from __future__ import annotations

from typing import Any, Protocol

from tradebook.context import READ_ONLY_PHASES, Context


class PhaseReport(Protocol):
    def summary(self) -> str: ...
    def tables(self) -> dict[str, Any]: ...


def start(phase: str, params_file: str | None, overrides: dict[str, Any] | None,
          run_id: str | None) -> Context:
    """Validate params and build the phase's Context; prints one orienting line.

    A phase notebook opened by hand (no ``run_id`` from the runner) is a dry run: see
    ``tradebook.dryrun``; it shows what the phase would do and sends and writes nothing.
    """
    from tradebook.dryrun import dry_context, is_dry_run
    from tradebook.logs import setup_logging

    read_only = phase in READ_ONLY_PHASES   # a report never counts toward the API breaker (EXE-4)
    ctx = Context.load(params_file, overrides or {}, run_id, read_only=read_only)
    if is_dry_run(phase, run_id):
        ctx = dry_context(ctx, phase)   # keeps read_only
        print(f"DRY RUN: {phase} opened outside the runner; it runs on a copy of the ledger "
              f"({ctx.runs_dir}, removed when this kernel stops) and sends nothing. To trade: tradebook run {phase}")
    # JSON-lines log under runs/logs with secrets redacted (OPS-6); console keeps warnings visible.
    setup_logging(ctx.params, ctx.root, run_id, console=True)
    print(f"{phase} · mode={ctx.params.mode} · params {ctx.params.digest()} · run {run_id or '(interactive)'}")
    return ctx


def show(report: PhaseReport, max_rows: int = 50) -> None:
    """Display a phase report: its summary line, then each non-empty table with a heading."""
    from IPython.display import Markdown, display

    for title, frame in report.tables().items():
        if frame is None or len(frame) == 0:
            display(Markdown(f"**{title}** — none"))
            continue
        display(Markdown(f"**{title}** ({len(frame)})"))
        display(frame.head(max_rows))
