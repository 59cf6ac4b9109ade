"""The dependency rules of docs/architecture.md, checked on the import graph (import-linter).

The contracts live in pyproject.toml ([tool.importlinter]); imports inside functions count.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# In a subprocess: import-linter configures logging (disabling loggers that exist), which
# would silence other tests' caplog checks in this process.
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))")


def _lint(config: Path, *extra_path: Path) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, extra_path), *sys.path])}
    done = subprocess.run([sys.executable, "-c", LINT, str(config)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)
    return done.returncode, done.stdout + done.stderr


def test_import_contracts_when_checked_then_every_contract_kept():
    """Safety never imports a broker; brokers never import the ledger or safety; the ledger imports no
    phase, engine or CLI; params import only errors; nothing imports the CLI or the panel."""
    code, out = _lint(REPO / "pyproject.toml")
    assert code == 0, out
    assert "BROKEN" not in out and "0 broken" in out


def test_import_contracts_when_safety_imports_ops_inside_a_function_then_layers_broken(tmp_path):
    """The real contracts, on a copy of the library with one back-reference put back (safety reaching up to
    ``ops`` inside a function, as ``controls`` once did for alerts): the layers contract must break."""
    import shutil

    lib = tmp_path / "lib"
    shutil.copytree(REPO / "lib" / "tradebook", lib / "tradebook", ignore=shutil.ignore_patterns("__pycache__"))
    probe = lib / "tradebook" / "safety" / "controls.py"
    probe.write_text(probe.read_text() + "\n\ndef _probe():\n    from tradebook.ops import daemon\n    return daemon\n")
    code, out = _lint(REPO / "pyproject.toml", lib)
    assert code != 0 and "tradebook.safety.controls -> tradebook.ops.daemon" in out, out


def _layer_packages() -> set[str]:
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    return {name.strip().removeprefix("tradebook.") for layer in layers for name in layer.replace("|", ":").split(":")}


def _shared_packages() -> set[str]:
    """The shared modules (params, errors, ...): below every part, kept there by their own contract."""
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    shared = next(c for c in contracts if c["id"] == "shared-below-parts")["source_modules"]
    return {name.removeprefix("tradebook.") for name in shared}


def test_layers_when_listed_then_every_folder_of_the_library_is_in_a_layer():
    """A new folder (part) joins the layering on purpose: none escapes the layers contract, unless it is
    a shared module made a package (``params``), which the shared-below-parts contract names instead."""
    folders = {p.parent.name for p in (REPO / "lib" / "tradebook").glob("*/__init__.py")}
    known = _layer_packages() | _shared_packages()
    assert folders <= known, f"folders in no layer: {sorted(folders - known)}"


def test_import_contracts_when_broker_imports_ledger_inside_a_function_then_broken(tmp_path):
    """An import hidden in a function body is still an import: the checker must see it."""
    pkg = tmp_path / "archprobe"
    (pkg / "broker").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "ledger.py").write_text("X = 1\n")
    (pkg / "broker" / "__init__.py").write_text(textwrap.dedent("""
        def degrade():
            from archprobe import ledger
            return ledger.X
    """))
    config = tmp_path / "contracts.toml"
    config.write_text(textwrap.dedent("""
        [tool.importlinter]
        root_package = "archprobe"
        [[tool.importlinter.contracts]]
        name = "brokers never import the ledger"
        type = "forbidden"
        source_modules = ["archprobe.broker"]
        forbidden_modules = ["archprobe.ledger"]
    """))
    code, out = _lint(config, tmp_path)
    assert code != 0 and "archprobe.broker -> archprobe.ledger" in out


# Tables whose SQL lives in one store module (``tradebook.ledger.<store>``). Only the owner writes its
# table; other stores may read it (a join), nothing outside ``tradebook.ledger`` may touch it at all.
OWNED_TABLES = {"controls": "tradebook.ledger.controls", "incidents": "tradebook.ledger.controls",
                "verdicts": "tradebook.ledger.verdicts", "intents": "tradebook.ledger.intents",
                "orders": "tradebook.ledger.orders", "equity_snapshots": "tradebook.ledger.equity",
                "cooldowns": "tradebook.ledger.cooldowns", "heartbeats": "tradebook.ledger.heartbeats",
                "closed_today": "tradebook.ledger.closed_today", "positions": "tradebook.ledger.positions",
                "trades": "tradebook.ledger.trades", "fills": "tradebook.ledger.fills", "events": "tradebook.ledger.events",
                "runs": "tradebook.ledger.runs", "ledger_meta": "tradebook.ledger.meta"}


def _module_name(path: Path, lib: Path = REPO / "lib") -> str:
    rel = path.relative_to(lib).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _table_offenders(tables: dict[str, str], lib: Path = REPO / "lib") -> list[str]:
    offenders = []
    for table, owner in tables.items():
        sql = re.compile(rf"(INSERT\s+INTO|UPDATE|DELETE\s+FROM|FROM|JOIN)\s+{table}\b", re.I)
        for path in (lib / "tradebook").rglob("*.py"):
            module = _module_name(path, lib)
            if module == owner:
                continue
            for match in sql.finditer(path.read_text()):
                writes = not match.group(1).upper().startswith(("FROM", "JOIN"))
                in_ledger = module.startswith("tradebook.ledger.")
                if writes or not in_ledger:
                    offenders.append(f"{module}: {match.group(0)}")
    return offenders


def test_ledger_tables_when_sql_searched_then_only_their_store_writes_them_and_only_ledger_reads_them():
    """One owner per ledger table: only the table's store writes it; only modules of ``tradebook.ledger``
    read it."""
    assert not _table_offenders(OWNED_TABLES)


def test_table_rule_when_a_phase_writes_or_reads_an_owned_table_then_it_is_found(tmp_path):
    """The search above is not vacuous: a phase that writes ``controls`` or reads it is an offender; another
    store reading it is not."""
    (tmp_path / "tradebook" / "phases").mkdir(parents=True)
    (tmp_path / "tradebook" / "ledger").mkdir()
    (tmp_path / "tradebook" / "phases" / "probe.py").write_text(
        'W = "INSERT INTO controls (ts) VALUES (?)"\nR = "SELECT * FROM controls"\n')
    (tmp_path / "tradebook" / "ledger" / "other.py").write_text('R = "SELECT 1 FROM x JOIN controls USING (ts)"\n')
    assert _table_offenders({"controls": "tradebook.ledger.controls"}, tmp_path) == [
        "tradebook.phases.probe: INSERT INTO controls", "tradebook.phases.probe: FROM controls"]


# Folders are the architecture: only the face and what every part shares sit at the top.
TOP_LEVEL = {"demo", "nb", "dryrun", "context", "params", "sessions", "clock", "errors", "duckdb_errors",
             "logs", "alerts", "style"}


def test_package_when_listed_then_top_level_holds_only_the_face_and_shared_modules():
    """A new module goes into its part's folder (docs/architecture.md), not next to demo.py."""
    top = {p.stem for p in (REPO / "lib" / "tradebook").glob("*.py")} - {"__init__"}
    assert top <= TOP_LEVEL, f"modules outside the folders: {sorted(top - TOP_LEVEL)}"


