"""The parent's side of the kernel fork server (:mod:`tradebook.engine.kernelfork`).

:class:`Zygote` starts the server and asks it for kernels; :func:`fork_provisioner` is a
jupyter_client provisioner that launches through it; :class:`ForkedProcess` is the
Popen-shaped handle jupyter_client needs for a process that is not our child.
"""
from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

from tradebook.engine.run_liveness import pid_alive

log = logging.getLogger("tradebook.engine.kernelpool")


class ZygoteError(RuntimeError):
    """The fork server is gone or refused: start kernels the ordinary way instead."""


class ForkedProcess:
    """The Popen-shaped handle jupyter_client's provisioner expects, for a zygote child.

    The child is the zygote's, not ours, so ``waitpid`` is impossible; a pidfd (Linux
    ≥ 5.3) tells us reliably when it exits. Exit codes are not observable: 0 is reported.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def poll(self) -> int | None:
        """None while the kernel runs, 0 once it has exited."""
        if self.returncode is not None:
            return self.returncode
        if self._pidfd is not None:
            import select

            ready, _, _ = select.select([self._pidfd], [], [], 0)
            alive = not ready
        else:
            alive = pid_alive(self.pid)
        if not alive:
            self.returncode = 0
            self._close()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"kernel {self.pid} still running")
            time.sleep(0.02)
        return 0

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signum)
            else:
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def __del__(self) -> None:
        self._close()



def fork_provisioner(km: Any, zygote: "Zygote") -> Any:
    """A LocalProvisioner whose launch asks the fork server instead of spawning python."""
    from jupyter_client.provisioning import LocalProvisioner

    class ForkProvisioner(LocalProvisioner):
        async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
            args = ipykernel_args(cmd)
            if args is None:  # not our interpreter's ipykernel: launch it the normal way
                return await super().launch_kernel(cmd, **kwargs)
            cwd = str(kwargs.get("cwd") or os.getcwd())
            pid = zygote.fork(args, dict(kwargs.get("env") or os.environ), cwd)
            self.process = ForkedProcess(pid)  # type: ignore[assignment]  # duck-types Popen
            self.pid = self.pgid = pid
            self.cwd = cwd
            return self.connection_info

    return ForkProvisioner(kernel_id=km.kernel_id, kernel_spec=km.kernel_spec, parent=km)


def ipykernel_args(cmd: list[str]) -> list[str] | None:
    """The arguments after ``-m ipykernel_launcher`` when cmd runs our own interpreter."""
    if len(cmd) < 3 or cmd[1:3] != ["-m", "ipykernel_launcher"]:
        return None
    try:
        same = os.path.samefile(cmd[0], sys.executable)
    except OSError:
        same = False
    return cmd[3:] if same else None


class Zygote:
    """Client side of the fork server: start it, ask it for kernels, stop it."""

    def __init__(self, root: Path, env: dict[str, str], warm_modules: Iterable[str], timeout_s: float = 60.0):
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        cmd = [sys.executable, "-m", "tradebook.engine.kernelfork", str(req_r), str(resp_w), *warm_modules]
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, pass_fds=(req_r, resp_w),
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        os.close(req_r)
        os.close(resp_w)
        self._req: int | None = req_w
        self._resp: int | None = resp_r
        self._buffer = b""
        self.timeout_s = timeout_s
        self.ready: dict | None = None

    def poll_ready(self) -> bool:
        """True once the server has finished its imports (never blocks; raises if it died)."""
        if self.ready is None and select.select([self._resp], [], [], 0)[0]:
            self._set_ready(self._read())
        return self.ready is not None

    def _set_ready(self, message: dict) -> None:
        self.ready = message
        if message.get("failed"):  # the notebook that imports one of these will show why
            log.info("kernel fork server could not pre-import: %s", ", ".join(message["failed"]))

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def fork(self, args: list[str], env: dict[str, str], cwd: str) -> int:
        """Ask for one new kernel process; returns its pid."""
        if self.ready is None:
            self._set_ready(self._read())
        data = (json.dumps({"args": args, "env": env, "cwd": cwd}) + "\n").encode()
        if self._req is None:
            raise ZygoteError("kernel fork server is closed")
        try:
            while data:
                data = data[os.write(self._req, data):]
        except BrokenPipeError:
            raise ZygoteError(f"kernel fork server exited (code {self.proc.poll()})") from None
        reply = self._read()
        if "pid" not in reply:
            raise ZygoteError(f"kernel fork server: {reply.get('error', reply)}")
        return int(reply["pid"])

    def _read(self) -> dict:
        if self._resp is None:
            raise ZygoteError("kernel fork server is closed")
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self._resp], [], [], self.timeout_s)
            chunk = os.read(self._resp, 65536) if ready else b""
            if not chunk:
                raise ZygoteError(f"kernel fork server did not answer (exit code {self.proc.poll()}); "
                                   "see its traceback on stderr")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def close(self) -> None:
        """Closing the request pipe ends the server's loop; kill it if it lingers."""
        for fd in (self._req, self._resp):
            if fd is not None:
                os.close(fd)
        self._req = self._resp = None
        self.proc.terminate()  # holds no state; its clean exit would only finalise modules
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
