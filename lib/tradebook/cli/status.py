"""``tradebook status``: the control state, the account, its positions and the last runs.

Its tables are plain aligned text, one line per row, never wrapped or cut at the terminal
width: a quant pipes and greps this output (``tradebook status | grep FAILED``), and a
notebook path must come out whole to be opened. In sim mode a run's "when" is the
simulated clock (labelled so); the wall clock only measures how long a run took.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import typer

from tradebook.cli.common import OverrideOpt, ParamsOpt, console, load_leniently, plain, print_control
from tradebook.errors import TradebookError

EXIT_MEANING = {2: "params invalid", 3: "trading is not RUNNING", 4: "the ledger cannot be read",
                5: "the broker cannot be reached", 1: "the daemon is not beating"}
ERROR_CHARS = 60   # a run's error is the last column, shortened; the run's notebook has it in full


def status(params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """Control state and reasons, account, positions, last 10 runs (works while the ledger is busy).

    Exit 0 only when trading is RUNNING, the ledger reads and the broker answers; otherwise
    2 params invalid, 3 not RUNNING, 4 ledger unreadable, 5 broker unreachable (README "Health").
    """
    from tradebook.ops.health import EXIT_BROKER, EXIT_PARAMS, exit_code, state_code
    from tradebook.safety.controls import effective_state, state_at

    out = console()
    ctx, fallback = load_leniently(params_file, param)
    if ctx is None:  # CTL-6: the kill-switch state still shows
        where, problem = fallback
        print_control(out, state_at(where.flags, where.ledger))
        plain(out, f"params invalid: account, positions and runs need valid params; state read from "
                   f"{where.flag} ({where.how}):\n{problem}")
        raise typer.Exit(EXIT_PARAMS)
    state = effective_state(ctx.params, ctx.root)
    print_control(out, state)
    broker_ok = _print_account(out, ctx)
    _print_runs(out, ctx, state)
    code = exit_code(state_code(state) | (set() if broker_ok else {EXIT_BROKER}))
    if code:
        plain(out, f"exit {code}: " + EXIT_MEANING[code])
    raise typer.Exit(code)


def aligned(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]], right: frozenset[int] = frozenset()) -> list[str]:
    """Rows as lines of space-aligned columns (``right``: the indexes aligned right, numbers).

    The last column is not padded, so a long path or message ends the line whole.
    """
    widths = [max(len(str(r[i])) for r in (headers, *rows)) for i in range(len(headers))]

    def line(cells: tuple[str, ...]) -> str:
        padded = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        padded[-1] = cells[-1].rjust(widths[-1]) if len(cells) - 1 in right else cells[-1]
        return "  ".join(padded).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def _print_account(out, ctx) -> bool:
    from tradebook.broker import make_broker

    try:
        # Read-only: no ledger needed (OPS-1), and failures never count toward the trading breaker (EXE-4).
        broker = make_broker(ctx.params, ctx.root, read_only=True)
        account, positions = broker.account(), broker.positions()
    except Exception as exc:  # status must still show the control state when the broker is down
        out.print(f"broker unavailable: {type(exc).__name__}: {exc}", style="yellow", markup=False)
        return False
    out.print(f"equity {account.equity:,.2f} · cash {account.cash:,.2f} · "
              f"buying power {account.buying_power:,.2f}", highlight=False)
    if not positions:
        plain(out, "positions: none")
        return True
    rows = []
    for p in sorted(positions, key=lambda p: p.symbol):
        value = p.qty * p.market_price
        rows.append((p.symbol, f"{p.qty:g}", f"{p.avg_price:,.2f}", f"{p.market_price:,.2f}", f"{value:,.2f}",
                     f"{value / account.equity:.1%}" if account.equity else "-"))
    plain(out, "positions")
    for line in aligned(("symbol", "qty", "avg price", "price", "value", "% equity"), rows,
                        right=frozenset(range(1, 6))):
        plain(out, line)
    return True


def _print_runs(out, ctx, state) -> None:
    from tradebook.engine.run_liveness import identities, is_gone
    from tradebook.ledger import runs as run_store
    from tradebook.ledger.db import Ledger
    from tradebook.safety.controls import STATUS_LOCK_TIMEOUT_S

    path = ctx.params.ledger_path(ctx.root)
    if state.ledger_error or not path.exists():
        out.print("runs: ledger busy or unreadable, try again" if state.ledger_error else "runs: none yet",
                  highlight=False)
        return
    try:
        with Ledger(path, lock_timeout_s=STATUS_LOCK_TIMEOUT_S, create=False).connect() as con:
            rows = run_store.latest(con, 10)
            running = identities(con, [r.run_id for r in rows if r.status == "RUNNING"])
    except TradebookError as exc:
        out.print(f"runs: ledger busy or unreadable ({exc})", markup=False, highlight=False)
        return
    if not rows:
        plain(out, "runs: none yet")
        return
    sim = ctx.params.mode == "sim"
    table = []
    for run in rows:
        shown, error = run.status, run.error or ""
        if shown == "RUNNING" and is_gone(running.get(run.run_id)):  # marked at the next start; shown now
            shown, error = "ABANDONED", "its process is gone (killed or crashed)"
        table.append((when(run, sim), run.phase, shown, took(run), _under_root(run.notebook_path or "", ctx.root),
                      " ".join(error.split())[:ERROR_CHARS]))
    plain(out, "last 10 runs" + (" (started: the simulated clock; took: wall clock)" if sim else ""))
    for line in aligned(("started (sim)" if sim else "started", "phase", "status", "took", "notebook", "error"),
                        table, right=frozenset({3})):
        plain(out, line)


def when(run, sim: bool) -> str:
    """When a run started, as the user reads it: the simulated clock in sim mode (exchange time,
    as the ledger's other sim timestamps), else the wall clock (which is then the trading clock)."""
    from tradebook.sessions import EXCHANGE_TZ

    if sim and run.sim_time is not None:
        return f"{run.sim_time.astimezone(EXCHANGE_TZ):%Y-%m-%d %H:%M:%S %Z}"
    return f"{run.started_at:%Y-%m-%d %H:%M:%S}"


def took(run) -> str:
    """How long a run's process took (wall clock: it measures the process, not the market)."""
    if run.ended_at is None:
        return "-"
    seconds = (run.ended_at - run.started_at).total_seconds()
    return f"{seconds:.1f}s" if seconds < 600 else f"{seconds / 60:.0f}m"


def _under_root(path: str, root) -> str:
    """A notebook path relative to the project root when it lies inside it (short enough to read)."""
    try:
        return str(Path(path).relative_to(root)) if path else path
    except ValueError:
        return path
