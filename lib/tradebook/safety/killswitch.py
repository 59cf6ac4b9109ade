"""The kill switch's ledger-free sources (CTL-1): the flag files and env.

Two flag files, so one account's halt never leaks into another's (sim, paper and live
ledgers may share one ``runs/`` folder):

- the account's flag, next to its ledger and named after it (``runs/KILL_SWITCH-ledger``
  for ``ledger.duckdb``, ``runs/KILL_SWITCH-paper-ledger`` for ``paper-ledger.duckdb``):
  written by ``halt --params X`` and flatten, removed by that account's ``resume``;
- the all-accounts flag ``runs/KILL_SWITCH``: halts every account of the folder. A bare
  ``tradebook halt`` (no --params) and ``halt --all-accounts`` write it, a halt with no valid
  params too (it cannot know whose account is meant, CTL-6), and so does
  ``touch runs/KILL_SWITCH``. Only ``resume --all-accounts`` removes it.

Nothing here opens the ledger (or imports duckdb): these sources must answer while
another process holds the ledger, or when its file is corrupt. ``controls`` combines
them with the ledger's state.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from tradebook.params import Params

FLAG_FILE = "KILL_SWITCH"
ENV_VAR = "KILL_SWITCH"
_ENV_OFF = ("", "0", "false", "no", "off")
_FLAG_RANK = {"HALTED": 2, "FROZEN": 3}  # the flag file can only say HALTED or FROZEN


class Part(NamedTuple):
    """One source's contribution to the effective state."""

    state: str
    reason: str
    source: str
    since: datetime | None


def flag_path(params: "Params", root: Path) -> Path:
    """This account's flag file: next to its ledger, named after it (``KILL_SWITCH-<ledger stem>``)."""
    return ledger_flag(params.ledger_path(root))


def ledger_flag(ledger: Path) -> Path:
    """The flag file of the account whose ledger is ``ledger``."""
    return ledger.with_name(f"{FLAG_FILE}-{ledger.stem}")


def all_accounts_flag(params: "Params", root: Path) -> Path:
    """The flag that halts every account of the runs folder: ``<runs_dir>/KILL_SWITCH``."""
    return params.runs_path(root) / FLAG_FILE


def is_all_accounts(path: Path) -> bool:
    return path.name == FLAG_FILE


def read_flag(path: Path) -> Part | None:
    """The flag file as a source; any content (even none or garbage) halts."""
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Part("HALTED", f"kill-switch flag {path} present but unreadable ({exc})", "flag_file", None)
    try:
        data = json.loads(raw)
        data = data if isinstance(data, dict) else {}
    except ValueError:
        data = {}
    state = data.get("state") if data.get("state") in ("HALTED", "FROZEN") else "HALTED"
    since = _parse_ts(data.get("ts")) or datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    who = f" ({data.get('actor', '?')} via {data.get('source', '?')})" if data else ""
    scope = f" (halts every account in {path.parent})" if is_all_accounts(path) else ""
    return Part(state, f"kill-switch flag {path.name}{scope}: {data.get('reason') or 'present'}{who}",
                "flag_file", since)


def env_part() -> Part | None:
    """Env ``KILL_SWITCH`` as a source: any value but empty/0/false/no/off halts."""
    value = os.environ.get(ENV_VAR, "")
    if value.strip().lower() in _ENV_OFF:
        return None
    return Part("HALTED", f"environment {ENV_VAR}={value.strip()} is set", "env", None)


