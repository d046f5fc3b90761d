"""The consortium's one-time bootstrap on a new ledger, the same on every backend.

InitConsortium fixes who the MPC nodes are, the Shamir threshold, the attestation quorum,
the privacy floor and the default verification policy; the operator registers the auditor.
Until that transaction is committed the MPC nodes wait and `fedchain demo` refuses to run
("consortium is not initialized"), so every `up` ends with it, whatever ledger is below.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from fedchain.netctl.mpc import THRESHOLD, node_name

MAX_MODEL_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ConsortiumPlan:
    """What InitConsortium writes; `min_accepted` is the privacy floor (no aggregate of fewer updates)."""

    name: str = "fedchain consortium"
    mpc_nodes: int = 3
    threshold: int = THRESHOLD
    min_accepted: int = 3
    max_model_bytes: int = MAX_MODEL_BYTES

    @property
    def quorum(self) -> int:
        """Attestations that finalize a round: the threshold + 1 nodes that can reconstruct."""
        return self.threshold + 1

    def init_args(self, wallet) -> dict:
        from fedchain.fl_client import mpc_node_entry

        return {
            "name": self.name,
            "mpc_nodes": [mpc_node_entry(node_name(i), wallet.get(node_name(i))) for i in range(self.mpc_nodes)],
            "threshold": self.threshold,
            "quorum": self.quorum,
            "default_policy": default_policy(self.min_accepted),
            "max_model_bytes": self.max_model_bytes,
            "min_accepted": self.min_accepted,
        }


def default_policy(min_accepted: int) -> dict:
    from fedchain.verification import VerificationPolicy

    return json.loads(VerificationPolicy(min_accepted=min_accepted).to_json())


LAGGING_PEER_WAIT_S = 30.0  # how long the other orgs' peers may take to commit InitConsortium


def bootstrap_ledger(directory: Path, plan: ConsortiumPlan) -> bool:
    """InitConsortium and register the auditor, as the wallet's operator, through D/network.json.

    Returns False when the ledger already has a consortium (a restart): never initialised twice.
    """
    from fedchain.fl_client import FLClient, participant_entry
    from fedchain.gateway import GatewayError
    from fedchain.identity import Wallet
    from fedchain.netconfig import load_network

    cfg = load_network(directory)
    wallet = Wallet(Path(directory) / "wallet")
    with cfg.connect("operator") as gw:
        client = FLClient(cfg.contract(gw))
        try:
            client.get_consortium()
            return False
        except GatewayError:
            pass  # not initialised yet (the contract refuses queries before InitConsortium)
        client.init_consortium(plan.init_args(wallet))
        auditor = participant_entry("auditor", wallet.get("auditor"), "auditor")
        deadline = time.monotonic() + LAGGING_PEER_WAIT_S
        while True:
            try:
                client.register_participant(auditor)
                break
            except GatewayError as exc:
                # Submit returned once the gateway's own peer committed InitConsortium; under a policy that
                # needs every org, another org's peer may not have it yet and answers "not initialized"
                if "not initialized" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    return True
