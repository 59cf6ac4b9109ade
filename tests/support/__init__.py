"""Helpers the tests share (fixtures are in ``tests/conftest.py``, which uses these).

- ``trading``: a context on a temp root (SimBroker + ledger), positions, intents, the calendar of
  the trading-core tests;
- ``notebook_fixture``: the small project state the notebook regression run (nbval) executes
  against (``python tests/support/notebook_fixture.py --refresh`` re-stores the outputs);
- ``alpaca_contract``: Alpaca's published contract, checked on every answer of the loopback fake;
- ``webhook``: a local JSON webhook receiver (the far end of Apprise's ``json://`` URLs).
"""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
