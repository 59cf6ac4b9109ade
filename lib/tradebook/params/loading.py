"""Loading params (CFG-1/3): the YAML file, ``-p key=value`` overrides that win, and errors that say where.

A bad key is reported with where its value came from (``-p override``, the file, or
the default), never with the value itself (it could be a pasted secret).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tradebook.errors import ConfigError
from tradebook.params.model import CrossFieldError, Params

DEFAULT_PARAMS_FILE = "params/sim.yaml"


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in nested ``data``, creating sections; a value in the way of a section is refused."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` (value as YAML, so numbers/bools/lists work)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def load_params(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Params:
    """Load a params YAML file, apply dotted-key overrides, validate; errors name key and file."""
    _require_mapping(overrides)
    source = Path(path) if path else None
    data: dict[str, Any] = {}
    loaded_file: dict[str, Any] = {}
    if source is not None:
        try:
            loaded = yaml.safe_load(read_params_text(source)) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"params file {source} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"params file {source} must be a mapping of key: value")
        data = loaded
        loaded_file = copy.deepcopy(loaded)
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    return validate_params(data, source=str(source) if source else "<defaults>",
                           override_keys=set(overrides or {}), file_keys=_dotted_keys(loaded_file))


def read_params_text(source: Path) -> str:
    """The params file's text; any reason it cannot be read is a ConfigError naming the file (CTL-6).

    Halt, status and health turn a ConfigError into their fail-closed path, so nothing
    unreadable (a directory, no permission, not UTF-8) may escape as another exception.
    """
    if not source.exists():
        raise ConfigError(f"params file {source} does not exist")
    if source.is_dir():
        raise ConfigError(f"params file {source} is a directory, not a file; give the YAML file inside it "
                          "(e.g. --params params/sim.yaml)")
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise ConfigError(f"params file {source} cannot be read ({exc.strerror or type(exc).__name__}); "
                          "check its permissions") from None
    try:
        return raw.decode("utf-8-sig")   # a BOM (some editors write one) is not content
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"params file {source} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); "
                          "save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None


def _require_mapping(overrides: Any) -> None:
    """Overrides are a mapping; a string is the usual slip of `papermill -p overrides '{...}'`."""
    if overrides is None or isinstance(overrides, Mapping):
        return
    hint = (" papermill's -p passes text: give the mapping as YAML with -y, e.g. "
            "-y '{\"overrides\": {\"strategy.use\": \"strategies.breakout:Breakout\"}}'"
            if isinstance(overrides, str) else "")
    raise ConfigError(f"overrides must be a mapping of key: value, got {type(overrides).__name__} "
                      f"{str(overrides)[:80]!r}.{hint}")


def validate_params(data: dict[str, Any], source: str = "<params>", override_keys: set[str] | None = None,
                    file_keys: set[str] | None = None) -> Params:
    """Validate merged params; a ConfigError names, per bad key, where its value came from."""
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, override_keys or set(), file_keys)) from None


def _dotted_keys(data: Any, prefix: str = "") -> set[str]:
    """Every key of a nested mapping, dotted (``strategy.fast_sma``), sections included."""
    if not isinstance(data, dict):
        return set()
    keys = set()
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys |= {dotted} | _dotted_keys(value, dotted + ".")
    return keys


def value_source(key: str, source: str, override_keys: set[str], file_keys: set[str] | None) -> str:
    """Where the value of ``key`` came from: a -p override, the params file, or the built-in default."""
    parts = key.split(".")
    prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    if prefixes & override_keys or any(o.startswith(key + ".") for o in override_keys):
        return "-p override"
    if file_keys is None or prefixes & file_keys:
        return source
    return "default"


def _describe(exc: ValidationError, source: str, override_keys: set[str], file_keys: set[str] | None) -> str:
    lines = []
    for err in exc.errors():
        cross = (err.get("ctx") or {}).get("error")
        if isinstance(cross, CrossFieldError):
            for key, msg, others in cross.problems:
                where = "; ".join(f"{k} from {value_source(k, source, override_keys, file_keys)}"
                                  for k in (key, *others)) if others else \
                    f"from {value_source(key, source, override_keys, file_keys)}"
                lines.append(f"  {key}: {msg} [{where}]")
            continue
        key = ".".join(str(p) for p in err["loc"]) or "(params)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against SPEC §6 / params/sim.yaml)"
        # Never echo the offending value: it could be a pasted secret.
        lines.append(f"  {key}: {msg} [from {value_source(key, source, override_keys, file_keys)}]")
    via = f" with {len(override_keys)} -p override(s)" if override_keys else ""
    return f"invalid params (file {source}{via}):\n" + "\n".join(lines)
