"""World state, key history and the transaction-id index in SQLite.

One SQLite transaction per block, carrying the savepoint (last block applied), so state
is always exactly "all blocks up to N": after a crash the ledger replays blocks > N.
Readers (simulations, queries) use their own connection per thread; WAL lets them read
while the committer writes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    block INTEGER NOT NULL, txnum INTEGER NOT NULL, PRIMARY KEY (ns, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (ns TEXT NOT NULL, key TEXT NOT NULL, block INTEGER NOT NULL,
    txnum INTEGER NOT NULL, tx_id TEXT NOT NULL, value BLOB, is_delete INTEGER NOT NULL,
    ts_seconds INTEGER NOT NULL, ts_nanos INTEGER NOT NULL, PRIMARY KEY (ns, key, block, txnum)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS txids (tx_id TEXT PRIMARY KEY, block INTEGER NOT NULL, txnum INTEGER NOT NULL,
    code INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
"""

Version = tuple[int, int]


@dataclass(frozen=True)
class Write:
    ns: str
    key: str
    value: bytes | None  # None = delete
    txnum: int
    tx_id: str
    ts: tuple[int, int]  # (seconds, nanos) of the transaction's timestamp


class StateDB:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._write_lock = threading.Lock()
        conn = self._conn()
        conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # blocks.bin is the durable record; state is replayable
            self._local.conn = conn
        return conn

    # --- reads ----------------------------------------------------------------
    def get(self, ns: str, key: str) -> tuple[bytes, Version] | None:
        row = self._conn().execute("SELECT value, block, txnum FROM state WHERE ns=? AND key=?", (ns, key)).fetchone()
        return None if row is None else (bytes(row[0]), (row[1], row[2]))

    def version(self, ns: str, key: str) -> Version | None:
        row = self._conn().execute("SELECT block, txnum FROM state WHERE ns=? AND key=?", (ns, key)).fetchone()
        return None if row is None else (row[0], row[1])

    def range(self, ns: str, start: str, end: str, limit: int) -> list[tuple[str, bytes, Version]]:
        """Keys in [start, end) in byte order; end "" = unbounded (Fabric's semantics)."""
        if end:
            rows = self._conn().execute(
                "SELECT key, value, block, txnum FROM state WHERE ns=? AND key>=? AND key<? ORDER BY key LIMIT ?",
                (ns, start, end, limit)).fetchall()
        else:
            rows = self._conn().execute(
                "SELECT key, value, block, txnum FROM state WHERE ns=? AND key>=? ORDER BY key LIMIT ?",
                (ns, start, limit)).fetchall()
        return [(r[0], bytes(r[1]), (r[2], r[3])) for r in rows]

    def history(self, ns: str, key: str, limit: int) -> list[tuple[str, bytes, bool, int, int]]:
        """(tx_id, value, is_delete, seconds, nanos), newest first like Fabric's history DB."""
        rows = self._conn().execute(
            "SELECT tx_id, value, is_delete, ts_seconds, ts_nanos FROM history WHERE ns=? AND key=? "
            "ORDER BY block DESC, txnum DESC LIMIT ?", (ns, key, limit)).fetchall()
        return [(r[0], bytes(r[1] or b""), bool(r[2]), r[3], r[4]) for r in rows]

    def tx_status(self, tx_id: str) -> tuple[int, int, int] | None:
        """(validation code, block, txnum) of the first transaction with this id on the ledger."""
        row = self._conn().execute("SELECT code, block, txnum FROM txids WHERE tx_id=?", (tx_id,)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def savepoint(self) -> int:
        row = self._conn().execute("SELECT v FROM meta WHERE k='savepoint'").fetchone()
        return -1 if row is None else int(row[0])

    # --- full scans for the start-up integrity check (rows stream; values are not collected) ---------
    def scan_state(self) -> Iterator[tuple[str, str, bytes, int, int]]:
        """(ns, key, value, block, txnum) of every key, in key order."""
        yield from self._conn().execute("SELECT ns, key, value, block, txnum FROM state ORDER BY ns, key")

    def scan_history(self) -> Iterator[tuple[str, str, int, int, str, bytes | None, int, int, int]]:
        """(ns, key, block, txnum, tx_id, value, is_delete, ts_seconds, ts_nanos), grouped by key, oldest first."""
        yield from self._conn().execute(
            "SELECT ns, key, block, txnum, tx_id, value, is_delete, ts_seconds, ts_nanos FROM history "
            "ORDER BY ns, key, block, txnum")

    def scan_txids(self) -> Iterator[tuple[str, int, int, int]]:
        """(tx_id, block, txnum, code) of every indexed transaction."""
        yield from self._conn().execute("SELECT tx_id, block, txnum, code FROM txids ORDER BY tx_id")

    # --- the committer's single write path -----------------------------------------
    def apply_block(self, block: int, writes: Iterable[Write], txids: Iterable[tuple[str, int, int]]) -> None:
        """State, history, tx ids and savepoint of one block, atomically."""
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for w in writes:
                    if w.value is None:
                        conn.execute("DELETE FROM state WHERE ns=? AND key=?", (w.ns, w.key))
                    else:
                        conn.execute("INSERT OR REPLACE INTO state VALUES (?,?,?,?,?)",
                                     (w.ns, w.key, w.value, block, w.txnum))
                    conn.execute("INSERT OR REPLACE INTO history VALUES (?,?,?,?,?,?,?,?,?)",
                                 (w.ns, w.key, block, w.txnum, w.tx_id, w.value, int(w.value is None), w.ts[0], w.ts[1]))
                conn.executemany("INSERT OR IGNORE INTO txids VALUES (?,?,?,?)",
                                 [(t, block, n, code) for t, n, code in txids])
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('savepoint', ?)", (block,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
