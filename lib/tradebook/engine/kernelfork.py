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
zygote's expensive imports happen in :func:`serve`. The parent's side (starting the server,
asking it for kernels, watching them) is :mod:`tradebook.engine.zygote`.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from typing import Iterable, NoReturn

FORK_SUPPORTED = sys.platform.startswith("linux") and hasattr(os, "fork")
PER_KERNEL = "+"   # warm-up spec prefix: run in each kernel after the fork, never in the fork server
# What every ipykernel imports while it starts (debugpy alone is ~0.3 s); none starts a thread.
KERNEL_MODULES = ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.debugger",
                  "IPython.core.completerlib", "IPython.core.debugger", "IPython.extensions.storemagic",
                  "sqlite3")


def serve(req_fd: int, resp_fd: int, warm_modules: list[str]) -> None:
    """Zygote main loop: import once, then fork one fresh kernel per request."""
    # ipykernel sets this at start-up unless the user chose a backend; do it before any
    # warm import so a matplotlib imported here resolves the backend a kernel would.
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # debugpy's "frozen modules" notice, printed at import: once per fork server is enough
    # (kernels get their own environment back, this variable is the server's only).
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    warm_up(KERNEL_MODULES)  # the point: pay the kernel's own imports once
    failed = warm_up(s for s in warm_modules if not s.startswith(PER_KERNEL))
    per_kernel = [s for s in warm_modules if s.startswith(PER_KERNEL)]
    # SIG_IGN: the OS reaps exited children (no zombies); each child restores SIG_DFL.
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
            _become_kernel(request, (req_fd, resp_fd), per_kernel)
        _write_line(resp_fd, {"pid": pid})


def warm_up(specs: Iterable[str]) -> list[str]:
    """Import each ``module`` (or call ``module:function()``); returns what failed, never raises.

    A spec starting with PER_KERNEL runs in each kernel, never in the fork server: for
    set-up that starts threads (a DuckDB instance), which must not be forked.
    """
    import importlib

    failed = []
    for spec in specs:
        name, _, function = spec.removeprefix(PER_KERNEL).partition(":")
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


def _become_kernel(request: dict, inherited_fds: tuple[int, ...], per_kernel: Iterable[str] = ()) -> NoReturn:
    """In the forked child: look like a freshly launched kernel process, then run it.

    It ends by raising SystemExit, like ``python -m ipykernel_launcher`` would, so the
    interpreter shuts down the usual way (join threads, atexit, flush, finalise); it never
    returns into the fork server's loop.
    """
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
        # A spare kernel does this while the previous notebook runs, not when its own starts.
        warm_up(per_kernel)
        # IPKernelApp read JPY_PARENT_PID into a class default when the zygote imported it.
        sys.argv = ["ipykernel_launcher", *request["args"], f"--IPKernelApp.parent_handle={os.getppid()}"]
        quiet_shutdown_race()
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
    except SystemExit:
        raise
    except BaseException:  # noqa: BLE001 - report and exit, never fall back into the zygote loop
        import traceback

        traceback.print_exc()
        raise SystemExit(1) from None
    raise SystemExit(0)


def _is_closed_socket_error(record) -> bool:
    """True for a ZMQError ENOTSOCK: a zmq socket used after it was closed."""
    import errno

    exc = record.exc_info[1] if record.exc_info else None
    return type(exc).__name__ == "ZMQError" and getattr(exc, "errno", None) == errno.ENOTSOCK


def quiet_shutdown_race() -> None:
    """Drop ipykernel's shutdown race from the kernel's log (it reached the user's terminal).

    ipykernel 7 flushes stderr after the control channel's shutdown_request, racing the close
    of its iopub thread (ipython/ipykernel#1518 fixed a sibling of this race); pyzmq then logs
    "Uncaught exception in ZMQStream callback" with an ENOTSOCK traceback, and logging that
    into the already-closed OutStream prints a second one. The notebook has finished and been
    saved by then, so the noise means nothing; any other error still gets through.
    """
    import logging

    logging.getLogger("tornado.general").addFilter(lambda record: not _is_closed_socket_error(record))


def _reseed_random_state() -> None:
    """Forked children share the zygote's RNG state; give each its own, like a new process."""
    import time

    time.tzset()  # TZ may differ from the zygote's environment
    # `random` reseeds itself after fork (os.register_at_fork); numpy's global state does not.
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        np_random.seed()


if __name__ == "__main__":  # python -m tradebook.engine.kernelfork REQ_FD RESP_FD MODULE...
    serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
