"""Structured logs (OPS-6): JSON lines under ``runs/logs/``, secrets redacted.

One event per line: ``ts, level, logger, run_id, message, fields`` (plus ``exc`` for a
traceback). The redaction filter runs before any handler formats a record, so the
Alpaca keys (read from the environment at setup) and anything shaped like an
``APCA-API-SECRET-KEY: ...`` header never reach a file, a notebook or a terminal.
"""
from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from tradebook.params import Params

LOGGER = "tradebook"
SECRET_ENV = ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY")
REDACTED = "[REDACTED]"
# Header- or env-shaped credentials: "APCA-API-SECRET-KEY: abc", "APCA_API_KEY_ID=abc",
# "'APCA-API-SECRET-KEY': 'abc'", "Authorization: Bearer abc".
_CREDENTIAL_RE = re.compile(
    r"""(?ix)
    ( (?:APCA[-_]API[-_](?:SECRET[-_]KEY|KEY[-_]ID)|Authorization) ["']? \s* [:=] \s* ["']?
      (?:Bearer\s+|Basic\s+)? )
    ( [^\s"',}\]]+ )""")

_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("tradebook_run_id", default=None)
_state: dict[str, Any] = {}


class Redactor:
    """Replaces known secret values and credential-shaped text with ``[REDACTED]``."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets: list[str] = []
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        if secret and secret not in self.secrets:
            self.secrets.append(secret)
            # Longest first so a secret containing another is removed whole.
            self.secrets.sort(key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _CREDENTIAL_RE.sub(lambda m: m.group(1) + REDACTED, value)

    def obj(self, value: Any) -> Any:
        """Redact strings inside dicts/lists/tuples (keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.obj(k): self.obj(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.obj(v) for v in value]
        return value


def env_secrets(extra: Iterable[str] = ()) -> list[str]:
    """The secret values to redact: the Alpaca keys from the environment plus ``extra``."""
    values = [os.environ.get(name, "") for name in SECRET_ENV]
    return [v for v in (*values, *extra) if v]


class RedactingFilter(logging.Filter):
    """Rewrites a record in place (message, args, fields, traceback) before it is emitted."""

    def __init__(self, redactor: Redactor):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_tradebook_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        record.msg, record.args = self.redactor.text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info))
        if record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text)
        record.exc_info = None  # formatters would re-render the unredacted traceback
        if getattr(record, "stack_info", None):
            record.stack_info = self.redactor.text(record.stack_info)
        fields = getattr(record, "fields", None)
        if fields:
            record.fields = self.redactor.obj(fields)
        record._tradebook_redacted = True
        return True


