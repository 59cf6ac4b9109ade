"""`tradebook panel`: the control panel notebook as a local, token-protected web page (CTL-4).

Why Voilà and not JupyterLab: an operator under stress needs a page with the state and
three buttons, not an IDE where a stray keystroke edits or re-runs a cell. Voilà runs
``notebooks/control_panel.ipynb`` in a fresh kernel on every page load (so the page never
shows stale state), shows only outputs and widgets (no code cells), and serves nothing
else: no file browser, no terminals, no contents API.

Safety:
- it listens on 127.0.0.1 only (reach it from another machine through an SSH tunnel);
- a token from ``secrets.token_urlsafe`` is printed once at start; the page, the kernel
  websocket and the executed-notebook views all require it (then a login cookie); the
  sign-in page is the panel's own (``panel_login``), and the login form cannot set a
  permanent password;
- Voilà cannot pass papermill parameters, so the kernel gets ``TRADEBOOK_ROOT`` and the
  params choice through the environment (``tradebook.panel.widgets.served_params``);
- executed notebooks under ``runs/`` are rendered read-only to HTML at ``/runs/<path>``,
  never executed: re-running a phase notebook would trade.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tradebook.errors import ConfigError
from tradebook.panel.widgets import ENV_OVERRIDES, ENV_PARAMS_FILE, ENV_RUNS_URL

HOST = "127.0.0.1"
DEFAULT_PORT = 8866
NOTEBOOK = "control_panel.ipynb"
RUNS_ROUTE = "runs/"


@dataclass(frozen=True)
class PanelAddress:
    """Where the panel listens and the one URL that opens it."""

    port: int
    token: str

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}/"

    @property
    def url(self) -> str:
        return f"{self.base}?token={self.token}"


def panel_notebook(root: Path) -> Path:
    """The control panel notebook of the project at ``root`` (a clear error when missing)."""
    path = Path(root) / "notebooks" / NOTEBOOK
    if not path.is_file():
        raise ConfigError(f"no control panel notebook at {path}; run `tradebook panel` from the project "
                          "folder or set TRADEBOOK_ROOT to it")
    return path


def check_port_free(port: int) -> None:
    """Fail early with a readable error instead of Voilà silently picking another port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tornado does: TIME_WAIT is free
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {HOST} is already in use (another panel?); "
                                  "choose one with --port") from None
            raise ConfigError(f"cannot listen on {HOST}:{port}: {exc}") from None


def kernel_env(root: Path, params_file: str | None, overrides: dict[str, Any] | None) -> dict[str, str]:
    """Environment the panel's kernels inherit: project root, params choice, where run links point."""
    env = {"TRADEBOOK_ROOT": str(Path(root).resolve()), ENV_RUNS_URL: "/" + RUNS_ROUTE,
           ENV_OVERRIDES: json.dumps(overrides or {}, default=str)}
    if params_file:
        env[ENV_PARAMS_FILE] = str(params_file)
    return env


def voila_config(notebook: Path, port: int, token: str) -> dict[str, dict[str, Any]]:
    """Voilà settings: 127.0.0.1 only, our token, no other port, no browser, no code, no files."""
    return {"Voila": {"ip": HOST, "port": port, "port_retries": 0, "token": token, "open_browser": False,
                      "root_dir": str(notebook.parent)},
            # file_allowlist: Voilà's /voila/files route is not token-checked; serve nothing there.
            "VoilaConfiguration": {"strip_sources": True, "show_tracebacks": False, "file_allowlist": []}}


def serve(root: Path, *, port: int = DEFAULT_PORT, params_file: str | None = None,
          overrides: dict[str, Any] | None = None, echo: Callable[[str], None] = print) -> None:
    """Serve the panel until interrupted (blocking); ``echo`` gets the URL with the token."""
    from traitlets.config import Config

    notebook = panel_notebook(root)
    runs_dir = _runs_dir(root, params_file, overrides)
    check_port_free(port)
    address = PanelAddress(port, secrets.token_urlsafe(24))
    # The token goes to Voilà in-process (never on a command line other users can read).
    os.environ.update(kernel_env(root, params_file, overrides))
    config = voila_config(notebook, port, address.token)
    app = _app_class()(runs_dir=str(runs_dir), config=Config(config))
    app.initialize(argv=[str(notebook)])
    _enforce(app, config)  # a user's voila.json must not widen the binding or drop the token
    echo(f"tradebook control panel for {Path(root).resolve()}")
    echo(f"open: {address.url}")
    echo("(listening on 127.0.0.1 only; the token is the password; Ctrl-C stops the panel)")
    app.start()


def _enforce(app: Any, config: dict[str, dict[str, Any]]) -> None:
    """Re-apply our settings over whatever config files Voilà loaded during initialize()."""
    for name, value in config["Voila"].items():
        setattr(app, name, value)
    for name, value in config["VoilaConfiguration"].items():
        setattr(app.voila_configuration, name, value)


def _runs_dir(root: Path, params_file: str | None, overrides: dict[str, Any] | None) -> Path:
    """Validate the params now (a clear error at start, not a broken page) and find runs/."""
    from tradebook.context import Context

    return Context.load(params_file, overrides or {}, root=Path(root)).runs_dir.resolve()


def resolve_run_notebook(runs_dir: Path, rel: str) -> Path | None:
    """An executed notebook strictly inside ``runs_dir`` (no traversal, .ipynb only), or None."""
    base = Path(runs_dir).resolve()
    path = (base / rel).resolve()
    if path.suffix != ".ipynb" or not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def render_run_notebook(path: Path, show_code: bool = False) -> str:
    """Executed notebook -> static HTML (outputs; code on request). Nothing is executed."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", exclude_input=not show_code,
                            exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(path, as_version=4))
    return body


def _app_class() -> type:
    """Voilà's app plus one read-only, authenticated route for executed notebooks."""
    import tornado.web
    from jupyter_server.base.handlers import JupyterHandler
    from jupyter_server.utils import url_path_join
    from traitlets import Unicode
    from voila.app import Voila

    class RunNotebookHandler(JupyterHandler):
        def initialize(self, runs_dir: str) -> None:
            self.runs_dir = Path(runs_dir)

        @tornado.web.authenticated
        def get(self, rel: str) -> None:
            path = resolve_run_notebook(self.runs_dir, rel)
            if path is None:
                raise tornado.web.HTTPError(404, "no such executed notebook under runs/")
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.set_header("Cache-Control", "no-store")
            self.finish(render_run_notebook(path, show_code=self.get_argument("code", "0") == "1"))

    class PanelVoila(Voila):
        runs_dir = Unicode("", help="folder of executed notebooks shown read-only at /runs/")

        def init_settings(self) -> dict:
            settings = super().init_settings()
            # Our own sign-in page; and no "set a permanent password" through the login form.
            from tradebook.panel.login import login_handler_class

            provider = getattr(self, "identity_provider", None)
            if provider is not None:
                provider.login_handler_class = login_handler_class()
                provider.allow_password_change = False
            return settings

        def init_handlers(self) -> list:
            route = url_path_join(self.server_url, RUNS_ROUTE + r"(.+)")
            # First: Voilà's single-notebook handler matches every other path.
            return [(route, RunNotebookHandler, {"runs_dir": self.runs_dir})] + super().init_handlers()

    return PanelVoila
