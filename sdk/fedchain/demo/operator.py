"""The demo's operator: the campaign's (fedchain.campaign.ledger), under the names the demo used.

The operator's actions (genesis, FLTrust reference, create/close, waiting for the MPC nodes) live in
fedchain.campaign, shared with `fedchain operator run`; this module keeps the old import paths.
"""

from __future__ import annotations

from fedchain.campaign.ledger import (
    OperatorLedger,
    RoundDisputed,
    publish_reference,
    reference_dirs,
    retry_mvcc,
)


class Operator(OperatorLedger):
    """Operator actions through its own gateway connection (see OperatorLedger)."""


__all__ = ["Operator", "RoundDisputed", "publish_reference", "reference_dirs", "retry_mvcc"]
