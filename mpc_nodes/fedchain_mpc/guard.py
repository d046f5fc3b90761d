"""The node's memory of the ledger: refuse to act on a ledger that went backwards or forked.

A node that processed round 3 and then finds a ledger where round 3 is OPEN again (the ledger
was restored from an older copy) must not silently skip it (the round would stay CLOSED forever
and wedge the network), nor run it again as if nothing happened. It stops acting, says so loudly
in its log and in every intake refusal, and resumes by itself when the ledger it knew is back.
Two checks: the ledger watermark (highest block and its hash, `fedchain.gateway.watermark`) and,
per round, the transaction that created it (`created_tx_id`), which the node records.
"""

from __future__ import annotations

import logging
import threading

from fedchain.gateway.watermark import HeadSource, LedgerRollback, LedgerWatermark
from fedchain.records import Round, RoundId

log = logging.getLogger(__name__)


class LedgerMismatch(Exception):
    """The ledger differs from what this node already saw: nothing is done on it."""


class LedgerGuard:
    """Checks the watermark; remembers the last refusal so the intake can answer without a ledger call."""

    def __init__(self, watermark: LedgerWatermark, source: HeadSource) -> None:
        self.watermark = watermark
        self.source = source
        self._lock = threading.Lock()
        self.failure: str | None = None

    def check(self) -> None:
        """Raise LedgerMismatch if the ledger went backwards or forked; other errors (unreachable) pass through."""
        try:
            self.watermark.check(self.source)
        except LedgerRollback as exc:
            message = self.watermark.explain(exc)
            with self._lock:
                if message != self.failure:
                    log.error("REFUSING THE LEDGER: %s", message)
                self.failure = message
            raise LedgerMismatch(message) from None
        with self._lock:
            if self.failure is not None:
                log.warning("the ledger this node knew is back; resuming")
            self.failure = None


def check_same_round(round_id: RoundId, recorded_tx_id: str | None, rnd: Round | None) -> None:
    """Raise LedgerMismatch if the ledger's round `round_id` is not the one this node recorded."""
    if not recorded_tx_id:
        return  # nothing recorded (rounds from before created_tx_id existed)
    if rnd is None:
        raise LedgerMismatch(f"round {round_id}, which this node already processed (created by transaction "
                             f"{recorded_tx_id[:16]}…), is not on the ledger any more: the ledger was rolled back")
    got = rnd.created_tx_id
    if got != recorded_tx_id:
        raise LedgerMismatch(f"round {round_id} on the ledger was created by transaction {str(got)[:16]}…, but the "
                             f"round {round_id} this node processed was created by {recorded_tx_id[:16]}…: the ledger "
                             f"was rolled back or replaced")
