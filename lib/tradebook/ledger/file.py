"""Is the ledger file whole? A byte-level check of a DuckDB file, before DuckDB opens it (OPS-7).

DuckDB verifies a block's checksum only when it reads that block, and it reads lazily:
a ledger cut to half its size opens, counts rows and takes new writes (the missing
blocks are index or data blocks nobody has read yet). So before any connection we
check the file as DuckDB laid it out (``src/storage/single_file_block_manager.cpp``):

- a 4 KiB main header (checksum, magic ``DUCK``) and two 4 KiB database headers
  (checksum, iteration, meta block, free list, block count, block size); the one
  with the higher iteration is current;
- then ``block_count`` blocks of ``block_alloc_size`` bytes, each starting with the
  checksum of the rest (``Checksum()``: XOR of every 8-byte word times a constant,
  seeded with 5381);
- the free list, stored in metadata sub-blocks from the header's ``free_list`` pointer.

Every block in use (not on the free list) must lie wholly inside the file and match
its checksum. Free blocks are skipped on purpose: DuckDB may cut trailing free
blocks off the file, and a write torn by a crash lands only in free blocks.

Nothing here imports duckdb or writes anything. The message for a damaged ledger (naming
the newest backup that passes the same check) lives here too.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HEADER_SIZE = 4096
BLOCKS_START = 3 * HEADER_SIZE
MAGIC = b"DUCK"
INVALID = 2**64 - 1
METADATA_SUB_BLOCKS = 64
CHUNK_BLOCKS = 32  # blocks checksummed at once (8 MiB of 256 KiB blocks)
_SEED = 5381
_MULT = np.uint64(0xBF58476D1CE4E5B9)


class DamagedFile(Exception):
    """The file is not a whole DuckDB database; the message says what is wrong."""


@dataclass(frozen=True)
class FileReport:
    """What the check saw: blocks in the file, in use, and verified."""

    size: int
    block_size: int
    block_count: int
    used_blocks: int
    iteration: int
    free_blocks: frozenset[int] = field(default=frozenset(), repr=False)


def checksum(words: np.ndarray) -> np.ndarray:
    """DuckDB's ``Checksum()`` of each row of 8-byte little-endian words."""
    with np.errstate(over="ignore"):
        return np.bitwise_xor.reduce(words * _MULT, axis=-1) ^ np.uint64(_SEED)


def inspect(path: str | Path) -> FileReport:
    """Check headers, free list and every used block of the DuckDB file at ``path``.

    Raises DamagedFile naming the first problem found.
    """
    # Read, never mmap'd: another process may shorten the file meanwhile (SIGBUS on a mapped page).
    data = np.fromfile(str(path), dtype=np.uint8)
    size = int(data.size)
    if size < BLOCKS_START:
        raise DamagedFile(f"the file is {size} bytes, shorter than DuckDB's headers ({BLOCKS_START} bytes)")
    raw = data[:BLOCKS_START].tobytes()
    if raw[8:12] != MAGIC:
        raise DamagedFile("the main header has no DuckDB magic bytes")
    for offset in (0, HEADER_SIZE, 2 * HEADER_SIZE):
        _check_header(raw, offset)
    header = max((struct.unpack_from("<7Q", raw, off + 8) for off in (HEADER_SIZE, 2 * HEADER_SIZE)),
                 key=lambda h: h[0])
    iteration, _meta, free_ptr, block_count, block_size = header[:5]
    if block_size < HEADER_SIZE or block_size & (block_size - 1):
        raise DamagedFile(f"the database header names an impossible block size {block_size}")
    blocks = _block_words(data, size, block_size)
    free = _free_list(blocks, free_ptr, block_size)
    used = np.setdiff1d(np.arange(block_count, dtype=np.int64), np.fromiter(free, np.int64, len(free)))
    _check_blocks(blocks, used, block_count, block_size, size)
    return FileReport(size, block_size, block_count, int(used.size), iteration, frozenset(free))


