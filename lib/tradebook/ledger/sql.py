"""Small pieces the store modules share when they build a statement (no imports: cheap for every store)."""
from __future__ import annotations

from typing import Sized


def marks(items: Sized) -> str:
    """``?, ?, ?``: one parameter placeholder per item, for ``IN (...)`` and ``VALUES (...)``."""
    return ", ".join("?" * len(items))
