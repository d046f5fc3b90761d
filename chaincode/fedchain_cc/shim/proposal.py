"""The transaction context carried by a TRANSACTION/INIT message, parsed once up front.

Mirrors Fabric's Go shim (newChaincodeStub): SignedProposal -> Proposal -> Header
(ChannelHeader: type, tx id, channel, timestamp; SignatureHeader: creator, nonce) and
ChaincodeProposalPayload (TransientMap). Only ENDORSER_TRANSACTION and CONFIG headers are
accepted, as in Fabric. A message without a proposal (allowed by the protocol) yields an
empty context: no creator, no transient data, timestamp 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fabric_protos.common import common_pb2
from fabric_protos.peer import chaincode_pb2, chaincode_shim_pb2, proposal_pb2
from google.protobuf.message import DecodeError

_VALID_HEADER_TYPES = (common_pb2.HeaderType.ENDORSER_TRANSACTION, common_pb2.HeaderType.CONFIG)


class ProposalError(ValueError):
    """The TRANSACTION message cannot be turned into a transaction context."""


@dataclass(frozen=True)
class TxContext:
    channel_id: str
    tx_id: str
    args: list[bytes]
    is_init: bool
    creator: bytes = b""
    nonce: bytes = b""
    timestamp_s: float = 0.0
    proposal_tx_id: str = ""
    transient: dict[str, bytes] = field(default_factory=dict)
    signed_proposal: proposal_pb2.SignedProposal | None = None


def _parse(cls, data: bytes, what: str):  # noqa: ANN001, ANN202 - protobuf classes are untyped
    try:
        return cls.FromString(data)
    except DecodeError as exc:
        raise ProposalError(f"failed to unmarshal {what}: {exc}") from None


def parse_transaction(msg: chaincode_shim_pb2.ChaincodeMessage) -> TxContext:
    """Build the context of one TRANSACTION/INIT message; ProposalError on malformed input."""
    cc_input = _parse(chaincode_pb2.ChaincodeInput, msg.payload, "input (ChaincodeInput)")
    is_init = msg.type == chaincode_shim_pb2.ChaincodeMessage.INIT or cc_input.is_init
    if not msg.HasField("proposal"):
        return TxContext(channel_id=msg.channel_id, tx_id=msg.txid, args=list(cc_input.args), is_init=is_init)
    signed = msg.proposal
    proposal = _parse(proposal_pb2.Proposal, signed.proposal_bytes, "proposal")
    if not proposal.header:
        raise ProposalError("failed to extract proposal fields: proposal header is empty")
    header = _parse(common_pb2.Header, proposal.header, "proposal header")
    chdr = _parse(common_pb2.ChannelHeader, header.channel_header, "channel header")
    if chdr.type not in _VALID_HEADER_TYPES:
        raise ProposalError(
            f"invalid channel header type {chdr.type}: expected ENDORSER_TRANSACTION or CONFIG"
        )
    shdr = _parse(common_pb2.SignatureHeader, header.signature_header, "signature header")
    payload = _parse(proposal_pb2.ChaincodeProposalPayload, proposal.payload, "chaincode proposal payload")
    ts = chdr.timestamp
    return TxContext(
        channel_id=msg.channel_id,
        tx_id=msg.txid,
        args=list(cc_input.args),
        is_init=is_init,
        creator=shdr.creator,
        nonce=shdr.nonce,
        timestamp_s=ts.seconds + ts.nanos / 1e9,
        proposal_tx_id=chdr.tx_id,
        transient=dict(payload.TransientMap),
        signed_proposal=signed,
    )
