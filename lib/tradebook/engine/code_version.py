"""Which code ran: the version recorded with every run (``runs.code_version``).

``git:<commit>`` when the library is a git checkout whose library sources match that
commit; ``git:<commit>+src:<hash>`` when they were edited since; ``src:<hash>`` outside
git (an installed wheel, a copied tree). ``<hash>`` is a SHA-256 of every ``.py`` file
of the package (relative path and bytes), so any library edit changes the version even
where git cannot tell. Kernels never run stale code: the kernel pool discards warm
kernels when these sources change (tradebook.engine.kernelpool).
"""
from __future__ import annotations

import hashlib
import subprocess
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
GIT_TIMEOUT_S = 2.0


def code_version(package_dir: Path | None = None) -> str:
    """The code version of the library at ``package_dir`` (default: this tradebook package)."""
    folder = Path(package_dir or PACKAGE_DIR).resolve()
    files = tuple(sorted(folder.rglob("*.py")))
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    return _version(folder, stamp)


@lru_cache(maxsize=8)
def _version(folder: Path, stamp: tuple) -> str:
    # ``stamp`` (path, mtime, size per file) is the cache key: an edit recomputes.
    source = source_hash(folder)
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return f"src:{source}"
    dirty = _git(folder, "status", "--porcelain", "--untracked-files=all", "--", ".")
    return f"git:{commit[:12]}" + (f"+src:{source}" if dirty else "")


def source_hash(folder: Path) -> str:
    """SHA-256 (first 16 hex digits) over the relative path and bytes of every .py file under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _git(folder: Path, *args: str) -> str | None:
    """git's trimmed output run in ``folder``; None outside a work tree or without git."""
    try:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
