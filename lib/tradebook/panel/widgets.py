"""The widget control panel (CTL-4): state, reasons, exposure vs caps, halt / resume / flatten.

``build_widgets()`` makes the ipywidgets; ``ControlPanel`` wires them to plain
methods (``on_halt``, ``on_resume``, ``on_flatten``, ``refresh``) that tests call
directly, without a browser. Every action goes through ``tradebook.safety.controls`` with
``source="widget"``, so the panel is one more kill-switch source, never a bypass.
Stable CSS classes (``tb-*``) give browser tests (Voilà) selectors.
"""
from __future__ import annotations

import getpass
import html
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable
from zoneinfo import ZoneInfo

from tradebook.context import Context
from tradebook.errors import LedgerError
from tradebook.safety.controls import ControlStatus, effective_state, halt, resume
from tradebook.safety.exposure import ExposureLine, exposure_lines
from tradebook.phases.flatten import flatten

if TYPE_CHECKING:
    from tradebook.broker.base import Position
    from tradebook.params import Params

STATE_COLOURS = {"RUNNING": "#1a7f37", "REDUCE_ONLY": "#9a6700", "HALTED": "#cf222e", "FROZEN": "#8250df"}
LOG_LINES = 50
EXCHANGE_TZ = ZoneInfo("America/New_York")
RUN_ROWS = 8
# Set by `tradebook panel` (panel_server): Voilà cannot pass papermill parameters.
ENV_PARAMS_FILE = "TRADEBOOK_PANEL_PARAMS"
ENV_OVERRIDES = "TRADEBOOK_PANEL_OVERRIDES"
ENV_RUNS_URL = "TRADEBOOK_PANEL_RUNS_URL"   # where executed notebooks are served (else: paths only)


def served() -> bool:
    """True inside a kernel started by `tradebook panel` (Voilà)."""
    return ENV_RUNS_URL in os.environ


def served_params(params_file: str | None, overrides: dict[str, Any] | None) -> tuple[str | None, dict[str, Any]]:
    """The params the panel server chose (env), else the notebook's own parameters."""
    env_file, env_overrides = os.environ.get(ENV_PARAMS_FILE), os.environ.get(ENV_OVERRIDES)
    return (env_file or params_file,
            json.loads(env_overrides) if env_overrides else dict(overrides or {}))


def build_widgets() -> SimpleNamespace:
    """Create the panel's widgets (unwired), each with a readable description and a tb-* class."""
    import ipywidgets as w

    def tagged(widget: Any, css: str) -> Any:
        widget.add_class(css)
        return widget

    ns = SimpleNamespace(
        title=w.HTML("<h2 style='margin:0'>tradebook control panel</h2>"),
        state_html=tagged(w.HTML(), "tb-state"),
        freezes_html=tagged(w.HTML(), "tb-freezes"),
        account_html=tagged(w.HTML(), "tb-account"),
        exposure_html=tagged(w.HTML(), "tb-exposure"),
        runs_html=tagged(w.HTML(), "tb-runs"),
        reason_box=tagged(w.Text(description="Reason", placeholder="why (required for resume and flatten)",
                                 layout=w.Layout(width="60%")), "tb-reason"),
        confirm_box=tagged(w.Text(description="Confirm", placeholder="type RESUME or FLATTEN"), "tb-confirm"),
        halt_button=tagged(w.Button(description="Halt", button_style="danger", icon="stop",
                                    tooltip="Kill switch: stop this account's trading now (`tradebook halt` stops every account)"), "tb-halt"),
        resume_button=tagged(w.Button(description="Resume", button_style="success", icon="play",
                                      tooltip="Clear halt/freeze (type RESUME, give a reason)"), "tb-resume"),
        flatten_button=tagged(w.Button(description="Flatten", button_style="warning", icon="times",
                                       tooltip="Cancel orders, close all positions, freeze (type FLATTEN)"),
                              "tb-flatten"),
        refresh_button=tagged(w.Button(description="Refresh", icon="refresh"), "tb-refresh"),
        log_html=tagged(w.HTML(), "tb-log"),
    )
    buttons = w.HBox([ns.halt_button, ns.resume_button, ns.flatten_button, ns.refresh_button])
    # Actions right under the state: under stress the Halt button must not need scrolling.
    ns.widget = tagged(w.VBox([ns.title, ns.state_html, ns.freezes_html, ns.reason_box, ns.confirm_box, buttons,
                               w.HTML("<b>Log</b>"), ns.log_html, ns.account_html, ns.exposure_html,
                               ns.runs_html], layout=w.Layout(padding="8px 16px", max_width="1100px")),
                       "tb-panel")
    return ns


