"""CLI commands for research: ``tradebook backtest`` and ``tradebook data fetch|check``.

Registered on the main typer app by ``tradebook.cli``; each command parses its
arguments, calls one library function and prints the result. Typed errors
(StrategyError, DataStoreError, ConfigError) reach ``cli.main`` and print as one line.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Optional

import typer

ParamsOpt = typer.Option(None, "--params", help="params YAML file (default params/sim.yaml)")
OverrideOpt = typer.Option(None, "-p", "--param", help="override as key=value (repeatable)")
# `tradebook backtest` exits 1 when the strategy failed on any session: the figures are not its own.
EXIT_STRATEGY_FAILED = 1


def _context(params_file: Optional[Path], overrides: Optional[list[str]]):
    from tradebook.context import Context
    from tradebook.params import parse_override

    pairs = dict(parse_override(o) for o in overrides or [])
    return Context.load(str(params_file) if params_file else None, pairs)


def _symbols(text: Optional[str]) -> list[str] | None:
    return [s.strip().upper() for s in text.split(",") if s.strip()] if text else None


def _day(text: Optional[str], what: str) -> date | None:
    from tradebook.errors import ConfigError

    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not a date; write it as YYYY-MM-DD") from None


def backtest_cmd(symbols: Optional[str] = typer.Option(None, "--symbols", help="comma-separated (default params.symbols)"),
                 start: Optional[str] = typer.Option(None, "--start", help="first session to trade, YYYY-MM-DD"),
                 end: Optional[str] = typer.Option(None, "--end", help="last session to trade, YYYY-MM-DD"),
                 no_gate: bool = typer.Option(False, "--no-gate", help="skip the live gate rules"),
                 no_frictions: bool = typer.Option(False, "--no-frictions",
                                                   help="no costs, stops/targets or breakers (flatters: research only)"),
                 params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """Backtest the strategy params choose over the bundled sample or the data store."""
    from tradebook.research.backtest import run_backtest

    ctx = _context(params_file, param)
    result = run_backtest(ctx.params, root=ctx.root, symbols=_symbols(symbols), start=_day(start, "--start"),
                          end=_day(end, "--end"), use_gate=not no_gate, frictions=not no_frictions)
    failure = result.failure_note()
    if failure:   # said first: figures from sessions that traded nothing are not the strategy's
        typer.echo(f"error: {failure}", err=True)
        if result.failed_everywhere:
            raise typer.Exit(EXIT_STRATEGY_FAILED)
    typer.echo(f"strategy {result.strategy}: {result.summary()}")
    for label, figure in result.stats_table().itertuples(index=False):
        typer.echo(f"  {label:<38} {figure}")
    if failure:
        raise typer.Exit(EXIT_STRATEGY_FAILED)


def data_fetch_cmd(symbols: str = typer.Option(..., "--symbols", help="comma-separated tickers"),
                   start: str = typer.Option(..., "--start", help="YYYY-MM-DD"),
                   end: Optional[str] = typer.Option(None, "--end", help="YYYY-MM-DD (default today)"),
                   params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """Fetch adjusted daily bars through the broker adapter into the local store (incremental)."""
    from tradebook.errors import ConfigError
    from tradebook.marketdata import store as datastore

    ctx = _context(params_file, param)
    if ctx.params.mode == "sim":
        raise ConfigError("data fetch pulls bars from Alpaca: use a paper/live params file "
                          "(e.g. --params params/alpaca-paper.yaml) with APCA_API_KEY_ID / APCA_API_SECRET_KEY set")
    first, last = _day(start, "--start"), _day(end, "--end") or date.today()
    folder = datastore.store_dir(ctx.params, ctx.root)
    added = datastore.fetch(ctx.broker, folder, _symbols(symbols) or [], first, last)
    for symbol, n in added.items():
        typer.echo(f"{symbol}: {n} new bar(s)")
        if not n and not datastore.symbol_file(folder, symbol).exists():
            typer.echo(f"{symbol}: the data source returned no bars for {first} → {last}; check the symbol "
                       "and that your data plan covers these dates. Nothing was stored.", err=True)
    report = datastore.check(folder, list(added))
    for line in report.lines():
        typer.echo(line)
    typer.echo(f"store: {folder}")
    if not report.ok:
        raise typer.Exit(1)


def data_check_cmd(symbols: Optional[str] = typer.Option(None, "--symbols", help="comma-separated (default: all stored)"),
                   params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """Check the store: gaps against the XNYS calendar, duplicate days, non-positive or absurd prices."""
    from tradebook.marketdata import store as datastore

    ctx = _context(params_file, param)
    folder = datastore.store_dir(ctx.params, ctx.root)
    report = datastore.check(folder, _symbols(symbols))
    if not report.spans:
        typer.echo(f"the store {folder} is empty: run `tradebook data fetch --symbols ... --start ...`")
        raise typer.Exit(1)
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)


def lab_cmd(port: int = typer.Option(8888, "--port", min=1, max=65535, help="port on 127.0.0.1"),
            no_browser: bool = typer.Option(False, "--no-browser", help="print the URL, do not open a browser")) -> None:
    """Open JupyterLab on the project with the project's kernel (research notebooks, strategies/)."""
    from tradebook.context import project_root
    from tradebook.research.lab import run_lab

    raise typer.Exit(run_lab(project_root(), port, not no_browser, lambda line: typer.echo(line)))


def register(app: typer.Typer) -> None:
    """Add ``backtest``, ``lab`` and ``data fetch|check`` to the main CLI."""
    app.command("backtest")(backtest_cmd)
    app.command("lab")(lab_cmd)
    data_app = typer.Typer(no_args_is_help=True, help="The local market data store (DATA-1).")
    data_app.command("fetch")(data_fetch_cmd)
    data_app.command("check")(data_check_cmd)
    app.add_typer(data_app, name="data")
