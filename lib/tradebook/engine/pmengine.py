"""The papermill engine the runner uses: a pre-started kernel, and throttled progress saves.

Imported only by :mod:`tradebook.engine.notebook_exec` when it runs a notebook: importing papermill
costs ~1 s here (~3 s with jsonschema's rfc3987 grammar, skipped below), once per process,
never in a kernel.

Two differences from papermill's default ``nbclient`` engine:

- The kernel manager and a ready client are passed in (``km=``, ``kc=``): the kernel was
  started ahead of time by a :class:`~tradebook.engine.kernelpool.KernelPool`.
- papermill rewrites the whole output notebook at every cell start and end, so a
  20-cell report notebook with plots is serialised ~40 times (~0.15 s per run here).
  Progress saves here happen at most every ``SAVE_EVERY_S``; the first (parameters
  injected) and the last (final outputs, errors) are always written, so a crash still
  leaves a notebook that shows how far the run got.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def _skipping(module: str) -> Iterator[None]:
    """Make ``import module`` fail (ImportError) inside the block, and only there."""
    if module in sys.modules:
        yield
        return
    sys.modules[module] = None  # type: ignore[assignment]  # the import system's "not importable" marker
    try:
        yield
    finally:
        if sys.modules.get(module, 0) is None:
            del sys.modules[module]


# papermill -> nbformat -> jsonschema, which imports rfc3987_syntax when installed just to check
# the "iri" string formats: it builds a lark grammar, ~2 s of CPU here (most of papermill's import).
# nbformat validates without any format checker, so nothing here can use it; jsonschema skips
# those two checkers when the import fails, and the module stays importable afterwards.
with _skipping("rfc3987_syntax"):
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines
    from papermill.log import logger

ENGINE_NAME = "tradebook-prestarted"
SAVE_EVERY_S = 1.0


class ThrottledSaves(NotebookExecutionManager):
    """papermill's execution manager, saving progress at most every SAVE_EVERY_S."""

    def __init__(self, *args: Any, save_every_s: float = SAVE_EVERY_S, **kwargs: Any):
        self.save_every_s = save_every_s
        self._last_save = float("-inf")
        self._final = False
        super().__init__(*args, **kwargs)

    def save(self, **kwargs: Any) -> None:
        now = time.monotonic()
        if self._final or now - self._last_save >= self.save_every_s:
            super().save(**kwargs)
            self._last_save = now

    def notebook_complete(self, **kwargs: Any) -> None:
        self._final = True  # the end state is always written, however soon after the last save
        super().notebook_complete(**kwargs)


class PrestartedKernelEngine(NBClientEngine):
    """Runs the notebook on ``km``/``kc`` (started and ready) instead of starting a kernel."""

    @classmethod
    def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=True, log_output=False,
                         autosave_cell_every=30, **kwargs):
        nb_man = ThrottledSaves(nb, output_path=output_path, progress_bar=progress_bar,
                                log_output=log_output, autosave_cell_every=autosave_cell_every)
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                 stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
        km, kc = kwargs.pop("km"), kwargs.pop("kc")
        for unused in ("input_path", "timeout", "startup_timeout"):
            kwargs.pop(unused, None)
        client = PapermillNotebookClient(
            nb_man, km=km, timeout=execution_timeout, startup_timeout=start_timeout, kernel_name=kernel_name,
            log=logger, log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file, **kwargs)
        client.kc = kc  # ready already: nbclient skips its own start-up handshake
        return client.execute()


papermill_engines.register(ENGINE_NAME, PrestartedKernelEngine)
