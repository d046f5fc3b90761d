"""Client of the Fabric Gateway gRPC service (works against real Fabric peers and the devnet)."""

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
    "ChaincodeEvent", "ChaincodeEventStream", "Checkpoint", "Commit", "CommitError", "CommitStatusError", "Contract",
    "EndorseError", "ErrorDetail", "EvaluateError", "EventsError", "FileCheckpoint", "Gateway", "GatewayError",
    "InMemoryCheckpoint", "Network", "Proposal", "ProposalError", "Status", "SubmitError", "SubmitResult", "Timeouts",
    "Transaction", "build_proposal", "compute_tx_id",
]
