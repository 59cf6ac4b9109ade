"""A kernel client that is ready to run cells: shell and iopub both connected.

jupyter_client's ``wait_for_ready`` ends with a 0.2 s iopub "flush" that only ever times
out, so every notebook paid 0.2 s of idle waiting; this handshake stops as soon as both
channels are proven. nbclient filters iopub messages by msg id, so nothing is lost.
"""
from __future__ import annotations

import time
from typing import Any


def connect_client(km: Any, *, context: Any = None, timeout_s: float = 60.0) -> Any:
    """A started client whose shell *and* iopub channels reach the kernel (stdin disabled)."""
    from jupyter_core.utils import run_sync

    kc = km.client(context=context) if context is not None else km.client()
    kc.start_channels()
    try:
        run_sync(_wait_ready)(km, kc, timeout_s)
    except BaseException:
        kc.stop_channels()
        raise
    kc.allow_stdin = False  # as nbclient: notebooks run unattended
    return kc


async def _wait_ready(km: Any, kc: Any, timeout_s: float) -> None:
    from queue import Empty

    deadline = time.monotonic() + timeout_s
    sent = {kc.kernel_info()}
    while time.monotonic() < deadline:
        try:
            reply = await kc.get_shell_msg(timeout=1.0)
        except Empty:
            if not await km.is_alive():
                raise RuntimeError("the kernel died during start-up (see its output on stderr)") from None
            sent.add(kc.kernel_info())  # resend only after silence: never fall behind the replies
            continue
        if reply["parent_header"].get("msg_id") not in sent:
            continue
        # The reply proves the shell channel; any iopub message proves the SUB socket is
        # connected (it silently drops whatever was published before it joined).
        try:
            await kc.get_iopub_msg(timeout=0.5)
            return
        except Empty:
            sent.add(kc.kernel_info())  # its busy/idle status will arrive once iopub is joined
    raise TimeoutError(f"kernel did not become ready within {timeout_s:.0f}s")
