"""A node's durable state: received shares, their receipts, sealed rounds, and round progress.

Layout of the node's data directory:

    shares/<round>/<hospital>.share     share file bytes exactly as received (0600)
    receipts/<round>/<hospital>.receipt the signed Receipt returned for it (resends get the same bytes)
    sealed/<round>                      marker: the round is closed at this node, no more intake
    state.sqlite                        round progress (run attempts, result, attested, published)
    events.checkpoint.json              chaincode event checkpoint (fedchain.gateway.FileCheckpoint)

Why files + fsync + rename: a receipt promises the share is stored, so the share and the
receipt are on disk (file and directory entry fsynced) before the receipt leaves the node; a
crash leaves either nothing or a complete file, never a torn one. SQLite (WAL, synchronous=FULL)
holds the small mutable state, so a restarted node resumes rounds where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedchain.canonical import sha256_hex
from fedchain.durable import write_durably
from fedchain.records import RoundId

HOSPITAL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")  # the chaincode's participant id rule


class ShareConflict(Exception):
    """A different share for a (round, hospital) that already has one."""


class RoundSealed(Exception):
    """The round is sealed at this node: it takes no more shares."""


@dataclass(frozen=True)
class StoredShare:
    round_id: RoundId
    hospital: str
    sha256: str
    path: Path


class ShareStore:
    """Shares and receipts on disk. Thread-safe; one lock per node is plenty at intake rates."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)  # shares are secret-shared data: only the node's user reads them
        for sub in ("shares", "receipts", "sealed"):
            (self.root / sub).mkdir(exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._digests: dict[Path, str] = {}  # shares never change once written: hash each file once

    def _share_path(self, round_id: RoundId, hospital: str) -> Path:
        if not HOSPITAL_RE.match(hospital):
            raise ValueError(f"hospital id {hospital[:70]!r} is not a participant id")
        return self.root / "shares" / str(round_id) / f"{hospital}.share"

    def _receipt_path(self, round_id: RoundId, hospital: str) -> Path:
        return self.root / "receipts" / str(round_id) / f"{hospital}.receipt"

    def _sealed_path(self, round_id: RoundId) -> Path:
        return self.root / "sealed" / str(round_id)

    def put(self, round_id: RoundId, hospital: str, data: bytes, make_receipt: Any) -> tuple[bytes, bool]:
        """Store a share and its receipt durably; returns (receipt bytes, newly stored?).

        `make_receipt(sha256) -> bytes` is called only for a new share. The same share again
        returns the stored receipt (idempotent); a different one raises ShareConflict; a
        sealed round raises RoundSealed.
        """
        path = self._share_path(round_id, hospital)
        digest = sha256_hex(data)
        with self._lock:
            if path.exists():
                have = sha256_hex(path.read_bytes())
                if have != digest:
                    raise ShareConflict(f"{hospital} already sent a different share for round {round_id} "
                                        f"(stored sha256 {have}); a share cannot be replaced")
                receipt_path = self._receipt_path(round_id, hospital)
                if receipt_path.exists():
                    return receipt_path.read_bytes(), False
                receipt = make_receipt(digest)  # crashed between share and receipt: finish the job
                write_durably(receipt_path, receipt)
                return receipt, False
            if self._sealed_path(round_id).exists():
                raise RoundSealed(f"round {round_id} is closed at this node; it takes no more shares")
            write_durably(path, data)
            self._digests[path] = digest
            receipt = make_receipt(digest)
            write_durably(self._receipt_path(round_id, hospital), receipt)
            return receipt, True

    def seal(self, round_id: RoundId) -> None:
        """No more shares for this round (done under the intake lock, so holdings are final afterwards)."""
        with self._lock:
            p = self._sealed_path(round_id)
            if not p.exists():
                write_durably(p, str(time.time()).encode())

    def is_sealed(self, round_id: RoundId) -> bool:
        return self._sealed_path(round_id).exists()

    def get(self, round_id: RoundId, hospital: str) -> bytes | None:
        path = self._share_path(round_id, hospital)
        return path.read_bytes() if path.exists() else None

    def shares(self, round_id: RoundId) -> list[StoredShare]:
        folder = self.root / "shares" / str(round_id)
        if not folder.is_dir():
            return []
        out = []
        for p in sorted(folder.glob("*.share")):
            digest = self._digests.get(p)
            if digest is None:
                digest = self._digests[p] = sha256_hex(p.read_bytes())
            out.append(StoredShare(round_id, p.stem, digest, p))
        return out

    def holdings(self, round_id: RoundId) -> dict[str, str]:
        return {s.hospital: s.sha256 for s in self.shares(round_id)}

    def path(self, round_id: RoundId, hospital: str) -> Path:
        return self._share_path(round_id, hospital)


# ------------------------------------------------------------------------------- round state
RUNNING, ATTESTED, PUBLISHED, FAILED = "running", "attested", "published", "failed"


class NodeState:
    """Round progress in SQLite: survives restarts, tells a restarted node what is left to do."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("""CREATE TABLE IF NOT EXISTS rounds (
            round_id INTEGER PRIMARY KEY, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            result TEXT, model_hash TEXT, last_error TEXT, updated_at REAL NOT NULL)""")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(rounds)")}
        if "created_tx_id" not in columns:  # state files from before the column: add it (NULL = not recorded)
            self._db.execute("ALTER TABLE rounds ADD COLUMN created_tx_id TEXT")

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get(self, round_id: RoundId) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT round_id, status, attempts, result, model_hash, last_error, updated_at, "
                                   "created_tx_id FROM rounds WHERE round_id = ?", (int(round_id),)).fetchone()
        if row is None:
            return None
        keys = ("round_id", "status", "attempts", "result", "model_hash", "last_error", "updated_at",
                "created_tx_id")
        rec = dict(zip(keys, row, strict=True))
        rec["result"] = json.loads(rec["result"]) if rec["result"] else None
        return rec

    def update(self, round_id: RoundId, status: str, **fields: Any) -> None:
        allowed = {"attempts", "result", "model_hash", "last_error"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown round state fields {sorted(bad)}")
        if "result" in fields and fields["result"] is not None:
            fields["result"] = json.dumps(fields["result"], sort_keys=True)
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO rounds (round_id, status, updated_at) VALUES (?, ?, ?)",
                       (int(round_id), status, time.time()))
            sets = ", ".join(f"{k} = ?" for k in fields)
            db.execute(f"UPDATE rounds SET status = ?, updated_at = ?{', ' + sets if sets else ''} WHERE round_id = ?",
                       (status, time.time(), *fields.values(), int(round_id)))

    def remember_creation(self, round_id: RoundId, created_tx_id: str | None) -> None:
        """Record which ledger transaction created the round this node worked on (once, never overwritten):
        a later ledger whose round of the same id has another creator is a rolled-back or replaced ledger."""
        if not created_tx_id:
            return
        with self._tx() as db:
            db.execute("UPDATE rounds SET created_tx_id = ? WHERE round_id = ? AND created_tx_id IS NULL",
                       (str(created_tx_id), int(round_id)))

    def close(self) -> None:
        with self._lock:
            self._db.close()