def write_flag(path: Path, state: str, reason: str, actor: str, source: str, now: datetime) -> None:
    """Write the flag atomically (temp file + fsync + rename): a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = {"state": state, "reason": reason, "actor": actor, "source": source, "ts": now.isoformat()}
    with open(tmp, "w") as fh:
        json.dump(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def raise_flag(path: Path, state: str, reason: str, actor: str, source: str, now: datetime) -> None:
    """Write the flag with ``state``, never lowering a FROZEN flag to HALTED."""
    existing = read_flag(path)
    keep = existing is not None and _FLAG_RANK[existing.state] > _FLAG_RANK[state]
    write_flag(path, existing.state if keep else state, reason, actor, source, now)


def all_accounts_note(path: Path, shared: Part | None, cleared: bool) -> tuple[str, ...]:
    """What a resume says about the all-accounts flag: removed, or still halting every account."""
    if shared is None:
        return ()
    if cleared:
        return (f"removed the all-accounts kill-switch flag {path}: every account in {path.parent} may trade again",)
    return (f"still HALTED by the all-accounts kill-switch flag {path}: it halts every account in {path.parent} "
            "(written by a bare `tradebook halt`, `halt --all-accounts`, a halt without valid params, or by "
            "hand). When every account is safe, clear it with "
            "`tradebook resume -r <reason> --all-accounts`",)


def _parse_ts(value: Any) -> datetime | None:
    try:
        ts = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None
    return ts.astimezone(timezone.utc) if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


class Where(NamedTuple):
    """Where the flag files and the ledger are, found without validating the params (CTL-6)."""

    flag: Path     # the all-accounts flag: what a halt without valid params writes
    ledger: Path
    runs: Path
    how: str       # how runs_dir was found, for the operator
    mode: str | None = None        # as the file says, if it says sim/paper/live
    sim_state: Path | None = None  # where the sim state would be (its clock stamps a sim-mode halt)

    @property
    def flags(self) -> tuple[Path, Path]:
        """Every flag that halts the located account: the all-accounts one and its own."""
        return self.flag, ledger_flag(self.ledger)


def locate(root: Path, params_file: str | Path | None, overrides: dict[str, Any] | None) -> Where:
    """runs_dir and ledger_file read leniently: the kill switch must work with a broken params file.

    The file is read as plain YAML (no validation); ``-p runs_dir=...`` still wins; anything
    unreadable falls back to the defaults. Never raises.
    """
    try:
        return _locate(root, params_file, overrides)
    except Exception as exc:  # noqa: BLE001 — halting must never fail because of the params (CTL-6)
        return _default_where(root, f"default runs_dir (params unusable: {type(exc).__name__}: {exc})")


def _default_where(root: Path, how: str) -> Where:
    """The built-in places: ``runs/`` under the project root, sim's ledger name."""
    runs = root / "runs"
    return Where(runs / FLAG_FILE, runs / "ledger.duckdb", runs, how, None, runs / "sim.duckdb")


def _locate(root: Path, params_file: str | Path | None, overrides: dict[str, Any] | None) -> Where:
    from tradebook.params import DEFAULT_LEDGER_FILES, DEFAULT_PARAMS_FILE, Params

    source = Path(params_file or DEFAULT_PARAMS_FILE)
    source = source if source.is_absolute() else root / source
    data, how = _lenient_yaml(source)
    for key in ("runs_dir", "ledger_file", "mode"):
        if isinstance((overrides or {}).get(key), str):
            data[key] = overrides[key]
            how = f"{key} from -p override"
    runs_dir = _text(data.get("runs_dir")) or Params.model_fields["runs_dir"].default
    said = data.get("mode") if data.get("mode") in DEFAULT_LEDGER_FILES else None
    mode = said or "sim"
    ledger_name = _text(data.get("ledger_file")) or DEFAULT_LEDGER_FILES[mode]
    runs = Path(runs_dir) if Path(runs_dir).is_absolute() else root / runs_dir
    sim = data.get("sim") if isinstance(data.get("sim"), dict) else {}
    state_name = _text((overrides or {}).get("sim.state_file")) or _text(sim.get("state_file")) or "sim.duckdb"
    return Where(runs / FLAG_FILE, runs / ledger_name, runs, how, said, runs / state_name)


def _lenient_yaml(source: Path) -> tuple[dict[str, Any], str]:
    import yaml

    try:
        loaded = yaml.safe_load(source.read_bytes().decode("utf-8", errors="replace"))
    except OSError as exc:   # missing, a directory, no permission
        return {}, f"default runs_dir ({source} cannot be read: {exc.strerror or type(exc).__name__})"
    except Exception:  # noqa: BLE001 — any YAML (or decoding) failure: the defaults still halt
        return {}, f"default runs_dir ({source} is not valid YAML)"
    if not isinstance(loaded, dict):
        return {}, f"default runs_dir ({source} is not a mapping)"
    found = "runs_dir" in loaded
    return dict(loaded), (f"runs_dir as written in {source}" if found else "default runs_dir")


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
