"""Where a sweep's batches run: in this process, a local process pool, or a Ray cluster (SWP-2).

Each runner takes batches of (seq, key, params) and yields each batch's finished rows
as soon as that batch is done, in completion order; the caller writes them to the
table. The bars are shipped once: to each pool worker at start-up, to Ray's object
store with ``ray.put``. A batch lost with its worker runs again: Ray retries the task;
the process pool (``tradebook.research.pool``) rebuilds itself and re-runs what was lost.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Generator, Sequence

from tradebook.errors import ConfigError
from tradebook.research.evaluate import Job, evaluate

if TYPE_CHECKING:
    import pandas as pd

Batch = Sequence[tuple[int, str, dict[str, Any]]]
RAY_RETRIES = 3


def run_batch(job: Job, batch: Batch, bars: "pd.DataFrame") -> list[dict[str, Any]]:
    """Evaluate every set of one batch; the rows carry their seq, key and params."""
    return [{"seq": seq, "key": key, "params": params, **evaluate(job, params, bars)} for seq, key, params in batch]


def batches(sets: Sequence[tuple[int, str, dict[str, Any]]], workers: int) -> list[list]:
    """Split into about four batches per worker (load balance), at most 16 sets each (loss granularity)."""
    if not sets:
        return []
    size = max(1, min(16, -(-len(sets) // (max(1, workers) * 4))))
    return [list(sets[i:i + size]) for i in range(0, len(sets), size)]


def default_workers() -> int:
    """All the cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_serial(job: Job, work: list[list], bars: "pd.DataFrame") -> Generator[list[dict], None, None]:
    for batch in work:
        yield run_batch(job, batch, bars)


# --- local process pool: tradebook.research.pool (a dead worker costs only the batches it stopped)
def run_pool(job: Job, work: list[list], bars: "pd.DataFrame", workers: int) -> Generator[list[dict], None, None]:
    """A process pool of ``workers``; see ``tradebook.research.pool``."""
    from tradebook.research.pool import run_pool as pooled

    return pooled(job, work, bars, workers)


# --- Ray --------------------------------------------------------------------------------------
def run_ray(job: Job, work: list[list], bars: "pd.DataFrame", address: str | None,
            num_cpus: int | None = None, task_fn=run_batch) -> Generator[list[dict], None, None]:
    """Run the batches as Ray tasks on the cluster at ``address`` ("local": a local instance).

    ``task_fn`` is what each task runs (``run_batch``; tests wrap it to lose a worker).
    """
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        _init_ray(ray, address, num_cpus)
    try:
        bars_ref = ray.put(bars)  # once, to the object store; every task reads the same copy
        task = ray.remote(max_retries=RAY_RETRIES, retry_exceptions=False)(task_fn)
        pending = [task.remote(job, batch, bars_ref) for batch in work]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started_here:
            ray.shutdown()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'tradebook[sweep]' (or pip install 'ray>=2.9')") from None
    return ray


def _init_ray(ray, address: str | None, num_cpus: int | None) -> None:
    """Connect to a cluster, shipping this tradebook package to its workers; or start a local one."""
    from pathlib import Path

    import tradebook

    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address in (None, "", "local"):
        # "local": always a new instance, never one a `ray start` on this machine left behind
        ray.init(address="local", num_cpus=num_cpus, **quiet)
        return
    package = str(Path(tradebook.__file__).parent)
    try:
        ray.init(address=address, runtime_env={"py_modules": [package]}, **quiet)
    except (ConnectionError, RuntimeError) as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc}. Start it with `ray start --head` "
                          "on the head node and pass its address (HOST:6379, or ray://HOST:10001 for Ray Client). "
                          "A cluster with token authentication (Ray >= 2.59) also needs RAY_AUTH_MODE=token and "
                          "its token here, as the Ray docs describe (ray get-auth-token)") from None
