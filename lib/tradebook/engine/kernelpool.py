"""Warm Jupyter kernels for papermill: start the next kernel while this notebook runs.

Every notebook gets a *fresh* kernel, started for it and shut down after it; a kernel is
never handed out twice, so each executed notebook is the record of an isolated run. What
the pool changes is *when* the kernel starts: ``take()`` hands out a kernel that was
launched earlier (and immediately launches its successor), so kernel start-up and the
kernel's imports overlap with the previous notebook instead of adding to it.

On Linux the kernels come from a fork server (:mod:`tradebook.engine.kernelfork`) that has
imported ipykernel, tradebook, pandas and duckdb once; elsewhere each kernel is a normal
``python -m ipykernel_launcher`` that imports those modules at start-up (IPython
``exec_lines``, run in a throw-away namespace so the notebook sees an empty one).

A pool serves one project root at a time: kernels start with ``cwd = root`` and
``TRADEBOOK_ROOT`` set (a pool made without a root binds to the first root asked for, and
re-binds if asked for another). If tradebook's own sources change, warm kernels are
discarded so a notebook never runs against stale library code.
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Iterable

from tradebook.engine.kernelfork import FORK_SUPPORTED
from tradebook.engine.zygote import Zygote, ZygoteError, fork_provisioner

log = logging.getLogger(__name__)

# What phase notebooks import (missing ones are skipped), and "module:function" for a
# zero-argument cache builder of static reference data (the XNYS session table, ~0.4 s);
# a "+" spec runs in each kernel instead of once in the fork server (kernelfork.PER_KERNEL).
# Not matplotlib.pyplot: its inline-backend hooks need the kernel's running IPython shell.
DEFAULT_WARM_MODULES = (
    "tradebook.context", "tradebook.ledger.db", "tradebook.nb", "tradebook.phases.reconcile", "tradebook.phases.decide",
    "tradebook.phases.execute", "tradebook.report.build", "tradebook.phases.monitor", "tradebook.broker.sim.broker", "tradebook.safety.controls",
    "tradebook.alerts", "tradebook.strategies.swing_rules", "tradebook.marketdata", "tradebook.report.plots",
    "tradebook.report.sections", "tradebook.style", "tradebook.research.figures", "pandas", "pandas.io.formats.style",
    "duckdb", "exchange_calendars",
    "bokeh_sampledata.stocks", "matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg",
    "matplotlib.font_manager", "tradebook.sessions:table",
    # Per kernel, after the fork (they start threads): the in-memory DuckDB instances the ledger
    # and the simulated venue attach their files to (~11 ms of CPU each, off the notebook's time).
    "+tradebook.ledger.attach:prewarm", "+tradebook.broker.sim.store:_memory_connection",
)
KERNEL_ARGS = ["--HistoryManager.hist_file=:memory:"]  # as nbclient does: no sqlite history per kernel


class KernelPool:
    """Keeps ``size`` kernels started ahead of need for one project root.

    ``fork`` is the caller's explicit choice: True = kernels forked from a warm fork server
    where supported (Linux), falling back to ordinary kernels elsewhere or after the fork
    server failed twice (logged); False = ordinary kernels. ``warm_modules`` are
    imported (or ``module:function`` called) before a kernel is handed out; ``env`` is the
    kernels' environment (default: ours); ``watch`` are source trees whose edits discard
    warm kernels (default: the tradebook package); retired kernels get ``retire_grace_s``
    to exit before they are killed.
    """

    def __init__(self, root: str | Path | None = None, *, size: int = 1,
                 fork: bool, warm_modules: Iterable[str] = DEFAULT_WARM_MODULES,
                 kernel_name: str = "python3", env: dict[str, str] | None = None,
                 retire_grace_s: float = 3.0, watch: Iterable[str | Path] | None = None):
        self.root = Path(root).resolve() if root is not None else None
        self.size = max(0, int(size))
        self.warm_modules = tuple(warm_modules)
        self.fork = bool(fork) and FORK_SUPPORTED
        self.kernel_name = kernel_name
        self.retire_grace_s = retire_grace_s
        # Source trees whose edits make warm kernels stale (default: tradebook itself).
        self.watch = tuple(Path(p) for p in watch) if watch is not None else (Path(__file__).resolve().parents[1],)
        self.kernels_started = 0
        self._base_env = env
        self._env = kernel_env(self.root, env) if self.root else {}
        self._spares: deque[Any] = deque()
        self._taken: list[Any] = []  # handed out, not yet retired: killed on close
        self._retiring: list[tuple[Any, float]] = []
        self._zygote: Zygote | None = None
        self._tmp: Path | None = None
        self._context: Any = None
        self._fingerprint: tuple | None = None
        self._fork_failures = 0
        self._closed = False

    # lifecycle ------------------------------------------------------------------------
    def start(self) -> "KernelPool":
        """Launch the fork server (if any) and the first spare kernels; returns at once."""
        if self._closed:
            raise RuntimeError("KernelPool is closed")
        if self._tmp is None:
            import zmq.asyncio

            self._tmp = Path(tempfile.mkdtemp(prefix="tb-kernels-"))
            self._context = zmq.asyncio.Context()
            atexit.register(self.close)
        if self.root is None:
            return self  # nothing to warm until we know the project root
        if self._fingerprint is None:
            self._fingerprint = source_fingerprint(self.watch)
        if self.fork and self._zygote is None:
            self._zygote = Zygote(self.root, self._env, self.warm_modules)
        self._fill()
        return self

    def __enter__(self) -> "KernelPool":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill spare kernels, let retired ones finish shutting down, stop the fork server."""
        if self._closed or self._tmp is None:
            return
        self._closed = True
        while self._spares:
            self._shutdown(self._spares.popleft(), now=True)
        while self._taken:  # a notebook still running when the pool closes (e.g. SIGTERM)
            self._shutdown(self._taken.pop(), now=True)
        self._drain()
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None
        self._context.destroy(linger=0)
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp = None
        atexit.unregister(self.close)

    # kernels ----------------------------------------------------------------------------
    def prepare(self, root: str | Path | None = None) -> "KernelPool":
        """Serve ``root`` and start warming for it now, without waiting (call before slow work)."""
        wanted = Path(root).resolve() if root is not None else self.root
        if wanted is None:
            raise ValueError("KernelPool needs a project root (none was given to the pool)")
        if wanted != self.root:
            self._bind(wanted)
        elif self._fingerprint is not None and source_fingerprint(self.watch) != self._fingerprint:
            self._restart()  # tradebook changed on disk: warm kernels hold the old code
        elif self._zygote is not None and not self._zygote.alive:
            self._fork_failed(f"kernel fork server exited (code {self._zygote.proc.poll()})")
        return self.start()  # (re)creates whatever is missing: fork server, spares

    def take(self, root: str | Path | None = None) -> Any:
        """A started kernel manager (``AsyncKernelManager``) for exactly one notebook."""
        self.prepare(root)
        self._reap()
        km = self._spares.popleft() if self._spares else self._launch()
        if not _alive(km):  # died while waiting (killed, OOM): never hand out a dead kernel
            self._shutdown(km, now=True)
            km = self._launch()
        self._taken.append(km)
        self._fill()
        return km

    def retire(self, km: Any, *, kill: bool = False) -> None:
        """Ask a used kernel to shut down without waiting for it (reaped on later calls)."""
        if km in self._taken:
            self._taken.remove(km)
        if kill:
            self._shutdown(km, now=True)
            return
        from jupyter_core.utils import run_sync

        try:
            run_sync(km.request_shutdown)()
        except Exception:  # the kernel may already be gone; reaping handles it
            pass
        self._retiring.append((km, time.monotonic() + self.retire_grace_s))

    @property
    def spare_pids(self) -> list[int | None]:
        """Process ids of the warm kernels waiting for a notebook (next one first)."""
        return [_pid(km) for km in self._spares]

    @property
    def context(self) -> Any:
        """The zmq context shared by this pool's kernel managers and clients."""
        return self._context

    def _bind(self, root: Path) -> None:
        """Serve another project root: warm kernels there have the wrong cwd and env."""
        self.root = root
        self._env = kernel_env(root, self._base_env)
        self._restart()

    def _fill(self) -> None:
        try:
            if self._zygote is not None and not self._zygote.poll_ready():
                return  # still importing: take() waits for it, start() must not
        except ZygoteError as exc:
            self._fork_failed(str(exc))
        while len(self._spares) < self.size:
            self._spares.append(self._launch())

    def _launch(self) -> Any:
        """Start one kernel: forked if the fork server works, else spawned the ordinary way."""
        if self._zygote is not None:
            try:
                return self._start_kernel(fork_provisioner)
            except ZygoteError as exc:
                self._fork_failed(str(exc))
        return self._start_kernel(None)

    def _fork_failed(self, why: str) -> None:
        """A dead fork server: drop it and its doomed spares; after two failures stop forking."""
        self._fork_failures += 1
        self.fork = self.fork and self._fork_failures < 2
        log.warning("%s; %s", why, "restarting it" if self.fork else "starting kernels the ordinary way")
        while self._spares:
            self._shutdown(self._spares.popleft(), now=True)
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None

    def _start_kernel(self, provisioner: Any) -> Any:
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        kid = uuid.uuid4().hex
        assert self._tmp is not None
        km = AsyncKernelManager(kernel_name=self.kernel_name, transport="ipc", ip=str(self._tmp / kid[:12]),
                                connection_file=str(self._tmp / f"kernel-{kid[:12]}.json"),
                                context=self._context)
        km.kernel_id = kid
        extra = list(KERNEL_ARGS)
        if provisioner is not None:
            km.provisioner = provisioner(km, self._zygote)
        elif self.warm_modules:
            extra.append(f"--IPKernelApp.exec_lines={warm_line(self.warm_modules)}")
        run_sync(km.start_kernel)(kernel_id=kid, extra_arguments=extra, cwd=str(self.root), env=dict(self._env))
        self.kernels_started += 1
        return km

    def _restart(self) -> None:
        while self._spares:
            self._shutdown(self._spares.popleft(), now=True)
        if self._zygote is not None:
            self._drain()  # retired kernels are the zygote's children: let them finish first
            self._zygote.close()
            self._zygote = None  # start() makes a new one for the current root and sources
        self._fingerprint = None

    def _drain(self) -> None:
        """Wait (up to the grace period) for retired kernels to exit; kill the rest."""
        deadline = time.monotonic() + self.retire_grace_s
        while self._retiring and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
        self._reap(force=True)

    def _reap(self, force: bool = False) -> None:
        from jupyter_core.utils import run_sync

        still = []
        for km, deadline in self._retiring:
            alive = run_sync(km.is_alive)()
            if alive and not force and time.monotonic() < deadline:
                still.append((km, deadline))
            else:
                self._shutdown(km, now=True)  # dead: just cleanup; overdue: kill
        self._retiring = still

    @staticmethod
    def _shutdown(km: Any, now: bool) -> None:
        from jupyter_core.utils import run_sync

        try:
            run_sync(km.shutdown_kernel)(now=now)
        except Exception as exc:  # never leave a kernel behind: kill the process directly
            log.warning("kernel %s shutdown failed (%s: %s); killing it", _pid(km), type(exc).__name__, exc)
            process = getattr(getattr(km, "provisioner", None), "process", None)
            if process is not None and process.poll() is None:
                process.kill()


def _alive(km: Any) -> bool:
    process = getattr(getattr(km, "provisioner", None), "process", None)
    return process is not None and process.poll() is None


def _pid(km: Any) -> int | None:
    return getattr(getattr(km, "provisioner", None), "pid", None)


def kernel_env(root: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: ours plus TRADEBOOK_ROOT (secrets pass through the env only)."""
    env = dict(os.environ if base is None else base)
    env["TRADEBOOK_ROOT"] = str(root)
    env.pop("PYTHONEXECUTABLE", None)  # as jupyter_client does for python kernels
    return env


def warm_line(modules: Iterable[str]) -> str:
    """One IPython line running :func:`warm_up` in a throw-away namespace (no names leak)."""
    body = "from tradebook.engine.kernelfork import warm_up\nwarm_up(%r)" % (tuple(modules),)
    return f"exec({body!r}, {{}})"


def source_fingerprint(folders: Iterable[Path]) -> tuple:
    """(path, mtime, size) of every .py file under ``folders``: changes when one is edited."""
    return tuple((str(p), st.st_mtime_ns, st.st_size)
                 for folder in folders for p in sorted(Path(folder).rglob("*.py")) for st in (p.stat(),))