class ControlPanel:
    """Widgets plus handlers; handlers are plain methods so tests drive them without a browser."""

    def __init__(self, ctx: Context, actor: str | None = None):
        self.ctx = ctx
        self.actor = actor or _default_actor()
        self.messages: list[str] = []
        self.status: ControlStatus | None = None
        self.positions: list["Position"] = []
        self.exposure: list[ExposureLine] = []
        self.broker_error: str | None = None
        self._w = build_widgets()
        for name in ("state_html", "freezes_html", "account_html", "exposure_html", "runs_html", "reason_box",
                     "confirm_box", "halt_button", "resume_button", "flatten_button", "refresh_button",
                     "log_html", "widget"):
            setattr(self, name, getattr(self._w, name))
        self.halt_button.on_click(self.on_halt)
        self.resume_button.on_click(self.on_resume)
        self.flatten_button.on_click(self.on_flatten)
        self.refresh_button.on_click(self.refresh)
        self.refresh()

    @classmethod
    def load(cls, params_file: str | None = None, overrides: dict[str, Any] | None = None,
             root: Path | None = None, actor: str | None = None) -> "ControlPanel":
        """Build the panel from a params file (what the notebook calls)."""
        return cls(Context.load(params_file, overrides or {}, root=root), actor)

    # handlers -------------------------------------------------------------------------------
    def on_halt(self, _button: Any = None) -> ControlStatus | None:
        """Kill switch: no confirmation needed (stopping must be one click); reason optional."""
        reason = self.reason_box.value.strip() or "halted from the control panel"
        return self._act("halt", lambda: halt(self.ctx.params, self.ctx.root, reason, self.actor, "widget"))

    def on_resume(self, _button: Any = None) -> ControlStatus | None:
        """Resume needs the typed confirmation RESUME and a reason (CTL-2)."""
        if not self._confirmed("RESUME"):
            return None
        reason = self.reason_box.value
        return self._act("resume", lambda: resume(self.ctx.params, self.ctx.root, reason, self.actor, "widget"))

    def on_flatten(self, _button: Any = None):
        """Flatten needs the typed confirmation FLATTEN and a reason (CTL-5)."""
        if not self._confirmed("FLATTEN"):
            return None
        reason = self.reason_box.value
        return self._act("flatten", lambda: flatten(self.ctx, reason, self.actor, "widget"))

    def refresh(self, _button: Any = None) -> ControlStatus:
        """Re-read the control state (never blocks long on a busy ledger) and the broker's positions."""
        self.status = effective_state(self.ctx.params, self.ctx.root)
        try:
            account = self.ctx.broker.account()
            self.positions = list(self.ctx.broker.positions())
            # The caps and warning band the gate enforces (tradebook.safety.exposure), displayed as they are.
            self.exposure = exposure_lines(((p.symbol, p.market_value) for p in self.positions),
                                           account.equity, self.ctx.params) if self.positions else []
            self.broker_error = None
            self.account_html.value = (f"<b>Equity</b> {account.equity:,.2f} · <b>Cash</b> {account.cash:,.2f}"
                                       f" · <b>Buying power</b> {account.buying_power:,.2f}"
                                       f" · <b>Broker clock</b> {self.ctx.now():%Y-%m-%d %H:%M %Z}"
                                       f" ({html.escape(self.ctx.params.mode)})")
        except Exception as exc:  # the panel must keep working (halt!) when the broker does not
            self.broker_error = f"{type(exc).__name__}: {exc}"
            self.account_html.value = f"<b>broker unavailable:</b> {html.escape(self.broker_error)}"
        self._render()
        return self.status

    def summary(self) -> str:
        """One line for notebooks and logs: state, reasons, positions, gross exposure."""
        status = self.status or self.refresh()
        gross = next((r for r in self.exposure if r.group == "gross"), None)
        parts = [f"state {status.state}", f"{len(status.reasons)} reason(s)", f"{len(self.positions)} position(s)",
                 f"gross {gross.pct:.1%} of equity (cap {gross.cap:.0%})" if gross else "gross 0.0%"]
        return " · ".join(parts + (["broker unavailable"] if self.broker_error else []))

    # internals ------------------------------------------------------------------------------
    def _confirmed(self, word: str) -> bool:
        if self.confirm_box.value.strip() == word:
            return True
        self.log(f"type {word} in the Confirm box to {word.lower()}; nothing changed")
        self.confirm_box.value = ""
        self.refresh()
        return False

    def _act(self, name: str, action: Callable[[], Any]) -> Any:
        try:
            result = action()
        except Exception as exc:  # a widget callback must report, never vanish into the JS console
            self.log(f"{name} failed: {type(exc).__name__}: {exc}")
            result = None
        else:
            text = result.summary() if hasattr(result, "summary") else result.describe()
            self.log(f"{name}: {text}")
            self.reason_box.value = ""
        self.confirm_box.value = ""  # a confirmation is good for one click only
        self.refresh()
        return result

    def log(self, message: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
        self.messages.append(f"{stamp} {message}")
        lines = "\n".join(html.escape(m) for m in reversed(self.messages[-LOG_LINES:]))
        self.log_html.value = (f"<pre style='white-space:pre-wrap;word-break:normal;overflow-wrap:anywhere;"
                               f"margin:0;line-height:1.35'>{lines}</pre>")

    def _render(self) -> None:
        s = self.status
        since = f" since {s.since:%Y-%m-%d %H:%M:%S %Z}" if s.since else ""
        colour = STATE_COLOURS.get(s.state, "#000")
        # A banner: the one thing an operator must read at a glance.
        self.state_html.value = (f"<div style='border-left:10px solid {colour};padding:4px 14px;line-height:1.3'>"
                                 f"<span style='font-size:15px'>Trading state</span><br><span class='tb-state-value' "
                                 f"style='color:{colour};font-weight:bold;font-size:30px'>{s.state}</span>"
                                 f"<span style='font-size:15px'>{html.escape(since)}</span></div>")
        items = "".join(f"<li>{html.escape(r)}</li>" for r in s.reasons) or "<li>none</li>"
        self.freezes_html.value = f"<b>Active halts / freezes</b><ul>{items}</ul>"
        self.exposure_html.value = _positions_table(self.positions, self.ctx.params) + _exposure_table(self.exposure)
        self.runs_html.value = _runs_html(self.ctx, s)


def _default_actor() -> str:
    try:
        return f"{getpass.getuser()}@panel"
    except Exception:  # no user database (containers): still record who, generically
        return "operator@panel"


def _table(headers: list[str], rows: list[list[str]], css: str, escape: bool = True) -> str:
    """An HTML table; ``escape=False`` when the caller already escaped the cells (links)."""
    head = "".join(f"<th style='text-align:left;padding:0 8px'>{h}</th>" for h in headers)
    cell = html.escape if escape else str
    body = "".join("<tr>" + "".join(f"<td style='padding:0 8px'>{cell(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table class='{css}'><tr>{head}</tr>{body}</table>"


def _positions_table(positions: list["Position"], params: "Params") -> str:
    if not positions:
        return "<b>Positions</b> none<br>"
    rows = [[p.symbol, f"{p.qty:g}", f"{p.avg_price:,.2f}", f"{p.market_price:,.2f}", f"{p.qty * p.market_price:,.2f}",
             params.symbol_tiers.get(p.symbol, "UNMAPPED"), params.symbol_sectors.get(p.symbol, "UNMAPPED")]
            for p in sorted(positions, key=lambda p: p.symbol)]
    return "<b>Positions</b>" + _table(["symbol", "qty", "avg price", "price", "value", "tier", "sector"],
                                       rows, "tb-positions")


def _exposure_table(rows: list[ExposureLine]) -> str:
    if not rows:
        return "<b>Exposure vs caps</b> none (no positions)<br>"
    cells = [[r.group, r.name, f"{r.value:,.2f}", f"{r.pct:.1%}", "none" if r.cap is None else f"{r.cap:.0%}",
              r.level] for r in rows]
    return "<b>Exposure vs caps</b>" + _table(["group", "name", "value", "% equity", "cap", "level"],
                                              cells, "tb-exposure-table")


def recent_runs(ctx: Context, limit: int = RUN_ROWS) -> list[tuple]:
    """The last runs (phase, status, broker time, notebook path, error); short lock wait (OPS-1)."""
    from tradebook.safety.control_status import QUICK_LOCK_TIMEOUT_S
    from tradebook.ledger import runs
    from tradebook.ledger.db import Ledger

    path = ctx.params.ledger_path(ctx.root)
    if not path.exists():
        return []
    latest = Ledger(path, lock_timeout_s=QUICK_LOCK_TIMEOUT_S, create=False).read(runs.latest, limit)
    return [(r.phase, r.status, r.at, r.notebook_path or "", r.error or "") for r in latest]


def _runs_html(ctx: Context, status: ControlStatus) -> str:
    """Last runs with links to their executed notebooks (served read-only by `tradebook panel`)."""
    if status.ledger_error:
        return "<b>Last runs</b> ledger busy or unreadable; press Refresh<br>"
    try:
        rows = recent_runs(ctx)
    except (LedgerError, OSError) as exc:  # a busy ledger must not break the panel (a bug must show)
        return f"<b>Last runs</b> ledger busy ({html.escape(type(exc).__name__)}); press Refresh<br>"
    if not rows:
        return "<b>Last runs</b> none yet<br>"
    base, runs_dir = os.environ.get(ENV_RUNS_URL), ctx.runs_dir.resolve()
    cells = [[html.escape(phase), html.escape(state), f"{at.astimezone(EXCHANGE_TZ):%Y-%m-%d %H:%M %Z}",
              _notebook_link(nb, runs_dir, base),
              html.escape(error[:80])] for phase, state, at, nb, error in rows]
    return "<b>Last runs</b>" + _table(["phase", "status", "broker time", "executed notebook", "error"], cells,
                                       "tb-runs-table", escape=False)


def _notebook_link(notebook: str, runs_dir: Path, base: str | None) -> str:
    if not notebook:
        return ""
    path = Path(notebook)
    try:
        rel = path.resolve().relative_to(runs_dir).as_posix()
    except ValueError:
        return html.escape(notebook)
    if not base:  # not served by `tradebook panel`: show where the file is
        return html.escape(f"runs/{rel}")
    href = html.escape(base + rel, quote=True)
    return (f"<a class='tb-run-link' href='{href}' target='_blank' rel='noopener' "
            f"style='color:#0969da;text-decoration:underline'>{html.escape(rel)}</a>")
