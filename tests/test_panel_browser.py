"""The control panel in a real browser (CTL-1, CTL-2, CTL-4, CTL-5, OPS-1; issue 9).

`tradebook panel` runs as a subprocess against a demo project (tests/support/notebook_fixture.py
plus two seeded positions); headless Debian Chromium, driven by Playwright, clicks the
buttons an operator would click. Screenshots of every step go to tests/artifacts/panel/.
Timings are printed, never asserted. Chromium missing is a failure (`make browser-deps`
installs it), never a skip.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from support import notebook_fixture
from tradebook.ledger import intents as intent_store
from tradebook.ledger import orders as order_store

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
ARTIFACTS = notebook_fixture.REPO / "tests" / "artifacts" / "panel"
SEEDED = {"AAPL": 10, "MSFT": 150}
GROSS_CAP = 0.5  # params/sim.yaml says 0.60
SLOW_MS = 90_000  # a fresh kernel per page load; 2 busy cores can take a while


@dataclass
class Panel:
    root: Path
    port: int
    token: str
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ctx(root: Path):
    from tradebook.context import Context

    return Context.load("params/sim.yaml", {}, root=root)


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KILL_SWITCH"}
    return {**env, "TRADEBOOK_ROOT": str(root), "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}


def _server_log(root: Path) -> Path:
    return root / "panel-server.log"  # per run: a parallel test session must not mix logs


def _start_server(root: Path, port: int) -> subprocess.Popen:
    # An override, to see it reach Voilà's kernel (it cannot take papermill parameters).
    cmd = [sys.executable, "-m", "tradebook.cli", "panel", "--port", str(port),
           "-p", f"max_gross_exposure_pct={GROSS_CAP}"]
    with open(_server_log(root), "w") as log:  # the child keeps its own handle
        return subprocess.Popen(cmd, cwd=root, env=_env(root), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_for_token(proc: subprocess.Popen, log: Path, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text()
        found = re.search(r"open: http://127\.0\.0\.1:\d+/\?token=(\S+)", text)
        if found and "Voilà is running" in text:
            return found.group(1)
        assert proc.poll() is None, f"tradebook panel exited:\n{text[-3000:]}"
        time.sleep(0.2)
    raise AssertionError("tradebook panel did not start in time:\n" + log.read_text())


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (Voilà shuts its kernels down), then the process group we started, by its id."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of our own session only (kernels)
    except ProcessLookupError:
        pass
    proc.wait(5)


def _seed_demo(root: Path) -> None:
    """Two positions held at the broker so Flatten has something to close."""
    broker = _ctx(root).broker
    quotes = broker.quotes(list(SEEDED))
    for symbol, qty in SEEDED.items():
        broker.seed_position(symbol, qty, round((quotes[symbol].bid + quotes[symbol].ask) / 2, 2))


def _plan_entry(root: Path) -> str:
    """A PLANNED entry due in this execution window: what `run execute` would send if trading ran."""
    from tradebook.phases import intents

    ctx = _ctx(root)
    now, quote = ctx.now(), ctx.broker.quotes(["IBM"])["IBM"]
    decided = now - timedelta(hours=18)  # yesterday after the close, like the decide phase
    intent = intents.Intent("browser-test-IBM-entry", decided, None, "ENTRY", "IBM", "buy", 5.0, "limit",
                            round(quote.ask, 2), "normal", 0.9, round(quote.ask, 2), decided,
                            "browser test: would be sent if trading were not halted", intents.PLANNED, 0, None,
                            None, decided)
    with ctx.ledger.transaction() as con:
        intents.insert(con, intent)
    return intent.intent_id


@pytest.fixture(scope="module")
def panel(tmp_path_factory) -> Panel:
    """`tradebook panel` on a free port against a demo project (server starts while the demo builds)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink(missing_ok=True)
    root = tmp_path_factory.mktemp("panel-project")
    shutil.copytree(notebook_fixture.REPO / "params", root / "params")
    shutil.copytree(notebook_fixture.REPO / "notebooks", root / "notebooks")
    port = _free_port()
    proc = _start_server(root, port)
    try:
        notebook_fixture.build(root)
        _seed_demo(root)
        yield Panel(root, port, _wait_for_token(proc, _server_log(root)), proc)
    finally:
        _stop(proc)
        shutil.copy(_server_log(root), ARTIFACTS / "server.log")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Debian Chromium with a fresh profile; missing Chromium fails the run."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-deps` (apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")  # fresh user data dir
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 1400})
        try:
            yield context
        finally:
            context.close()


