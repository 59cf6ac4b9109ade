"""OPS-7: a damaged ledger (truncated, a bad block, cut mid-write) is found before any read or write.

Damage is made the way it happens: a copy or a disk that stopped part-way (truncation
at several sizes), a bad block (4 KiB ... 256 KiB of zeros in the middle), and a
process killed with SIGKILL while DuckDB checkpoints.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tradebook.ledger import file as ledger_file
from tradebook.ledger.backup import backup, check
from tradebook.errors import LedgerCorrupt
from tradebook.ledger import controls as control_store
from tradebook.ledger import cooldowns
from tradebook.ledger.db import Ledger

BLOCK = 262144


def big_ledger(path: Path, rows: int = 40_000) -> Ledger:
    """A ledger spanning a dozen blocks (data and primary-key index blocks), with a good backup.

    Raw bulk SQL on purpose: the subject is the file's bytes, generated in-engine in one statement
    (80,000 rows through the stores one by one would take seconds), not a trading state."""
    ledger = Ledger(path)
    with ledger.transaction() as con:
        con.execute("INSERT INTO events (ts, run_id, kind, symbol, qty, price, reason) SELECT now(), 'r' || i, "
                    "'TEST', 'AAPL', i, i * 1.5, 'reason ' || i FROM range(?) r(i)", [rows])
        con.execute("INSERT INTO trades (ts, symbol, side, qty, price, kind, realized_pnl, reason) SELECT now(), "
                    "'MSFT', 'buy', i, 2.0 * i, 'FILL', i / 3, 'fill ' || i FROM range(?) r(i)", [rows])
    backup(path)
    return ledger


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def truncate_to(fraction: float):
    def damage(path: Path) -> None:
        os.truncate(path, int(path.stat().st_size * fraction))
    damage.__name__ = f"truncated_to_{fraction:.0%}"
    return damage


def cut_mid_block(path: Path) -> None:
    os.truncate(path, path.stat().st_size - BLOCK // 2)


def headers_only(path: Path) -> None:
    os.truncate(path, 3 * 4096)


def zero_block(index: int, length: int = BLOCK):
    def damage(path: Path) -> None:
        with open(path, "r+b") as fh:
            fh.seek(3 * 4096 + index * BLOCK + 4096)
            fh.write(b"\0" * length)
    damage.__name__ = f"zeroed_{length}_bytes_in_block_{index}"
    return damage


def age(path: Path) -> None:
    """Damage that happened a while ago (a fresh file may be mid-write and is looked at twice)."""
    old = time.time() - 60
    os.utime(path, (old, old))


DAMAGE = [truncate_to(0.5), truncate_to(0.9), truncate_to(0.99), cut_mid_block, headers_only,
          zero_block(5), zero_block(10, 4096), zero_block(1, 4096)]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda d: d.__name__)
def test_open_when_ledger_damaged_then_corrupt_error_names_backup_and_bytes_unchanged(tmp_path: Path, damage):
    """OPS-7: reads and writes both refuse, name the file and the newest good backup; nothing is written."""
    path = tmp_path / "ledger.duckdb"
    big_ledger(path)
    damage(path)
    age(path)
    before = sha(path)
    def write() -> None:
        with Ledger(path).transaction() as con:
            control_store.append_control(con, datetime.now(timezone.utc), "HALTED", "x", "y", "z")

    for attempt in (lambda: Ledger(path).read(control_store.control_history), write, lambda: check(path)):
        with pytest.raises(LedgerCorrupt) as err:
            attempt()
        message = str(err.value)
        assert str(path) in message and "tradebook ledger restore" in message and "backups/ledger-" in message
    assert sha(path) == before
    assert not Path(f"{path}.wal").exists()


def test_check_when_ledger_whole_then_every_table_read_and_blocks_counted(tmp_path: Path):
    """OPS-7: `ledger check` reads every table in full and counts the blocks it verified."""
    path = tmp_path / "ledger.duckdb"
    big_ledger(path)
    result = check(path)
    assert result.counts["events"] == 40_000 and result.counts["trades"] == 40_000
    assert result.blocks_verified >= 10 and result.newest_backup is not None


def test_file_check_when_free_blocks_trimmed_or_garbage_then_still_whole(tmp_path: Path):
    """OPS-7 without false alarms: free blocks (trimmed off the end, or never rewritten) are not damage."""
    import duckdb

    path = tmp_path / "x.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t AS SELECT i AS a, repeat('x', 40) AS b FROM range(400000) r(i)")
    con.execute("CHECKPOINT")
    con.execute("DELETE FROM t WHERE a % 2 = 0")
    con.execute("CREATE TABLE u AS SELECT * FROM t")
    con.execute("DROP TABLE t")
    con.execute("CHECKPOINT")
    con.close()
    report = ledger_file.inspect(path)
    assert report.used_blocks < report.block_count  # the test needs free blocks
    whole = (report.size - 3 * 4096) // BLOCK
    free = sorted(b for b in report.free_blocks if b < whole)
    with open(path, "r+b") as fh:  # a torn write into a free block, as a crash mid-checkpoint leaves
        fh.seek(3 * 4096 + free[0] * BLOCK + 100)
        fh.write(b"\xff" * 5000)
    assert ledger_file.inspect(path).used_blocks == report.used_blocks


WRITER = r"""
import duckdb, sys
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS t (a BIGINT PRIMARY KEY, b VARCHAR)")
i = con.execute("SELECT coalesce(max(a), 0) + 1 FROM t").fetchone()[0]
while True:
    con.execute(f"INSERT INTO t SELECT {i} + x, repeat('q', (x % 60)::INT) FROM range(20000) r(x)")
    i += 20000
    print(con.execute("SELECT count(*) FROM t").fetchone()[0], flush=True)
    con.execute("CHECKPOINT")
