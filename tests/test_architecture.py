"""The dependency rules of docs/architecture.md, checked on the import graph (import-linter).

The contracts live in pyproject.toml ([tool.importlinter]); imports inside functions count.
"""
from __future__ import annotations

import os
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
# table; other stores may read it (a join), nothing outside ``tradebook.ledger`` may touch it at all,
# except the read-only listings named in READ_ONLY_EXCEPTIONS (to be emptied: see docs/architecture.md).
OWNED_TABLES = {"controls": "tradebook.ledger.controls", "incidents": "tradebook.ledger.controls",
                "verdicts": "tradebook.ledger.verdicts", "intents": "tradebook.ledger.intents",
                "orders": "tradebook.ledger.orders", "equity_snapshots": "tradebook.ledger.equity",
                "cooldowns": "tradebook.ledger.cooldowns", "heartbeats": "tradebook.ledger.heartbeats",
                "closed_today": "tradebook.ledger.closed_today"}
READ_ONLY_EXCEPTIONS = {"controls": {"tradebook.report.build"}, "incidents": {"tradebook.report.build"},
                        # the report's fills listing (with each fill's intent) moves with the fills store
                        "intents": {"tradebook.report.build"},
                        "equity_snapshots": {"tradebook.report.build"}}


def _module_name(path: Path, lib: Path = REPO / "lib") -> str:
    rel = path.relative_to(lib).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _table_offenders(tables: dict[str, str], lib: Path = REPO / "lib") -> list[str]:
    import re

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
                excepted = module in READ_ONLY_EXCEPTIONS.get(table, set())
                if writes or not (in_ledger or excepted):
                    offenders.append(f"{module}: {match.group(0)}")
    return offenders


def test_ledger_tables_when_sql_searched_then_only_their_store_writes_them_and_only_ledger_reads_them():
    """One owner per ledger table: only the table's store writes it; only modules of ``tradebook.ledger``
    read it (the listed read-only exceptions aside)."""
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
TOP_LEVEL = {"cli", "demo", "nb", "dryrun", "context", "params", "sessions", "clock", "marketdata", "errors",
             "duckdb_errors"}


def test_package_when_listed_then_top_level_holds_only_the_face_and_shared_modules():
    """A new module goes into its part's folder (docs/architecture.md), not next to cli.py."""
    top = {p.stem for p in (REPO / "lib" / "tradebook").glob("*.py")} - {"__init__"}
    assert top <= TOP_LEVEL, f"modules outside the folders: {sorted(top - TOP_LEVEL)}"
