"""`tradebook lab`: JupyterLab on the project, with the project's kernel; and the promotion helper.

JupyterLab listens on 127.0.0.1 only with a fresh token printed once; its kernels
inherit TRADEBOOK_ROOT and the environment of this process, so ``tradebook`` and the
project's ``strategies/`` import in a notebook exactly as in decide and the backtest.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Callable

from tradebook.strategies.base import Strategy


def lab_argv(root: Path, port: int, token: str, open_browser: bool) -> list[str]:
    """The JupyterLab command line for ``root`` (loopback only, token required, no port hopping)."""
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
            "--ServerApp.allow_remote_access=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")   # containers often run as root; loopback + token still guard it
    return argv if open_browser else [*argv, "--no-browser"]


def lab_env(root: Path) -> dict[str, str]:
    """This process's environment plus the project root; the project first on the kernels' path."""
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "TRADEBOOK_ROOT": str(root), "PYTHONPATH": path}


def _check_port_free(port: int) -> None:
    """Refuse before printing a URL that would lead to whatever already listens on the port."""
    import errno
    import socket

    from tradebook.errors import ConfigError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tornado does: TIME_WAIT is free
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on 127.0.0.1 is already in use (another JupyterLab?); "
                                  "choose one with --port") from None
            raise


def run_lab(root: Path, port: int, open_browser: bool, echo: Callable[[str], None]) -> int:
    """Run JupyterLab in the foreground until it stops; returns its exit code."""
    _check_port_free(port)
    token = secrets.token_urlsafe(24)
    echo(f"JupyterLab on {root}: open: http://127.0.0.1:{port}/lab?token={token}")
    echo("research template: notebooks/research/strategy.ipynb (Ctrl-C here stops JupyterLab)")
    return subprocess.call(lab_argv(root, port, token, open_browser), cwd=root, env=lab_env(root))


def promotion(strategy: Strategy, module: str | None = None) -> str:
    """The params change that puts ``strategy`` (with its current params) into paper trading.

    A class written in a notebook lives in ``__main__``: save it under ``strategies/``
    and pass the module name (e.g. ``strategies.gap_fade``).
    """
    import yaml

    cls = type(strategy)
    module = module or cls.__module__
    params = strategy.params.model_dump(mode="json")
    head = ""
    if module == "__main__":
        module = f"strategies.{cls.__name__.lower()}"
        head = (f"# 1. save the class {cls.__name__} to {module.replace('.', '/')}.py in the project\n"
                "# 2. put this in the params file you trade with (e.g. params/alpaca-paper.yaml):\n")
    body = yaml.safe_dump({"strategy": {"use": f"{module}:{cls.__qualname__}", "params": params}},
                          sort_keys=False, default_flow_style=False)
    return head + body