"""


@pytest.mark.parametrize("delay_s", [0.15, 0.4, 0.9])
def test_open_when_writer_killed_mid_checkpoint_then_whole_with_every_committed_row(tmp_path: Path, delay_s):
    """OPS-7: SIGKILL while DuckDB checkpoints: the file check passes and every committed row is there.

    (DuckDB writes a checkpoint into free blocks and switches headers last; the file
    check must agree with that and not cry wolf after a crash.)
    """
    path = tmp_path / "k.duckdb"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    committed = int(proc.stdout.readline())
    time.sleep(delay_s)
    proc.kill()
    proc.wait()
    committed = max([committed] + [int(line) for line in proc.stdout.read().split()])
    ledger_file.inspect(path)
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] >= committed
    finally:
        con.close()


LEDGER_WRITER = r"""
import sys
from tradebook.ledger import events as event_store
from tradebook.ledger.db import Ledger
ledger = Ledger(sys.argv[1])
n = 0
while True:  # each transaction opens, commits and closes: DuckDB checkpoints at every close
    with ledger.transaction() as con:  # raw bulk rows on purpose: the subject is the file (see big_ledger)
        con.execute("INSERT INTO trades (ts, symbol, side, qty, price, kind, reason) SELECT now(), 'IBM', "
                    "'buy', i, 1.0 * i, 'FILL', repeat('r', 80) FROM range(3000) r(i)")
        event_store.record(con, "TEST", reason=f"batch {n}")
    n += 1
    print(n, flush=True)
"""


def test_ledger_check_when_tradebook_writer_killed_mid_checkpoint_then_ok_with_every_committed_batch(tmp_path):
    """OPS-7: SIGKILL a process writing through tradebook's Ledger (a checkpoint at every close):
    `ledger check` finds the file whole, every committed batch is there, and the next write works."""
    path = tmp_path / "ledger.duckdb"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "lib")}
    proc = subprocess.Popen([sys.executable, "-c", LEDGER_WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            env=env)
    committed = int(proc.stdout.readline())
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    committed = max([committed] + [int(line) for line in proc.stdout.read().split()])
    result = check(path)
    assert result.counts["events"] >= committed and result.counts["trades"] >= committed * 3000
    with Ledger(path).transaction() as con:  # the next write works
        cooldowns.touch(con, "IBM", datetime.now(timezone.utc))
    assert check(path).counts["cooldowns"] == 1