def _get(port: int, path: str) -> http.client.HTTPResponse:
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    con.request("GET", path)
    return con.getresponse()


def test_ctl4_panel_when_token_missing_or_wrong_then_refused(panel):
    """CTL-4: without the right token neither the page nor an executed notebook is served."""
    for path in ("/", "/?token=wrong-" + panel.token[:8], f"/runs/{'x' * 8}.ipynb", "/runs/ledger.duckdb"):
        resp = _get(panel.port, path)
        body = resp.read().decode(errors="replace")
        assert resp.status in (302, 403), (path, resp.status)
        assert resp.status == 403 or "/login" in resp.getheader("Location", ""), path
        assert "tb-panel" not in body and "control panel" not in body.lower()
    login = _get(panel.port, "/login").read().decode(errors="replace")
    assert "tb-state" not in login and "password" in login.lower()


def test_ctl4_panel_runs_route_when_outside_runs_or_not_a_notebook_then_404(panel):
    """CTL-4: the executed-notebook route serves .ipynb under runs/ only, even with the token."""
    for rel in ("ledger.duckdb", "../params/sim.yaml", "..%2Fnotebooks%2Fexecute.ipynb", "missing.ipynb"):
        resp = _get(panel.port, f"/runs/{rel}?token={panel.token}")
        assert resp.status == 404, (rel, resp.status)


def test_ctl4_panel_login_page_when_opened_in_browser_then_panel_words_and_token_signs_in(panel, browser):
    """Issue 13 item 7: the sign-in page is the panel's own (what it is, that `tradebook panel` printed
    the token), with nothing about Jupyter servers or permanent passwords; a wrong token is refused in
    those words, the printed token opens the panel."""
    browser.clear_cookies()
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{panel.port}/", timeout=SLOW_MS)   # no token: sent to the sign-in page
    assert "/login" in page.url
    text = page.locator("body").inner_text()
    assert "tradebook control panel" in text and "printed by tradebook panel" in text
    for stock in ("jupyter server list", "localhost:8888", "enable a password", "Jupyter"):
        assert stock not in text and stock not in page.content()
    assert page.locator("input[name=new_password]").count() == 0
    page.screenshot(path=str(ARTIFACTS / "00-login.png"))
    page.locator("#tb-token").fill("wrong-" + panel.token[:8])
    page.locator("#tb-login-submit").click()
    assert "not this panel's token" in page.locator(".tb-login-error").inner_text()
    page.locator("#tb-token").fill(panel.token)
    page.locator("#tb-login-submit").click()
    _state(page, "RUNNING")
    page.close()


def _shot(page, name: str) -> None:
    """The panel widget itself (Voilà's page scrolls inside a container, not the window)."""
    target = page.locator(".tb-panel")
    (target if target.count() else page).screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _state(page, expected: str) -> None:
    """Wait for the page to show ``expected``; on failure keep a screenshot and say what the page said."""
    from playwright.sync_api import expect

    try:
        expect(page.locator(".tb-state-value")).to_have_text(expected, timeout=SLOW_MS)
    except AssertionError:
        page.screenshot(path=str(ARTIFACTS / f"failed-waiting-for-{expected}.png"))
        panel = page.locator(".tb-panel")
        raise AssertionError(f"page never showed {expected}; panel says:\n"
                             + (panel.inner_text() if panel.count() else page.content()[-3000:])) from None


def _act(page, button: str, reason: str, confirm: str = "") -> None:
    page.locator(".tb-reason input").fill(reason)
    page.locator(".tb-confirm input").fill(confirm)
    page.locator(f"button.{button}").click()


