"""A sweep's local process pool (SWP-2), and what happens when one of its worker processes dies.

A worker killed mid-batch (the OOM killer, ``kill -9``, ``os._exit`` in a strategy) breaks a
``ProcessPoolExecutor``: every batch still in it fails with ``BrokenProcessPool`` and the
other workers are stopped too. Finished batches are kept (the caller already has their rows);
the rest run again on a new pool. The executor does not say which set killed its worker, so
each worker writes the seq of the set it is evaluating into a shared slot: the sets that were
running when the pool broke run again first, each alone in its own process. A set that also
kills its process alone ``ALONE_TRIES`` times is given up; the sweep finishes every other set
and then fails with ``WorkerCrashed`` naming the sets given up (none of them is in the table,
so a rerun after the fix runs just those). A worker killed from outside costs one re-run.
"""
from __future__ import annotations

import multiprocessing as mp
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Generator

from tradebook.errors import TradebookError
from tradebook.research import runners
from tradebook.research.evaluate import Job

if TYPE_CHECKING:
    import pandas as pd

ALONE_TRIES = 2        # runs alone, each killing its process, before a set is given up
MAX_GIVEN_UP = 3       # more sets killing their process than this: the strategy is broken, stop
MAX_IDLE_BREAKS = 3    # breaks in a row with no set running (dying at start-up): stop
IDLE = -1

_BARS: "pd.DataFrame | None" = None
_SLOTS: Any = None     # one int per worker: the seq of the set it is evaluating, IDLE otherwise
_SLOT = 0


class WorkerCrashed(TradebookError):
    """A set kills the worker process that runs it (or workers die before running anything)."""


def _init_worker(bars: "pd.DataFrame", slots: Any, claimed: Any) -> None:
    global _BARS, _SLOTS, _SLOT
    _BARS, _SLOTS = bars, slots
    with claimed.get_lock():   # each worker its own slot
        _SLOT, claimed.value = claimed.value % len(slots), claimed.value + 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool


def _pool_batch(job: Job, batch: list) -> list[dict[str, Any]]:
    rows = []
    for item in batch:
        _SLOTS[_SLOT] = item[0]   # read by the parent only if this process dies
        rows += runners.run_batch(job, [item], _BARS)
    _SLOTS[_SLOT] = IDLE
    return rows


def run_pool(job: Job, work: list[list], bars: "pd.DataFrame", workers: int) -> Generator[list[dict], None, None]:
    """Run ``work`` (batches) on ``workers`` processes, yielding each batch's rows as it finishes.

    A dead worker costs the batches that were in flight; see the module docstring. On
    interruption (Ctrl-C, the caller closing the generator) queued batches are cancelled.
    """
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    todo = {i: list(batch) for i, batch in enumerate(work)}
    given_up: list[tuple[int, str, dict, str]] = []
    idle_breaks = 0
    while todo:
        suspects = yield from _round(ctx, job, todo, bars, workers)
        if suspects is None:
            break
        idle_breaks = 0 if suspects else idle_breaks + 1
        if idle_breaks >= MAX_IDLE_BREAKS:
            raise WorkerCrashed(f"sweep worker processes died {idle_breaks} times in a row before running any set "
                                "(out of memory? killed from outside?); finished sets are in the table, run the "
                                "same command again to resume, or use --workers 1 to see the error in this process")
        for item in _take(todo, suspects):
            rows, death = _alone(ctx, job, item, bars)
            if rows is not None:
                yield rows
            else:
                given_up.append((*item, death))
        if len(given_up) >= MAX_GIVEN_UP:
            break
    if given_up:
        raise WorkerCrashed(_given_up_message(given_up, stopped_early=bool(todo)))


def _round(ctx: Any, job: Job, todo: dict[int, list], bars: "pd.DataFrame",
           workers: int) -> Generator[list[dict], None, list[int] | None]:
    """One pool over the batches in ``todo`` (finished ones leave it).

    Returns None when every batch finished, else the seqs of the sets that were running
    when a worker died (possibly none).
    """
    slots, claimed = ctx.Array("q", [IDLE] * workers, lock=False), ctx.Value("q", 0)
    pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx, initializer=_init_worker,
                               initargs=(bars, slots, claimed))
    broken = False
    try:
        pending = {pool.submit(_pool_batch, job, batch): i for i, batch in todo.items()}
        while pending and not broken:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                i = pending.pop(future)
                try:
                    rows = future.result()
                except BrokenProcessPool:
                    broken = True
                    continue
                del todo[i]
                yield rows
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if not broken:
        return None
    for future, i in pending.items():  # finished just before the break: keep them
        if future.done() and not future.cancelled() and future.exception() is None:
            del todo[i]
            yield future.result()
    return [seq for seq in slots if seq != IDLE]


def _take(todo: dict[int, list], seqs: list[int]) -> list[tuple[int, str, dict]]:
    """Remove the sets ``seqs`` from their batches in ``todo`` and return them."""
    taken = []
    for i in list(todo):
        keep = []
        for item in todo[i]:
            (taken if item[0] in seqs else keep).append(item)
        if keep:
            todo[i] = keep
        else:
            del todo[i]
    return taken


def _alone(ctx: Any, job: Job, item: tuple[int, str, dict], bars: "pd.DataFrame") -> tuple[list | None, str]:
    """Run one set in a process of its own, up to ALONE_TRIES times: (rows, "") or (None, how it died)."""
    death = ""
    for _ in range(ALONE_TRIES):
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_alone_worker, args=(job, item, bars, send), daemon=True)
        proc.start()
        send.close()   # the child's end: EOF here as soon as the child is gone
        try:
            answer = receive.recv()
        except EOFError:
            answer = None
        finally:
            receive.close()
            if answer is None and proc.is_alive():   # interrupted (Ctrl-C): stop it
                proc.terminate()
            proc.join()
        if answer is not None:
            kind, value = answer
            if kind == "raised":
                raise value
            return value, ""
        death = _exit_text(proc.exitcode)
    return None, death


def _alone_worker(job: Job, item: tuple[int, str, dict], bars: "pd.DataFrame", send: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    answer: tuple[str, Any]
    try:
        answer = ("rows", runners.run_batch(job, [item], bars))
    except Exception as exc:   # a bug, not a crash: the parent raises it as the serial run would
        answer = ("raised", exc)
    send.send(answer)


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _given_up_message(given_up: list[tuple[int, str, dict, str]], stopped_early: bool) -> str:
    sets = ", ".join(f"{params} (key {key[:12]}, {death})" for _, key, params, death in given_up)
    tail = ("Stopped early: the strategy seems to kill its process for most sets; finished sets are in the "
            "table. " if stopped_early else "Every other set finished and is in the table. ")
    return (f"sweep set(s) {sets}: the process running it died each of the {ALONE_TRIES} times it ran alone. "
            "The strategy (or a library it calls) ends the process: os._exit, a crash in native code, or "
            f"running out of memory. {tail}Fix it and run the same command again: only the missing sets run")
