"""What the order of blocks says about time.

Transaction timestamps are the clients' claims, but a peer endorses a proposal only when its
timestamp is within its time window of the peer's own clock, and blocks are cut in real time
order. So the latest timestamp among the VALID transactions of earlier blocks is a witness that
real time had (nearly) reached it when a later block was cut: a later transaction stamped much
earlier ran its clock backwards, and an update stamped before its round's deadline but committed
after such a witness past the deadline was back-dated (checked in audit/fl.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from fedchain.audit.chain import Finding, TxRecord

DEFAULT_TOLERANCE_S = 60.0


def _counts(rec: TxRecord) -> bool:
    return rec.code_name == "VALID" and rec.info.type_name == "ENDORSER_TRANSACTION" and rec.info.timestamp is not None


def iso(when: dt.datetime | float | None) -> str:
    if when is None:
        return "?"
    if not isinstance(when, dt.datetime):
        when = dt.datetime.fromtimestamp(float(when), dt.UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


class LedgerClock:
    """Feed transactions in chain order; `step` returns the latest-stamped VALID transaction of the
    blocks before the given one (None before there is any)."""

    def __init__(self) -> None:
        self._witness: TxRecord | None = None  # over finished blocks
        self._block_best: TxRecord | None = None  # within the current block
        self._block = -1

    def step(self, rec: TxRecord) -> TxRecord | None:
        if rec.block != self._block:
            self._witness = _later(self._witness, self._block_best)
            self._block_best, self._block = None, rec.block
        witness = self._witness
        if _counts(rec):
            self._block_best = _later(self._block_best, rec)
        return witness


def _later(a: TxRecord | None, b: TxRecord | None) -> TxRecord | None:
    if a is None or b is None:
        return a or b
    assert a.info.timestamp is not None and b.info.timestamp is not None
    return b if b.info.timestamp > a.info.timestamp else a


def backwards_timestamps(transactions: Iterable[TxRecord], tolerance_s: float = DEFAULT_TOLERANCE_S) -> list[Finding]:
    """VALID transactions stamped more than `tolerance_s` before a transaction of an earlier block."""
    clock, out = LedgerClock(), []
    for rec in transactions:
        witness = clock.step(rec)
        if witness is None or not _counts(rec):
            continue
        assert rec.info.timestamp is not None and witness.info.timestamp is not None
        lag = (witness.info.timestamp - rec.info.timestamp).total_seconds()
        if lag > tolerance_s:
            out.append(Finding(rec.block, rec.info.tx_id, (
                f"timestamp {iso(rec.info.timestamp)} runs backwards: block {witness.block} already held tx "
                f"{witness.info.tx_id} stamped {iso(witness.info.timestamp)}, {lag:.0f} s later (tolerance "
                f"{tolerance_s:g} s)")))
    return out
