"""Adopt the closing orders an unrecorded flatten sent (CTL-5, OPS-7, OPS-1, REC-2/3/5).

``tradebook flatten`` on a damaged (or locked) ledger closes at the broker with its usual client
order ids (``flat-<YYYYMMDD>-<SYMBOL>[-<attempt>]``) and writes what it did to
``runs/flatten-unrecorded-<stamp>.json`` instead of the ledger (flatten_offline). The
restored (or released) ledger still holds the positions those orders closed; compared with the broker
alone, each would be booked as an EXTERNAL_CLOSE without a price and trip a divergence
(REDUCE_ONLY) for something tradebook did itself.

So every full reconcile first reads the journals it has not applied yet. The journal
names the orders; the broker's look-up by client order id is the truth about them. Each
order the broker knows and the ledger does not is recorded exactly as the normal flatten
records one (EXIT intent, urgency immediate, CTL-5 bypass verdict, order row), then the
broker's view goes through reconcile's order-update path: the fill at its real price,
the FILL trade with its realized P&L, the position. An order still working at the broker
is adopted as working; a later reconcile records its fill like any other.

Applied journals are listed in ``ledger_meta`` (key ``flatten_journals``) in the same
transaction as the adoption, so a journal is never applied twice and an order already
in the ledger is skipped (except a stale refusal, and a sale reconcile already booked is
never booked again: flatten_adopt_guard). A journal still being written (``complete``
false, same session) is adopted as far as the broker knows it but not marked. The file itself stays as the audit record: a ledger restored
again from an older backup lacks the mark, and the journal is read again (its orders
are missing from that ledger too).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from tradebook.errors import LedgerError
from tradebook.ledger import events
from tradebook.ledger import meta as ledger_meta
from tradebook.ledger import orders as order_store

if TYPE_CHECKING:
    import duckdb

    from tradebook.broker.base import Order, Position
    from tradebook.context import Context
    from tradebook.ledger.db import Ledger

META_KEY = "flatten_journals"
JOURNAL_GLOB = "flatten-unrecorded-*.json"
_ATTEMPT = re.compile(r"^flat-\d{8}-.+?(?:-(\d+))?$")


@dataclass(frozen=True)
class Adopted:
    """One closing order recorded from a journal: what the broker said about it."""

    source: str               # the journal's file name, or the broker look-up after a restore
    client_order_id: str
    symbol: str
    status: str
    filled_qty: float
    filled_avg_price: float | None


def journals(runs_dir: Path, ledger_name: str | None = None) -> list[Path]:
    """Unrecorded-flatten journals in ``runs_dir``, oldest first (the stamp sorts by time).

    With ``ledger_name``, only those of that ledger: sim and paper ledgers may share a runs
    folder, and one account's closing orders never belong in another's ledger. A journal
    that names no ledger (older) or cannot be read is kept (reading it says what is wrong)."""
    found = sorted(Path(runs_dir).glob(JOURNAL_GLOB)) if Path(runs_dir).is_dir() else []
    return found if ledger_name is None else [p for p in found if _of_ledger(p, ledger_name)]


def _of_ledger(path: Path, name: str) -> bool:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return True
    return not isinstance(payload, dict) or payload.get("ledger") in (None, name)


def applied(con: "duckdb.DuckDBPyConnection") -> dict[str, str]:
    """Journal file name -> when it was applied, as recorded in this ledger."""
    return dict((ledger_meta.get(con, META_KEY) or {}).get("applied", {}))


def unapplied(runs_dir: Path, ledger: "Ledger") -> list[Path]:
    """The journals this ledger has not applied yet (what the next reconcile will adopt)."""
    found = journals(runs_dir, Path(ledger.path).name)
    if not found:
        return []
    done = ledger.read(applied)
    return [p for p in found if p.name not in done]


def adopt_journaled(ctx: "Context") -> list[Adopted]:
    """Record the journaled closing orders the ledger lacks; mark their journals applied (see module doc).

    Writes nothing when every journal is already applied (REC-5). A broker error propagates:
    nothing is marked, and the next reconcile tries again.
    """
    with ctx.ledger.connect() as con:
        done = applied(con)
    todo = [p for p in journals(ctx.runs_dir, ctx.params.ledger_path(ctx.root).name) if p.name not in done]
    if not todo:
        return []
    looked_up = [(path, payload, [(sym, cid, ctx.broker.get_order(cid)) for sym, cid in _named(ctx, payload)])
                 for path, payload in ((p, _read(p)) for p in todo)]
    now, out = ctx.now(), []
    with ctx.ledger.transaction() as con:
        marks, marked = applied(con), False
        for path, payload, orders in looked_up:
            if path.name in marks:
                continue  # another reconcile applied it between our read and our write
            found = [_adopt_one(con, ctx, payload, truth, now, path.name) for _, _, truth in orders]
            out += [a for a in found if a is not None]
            if _in_progress(payload, now):
                continue  # its flatten may still send the planned ids: read it again next time
            marks[path.name], marked = now.isoformat(), True
            events.record(con, "FLATTEN_JOURNAL_APPLIED", run_id=ctx.run_id, ts=now,
                          reason=f"unrecorded flatten journal {path.name} applied",
                          data={"journal": path.name, "orders": [cid for _, cid, _ in orders],
                                "adopted": [a.client_order_id for a in out if a.source == path.name]})
        if marked:
            ledger_meta.put(con, META_KEY, {"applied": marks}, now)
    return out


def _adopt_one(con: "duckdb.DuckDBPyConnection", ctx: "Context", payload: dict[str, Any], truth: "Order | None",
               now: datetime, journal: str) -> Adopted | None:
    """Record one journaled order the broker knows: new to the ledger, or a stale refusal (flatten_adopt_guard)."""
    from tradebook.phases import flatten_adopt_guard as guard

    if truth is None:
        return None
    row = order_store.load(con, truth.client_order_id)
    booked = guard.already_booked(con, truth, sent_at(payload, truth, now))
    if row is None and booked:
        guard.record_booked(con, ctx, payload, truth, now, journal)
    elif row is None:
        record_closing(con, ctx, payload, truth, now, journal)
    elif guard.is_stale_refusal(row, truth):
        guard.correct_refusal(con, ctx, row, truth, now, journal, book=not booked)
    else:
        return None   # already recorded (REC-5)
    return Adopted(journal, truth.client_order_id, truth.symbol, truth.status, truth.filled_qty,
                   truth.filled_avg_price)


def _in_progress(payload: dict[str, Any], now: datetime) -> bool:
    """Written by a flatten still sending (``complete`` false) on this session; older journals have no key,
    and one left incomplete by a flatten that died on an earlier session is applied as it stands."""
    from tradebook.sessions import session_date

    if payload.get("complete") is not False or not payload.get("at"):
        return False
    return session_date(datetime.fromisoformat(payload["at"])) == session_date(now)


def adopt_own_orders(ctx: "Context") -> list[Adopted]:
    """Reconcile's first step: the journaled closing orders, then (once after a restore) any other of ours."""
    from tradebook.phases.restore_adopt import adopt_after_restore

    return adopt_journaled(ctx) + adopt_after_restore(ctx)


