"""Append-only block file: the ledger's source of truth.

Each record is a 4-byte big-endian length and a serialized common.Block. A block is
fsync'ed before anyone is told it committed; a torn record at the tail (crash mid-write,
never reported) is cut off at open. Corruption anywhere else is the caller's to detect
by verifying the hash chain (blocks are opaque bytes here).
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
from pathlib import Path

log = logging.getLogger(__name__)
_LEN = struct.Struct(">I")


class LedgerInUse(OSError):
    """Another process has this block file open for writing."""


class BlockStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:  # one writer per ledger; the kernel drops the lock when the holder dies, even by SIGKILL
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise LedgerInUse(f"ledger {path} is in use by another devnet process") from None
        if created:  # make the new file's directory entry durable too
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._lock = threading.Lock()
        self._offsets: list[tuple[int, int]] = []  # (offset of the block bytes, length)
        self._scan()

    def _scan(self) -> None:
        size = os.fstat(self._fd).st_size
        pos = 0
        while pos + _LEN.size <= size:
            (n,) = _LEN.unpack(os.pread(self._fd, _LEN.size, pos))
            if pos + _LEN.size + n > size:
                break
            self._offsets.append((pos + _LEN.size, n))
            pos += _LEN.size + n
        if pos != size:
            log.warning("cutting a torn record of %d bytes at the end of %s (crash during append)", size - pos, self.path)
            os.ftruncate(self._fd, pos)
            os.fsync(self._fd)
        self._end = pos

    @property
    def height(self) -> int:
        return len(self._offsets)

    def append(self, block_bytes: bytes) -> int:
        """Write and fsync one block; returns its index. Durable when this returns."""
        with self._lock:
            record = _LEN.pack(len(block_bytes)) + block_bytes
            written = os.pwrite(self._fd, record, self._end)
            if written != len(record):
                raise OSError(f"short write to {self.path}")
            os.fsync(self._fd)
            self._offsets.append((self._end + _LEN.size, len(block_bytes)))
            self._end += len(record)
            return len(self._offsets) - 1

    def get(self, number: int) -> bytes:
        if not 0 <= number < len(self._offsets):
            raise IndexError(f"block {number} does not exist (height {len(self._offsets)})")
        offset, n = self._offsets[number]
        return os.pread(self._fd, n, offset)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
