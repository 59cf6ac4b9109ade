"""The dependency rules of docs/architecture.md, checked on the import graph (import-linter).

The contracts live in pyproject.toml ([tool.importlinter]); imports inside functions count.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from importlinter import cli as importlinter_cli

REPO = Path(__file__).resolve().parents[1]


def _lint(config: Path, capsys) -> tuple[int, str]:
    code = importlinter_cli.lint_imports(config_filename=str(config), no_cache=True, no_logo=True)
    return code, capsys.readouterr().out


def test_import_contracts_when_checked_then_every_contract_kept(capsys):
    """Safety never imports a broker; brokers never import the ledger or safety; the ledger imports no
    phase, engine or CLI; params import only errors; nothing imports the CLI or the panel."""
    code, out = _lint(REPO / "pyproject.toml", capsys)
    assert code == 0, out
    assert "BROKEN" not in out and "0 broken" in out


def test_import_contracts_when_broker_imports_ledger_inside_a_function_then_broken(tmp_path, capsys, monkeypatch):
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
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("archprobe", None)
    code, out = _lint(config, capsys)
    assert code != 0 and "archprobe.broker -> archprobe.ledger" in out