def _read(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LedgerError(f"unrecorded flatten journal {path} cannot be read ({exc}); its closing orders are "
                          "at the broker under client ids flat-<date>-<symbol>. Fix the file or move it out of "
                          "the runs folder, then run `tradebook run reconcile` again") from exc
    if not isinstance(payload, dict):
        raise LedgerError(f"unrecorded flatten journal {path} is not a JSON object; fix the file or move it "
                          "out of the runs folder, then run `tradebook run reconcile` again")
    return payload


def _named(ctx: "Context", payload: dict[str, Any]) -> list[tuple[str, str]]:
    """(symbol, client_order_id) of every closing order the journal names, in its order.

    A symbol that was "already closing" (our open flat- order from earlier that day) is
    named by id in newer journals; older ones name only the symbol, so its ids of that day
    are probed at the broker, attempt by attempt, up to the first one it does not know.
    """
    out = [(a["symbol"], a["client_order_id"]) for a in payload.get("closing_orders", [])
           if a.get("client_order_id")]
    out += [(a["symbol"], a["client_order_id"]) for a in payload.get("already_closing_orders", [])]
    named = {sym for sym, _ in out}
    day = datetime.fromisoformat(payload["at"]) if payload.get("at") else None
    for symbol in payload.get("already_closing", []):
        if symbol not in named and day is not None:
            out += [(symbol, cid) for cid in _probe(ctx, day, symbol)]
    return out


def _probe(ctx: "Context", at: datetime, symbol: str) -> list[str]:
    from tradebook.sessions import session_date

    return [o.client_order_id for o in closing_orders_of(ctx, session_date(at), symbol)]


def closing_orders_of(ctx: "Context", day: date, symbol: str) -> list["Order"]:
    """flatten's orders on ``symbol`` that day at the broker, attempt by attempt up to the first unknown id."""
    from tradebook.phases.flatten import MAX_ATTEMPTS, _cid

    base, found = f"flat-{day:%Y%m%d}-{symbol}", []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        order = ctx.broker.get_order(_cid(base, attempt))
        if order is None:
            break
        found.append(order)
    return found


def record_closing(con: "duckdb.DuckDBPyConnection", ctx: "Context", payload: dict[str, Any], truth: "Order",
            now: datetime, journal: str) -> None:
    """As the normal flatten records a closing order (flatten._record_submit/_record_order), dated when sent."""
    from tradebook.phases.flatten import _record_order, _record_submit

    cid = truth.client_order_id
    reason = f"{payload.get('reason') or 'flatten'} (recorded later, from {journal})"
    _record_submit(con, ctx, cid, _attempt(cid), closing_position(payload, truth), reason, sent_at(payload, truth, now))
    _record_order(con, ctx, cid, truth, now)


def sent_at(payload: dict[str, Any], truth: "Order", now: datetime) -> datetime:
    """When the closing order was sent: the broker's time, else the journal's."""
    return truth.submitted_at or (datetime.fromisoformat(payload["at"]) if payload.get("at") else now)


def closing_position(payload: dict[str, Any], truth: "Order") -> "Position":
    """The position as flatten saw it; no market price when the journal has none (slippage then unknown)."""
    from types import SimpleNamespace

    held = truth.qty if truth.side == "sell" else -truth.qty   # what the order closed (short: a buy)
    price = next((a.get("market_price") for a in payload.get("closing_orders", [])
                  if a.get("client_order_id") == truth.client_order_id), None)
    return cast("Position", SimpleNamespace(symbol=truth.symbol, qty=held, market_price=price))


def _attempt(cid: str) -> int:
    match = _ATTEMPT.match(cid)
    return int(match.group(1)) if match and match.group(1) else 1


def restore_notes(runs_dir: Path, ledger: "Ledger") -> list[str]:
    """What ``ledger restore`` tells the operator about journals the restored ledger has not applied."""
    try:
        pending = unapplied(runs_dir, ledger)
    except LedgerError:
        pending = journals(runs_dir, Path(ledger.path).name)   # cannot tell which were applied: name them all, adoption skips the rest
    if not pending:
        return ["next: `tradebook run reconcile` brings the ledger in line with the broker (flatten orders sent "
                "after this backup are looked up by client id and recorded as ours)"]
    return [f"unrecorded flatten journal(s) not in this ledger: {', '.join(str(p) for p in pending)}",
            "the next `tradebook run reconcile` adopts their closing orders (looked up at the broker by client id) "
            "as our own fills and trades, before it compares positions; run it now"]
