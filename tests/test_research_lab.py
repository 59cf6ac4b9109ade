"""`tradebook lab` (STR-1 research entry point): refuses clearly before printing a URL it cannot serve."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def test_lab_when_port_in_use_then_clear_error_and_no_url_printed(root: Path):
    """STR-1: with the port taken, `tradebook lab` used to print its URL and token (pointing at the
    other server) and then fail in Jupyter's log; now one plain line, exit 2, no URL."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "tradebook.cli", "lab", "--no-browser", "--port", str(port)],
                             cwd=root, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "TRADEBOOK_ROOT": str(root)})
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in out.stderr and "--port" in out.stderr
    assert "token=" not in out.stdout + out.stderr and "Traceback" not in out.stderr