class _Scope(logging.Filter):
    """tradebook's own records from INFO, everything else from WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == LOGGER or record.name.startswith(LOGGER + ".")
        return record.levelno >= (logging.INFO if own else logging.WARNING)


def format_record(record: logging.LogRecord) -> str:
    """One JSON line for a (redacted) record."""
    line: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "run_id": getattr(record, "run_id", None) or _run_id.get(),
        "message": record.getMessage(),
        "fields": getattr(record, "fields", None) or {},
    }
    if record.exc_text:
        line["exc"] = record.exc_text
    return json.dumps(line, default=str, ensure_ascii=False)


class JsonLinesHandler(logging.Handler):
    """Appends to ``<dir>/tradebook-YYYY-MM-DD.jsonl`` (UTC date of the record).

    Each line is one ``os.write`` on an O_APPEND descriptor, so the daemon and the
    notebook kernels can share a day's file without interleaving lines.
    """

    def __init__(self, directory: Path):
        super().__init__(level=logging.INFO)
        self.directory = Path(directory)
        self._day: str | None = None
        self._fd: int | None = None

    def path_for(self, day: str) -> Path:
        return self.directory / f"tradebook-{day}.jsonl"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            day = datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%d")
            data = (format_record(record) + "\n").encode()
            self.acquire()
            try:
                if day != self._day or self._fd is None:
                    self._reopen(day)
                os.write(self._fd, data)
            finally:
                self.release()
        except Exception:
            self.handleError(record)

    def _reopen(self, day: str) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path_for(day), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._day = day

    def close(self) -> None:
        self.acquire()
        try:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        finally:
            self.release()
        super().close()


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        text = f"{record.levelname.lower():7s} {record.name}: {record.getMessage()}" + (f"  {extra}" if extra else "")
        return text + (f"\n{record.exc_text}" if record.exc_text else "")


def logs_dir(params: "Params", root: Path | None) -> Path:
    return params.runs_path(root) / "logs"


def setup_logging(params: "Params", root: Path | None, run_id: str | None = None, *,
                  console: bool = False, extra_secrets: Iterable[str] = ()) -> Path:
    """Install the JSON-lines handler and the redaction filter; idempotent. Returns the logs dir."""
    directory = logs_dir(params, root).resolve()
    redactor: Redactor = _state.setdefault("redactor", Redactor())
    for secret in env_secrets([*extra_secrets, *alert_urls_of(params)]):
        redactor.add(secret)
    redacting = _state.setdefault("filter", RedactingFilter(redactor))
    root_logger = logging.getLogger()
    handler = _state.get("handler")
    if handler is None or handler.directory != directory:
        if handler is not None:
            root_logger.removeHandler(handler)
            handler.close()
        handler = JsonLinesHandler(directory)
        handler.addFilter(redacting)
        handler.addFilter(_Scope())
        root_logger.addHandler(handler)
        _state["handler"] = handler
    if console and "console" not in _state:
        stream = logging.StreamHandler()
        stream.setFormatter(_ConsoleFormatter())
        stream.addFilter(redacting)
        stream.addFilter(_Scope())
        root_logger.addHandler(stream)
        _state["console"] = stream
    # Handlers installed by others (pytest, papermill, ipykernel) get the same redaction.
    for other in root_logger.handlers:
        if redacting not in other.filters:
            other.addFilter(redacting)
    logging.getLogger(LOGGER).setLevel(logging.INFO)
    if root_logger.level > logging.INFO or root_logger.level == logging.NOTSET:
        root_logger.setLevel(logging.INFO)
    if run_id is not None:
        set_run_id(run_id)
    return directory


def alert_urls_of(params: "Params") -> list[str]:
    """Apprise URLs carry tokens: they are secrets too."""
    alerts = getattr(params, "alerts", None)
    urls = list(getattr(alerts, "apprise_urls", []) or [])
    urls += [u for u in re.split(r"[\s,]+", os.environ.get("TRADEBOOK_APPRISE_URLS", "")) if u]
    return urls


def redactor() -> Redactor:
    """The process-wide redactor (environment secrets are added at setup)."""
    red: Redactor = _state.setdefault("redactor", Redactor())
    for secret in env_secrets():
        red.add(secret)
    return red


def set_run_id(run_id: str | None) -> None:
    """Tag the following log lines of this thread/context with ``run_id``."""
    _run_id.set(run_id)


def get_logger(name: str = "") -> logging.Logger:
    """A child of the ``tradebook`` logger (``get_logger("daemon")`` -> ``tradebook.ops.daemon``)."""
    return logging.getLogger(f"{LOGGER}.{name}" if name else LOGGER)


def log_event(logger: logging.Logger | str, level: str | int, message: str, *,
              run_id: str | None = None, exc_info: Any = None, **fields: Any) -> None:
    """Log one structured event: ``log_event("daemon", "info", "phase done", phase="decide")``."""
    if isinstance(logger, str):
        logger = get_logger(logger)
    levelno = level if isinstance(level, int) else logging.getLevelName(level.upper())
    extra: dict[str, Any] = {"fields": fields}
    if run_id is not None:
        extra["run_id"] = run_id
    logger.log(levelno, message, extra=extra, exc_info=exc_info)


def reset_logging() -> None:
    """Remove the handlers ``setup_logging`` installed (tests, and a daemon that re-roots)."""
    root_logger = logging.getLogger()
    for key in ("handler", "console"):
        handler = _state.pop(key, None)
        if handler is not None:
            root_logger.removeHandler(handler)
            handler.close()
    redacting = _state.get("filter")
    for other in root_logger.handlers:
        if redacting is not None and redacting in other.filters:
            other.removeFilter(redacting)
    _state.pop("filter", None)
    _state.pop("redactor", None)
