"""Phase notebook files: the parameters contract, the kernelspec, the dated output path.

Plain JSON and ``ast`` only (no nbformat, no papermill) so checking a notebook is cheap
and never pulls papermill's 2 s import into a process that does not run notebooks.
"""
from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path
from typing import Any

NOTEBOOK_PARAMETERS = ("params_file", "overrides", "run_id")
_IMPORTS_PAPERMILL = re.compile(r"^\s*(import|from)\s+(papermill|scrapbook)\b", re.MULTILINE)


def validate_notebook_parameters(path: str | Path) -> list[str]:
    """Contract check (papermill only *warns* on unknown parameters); [] when the notebook is fine.

    The ``parameters`` cell must define exactly ``params_file``, ``overrides`` (a dict
    or None) and ``run_id``; the notebook needs a kernelspec, and no cell may import
    papermill (kernels stay lean; papermill lives in the runner process).
    """
    name = Path(path).name
    try:
        nb = _load(path)
    except (OSError, ValueError) as exc:
        return [f"{name}: cannot read notebook: {exc}"]
    problems = []
    if not (nb.get("metadata", {}).get("kernelspec") or {}).get("name"):
        problems.append(f"{name}: no kernelspec in the notebook metadata (papermill needs one)")
    cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"{name}: needs exactly one code cell tagged 'parameters', found {len(tagged)}")
    else:
        problems.extend(f"{name}: {p}" for p in _parameter_problems(_source(tagged[0])))
    for index, cell in enumerate(cells):
        if _IMPORTS_PAPERMILL.search(_source(cell)):
            problems.append(f"{name}: code cell {index} imports papermill/scrapbook; the kernel must not")
    return problems


def _parameter_problems(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"parameters cell is not valid Python: {exc.msg} (line {exc.lineno})"]
    values: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    values[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            values[node.target.id] = node.value
    problems = [f"parameters cell does not define {p!r}" for p in NOTEBOOK_PARAMETERS if p not in values]
    problems += [f"parameters cell defines {p!r}, which the runner never sets (only "
                 f"{', '.join(NOTEBOOK_PARAMETERS)})" for p in values if p not in NOTEBOOK_PARAMETERS]
    if "overrides" in values and not _is_dict_or_none(values["overrides"]):
        problems.append("parameters cell: 'overrides' default must be a dict literal or None")
    return problems


def _is_dict_or_none(node: ast.expr) -> bool:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict" and not node.args
    return value is None or isinstance(value, dict)


def notebook_kernel_name(path: str | Path, default: str = "python3") -> str:
    """The kernelspec name papermill will ask for."""
    return (_load(path).get("metadata", {}).get("kernelspec") or {}).get("name") or default


def reserve_output(folder: Path, stem: str) -> Path:
    """Create ``folder/stem.ipynb`` atomically, or ``stem-2.ipynb``, ... if taken."""
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        path = folder / (f"{stem}.ipynb" if attempt == 1 else f"{stem}-{attempt}.ipynb")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"999 notebooks named {stem} already in {folder}")


def _load(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def printed_summary(path: str | Path, phase: str) -> str | None:
    """The phase's summary line as the executed notebook printed it (``<phase> @ …``), if any.

    The CLI shows it next to the run status: a run can be OK while every order was refused.
    """
    try:
        nb = _load(path)
    except (OSError, ValueError):
        return None
    # reconcile/execute print "<phase> @ <time>: ...", decide "decide <day> @ <time>: ...",
    # report "report <day> · ..."; the "<phase> · mode=..." header line is not a summary.
    summary = re.compile(rf"{re.escape(phase)} (@ |\d{{4}}-\d{{2}}-\d{{2}} [@·] )")
    lines = [line for cell in nb.get("cells", []) for out in cell.get("outputs", ())
             if out.get("output_type") == "stream" and out.get("name") == "stdout"
             for line in "".join(out.get("text", "")).splitlines() if summary.match(line)]
    return lines[-1] if lines else None
