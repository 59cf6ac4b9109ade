"""The operator's commands: the kill switch (``halt``), ``resume``, ``flatten``, ``health``,
``doctor`` and the control ``panel`` (``status`` is in ``cli.status``).

The kill switch works with invalid params, a damaged ledger and no broker (CTL-6): ``halt``
and ``health`` load the params leniently and fall back to the flag files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tradebook.cli.common import (OverrideOpt, ParamsOpt, YesOpt, actor, confirm, console, context, load_leniently,
                                  overrides, params_path, plain, print_control)


def halt(reason: str = typer.Option("halted from the CLI", "--reason", "-r", help="why (recorded)"),
         params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt,
         all_accounts: bool = typer.Option(False, "--all-accounts", help="halt every account of the runs "
                                           "folder (the default when --params is not given)")) -> None:
    """Kill switch (CTL-1, CTL-6). Without --params (or with --all-accounts): halt EVERY account of the
    runs folder (the all-accounts flag runs/KILL_SWITCH). With --params X: only that account
    (its flag runs/KILL_SWITCH-<ledger>). Then a ledger row, if it can.

    Needs nothing else: with a damaged or locked ledger, or the broker down, the flag file is
    still written and the output says what could not be done. With params that cannot be read
    or are invalid the account is unknown, so the all-accounts flag is written.
    """
    from tradebook.safety.controls import halt as halt_account, halt_all

    ctx, fallback = load_leniently(params_file, param)
    out = console()
    if ctx is None:
        status = _halt_unknown_account(out, reason, *fallback)
    elif all_accounts or params_file is None:
        # A bare `tradebook halt` is the panic button: it must stop paper and live too, not only sim.
        status = halt_all(ctx.params, ctx.root, reason, actor(), "cli")
        runs = ctx.params.runs_path(ctx.root)
        plain(out, f"halted EVERY account in {runs}: the all-accounts flag {runs / 'KILL_SWITCH'} is written "
                   f"(sim, paper and live ledgers there all stop). To halt one account only: "
                   "`tradebook halt --params <file>`. Clearing it takes "
                   "`tradebook resume -r <reason> --all-accounts`.")
    else:
        status = halt_account(ctx.params, ctx.root, reason, actor(), "cli")
        plain(out, f"halted this account only ({ctx.params.mode}, ledger {ctx.params.ledger_path(ctx.root).name}); "
                   "`tradebook halt` without --params halts every account")
    print_control(out, status)
    plain(out, "  note: the broker was not contacted: orders already sent stay open at the broker; "
               "`tradebook flatten` cancels them and closes positions")


def _halt_unknown_account(out, reason: str, where, problem: str):
    """Params unreadable or invalid: the all-accounts flag, and a row only in a ledger that exists."""
    from tradebook.clock import fallback_now
    from tradebook.safety.controls import halt_at

    now, clock = fallback_now(where.mode, where.sim_state)   # a sim ledger row keeps the sim clock
    # Only an existing ledger is written: a guessed path must never start a new one.
    status = halt_at(where.flag, where.ledger, reason, actor(), f"cli (params invalid; {clock})", now=now,
                     create_ledger=False, also=where.flags)
    plain(out, f"params invalid, so the account is unknown: the all-accounts flag {where.flag} "
               f"({where.how}) halts EVERY account in {where.runs}; the flag is stamped with the wall clock, "
               f"a ledger row with the {clock}. Clearing "
               f"it takes `tradebook resume -r <reason> --all-accounts`.\n{problem}")
    return status


def resume(reason: str = typer.Option(..., "--reason", "-r", help="why it is safe to trade again (recorded)"),
           yes: bool = YesOpt, params_file: Optional[Path] = ParamsOpt,
           param: Optional[list[str]] = OverrideOpt,
           reset_peak: bool = typer.Option(False, "--reset-peak", help="after a max-drawdown freeze "
                                           "(BRK-2): restart the peak at today's equity, recorded"),
           all_accounts: bool = typer.Option(False, "--all-accounts", help="also remove runs/KILL_SWITCH, "
                                             "the flag that halts every account (a bare `tradebook halt` writes it)"),
           ) -> None:
    """Clear a halt or freeze (CTL-2): needs a reason; removes this account's flag file; recorded."""
    from tradebook.safety.controls import resume as resume_account

    ctx = context(params_file, param)
    # OPS-8: clearing a halt writes this account's ledger; another account's is refused here, untouched.
    _ = ctx.ledger
    confirm("RESUME", yes, "Trading will resume: new entries and exits will be sent to the broker.")
    if reset_peak:
        # Without this, a drawdown freeze trips again at the next breaker check.
        from tradebook.safety.breakers import reset_peak as reset

        equity = ctx.broker.account().equity
        with ctx.ledger.transaction() as con:
            reset(con, ctx.now(), equity, reason, actor())
    print_control(console(), resume_account(ctx.params, ctx.root, reason, actor(), "cli", all_accounts=all_accounts))


def flatten(reason: str = typer.Option(..., "--reason", "-r", help="why (recorded)"), yes: bool = YesOpt,
            params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """CTL-5: cancel all open orders, close every position at market, then freeze."""
    from tradebook.phases.flatten import flatten as flatten_account

    ctx = context(params_file, param)
    confirm("FLATTEN", yes, "ALL open orders will be cancelled and ALL positions sold at market; then FROZEN.")
    result = flatten_account(ctx, reason, actor(), "cli")
    out = console()
    out.print(result.summary(), markup=False, highlight=False)
    print_control(out, result.status)
    if result.failed:
        raise typer.Exit(1)


def health(params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """OPS-4: exit non-zero, saying why, unless the daemon beats, the ledger reads, the broker answers
    and trading is RUNNING (codes: README "Health"). Works without valid params (CTL-6)."""
    from tradebook.ops.health import check_health, check_health_at

    ctx, fallback = load_leniently(params_file, param)
    report = check_health(ctx.params, ctx.root) if ctx is not None else check_health_at(*fallback)
    for line in report.lines():
        typer.echo(line)
    raise typer.Exit(report.code)


def doctor(params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """First contact: keys, paper/live, account, margin, fractional, assets, data feeds, clock (exit 1 on a blocker)."""
    from tradebook.ops.doctor import failed, run_doctor

    ctx = context(params_file, param)
    checks = run_doctor(ctx.params, ctx.root)
    for check in checks:
        typer.echo(check.line())
    if failed(checks):
        typer.echo("doctor: something above would stop trading (FAIL); fix it and run doctor again")
        raise typer.Exit(1)
    typer.echo("doctor: ready to trade with these params")


def panel(port: int = typer.Option(8866, "--port", min=1, max=65535, help="port on 127.0.0.1"),
          params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """CTL-4: serve the control panel page (Voilà, no code shown) on 127.0.0.1 with a token printed here."""
    from tradebook.context import project_root
    from tradebook.panel.server import serve

    serve(project_root(), port=port, params_file=params_path(params_file), overrides=overrides(param),
          echo=lambda line: typer.echo(line))