def stat_key(path: str | Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime_ns) of the file, None when it is missing: a changed key means new bytes."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _check_header(raw: bytes, offset: int) -> None:
    words = np.frombuffer(raw, dtype="<u8", count=HEADER_SIZE // 8, offset=offset)
    if int(checksum(words[1:])) != int(words[0]):
        which = "main header" if offset == 0 else f"database header {offset // HEADER_SIZE}"
        raise DamagedFile(f"the {which} fails its checksum")


def _block_words(data: np.ndarray, size: int, block_size: int) -> np.ndarray:
    """The whole blocks present in the file, one row of 8-byte words each."""
    whole = (size - BLOCKS_START) // block_size
    body = data[BLOCKS_START:BLOCKS_START + whole * block_size]
    return body.view("<u8").reshape(whole, block_size // 8)


def _check_blocks(blocks: np.ndarray, used: np.ndarray, block_count: int, block_size: int, size: int) -> None:
    missing = used[used >= blocks.shape[0]]
    if missing.size:
        need = BLOCKS_START + (int(missing.max()) + 1) * block_size
        raise DamagedFile(f"the file is truncated: {missing.size} of {block_count} blocks in use lie past its "
                          f"end ({size} bytes, needs at least {need})")
    bad = np.concatenate([np.empty(0, np.int64)] + [
        chunk[checksum(blocks[chunk][:, 1:]) != blocks[chunk][:, 0]]
        for chunk in np.array_split(used, max(1, used.size // CHUNK_BLOCKS))])  # bounded memory
    if bad.size:
        first = int(bad[0])
        raise DamagedFile(f"{bad.size} of {used.size} blocks in use fail their checksum (first: block {first} "
                          f"at byte {BLOCKS_START + first * block_size})")


def _free_list(blocks: np.ndarray, pointer: int, block_size: int) -> set[int]:
    """Block ids on the free list (and checks the metadata chain that stores it)."""
    if pointer == INVALID:
        return set()
    reader = _MetadataReader(blocks, pointer, block_size)
    free = {reader.read("<q") for _ in range(reader.read("<Q"))}
    if any(b < 0 for b in free):
        raise DamagedFile("the free list holds a negative block id")
    return free


class _MetadataReader:
    """Reads a stream spread over linked metadata sub-blocks (8-byte next pointer, then payload)."""

    def __init__(self, blocks: np.ndarray, pointer: int, block_size: int):
        self.blocks, self.next = blocks, pointer
        # MetadataManager: 64 sub-blocks per block, each (block size - 8) / 64 rounded down to 8 bytes.
        self.sub_size = ((block_size - 8) // METADATA_SUB_BLOCKS) & ~7
        self.buf = b""
        self.hops = 0

    def read(self, fmt: str) -> int:
        need = struct.calcsize(fmt)
        while len(self.buf) < need:
            self._next_sub_block()
        value = struct.unpack_from(fmt, self.buf)[0]
        self.buf = self.buf[need:]
        return value

    def _next_sub_block(self) -> None:
        block, index = self.next & ((1 << 56) - 1), self.next >> 56
        self.hops += 1
        if self.next == INVALID or block >= self.blocks.shape[0] or index >= METADATA_SUB_BLOCKS \
                or self.hops > self.blocks.shape[0] * METADATA_SUB_BLOCKS:
            raise DamagedFile("the free list points outside the file (metadata chain broken)")
        row = self.blocks[block]
        if int(checksum(row[1:])) != int(row[0]):
            raise DamagedFile(f"the metadata block {block} holding the free list fails its checksum")
        start = 8 + index * self.sub_size  # bytes into the block, after its checksum
        chunk = row.view(np.uint8)[start:start + self.sub_size].tobytes()
        self.next = struct.unpack_from("<Q", chunk)[0]
        self.buf += chunk[8:]


# --- naming the way back: the newest backup that is whole ---------------------------------------
def newest_backup(path: Path) -> Path | None:
    """The newest backup file of this ledger, if any (see ``tradebook.ledger.backup``)."""
    backups = path.parent / "backups"
    if not backups.is_dir():
        return None
    candidates = sorted(backups.glob(f"{path.stem}-*"), key=lambda p: p.name)
    return candidates[-1] if candidates else None


def newest_good_backup(path: Path) -> Path | None:
    """The newest backup whose bytes pass the OPS-7 file check (a damaged backup is never offered)."""
    backups = path.parent / "backups"
    if not backups.is_dir():
        return None
    for candidate in sorted(backups.glob(f"{path.stem}-*"), key=lambda p: p.name, reverse=True):
        try:
            if candidate.is_file():
                inspect(candidate)
                return candidate
        except (DamagedFile, OSError):
            continue
    return None


def corrupt_message(path: Path, detail: str = "") -> str:
    """The one message every command gives for a damaged ledger: the file, what is wrong, the backup."""
    backup = newest_good_backup(path)
    hint = (f"restore the newest good backup with `tradebook ledger restore {backup}`" if backup
            else "no good backup was found under runs/backups; move the file aside to start a new ledger "
                 "only if you accept losing its history")
    extra = f" ({detail.splitlines()[0][:200]})" if detail else ""
    return (f"ledger {path} is corrupt or damaged{extra}; {hint}. Nothing was written to it. "
            "`tradebook halt` and `tradebook flatten` still work without it.")


# --- once per process and per change of the file ------------------------------------------------
_trusted: dict[str, tuple[int, int, int]] = {}
RECENT_WRITE_S = 1.0  # a file this fresh may be mid-write by another process: look again before judging


def check_once(path: str | Path) -> str | None:
    """Inspect the file unless this process already found these exact bytes whole.

    Returns None when whole (or missing), "busy" when the file changed while it was
    read (another process is writing: try again), else the damage found. A damaged
    verdict needs the file unchanged across the whole read, so a concurrent writer
    is never mistaken for damage.
    """
    key = str(Path(path).resolve())
    before = stat_key(path)
    if before is None or _trusted.get(key) == before:
        return None
    try:
        inspect(path)
        problem = None
    except DamagedFile as exc:
        problem = str(exc)
    except OSError as exc:
        problem = f"cannot read the file ({exc.strerror or exc})"
    after = stat_key(path)
    if after != before:
        return "busy"
    if problem is None:
        _trusted[key] = before
        return None
    if _age_s(path) < RECENT_WRITE_S:
        return "busy"
    return problem


def trust(path: str | Path) -> None:
    """Our own connection closed cleanly: DuckDB wrote these bytes, no need to re-read them."""
    key = stat_key(path)
    if key is not None:
        _trusted[str(Path(path).resolve())] = key


def forget(path: str | Path) -> None:
    _trusted.pop(str(Path(path).resolve()), None)


def _age_s(path: str | Path) -> float:
    import time

    try:
        return time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return float("inf")
