"""The panel's own sign-in page (CTL-4), instead of Jupyter's stock one.

Jupyter's page talks about `jupyter server list`, a localhost:8888 example and setting a
permanent password; none of that applies here. This page says what the panel is, that
the token is the one `tradebook panel` printed when it started, and what to do if it is
lost. Changing the password from the login form is switched off (``serve`` sets
``allow_password_change = False``): the token is the only credential, new at each start.
"""
from __future__ import annotations

from html import escape

TITLE = "tradebook control panel — sign in"
BAD_TOKEN = ("That is not this panel's token. Use the token printed by the `tradebook panel` that is "
             "running now (each start prints a new one).")

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
 body {{ font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; padding: 0 1rem;
        color: #222; line-height: 1.45; }}
 h1 {{ font-size: 1.4rem; }} code {{ background: #f2f2f2; padding: 0 .25rem; }}
 .tb-login-error {{ color: #a00; font-weight: bold; }}
 input[type=password] {{ width: 100%; font-size: 1rem; padding: .4rem; box-sizing: border-box; }}
 button {{ margin-top: .6rem; font-size: 1rem; padding: .35rem 1.2rem; }}
</style>
</head>
<body class="tb-login">
<h1>tradebook control panel</h1>
<p>This page controls live trading for this project: it shows the trading state and has the
<b>Halt</b>, <b>Resume</b> and <b>Flatten</b> buttons. It needs the panel's token.</p>
{error}
<form action="{action}" method="post">
{xsrf}
<label for="tb-token"><b>Token</b></label>
<input type="password" name="password" id="tb-token" autocomplete="off" autofocus>
<button type="submit" id="tb-login-submit">Open the panel</button>
</form>
<p>The token was printed by <code>tradebook panel</code> in the terminal where it was started, as
part of the address to open: <code>http://127.0.0.1:&lt;port&gt;/?token=&lt;token&gt;</code>.
Open that address, or paste the part after <code>token=</code> here.</p>
<p>Lost it? Stop the panel (Ctrl-C in its terminal) and start <code>tradebook panel</code> again: it
prints a new token, and the old one stops working. The token is the only password; do not share it.</p>
<p>Trading can also be halted without this page, for every account of the runs folder:
<code>tradebook halt --reason "..."</code>, or <code>touch runs/KILL_SWITCH</code>.</p>
</body>
</html>
"""


def login_page(action: str, xsrf_form_html: str, error: str | None = None) -> str:
    """The sign-in page; ``action`` and ``error`` are escaped, ``xsrf_form_html`` is tornado's own markup."""
    shown = f'<p class="tb-login-error">{escape(error)}</p>' if error else ""
    return _PAGE.format(title=escape(TITLE), action=escape(action, quote=True), xsrf=xsrf_form_html, error=shown)


def login_handler_class() -> type:
    """Voilà's login handler with this page (the POST side, token check and cookie, is unchanged)."""
    from tornado.escape import url_escape
    from voila.voila_identity_provider import VoilaLoginHandler

    class PanelLoginHandler(VoilaLoginHandler):
        def _render(self, message=None) -> None:
            nxt = url_escape(self.get_argument("next", default=self.base_url))
            error = BAD_TOKEN if message and message.get("error") else None
            self.set_header("Cache-Control", "no-store")
            self.write(login_page(f"{self.base_url}login?next={nxt}", self.xsrf_form_html(), error))

    return PanelLoginHandler
