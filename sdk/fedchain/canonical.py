"""Canonical JSON and SHA-256 for everything the SDK and the MPC nodes hash, sign or send as a ledger argument.

One definition, because a hash or signature over JSON is only checkable when both ends write the same
bytes: receipts (hospital ↔ node), transaction arguments (client → chaincode), model/training specs and
policies (their hashes go on the ledger), the nodes' round reports (report_hash on the ledger).

Canonical here means: keys sorted, no spaces, ASCII only (non-ASCII as \\u escapes). ASCII because it is
the same bytes whatever the locale or Python build, and it is what every receipt and report signed so far
used. The chaincode has its own copy (`fedchain_cc.canonical.canonical_bytes`, UTF-8): it is deployed alone and
must not import `fedchain` (DESIGN §1), and its state records are stored as UTF-8 — changing that would
change every stored value and its history.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_text(value: Any) -> str:
    """Sorted keys, compact separators, ASCII only (see the module docstring for why)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical_json(value: Any) -> bytes:
    """`canonical_text` as bytes: what is hashed and signed."""
    return canonical_text(value).encode("ascii")


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256, the form every hash on the ledger takes."""
    return hashlib.sha256(data).hexdigest()
