"""Parameter spaces for sweeps: value lists per parameter, the full grid or a seeded random sample.

A parameter set is a plain ``{name: value}`` dict. Its key (``set_key``) is a hash of
the set together with everything else that decides its result (strategy, symbols,
dates, gate, base params), so a resumed sweep recognises the sets already done.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import random
from typing import Any, Mapping, Sequence

from tradebook.errors import ConfigError


def parse_values(text: str) -> list[Any]:
    """``"5,10,20"`` → [5, 10, 20]; ``"20:200:10"`` → 20, 30, ..., 200 (inclusive); floats work too."""
    text = text.strip()
    if not text:
        raise ConfigError("empty value list: give values like 5,10,20 or a range like 20:200:10")
    if ":" in text:
        parts = [_number(p, text) for p in text.split(":")]
        if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
            raise ConfigError(f"range {text!r} must be start:stop:step with start <= stop and step > 0")
        start, stop, step = parts
        count = int(round((stop - start) / step + 1e-9)) + 1
        values = [start + i * step for i in range(count)]
        return [round(v, 10) if isinstance(v, float) else v for v in values]
    return [_number(p, text) for p in text.split(",") if p.strip()]


def _number(raw: str, whole: str) -> Any:
    raw = raw.strip()
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            continue
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ConfigError(f"{raw!r} in {whole!r} is not a number (or true/false)")


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["fast=5:50:5", "slow=20,50"]`` → {"fast": [...], "slow": [20, 50]}."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--grid {item!r} must look like name=values (e.g. fast=5:50:5 or rsi_entry=20,30)")
        grid[name.strip()] = parse_values(values)
    return grid


def grid_sets(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination, parameters in name order (the order sets are run and numbered)."""
    names = sorted(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def random_sets(grid: Mapping[str, Sequence[Any]], samples: int, seed: int = 0) -> list[dict[str, Any]]:
    """``samples`` distinct combinations drawn with a seeded RNG (all of them if the grid is smaller)."""
    names = sorted(grid)
    sizes = [len(grid[n]) for n in names]
    total = 1
    for s in sizes:
        total *= s
    rng = random.Random(seed)
    picks = sorted(rng.sample(range(total), min(samples, total)))
    out = []
    for flat in picks:
        combo = {}
        for name, size in zip(reversed(names), reversed(sizes)):
            flat, i = divmod(flat, size)
            combo[name] = grid[name][i]
        out.append(dict(sorted(combo.items())))
    return out


def set_key(params: Mapping[str, Any], scope: Mapping[str, Any]) -> str:
    """Stable id of one parameter set within a sweep scope (strategy, symbols, dates, gate, base)."""
    raw = json.dumps({"params": dict(params), "scope": dict(scope)}, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def params_json(params: Mapping[str, Any]) -> str:
    """The canonical JSON stored in the results table."""
    return json.dumps(dict(params), sort_keys=True, default=str)