# --- No SQL outside the ledger (issue 15, "Done when") -------------------------------------------
# SQL in lib/ lives in tradebook.ledger, except in these modules, whose SQL is not the ledger's (each its
# own DuckDB file or plain files queried through DuckDB; README "Layout" and docs/architecture.md list them).
SQL_OUTSIDE_LEDGER = {
    "tradebook.broker.sim.state": "SimBroker's own state database (the simulated venue's account and orders)",
    "tradebook.broker.sim.accept": "SimBroker's own state database: its order table, for duplicate client ids",
    "tradebook.broker.sim.store": "SimBroker's state file, attached to its connection",
    "tradebook.marketdata.store": "the market data store: Parquet files of bars read and written through DuckDB",
    "tradebook.strategies.external": "external signal files (CSV or Parquet) read through DuckDB",
    "tradebook.research.table": "the sweep results database, a file of its own (refused if it is the ledger)",
}
_SQL = re.compile(r"\b(SELECT\b[\s\S]*?\bFROM\b|INSERT\s+(OR\s+\w+\s+)?INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b"
                  r"|CREATE\s+(OR\s+REPLACE\s+)?(TEMP\s+)?(TABLE|INDEX|VIEW|SEQUENCE)\b|ALTER\s+TABLE\b"
                  r"|DROP\s+(TABLE|VIEW|INDEX)\b|WITH\s+\w+\s+AS\s*\(|COPY\s*\(|ATTACH\s|DETACH\s|PRAGMA\s)")
