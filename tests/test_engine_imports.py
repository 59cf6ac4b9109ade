"""§7 speed: what the notebook runner process imports (papermill once, without dead weight)."""
from __future__ import annotations

import subprocess
import sys

from support import REPO

PROBE = f"""
import sys
import tradebook.engine.pmengine  # papermill, nbformat, jsonschema
skipped = 'rfc3987_syntax' not in sys.modules
import nbformat
nb = nbformat.read({str(REPO / 'notebooks' / 'report.ipynb')!r}, as_version=4)
nbformat.validate(nb)
bad = nbformat.from_dict({{**nb, 'cells': [{{'cell_type': 'code', 'source': 'x'}}]}})
try:
    nbformat.validate(bad)
    print('invalid notebook passed')
except nbformat.ValidationError:
    pass
import importlib.util
later = importlib.util.find_spec('rfc3987_syntax') is None or bool(__import__('rfc3987_syntax'))
print('skipped' if skipped else 'imported', 'importable-later' if later else 'blocked-later')
"""


def test_runner_import_when_papermill_loaded_then_rfc3987_grammar_skipped_and_notebooks_still_validated():
    """§7: the runner's one-off papermill import skips jsonschema's IRI grammar (~2 s), which no
    notebook validation uses; validation still refuses a malformed notebook, and the module stays
    importable for anyone who needs it later."""
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["skipped", "importable-later"], out.stdout + out.stderr
