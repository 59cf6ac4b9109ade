"""Parameter sweeps (SWP-1, SWP-2): every set through the same backtest, rows into a table, resumable.

``sweep(...)`` is the notebook entry point and what ``tradebook sweep`` calls. Sets
already in the table (same sweep, same key) are skipped, so rerunning an interrupted
sweep only runs what is missing. Sets run in this process, on a local process pool
(default: all cores) or on Ray; the rows are identical whichever runs them.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generator, Mapping, Sequence

from tradebook.errors import ConfigError
from tradebook.research import runners, space, table
from tradebook.research.evaluate import REFERENCE, Job, base_params, check_names

if TYPE_CHECKING:
    import pandas as pd

    from tradebook.params import Params

DEFAULT_DB = "sweeps.duckdb"
FLUSH_SECONDS = 1.0


@dataclass
class SweepRun:
    """What one call did: the sweep's name and table, sets in total, skipped as done, run now."""

    name: str
    db: Path
    total: int
    skipped: int
    ran: int
    keys: list[str] = field(default_factory=list)  # the sets of this call, in run order

    def results(self, con: Any = None) -> "pd.DataFrame":
        """The rows of this call's sets (not other sets filed under the same name), parameters as columns."""
        return table.results(con if con is not None else self.db, self.name, keys=self.keys)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``run`` says how far it got (finished sets are in the table)."""

    def __init__(self, run: SweepRun):
        super().__init__(f"sweep {run.name} interrupted after {run.skipped + run.ran} of {run.total} sets")
        self.run = run


def plan(strategy: str, grid: Mapping[str, Sequence[Any]], *, search: str = "grid", samples: int | None = None,
         seed: int = 0, root: str | None = None) -> list[dict[str, Any]]:
    """The parameter sets of a sweep, in run order."""
    if not grid:
        raise ConfigError("a sweep needs at least one parameter with values (e.g. --grid rsi_entry=20,25,30)")
    check_names(strategy, list(grid), root)
    if search == "grid":
        return space.grid_sets(grid)
    if search == "random":
        if not samples or samples < 1:
            raise ConfigError("random search needs --samples N (how many sets to draw), N >= 1")
        return space.random_sets(grid, samples, seed)
    raise ConfigError(f"unknown search {search!r}: choose grid or random")


def make_job(strategy: str, *, params: "Params | None" = None, symbols: Sequence[str] | None = None,
             start: date | None = None, end: date | None = None, use_gate: bool = True, frictions: bool = True,
             cash: float | None = None) -> Job:
    """The fixed part of a sweep; every set starts from ``params`` (default: the defaults)."""
    from tradebook.params import Params

    params = params or Params()
    if start and end and start > end:
        raise ConfigError(f"start {start} is after end {end}")
    reference = strategy == REFERENCE
    return Job(strategy, tuple(symbols or params.symbols), start, end, use_gate and not reference,
               float(cash if cash is not None else params.sim.starting_cash), base_params(strategy, params),
               frictions and not reference, str(_root()))


def sweep(strategy: str, grid: Mapping[str, Sequence[Any]], *, params: "Params | None" = None,
          symbols: Sequence[str] | None = None, start: date | None = None, end: date | None = None,
          search: str = "grid", samples: int | None = None, seed: int = 0, use_gate: bool = True,
          frictions: bool = True, name: str | None = None, db: Path | str | None = None, workers: int | None = None,
          ray: str | None = None, ray_cpus: int | None = None, progress: bool = True,
          bars: "pd.DataFrame | None" = None) -> SweepRun:
    """Run a sweep into ``db`` (default runs/sweeps.duckdb) and return what was done.

    ``workers``: local processes (default all cores; 1 runs here). ``ray``: a Ray
    address (``"local"`` starts a local instance with ``ray_cpus`` CPUs) instead.
    Ctrl-C stops it; finished sets stay in the table and the next call skips them.
    """
    from tradebook.params import Params

    params = params or Params()
    job = make_job(strategy, params=params, symbols=symbols, start=start, end=end, use_gate=use_gate,
                   frictions=frictions)
    sets = plan(strategy, grid, search=search, samples=samples, seed=seed, root=job.root)
    db = Path(db) if db else params.runs_path(_root()) / DEFAULT_DB
    table.check_not_ledger(db, params.ledger_path(_root()))
    name = name or default_name(job, grid, search, samples, seed)
    with table.connect(db) as con:
        return run_sets(job, sets, name=name, con=con, db=db, workers=workers, ray=ray, ray_cpus=ray_cpus,
                        progress=progress, bars=bars)


def run_sets(job: Job, sets: list[dict[str, Any]], *, name: str, con: Any, db: Path, workers: int | None = None,
             ray: str | None = None, ray_cpus: int | None = None, progress: bool = True,
             bars: "pd.DataFrame | None" = None) -> SweepRun:
    """Run the sets of ``job`` not yet in the table under ``name`` (``con``: open on ``db``)."""
    scope = job.scope()
    unique: dict[str, dict[str, Any]] = {}
    for p in sets:  # a set listed twice runs once, at its first place
        unique.setdefault(space.set_key(p, scope), p)
    keyed = [(seq, key, p) for seq, (key, p) in enumerate(unique.items())]
    done = table.done_keys(con, name)
    todo = [item for item in keyed if item[1] not in done]
    run = SweepRun(name, Path(db), len(keyed), len(keyed) - len(todo), 0, [key for _, key, _ in keyed])
    if not todo:
        return run
    bars = bars if bars is not None else load_job_bars(job)
    workers = workers or runners.default_workers()
    stream = _stream(job, todo, bars, workers, ray, ray_cpus)
    pending: list[dict] = []
    flushed = time.monotonic()
    with _Progress(progress, name, run.total, run.skipped) as bar:
        try:
            for rows in stream:
                pending += _complete(name, job, rows)
                run.ran += len(rows)
                if time.monotonic() - flushed > FLUSH_SECONDS:  # a commit costs tens of ms: not per batch
                    table.insert(con, pending)
                    pending, flushed = [], time.monotonic()
                bar.advance(len(rows))
        except KeyboardInterrupt:
            raise SweepInterrupted(run) from None
        finally:
            stream.close()  # on Ctrl-C: cancels what is queued, waits for what runs
            table.insert(con, pending)  # and keeps every finished set
    return run


def _stream(job: Job, todo: list, bars: "pd.DataFrame", workers: int, ray: str | None,
            ray_cpus: int | None) -> Generator[list[dict], None, None]:
    if ray:
        return runners.run_ray(job, runners.batches(todo, ray_cpus or workers), bars, ray, ray_cpus)
    work = runners.batches(todo, workers)
    if workers == 1 or len(work) == 1:
        return runners.run_serial(job, work, bars)
    return runners.run_pool(job, work, bars, min(workers, len(work)))


def load_job_bars(job: Job) -> "pd.DataFrame":
    """The bars every set replays: stored symbols from the data store, bundled ones otherwise."""
    from tradebook.params import Params
    from tradebook.marketdata.store import load_bars_any

    return load_bars_any(list(job.symbols), Params.model_validate(dict(job.base)),
                         Path(job.root) if job.root else None)


def _complete(name: str, job: Job, rows: list[dict]) -> list[dict]:
    now = datetime.now(timezone.utc)
    return [{**row, "sweep": name, "strategy": job.strategy, "params": space.params_json(row["params"]),
             "symbols": ",".join(job.symbols), "start": job.start, "end": job.end, "use_gate": job.use_gate,
             "finished_at": now} for row in rows]


def default_name(job: Job, grid: Mapping[str, Sequence[Any]], search: str, samples: int | None, seed: int) -> str:
    """Same command, same name: that is what makes a plain rerun resume."""
    key = space.set_key({"grid": {k: list(v) for k, v in grid.items()}, "search": search, "samples": samples,
                         "seed": seed}, job.scope())
    return f"{job.strategy}-{key[:8]}"


def _root() -> Path:
    from tradebook.context import project_root

    try:
        return project_root()
    except Exception:  # no params/ folder up the tree: relative to the working directory
        return Path.cwd()


class _Progress:
    """A rich progress bar on a terminal or in Jupyter; plain ``done/total`` lines on stderr otherwise."""

    def __init__(self, enabled: bool, name: str, total: int, done: int):
        self.enabled, self.name, self.total, self.done = enabled, name, total, done
        self.bar: Any = None
        self.task: Any = None
        self.started = time.perf_counter()

    def __enter__(self) -> "_Progress":
        if not self.enabled:
            return self
        from rich.console import Console

        console = Console(stderr=True)
        if console.is_terminal or console.is_jupyter:  # rich draws a live bar in both
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self.bar = Progress("[bold]{task.description}", BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=console)
            self.bar.start()
            self.task = self.bar.add_task(f"sweep {self.name}", total=self.total, completed=self.done)
        else:
            print(f"sweep {self.name}: {self.done}/{self.total} sets already done", file=sys.stderr, flush=True)
        return self

    def advance(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.advance(self.task, n)
        elif self.enabled:
            print(f"sweep {self.name}: {self.done}/{self.total} sets done", file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
