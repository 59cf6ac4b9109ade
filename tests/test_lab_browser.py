"""`tradebook lab` in a real browser (STR-1, issue 16 item 3): JupyterLab opens on the project
with the project's kernel, the research template runs top to bottom and shows the equity figure.

Headless Debian Chromium driven by Playwright, like the panel test; screenshots go to
tests/artifacts/lab/. Chromium missing is a failure (`make browser-deps`), never a skip.
"""
from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import notebook_fixture

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
ARTIFACTS = notebook_fixture.REPO / "tests" / "artifacts" / "lab"
SLOW_MS = 300_000   # kernel start and a 5-year backtest on 2 cores shared with other test runs


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, log: Path, port: int, timeout_s: float = 90) -> str:
    """The token `tradebook lab` printed, once the server answers /api/status with it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"tradebook lab exited:\n{log.read_text()[-3000:]}"
        found = re.search(r"open: http://127\.0\.0\.1:\d+/lab\?token=(\S+)", log.read_text())
        if found:
            try:
                con = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                con.request("GET", f"/api/status?token={found.group(1)}")
                if con.getresponse().status == 200:
                    return found.group(1)
            except OSError:
                pass
        time.sleep(0.3)
    raise AssertionError("tradebook lab did not start in time:\n" + log.read_text()[-3000:])


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM then the process group we started (JupyterLab and its kernels), by its id."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    root = tmp_path_factory.mktemp("lab-project")
    shutil.copytree(notebook_fixture.REPO / "notebooks", root / "notebooks")
    shutil.copytree(notebook_fixture.REPO / "strategies", root / "strategies")
    notebook_fixture.build(root)
    port, log = _free_port(), root / "lab.log"
    env = {**os.environ, "TRADEBOOK_ROOT": str(root), "MPLBACKEND": "Agg", "JUPYTER_CONFIG_DIR": str(root / ".jupyter"),
           "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tradebook.cli", "lab", "--port", str(port), "--no-browser"],
                                cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}", _wait_ready(proc, log, port), root
    finally:
        _stop(proc)
        shutil.copy(log, ARTIFACTS / "lab.log")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-deps` (apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1200})
        try:
            yield context
        finally:
            context.close()


def _run_all(page) -> None:
    """Run All once the kernel is connected and idle (a click before that is dropped by JupyterLab)."""
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
    page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle")).wait_for()
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.locator(".jp-InputArea-prompt", has_text=re.compile(r"\[\d+\]")).first.wait_for()  # it started


def test_str1_lab_when_research_template_is_run_in_jupyterlab_then_equity_figure_and_promotion_shown(lab, browser):
    """`tradebook lab` serves the project; Run All on notebooks/research/strategy.ipynb backtests the
    notebook's strategy with the live gate and shows the equity figure and the params change to promote it."""
    url, token, _root = lab
    page = browser.new_page()
    page.set_default_timeout(SLOW_MS)
    page.goto(f"{url}/lab/tree/notebooks/research/strategy.ipynb?token={token}")
    _run_all(page)
    page.screenshot(path=str(ARTIFACTS / "1-running.png"))
    figure = page.locator(".jp-OutputArea-output img").first
    figure.wait_for(state="visible")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    figure.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "2-equity.png"))
    box = figure.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 150
    text = page.locator(".jp-Notebook").inner_text()
    assert "use: strategies.gapfade:GapFade" in text
    assert re.search(r"\d+ round trips, win rate", text)
    assert "Traceback" not in text and "Error" not in text.replace("strategy_errors", "")


def test_lab_when_a_phase_notebook_is_run_in_jupyterlab_then_it_is_a_dry_run(lab, browser):
    """Item 3: execute.ipynb run from JupyterLab shows what it would do and sends and writes nothing."""
    import hashlib

    url, token, root = lab
    ledger = root / "runs" / "ledger.duckdb"
    before = hashlib.sha256(ledger.read_bytes()).hexdigest()
    page = browser.new_page()
    page.set_default_timeout(SLOW_MS)
    page.goto(f"{url}/lab/tree/notebooks/execute.ipynb?token={token}")
    _run_all(page)
    try:
        page.locator(".jp-OutputArea-output", has_text="DRY RUN: execute opened outside the runner").first.wait_for(
            timeout=120_000)
    finally:
        page.screenshot(path=str(ARTIFACTS / "3-execute-opened.png"))
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    page.screenshot(path=str(ARTIFACTS / "3-execute-dry-run.png"))
    assert hashlib.sha256(ledger.read_bytes()).hexdigest() == before
    assert not list((root / "runs").glob("20*/*-execute.ipynb"))
