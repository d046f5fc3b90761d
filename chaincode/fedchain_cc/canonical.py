"""Canonical JSON and SHA-256 inside the chaincode: the one definition every part of it writes with.

Canonical here means: keys sorted, compact separators (",", ":"), encoded as UTF-8 with non-ASCII
characters written as themselves (``ensure_ascii=False``), not as ``\\u`` escapes. Why one definition:
every endorser must produce the same bytes for the same record, or the read/write sets (and results)
of the peers differ and the transaction fails its endorsement policy. Why UTF-8 and not ASCII: these are
the bytes already stored in every world-state record, result payload and event of the ledger; changing
them would change every stored value and its history.

This is NOT the SDK's `fedchain.canonical` (ASCII only): the chaincode is deployed alone and must not
import `fedchain` (DESIGN.md §1). The two agree byte for byte on ASCII-only values.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_text(value: Any, *, ascii_only: bool = False) -> str:
    """Sorted keys, compact separators; non-ASCII kept as is unless `ascii_only` (then ``\\u`` escapes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only)


def canonical_bytes(value: Any) -> bytes:
    """What the chaincode stores and returns: `canonical_text` in UTF-8 (see the module docstring)."""
    return canonical_text(value).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256: the form every hash on the ledger takes."""
    return hashlib.sha256(data).hexdigest()
