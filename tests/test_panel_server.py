"""`tradebook panel` serving logic without a browser (CTL-4): binding, token, params, runs route.

The end-to-end path (Voilà + Chromium) is tests/test_panel_browser.py.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tradebook.errors import ConfigError
from tradebook.panel.widgets import ENV_OVERRIDES, ENV_PARAMS_FILE, ENV_RUNS_URL, served, served_params
from tradebook.panel.server import (HOST, check_port_free, kernel_env, panel_notebook, resolve_run_notebook,
                                    voila_config)


def test_ctl4_voila_config_when_built_then_loopback_only_with_token_and_no_code():
    """CTL-4: 127.0.0.1 only, our token, no silent port change, no code, no unauthenticated files."""
    notebook = Path("/p/notebooks/control_panel.ipynb")
    config = voila_config(notebook, 18000, "tok")
    assert config["Voila"]["ip"] == HOST == "127.0.0.1"
    assert (config["Voila"]["token"], config["Voila"]["port"], config["Voila"]["port_retries"]) == ("tok", 18000, 0)
    assert config["Voila"]["root_dir"] == "/p/notebooks"
    assert config["VoilaConfiguration"]["strip_sources"] is True
    assert config["VoilaConfiguration"]["file_allowlist"] == []


def test_ctl4_kernel_env_when_params_given_then_kernel_reads_them_back(tmp_path, monkeypatch):
    """CTL-4: Voilà cannot pass papermill parameters; the kernel gets root and params via env."""
    env = kernel_env(tmp_path, "params/alpaca-paper.yaml", {"max_position_pct": 0.04})
    assert env["TRADEBOOK_ROOT"] == str(tmp_path.resolve()) and env[ENV_RUNS_URL] == "/runs/"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert served()
    assert served_params("params/sim.yaml", {}) == ("params/alpaca-paper.yaml", {"max_position_pct": 0.04})


def test_ctl4_served_params_when_not_served_then_notebook_parameters(monkeypatch):
    """CTL-4: under papermill/nbval (no panel env) the notebook's own parameters win."""
    for key in (ENV_PARAMS_FILE, ENV_OVERRIDES, ENV_RUNS_URL):
        monkeypatch.delenv(key, raising=False)
    assert not served()
    assert served_params("params/sim.yaml", {"mode": "sim"}) == ("params/sim.yaml", {"mode": "sim"})
    monkeypatch.setenv(ENV_OVERRIDES, json.dumps({}))
    assert served_params("params/sim.yaml", None) == ("params/sim.yaml", {})


def test_ctl4_runs_route_when_path_escapes_or_is_not_a_notebook_then_none(tmp_path):
    """CTL-4: only executed notebooks inside runs/ are rendered; no traversal, no ledger download."""
    runs = tmp_path / "runs"
    (runs / "2011-07-07").mkdir(parents=True)
    (runs / "2011-07-07" / "093600-execute.ipynb").write_text("{}")
    (runs / "ledger.duckdb").write_text("x")
    (tmp_path / "secret.ipynb").write_text("{}")
    assert resolve_run_notebook(runs, "2011-07-07/093600-execute.ipynb") == runs / "2011-07-07" / "093600-execute.ipynb"
    for rel in ("ledger.duckdb", "../secret.ipynb", "2011-07-07/../../secret.ipynb", "missing.ipynb", "/etc/passwd"):
        assert resolve_run_notebook(runs, rel) is None, rel


def test_ctl4_panel_notebook_when_missing_then_config_error(tmp_path):
    """CTL-4: started outside a project, the panel says where it looked and what to do."""
    with pytest.raises(ConfigError, match="TRADEBOOK_ROOT"):
        panel_notebook(tmp_path)


def test_ctl4_check_port_free_when_port_taken_then_config_error():
    """CTL-4: a busy port is an error (Voilà would otherwise pick another port than the one printed)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        with pytest.raises(ConfigError, match="already in use"):
            check_port_free(sock.getsockname()[1])


@pytest.mark.integration
def test_ctl4_cli_panel_when_port_busy_then_exit_2_with_one_line(root):
    """CTL-4: `tradebook panel --port <busy>` fails before serving, with one readable line."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "tradebook.cli", "panel", "--port", str(port)], cwd=root,
                              env={**os.environ, "TRADEBOOK_ROOT": str(root)},
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"port {port}" in proc.stderr and "Traceback" not in proc.stderr and "token" not in proc.stdout


def test_ctl4_login_page_when_rendered_then_panel_words_no_jupyter_server_advice():
    """Issue 13 item 7: the sign-in page says what it is and where the token came from, nothing of Jupyter."""
    import html

    from tradebook.panel.login import BAD_TOKEN, login_page

    page = login_page("/login?next=%2F", '<input type="hidden" name="_xsrf" value="x"/>')
    assert "tradebook control panel" in page and "tradebook panel" in page and 'name="password"' in page
    for stock in ("jupyter server list", "localhost:8888", "new_password", "enable a password", "Jupyter"):
        assert stock not in page
    assert html.escape(BAD_TOKEN) in login_page("/login", "", error=BAD_TOKEN)
    assert "<script>" not in login_page("/login?next=<script>", "", error="<script>")