def _ledger_rows(root: Path, sql: str) -> list[tuple]:
    from tradebook.ledger.db import Ledger

    with Ledger(_ctx(root).params.ledger_path(root), lock_timeout_s=10, create=False).connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def _ledger_read(root: Path, read):
    """``read(con)`` on a short read-only connection (the panel's server may hold the ledger next)."""
    from tradebook.ledger.db import Ledger

    with Ledger(_ctx(root).params.ledger_path(root), lock_timeout_s=10, create=False).connect(read_only=True) as con:
        return read(con)


def _ledger_controls(root: Path) -> list[tuple]:
    """(state, reason, source) of every control row, oldest first (short read-only connection)."""
    from tradebook.ledger import controls as control_store
    from tradebook.ledger.db import Ledger

    with Ledger(_ctx(root).params.ledger_path(root), lock_timeout_s=10, create=False).connect(read_only=True) as con:
        return [(c["state"], c["reason"], c["source"]) for c in control_store.control_history(con)]


def _wait_ledger_halted(root: Path, timeout_s: float = 60) -> float:
    """Poll the ledger (short read-only connections) until a HALTED control row exists."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if any(state == "HALTED" for state, _, _ in _ledger_controls(root)):
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError("no HALTED row in the ledger")


def _load(page, url: str, expected: str) -> float:
    start = time.monotonic()
    page.goto(url, timeout=SLOW_MS)
    _state(page, expected)
    return time.monotonic() - start


def _halt_and_check(page, panel: Panel) -> tuple[float, float]:
    """CTL-1: one click halts: flag file and ledger row with the reason, page shows HALTED."""
    from tradebook.safety.controls import effective_state

    _act(page, "tb-halt", "browser test: spreads blew out")
    clicked = time.monotonic()
    in_ledger = _wait_ledger_halted(panel.root) - clicked
    _state(page, "HALTED")
    on_page = time.monotonic() - clicked
    flag = json.loads((panel.root / "runs" / "KILL_SWITCH-ledger").read_text())
    assert (flag["state"], flag["source"], flag["reason"]) == ("HALTED", "widget", "browser test: spreads blew out")
    assert _ledger_controls(panel.root)[-1] == ("HALTED", "browser test: spreads blew out", "widget")
    assert effective_state(_ctx(panel.root).params, panel.root).state == "HALTED"
    return in_ledger, on_page


def _execute_places_nothing(panel: Panel, intent_id: str) -> None:
    """CTL-1: `tradebook run execute` while halted: no order row, nothing at the broker."""
    before = (_ledger_read(panel.root, order_store.count), len(_ctx(panel.root).broker.open_orders()))
    proc = subprocess.run([sys.executable, "-m", "tradebook.cli", "run", "execute"], cwd=panel.root,
                          env=_env(panel.root), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "execute: OK" in proc.stdout
    assert (_ledger_read(panel.root, order_store.count), len(_ctx(panel.root).broker.open_orders())) == before
    state = _ledger_read(panel.root, lambda con: intent_store.load(con, intent_id).state)
    assert state in ("PLANNED", "REJECTED")  # refused by the gate (GATE-1) or left for later, never sent


def _open_run_notebook(context, page) -> None:
    """The last run's link opens its executed notebook (read-only HTML, outputs only)."""
    from playwright.sync_api import expect

    page.locator("button.tb-refresh").click()
    link = page.locator("a.tb-run-link", has_text="execute")
    expect(link.first).to_be_visible(timeout=SLOW_MS)
    _shot(page, "03-halted-after-execute-run")
    with context.expect_page(timeout=SLOW_MS) as opened:
        link.first.click()
    run_page = opened.value
    run_page.wait_for_load_state()
    expect(run_page.get_by_text("state HALTED").first).to_be_visible(timeout=SLOW_MS)
    _shot(run_page, "04-executed-notebook")
    run_page.close()