_TABLE_NAMED = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+(\w+)", re.I)


def _sql_strings(path: Path) -> list[str]:
    """The string literals of a module that are SQL (docstrings are prose, not SQL; f-string parts count)."""
    tree = ast.parse(path.read_text())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    texts = [_literal_text(node) for node in ast.walk(tree) if id(node) not in docs]
    return [text for text in texts if text and _SQL.search(text)]


def _literal_text(node: ast.AST) -> str | None:
    """A string literal's text; f-strings and ``+`` chains of literals joined (``{...}`` read as ``x``)."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal_text(node.left), _literal_text(node.right)
        return left + right if left is not None and right is not None else None
    return None


def _modules_with_sql(lib: Path = REPO / "lib") -> dict[str, list[str]]:
    found = {}
    for path in sorted((lib / "tradebook").rglob("*.py")):
        module = _module_name(path, lib)
        if not module.startswith("tradebook.ledger.") and (sql := _sql_strings(path)):
            found[module] = sql
    return found


def _ledger_tables() -> set[str]:
    schema = "\n".join(p.read_text() for p in (REPO / "lib" / "tradebook" / "ledger").glob("*.py"))
    return set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", schema))


def test_sql_when_searched_in_lib_then_only_the_ledger_and_the_named_non_ledger_databases_hold_it():
    """Issue 15: no SQL string outside ``tradebook.ledger`` in lib/, but for the named databases that are not
    the ledger (SimBroker's state, the data store, signal files, sweep results). The list is exact: no stale
    entry."""
    found = _modules_with_sql()
    assert set(found) - SQL_OUTSIDE_LEDGER.keys() == set(), "SQL outside tradebook.ledger"
    assert SQL_OUTSIDE_LEDGER.keys() - found.keys() == set(), "stale SQL_OUTSIDE_LEDGER entries: no SQL left"


def test_sql_when_a_named_exception_is_searched_then_it_names_no_ledger_table():
    """The exceptions are exceptions because they are not the ledger: their SQL names no ledger table."""
    tables, found = _ledger_tables(), _modules_with_sql()
    assert {"runs", "intents", "orders", "events", "controls"} <= tables   # the schema was read
    touching = {m: sorted(set(_TABLE_NAMED.findall(" ".join(found[m]))) & tables) for m in SQL_OUTSIDE_LEDGER}
    assert {m: t for m, t in touching.items() if t} == {}


def test_sql_search_when_a_phase_holds_sql_then_found_docstrings_ignored(tmp_path):
    """The search is not vacuous: an f-string or concatenated SQL literal in a phase is found, prose is not."""
    (tmp_path / "tradebook" / "phases").mkdir(parents=True)
    (tmp_path / "tradebook" / "ledger").mkdir()
    (tmp_path / "tradebook" / "phases" / "probe.py").write_text(
        '"""Writes INSERT INTO orders in prose only here."""\n'
        'def f(con, t):\n    """SELECT x FROM y, in a docstring."""\n'
        '    con.execute(f"UPDATE {t} SET a = 1")\n    return "SELECT count(*) " + "FROM orders"\n')
    (tmp_path / "tradebook" / "phases" / "prose.py").write_text('MSG = "select the rows you want from the list"\n')
    (tmp_path / "tradebook" / "ledger" / "orders.py").write_text('SQL = "DELETE FROM orders"\n')
    assert {m: len(s) for m, s in _modules_with_sql(tmp_path).items()} == {"tradebook.phases.probe": 2}
