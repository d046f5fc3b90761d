"""Client of the Fabric Gateway gRPC service (works against real Fabric peers and the devnet).

    with Gateway.connect(wallet.get("hospital1"), "127.0.0.1:7051", tls_root_cert=ca_pem,
                         server_name="peer0.org1.example.com") as gateway:
        contract = gateway.network("fedchain").contract("fedchain")
        res = contract.submit("SubmitUpdate", "round-3", hashes_json, transient={"share": blob})
        state = contract.evaluate("GetRound", "round-3")
        cp = FileCheckpoint("events.json")
        with gateway.network("fedchain").chaincode_events("fedchain", checkpoint=cp) as events:
            for event in events:
                handle(event)
                cp.checkpoint_event(event)

Staged and offline-signed flows: `contract.new_proposal(...)` → `.endorse()` → `.submit()` → `.status()`;
each stage has `.message` / `.digest` / `.bytes` / `.with_signature(sig)`.
"""

from fedchain.gateway.blocks import BlockEventStream
from fedchain.gateway.client import Contract, Gateway, Network
from fedchain.gateway.errors import (
    CommitError,
    CommitStatusError,
    EndorseError,
    EvaluateError,
    EventsError,
    GatewayError,
    SubmitError,
)
from fedchain.gateway.events import (
    ChaincodeEvent,
    ChaincodeEventStream,
    Checkpoint,
    FileCheckpoint,
    InMemoryCheckpoint,
)
from fedchain.gateway.proposal import ProposalError, build_proposal, compute_tx_id
from fedchain.gateway.status import ErrorDetail
from fedchain.gateway.transaction import Commit, Proposal, Status, SubmitResult, Timeouts, Transaction

__all__ = [
    "BlockEventStream", "ChaincodeEvent", "ChaincodeEventStream", "Checkpoint", "Commit", "CommitError", "CommitStatusError", "Contract",
    "EndorseError", "ErrorDetail", "EvaluateError", "EventsError", "FileCheckpoint", "Gateway", "GatewayError",
    "InMemoryCheckpoint", "Network", "Proposal", "ProposalError", "Status", "SubmitError", "SubmitResult", "Timeouts",
    "Transaction", "build_proposal", "compute_tx_id",
]
