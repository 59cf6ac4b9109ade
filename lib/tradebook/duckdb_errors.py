"""How DuckDB says a database file is locked or damaged (the texts of its exceptions).

Shared by the ledger and the SimBroker's state file, which must not import each other:
a broker never imports the ledger (docs/architecture.md).
"""
from __future__ import annotations

LOCK_MARKERS = ("Could not set lock", "Conflicting lock")
CORRUPT_MARKERS = ("not a valid DuckDB database", "Corrupt", "corrupt", "checksum",
                   "Serialization Error", "INTERNAL Error",
                   "Could not read enough bytes")  # a block past the end of a truncated file (OPS-7)

