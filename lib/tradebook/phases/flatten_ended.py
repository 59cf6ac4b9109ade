"""Flatten's closing-order ids that ended without reaching the venue, kept outside the ledger (CTL-5, OPS-1/7).

A close the broker refused outright (HTTP reject) leaves no order at the broker, so a look-up by client
id says "unknown" and cannot tell a fresh id from a spent one. The ledger knows (the intent is FAILED),
but the offline flatten (ledger locked or damaged) cannot read it. So every such id is also written
here, ``runs/flatten-ended-<ledger stem>.json`` (atomic replace, only the current day's ids kept), and
the offline path never reuses one: it takes the next attempt id, as the normal path does.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def _path(runs_dir: Path, ledger_name: str) -> Path:
    return Path(runs_dir) / f"flatten-ended-{Path(ledger_name).stem}.json"


def known(runs_dir: Path, ledger_name: str, prefix: str) -> set[str]:
    """The ended ids starting with ``prefix`` (``flat-<YYYYMMDD>-``); an unreadable file counts as none."""
    try:
        ids = json.loads(_path(runs_dir, ledger_name).read_text()).get("ids", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {i for i in ids if isinstance(i, str) and i.startswith(prefix)}


def remember(runs_dir: Path, ledger_name: str, cid: str) -> None:
    """Add ``cid`` (its day's ids kept, older days dropped); best effort: a failure never stops a flatten."""
    prefix = cid[:len("flat-YYYYMMDD-")]
    path = _path(runs_dir, ledger_name)
    try:
        ids = sorted(known(runs_dir, ledger_name, prefix) | {cid})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w") as fh:
            json.dump({"ids": ids}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        pass   # the adoption of a reused id still records the broker's answer (flatten_adopt)
