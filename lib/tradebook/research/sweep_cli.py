"""`tradebook sweep`: the command line over ``research.sweep`` and ``research.walkforward`` (SWP-1, SWP-2).

Kept apart from ``tradebook.cli`` so that module stays a list of thin commands; the
heavy imports happen only when the command runs.
"""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any, Optional

import typer

from tradebook.errors import ConfigError

EXIT_INTERRUPTED = 130
EXIT_NO_SET_RAN = 1   # every set failed; some failing is reported first, exit 0 (README)


def sweep_cmd(
    strategy: str = typer.Argument(..., help="a strategy (swing, sma_cross, external_signals, model, "
                                   "strategies.file:Class) or sma_reference (the parity SMA reference, fixed size)"),
    grid: list[str] = typer.Option(..., "--grid", "-g", help="name=values, e.g. rsi_entry=20,25,30 or "
                                   "trend_sma=50:200:25 (start:stop:step, inclusive); repeatable"),
    search: str = typer.Option("grid", "--search", help="grid (every combination) | random (--samples of them)"),
    samples: Optional[int] = typer.Option(None, "--samples", min=1, help="random search: how many sets"),
    seed: int = typer.Option(0, "--seed", help="random search: RNG seed"),
    symbols: Optional[str] = typer.Option(None, "--symbols", help="comma-separated (default: params.symbols)"),
    start: Optional[str] = typer.Option(None, "--start", help="first trading day, YYYY-MM-DD"),
    end: Optional[str] = typer.Option(None, "--end", help="last trading day, YYYY-MM-DD"),
    no_gate: bool = typer.Option(False, "--no-gate", help="skip the live gate rules"),
    no_frictions: bool = typer.Option(False, "--no-frictions", help="no costs, stops/targets or breakers "
                                      "(flatters: research only)"),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="local processes (default: all cores)"),
    ray: Optional[str] = typer.Option(None, "--ray", help="run on Ray: a cluster address (ray://HOST:10001, "
                                      "HOST:6379) or 'local'"),
    ray_cpus: Optional[int] = typer.Option(None, "--ray-cpus", min=1, help="--ray local: CPUs for the instance"),
    db: Optional[Path] = typer.Option(None, "--db", help="results file (default runs/sweeps.duckdb; never the ledger)"),
    name: Optional[str] = typer.Option(None, "--name", help="sweep name (default: derived from the command, so "
                                       "rerunning the same command resumes it)"),
    walk_forward: Optional[str] = typer.Option(None, "--walk-forward", help="rolling | anchored"),
    in_sample: str = typer.Option("3y", "--in-sample", help="walk-forward in-sample length: 3y, 18m, 26w"),
    out_of_sample: str = typer.Option("1y", "--out-of-sample", help="walk-forward out-of-sample length"),
    metric: str = typer.Option("sharpe", "--metric", help="rank by: sharpe | cagr_pct | final_equity | "
                               "max_drawdown_pct"),
    top: int = typer.Option(10, "--top", min=0, help="best sets to print"),
    params_file: Optional[Path] = typer.Option(None, "--params", help="params YAML file: the base every set starts from"),
    param: Optional[list[str]] = typer.Option(None, "-p", "--param", help="base params override key=value"),
) -> None:
    """Sweep a strategy's parameters over history into a results table; resumable after Ctrl-C."""
    from tradebook.params import load_params, parse_override
    from tradebook.research import space
    from tradebook.research.sweep import SweepInterrupted

    params = load_params(params_file, dict(parse_override(p) for p in param or []))
    opts: dict[str, Any] = dict(
        params=params, symbols=[s.strip() for s in symbols.split(",") if s.strip()] if symbols else None,
        start=_day(start, "--start"), end=_day(end, "--end"), search=search, samples=samples, seed=seed,
        use_gate=not no_gate, frictions=not no_frictions, name=name, db=db, workers=workers, ray=ray, ray_cpus=ray_cpus)
    parsed = space.parse_grid(grid)
    try:
        if walk_forward:
            _walk_forward(strategy, parsed, walk_forward, in_sample, out_of_sample, metric, opts)
        else:
            _sweep(strategy, parsed, metric, top, opts)
    except SweepInterrupted as stop:
        run = stop.run
        typer.echo(f"interrupted: {run.skipped + run.ran} of {run.total} sets of sweep {run.name} are in "
                   f"{run.db}; run the same command again to resume (finished sets are not run again)", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _day(text: Optional[str], option: str) -> Optional[date]:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a date: use YYYY-MM-DD") from None


def _sweep(strategy: str, grid: dict, metric: str, top: int, opts: dict) -> None:
    from tradebook.research.sweep import sweep
    from tradebook.research.views import top_sets

    run = sweep(strategy, grid, **opts)
    rows = run.results()
    failed = rows[rows["error"].notna()]
    if len(failed):   # said first, plainly: a failed set has no figures
        every = len(failed) == len(rows)
        typer.echo(f"error: {f'none of the {len(rows)} sets' if every else f'{len(failed)} of {len(rows)} sets'} "
                   f"{'could' if every else 'could not'} run (their rows hold the reason); the first, "
                   f"{failed.iloc[0]['params']}: {failed.iloc[0]['error']}", err=True)
    typer.echo(f"sweep {run.name}: {run.total} sets ({run.ran} run now, {run.skipped} already done) in "
               f"{run.db} (table sweep_results, sweep = '{run.name}')")
    if len(failed) == len(rows):
        raise typer.Exit(EXIT_NO_SET_RAN)   # nothing to rank: a script must not take this for a result
    if top:
        _print_frame(top_sets(rows, metric, top), f"best {top} by {metric}")


def _walk_forward(strategy: str, grid: dict, mode: str, in_sample: str, out_of_sample: str, metric: str,
                  opts: dict) -> None:
    from tradebook.research.walkforward import summary, walk_forward

    report = walk_forward(strategy, grid, in_sample=in_sample, out_of_sample=out_of_sample, mode=mode,
                          metric=metric, **opts)
    _print_frame(report, f"walk-forward ({mode}, in-sample {in_sample}, out-of-sample {out_of_sample})")
    s = summary(report, metric)
    typer.echo(f"mean {metric}: in-sample {s[f'is_{metric}']:.3f}, out-of-sample {s[f'oos_{metric}']:.3f}, "
               f"gap {s['gap']:+.3f}, out/in {s['efficiency']:.2f} over {s['windows']} windows")


def _print_frame(frame, title: str) -> None:
    """A rich table on a terminal; plain text (no wrapping) when piped. Figures formatted like
    the backtest's (``views.readable``)."""
    from rich.console import Console
    from rich.table import Table

    from tradebook.research.views import readable

    text = readable(frame)
    console = Console()
    if not console.is_terminal:
        typer.echo(title)
        typer.echo(text.to_string(index=False))
        return
    t = Table(title=title)
    for col in text.columns:
        t.add_column(str(col), overflow="fold", justify="right" if col in frame.select_dtypes("number") else "left")
    for row in text.itertuples(index=False):
        t.add_row(*[str(v) for v in row])
    console.print(t)