def _busy_ledger_still_works(page, panel: Panel) -> None:
    """OPS-1/CTL-1: while another process holds the ledger, Refresh answers and Halt still halts."""
    import duckdb
    from playwright.sync_api import expect

    con = duckdb.connect(str(_ctx(panel.root).params.ledger_path(panel.root)))  # like a running phase
    try:
        page.locator("button.tb-refresh").click()
        expect(page.locator(".tb-freezes")).to_contain_text("ledger unreadable", timeout=SLOW_MS)
        _act(page, "tb-halt", "browser test: halt while the ledger is busy")
        expect(page.locator(".tb-log")).to_contain_text("not recorded in the ledger", timeout=SLOW_MS)
        _state(page, "HALTED")
        _shot(page, "05-ledger-busy-halt")
        flag = json.loads((panel.root / "runs" / "KILL_SWITCH-ledger").read_text())
        assert flag["reason"] == "browser test: halt while the ledger is busy"
    finally:
        con.close()


def _resume_checked(page, panel: Panel) -> None:
    """CTL-2: Resume without the typed word changes nothing; with RESUME and a reason it is recorded."""
    from playwright.sync_api import expect

    page.locator("button.tb-refresh").click()  # ledger free again: its HALTED row is back in the reasons
    _act(page, "tb-resume", "browser test: spreads normal again")  # no typed confirmation: refused
    expect(page.locator(".tb-log")).to_contain_text("type RESUME", timeout=SLOW_MS)
    _state(page, "HALTED")
    _act(page, "tb-resume", "browser test: spreads normal again", "RESUME")
    _state(page, "RUNNING")
    _shot(page, "06-resumed")
    assert not list((panel.root / "runs").glob("KILL_SWITCH*"))
    assert _ledger_controls(panel.root)[-1] == ("RUNNING", "browser test: spreads normal again", "widget")


def _flatten_checked(page, panel: Panel) -> None:
    """CTL-5: typed FLATTEN closes the demo positions at SimBroker (market, in session) and freezes."""
    from playwright.sync_api import expect

    from tradebook.safety.controls import effective_state

    held = {p.symbol for p in _ctx(panel.root).broker.positions()}
    assert set(SEEDED) <= held  # the fixture's own positions plus the seeded ones
    _act(page, "tb-flatten", "browser test: end of drill", "FLATTEN")
    _state(page, "FROZEN")
    expect(page.locator(".tb-exposure")).to_contain_text("Positions none", timeout=SLOW_MS)
    _shot(page, "07-flattened-frozen")
    assert _ctx(panel.root).broker.positions() == []
    assert _ledger_read(panel.root, lambda con: [o.client_order_id.startswith("flat-") for o in order_store.every(con)]) \
        .count(True) == len(held)
    assert effective_state(_ctx(panel.root).params, panel.root).state == "FROZEN"
    assert _ledger_controls(panel.root)[-1][:2] == ("FROZEN", "flatten: browser test: end of drill")


def test_ctl4_panel_in_browser_when_halt_execute_resume_flatten_then_ledger_flag_and_broker_agree(panel, browser):
    """CTL-1/2/4/5, OPS-1: halt, a halted execute run, a busy ledger, resume, flatten — in Chromium."""
    intent_id = _plan_entry(panel.root)
    page = browser.new_page()
    load_s = _load(page, panel.url, "RUNNING")
    for symbol in SEEDED:
        assert page.locator(".tb-positions").get_by_text(symbol, exact=True).count() == 1
    assert "ControlPanel.load" not in page.content()  # Voilà shows outputs, never the code
    gross = page.locator(".tb-exposure-table tr", has_text="gross").first
    assert f"{GROSS_CAP:.0%}" in gross.inner_text()  # the -p override reached the kernel
    _shot(page, "01-running")

    in_ledger, on_page = _halt_and_check(page, panel)
    _shot(page, "02-halted")
    _execute_places_nothing(panel, intent_id)
    _open_run_notebook(browser, page)
    _busy_ledger_still_works(page, panel)
    _resume_checked(page, panel)
    _flatten_checked(page, panel)
    print(f"\npanel timings: page load {load_s:.2f}s, click->HALTED in ledger {in_ledger:.3f}s, "
          f"click->HALTED on page {on_page:.3f}s")
