"""Phase notebooks opened by hand are dry runs (issue 16 item 3): they send and write nothing.

A phase notebook executed by the runner (``tradebook run``, the daemon, the demo) gets a
``run_id`` and trades. Opened in JupyterLab (no ``run_id``), ``nb.start`` gives it a
dry-run context instead: the ledger and the simulator's state are copied byte for byte
into a temporary folder (the originals are not opened, so nothing is written to them),
and the broker refuses every call that would send (submit, cancel, close) with a
``DRY_RUN`` rejection. The phase then runs its real code, gate verdicts included, and
shows what it would have done; no order can leave without an executed notebook under
``runs/`` recording it. ``TRADEBOOK_PHASE_WRITES=1`` (the nbval regression run, which
replays the phases in order on a throw-away fixture) keeps the old behaviour.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebook.errors import BrokerRejected

if TYPE_CHECKING:
    from tradebook.context import Context

WRITES_ENV = "TRADEBOOK_PHASE_WRITES"
PHASES = ("reconcile", "decide", "execute", "report")
SENDING = ("submit", "cancel", "cancel_all", "close_position", "replace")


def is_dry_run(phase: str, run_id: str | None) -> bool:
    """A phase notebook not started by the runner, unless TRADEBOOK_PHASE_WRITES=1."""
    return run_id is None and phase in PHASES and os.environ.get(WRITES_ENV) != "1"


class DryRunBroker:
    """The real broker for reading (account, positions, quotes, bars); every send is refused."""

    def __init__(self, inner: Any, phase: str):
        self._inner, self._phase = inner, phase

    def __getattr__(self, name: str) -> Any:
        if name in SENDING:
            def refuse(*_a: Any, **_k: Any) -> Any:
                raise BrokerRejected(f"dry run: the {self._phase} notebook was opened outside the runner, so "
                                     f"nothing is sent (run `tradebook run {self._phase}` to trade)", code="DRY_RUN")
            return refuse
        return getattr(self._inner, name)


def _copy_db(src: Path, dest: Path) -> None:
    """Copy a DuckDB file and its WAL without opening them (opening could write a checkpoint)."""
    for suffix in ("", ".wal"):
        if Path(f"{src}{suffix}").exists():
            shutil.copyfile(f"{src}{suffix}", f"{dest}{suffix}")


def dry_context(ctx: "Context", phase: str) -> "Context":
    """``ctx`` on snapshots of the ledger and sim state in a temp folder, with a broker that sends nothing."""
    from tradebook.broker import make_broker
    from tradebook.context import Context

    folder = Path(tempfile.mkdtemp(prefix=f"tradebook-dryrun-{phase}-"))
    p = ctx.params
    ledger, state = p.ledger_path(ctx.root), p.sim_state_path(ctx.root)
    _copy_db(ledger, folder / ledger.name)
    if p.mode == "sim":
        _copy_db(state, folder / state.name)
    params = p.model_copy(update={"runs_dir": str(folder), "ledger_file": ledger.name,
                                  "sim": p.sim.model_copy(update={"state_file": state.name})})
    dry = Context(params, ctx.root, None)
    dry.__dict__["broker"] = DryRunBroker(make_broker(params, ctx.root), phase)  # fills the cached_property
    return dry
