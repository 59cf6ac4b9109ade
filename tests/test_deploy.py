"""deploy/: the systemd unit points at documentation that exists in the repository (OPS-4)."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALL = "/opt/tradebook/"   # where the unit expects the checkout (see its install notes)


def test_service_documentation_when_read_then_every_linked_file_exists():
    """Before: Documentation= named docs/operations.md, which does not exist."""
    unit = (REPO / "deploy" / "tradebook.service").read_text()
    line = next(x for x in unit.splitlines() if x.startswith("Documentation="))
    links = re.findall(r"file://(\S+)", line)
    assert links and all(link.startswith(INSTALL) for link in links)
    missing = [link for link in links if not (REPO / link[len(INSTALL):]).is_file()]
    assert not missing, f"the unit links to files that do not exist: {missing}"
