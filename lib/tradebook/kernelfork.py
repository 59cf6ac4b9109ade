"""A fork server for Jupyter kernels (Linux): pay the kernel's imports once, not per notebook.

A plain ``python -m ipykernel_launcher`` spends ~1.3 s of CPU before it runs the first
cell (IPython + ipykernel ~0.4 s, tradebook/pandas/duckdb ~0.7 s, app set-up ~0.2 s).
On a 2-core machine that alone caps a demo at ~1 notebook per second. The zygote here is
a process that imports those modules once, never runs user code, and forks a child per
kernel request; the child becomes a brand-new ipykernel (own pid, own session, own
namespace), exactly what ``python -m ipykernel_launcher -f <conn>`` would have started,
minus the import time. Nothing that ran a notebook is ever forked or reused.

What a forked kernel shares with its siblings, and how that is kept harmless: the
modules imported (plus zero-argument cache builders such as the session table) -- code
and static data only; the RNG state (``random`` reseeds itself after fork, numpy's global
state is reseeded here); the str hash seed (fixed per interpreter, so set iteration order
matches across kernels; nothing may depend on it anyway). The environment, cwd, argv,
process group and parent pid are those the kernel manager asked for.

Protocol: the parent writes one JSON line ``{"args", "env", "cwd"}`` per kernel to the
request pipe; the zygote answers ``{"pid": n}`` (or ``{"error": "..."}``) on the reply
pipe. The zygote exits when the request pipe closes. Stdlib only at import time: the
zygote's expensive imports happen in :func:`serve`.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

FORK_SUPPORTED = sys.platform.startswith("linux") and hasattr(os, "fork")


class ZygoteError(RuntimeError):
    """The fork server is gone or refused: start kernels the ordinary way instead."""


def serve(req_fd: int, resp_fd: int, warm_modules: list[str]) -> None:
    """Zygote main loop: import once, then fork one fresh kernel per request."""
    # ipykernel sets this at start-up unless the user chose a backend; do it before any
    # warm import so a matplotlib imported here resolves the backend a kernel would.
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    import ipykernel.kernelapp  # noqa: F401  (the point: pay this import once)

    failed = warm_up(warm_modules)
    # Children are reaped by the kernel (SIG_IGN = no zombies); each child restores SIG_DFL.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    import gc

    gc.freeze()  # the children's GC then never touches (and copies) the shared, imported objects
    # Raw fds, no file objects: a forked child closes them and nothing can flush into them later.
    _write_line(resp_fd, {"ready": os.getpid(), "failed": failed})
    for request in _read_lines(req_fd):
        try:
            pid = os.fork()
        except OSError as exc:
            _write_line(resp_fd, {"error": f"fork failed: {exc}"})
            continue
        if pid == 0:
            _become_kernel(request, (req_fd, resp_fd))
        _write_line(resp_fd, {"pid": pid})


def warm_up(specs: Iterable[str]) -> list[str]:
    """Import each ``module`` (or call ``module:function()``); returns what failed, never raises."""
    import importlib

    failed = []
    for spec in specs:
        name, _, function = spec.partition(":")
        try:
            module = importlib.import_module(name)
            if function:
                getattr(module, function)()
        except Exception as exc:  # the notebook's own import will report it properly
            failed.append(f"{spec}: {type(exc).__name__}")
    return failed


def _read_lines(fd: int):
    buffer = b""
    while True:
        while b"\n" not in buffer:
            chunk = os.read(fd, 65536)
            if not chunk:
                return  # the parent closed the pipe (or died): stop serving
            buffer += chunk
        line, _, buffer = buffer.partition(b"\n")
        yield json.loads(line)


def _write_line(fd: int, message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _become_kernel(request: dict, inherited_fds: tuple[int, ...]) -> None:
    """In the forked child: look like a freshly launched kernel process, then run it."""
    code = 1
    try:
        for fd in inherited_fds:
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()  # own process group, as jupyter_client's launcher does (interrupts)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["JPY_PARENT_PID"] = str(os.getppid())  # the poller exits if we are orphaned
        _reseed_random_state()
        # IPKernelApp read JPY_PARENT_PID into a class default when the zygote imported it.
        sys.argv = ["ipykernel_launcher", *request["args"], f"--IPKernelApp.parent_handle={os.getppid()}"]
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - report and exit, never fall back into the zygote loop
        import traceback

        traceback.print_exc()
    finally:
        _exit_child(code)


def _reseed_random_state() -> None:
    """Forked children share the zygote's RNG state; give each its own, like a new process."""
    import time

    time.tzset()  # TZ may differ from the zygote's environment
    # `random` reseeds itself after fork (os.register_at_fork); numpy's global state does not.
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        np_random.seed()


def _exit_child(code: int) -> None:
    import atexit

    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


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
            alive = _pid_alive(self.pid)
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the parent's side ------------------------------------------------------------------
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
            self.process = ForkedProcess(pid)
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
        cmd = [sys.executable, "-m", "tradebook.kernelfork", str(req_r), str(resp_w), *warm_modules]
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
            self.ready = self._read()
        return self.ready is not None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def fork(self, args: list[str], env: dict[str, str], cwd: str) -> int:
        """Ask for one new kernel process; returns its pid."""
        if self.ready is None:
            self.ready = self._read()
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


if __name__ == "__main__":  # python -m tradebook.kernelfork REQ_FD RESP_FD MODULE...
    serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
