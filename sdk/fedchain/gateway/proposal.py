"""Building Fabric transaction proposals and checking what the gateway hands back to sign.

Layout per Fabric's protoutil.CreateChaincodeProposalWithTransient, as the official
gateway clients send it. Pure functions, no I/O: the devnet's tests and the offline
signing path reuse them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fabric_protos.common import common_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2, proposal_response_pb2, transaction_pb2
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

NONCE_BYTES = 24
ENDORSER_TRANSACTION = common_pb2.HeaderType.Value("ENDORSER_TRANSACTION")
# Fabric's gateway clients label every invocation NODE; peers ignore it for external chaincode.
CHAINCODE_TYPE = chaincode_pb2.ChaincodeSpec.Type.Value("NODE")

Arg = str | bytes


class ProposalError(ValueError):
    """Malformed proposal input, or a prepared transaction that is not the one proposed."""


def compute_tx_id(nonce: bytes, creator: bytes) -> str:
    """Fabric's transaction id: hex(SHA-256(nonce || serialized creator))."""
    return hashlib.sha256(nonce + creator).hexdigest()


def _as_bytes(value: Arg, what: str) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ProposalError(f"{what} must be str or bytes, not {type(value).__name__}")


@dataclass(frozen=True)
class BuiltProposal:
    tx_id: str
    channel: str
    proposal_bytes: bytes  # protos.Proposal: the bytes the creator signs
    invocation_spec: bytes  # ChaincodeInvocationSpec bytes: must reappear unchanged in the transaction


def build_proposal(channel: str, chaincode: str, function: str, args: Sequence[Arg], creator: bytes,
                   transient: Mapping[str, bytes] | None = None, *, nonce: bytes | None = None,
                   timestamp: Timestamp | None = None) -> BuiltProposal:
    """Serialized chaincode proposal plus its tx id."""
    if not channel or not chaincode or not function:
        raise ProposalError("channel, chaincode and function name must be non-empty")
    input_args = [function.encode("utf-8")] + [_as_bytes(a, f"argument {i}") for i, a in enumerate(args)]
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    tx_id = compute_tx_id(nonce, creator)
    if timestamp is None:
        timestamp = Timestamp()
        timestamp.GetCurrentTime()
    chaincode_id = chaincode_pb2.ChaincodeID(name=chaincode)
    channel_header = common_pb2.ChannelHeader(
        type=ENDORSER_TRANSACTION, channel_id=channel, tx_id=tx_id, timestamp=timestamp,
        extension=proposal_pb2.ChaincodeHeaderExtension(chaincode_id=chaincode_id).SerializeToString(),
    )
    header = common_pb2.Header(
        channel_header=channel_header.SerializeToString(),
        signature_header=common_pb2.SignatureHeader(creator=creator, nonce=nonce).SerializeToString(),
    )
    cis = chaincode_pb2.ChaincodeInvocationSpec(
        chaincode_spec=chaincode_pb2.ChaincodeSpec(
            type=CHAINCODE_TYPE, chaincode_id=chaincode_id, input=chaincode_pb2.ChaincodeInput(args=input_args)
        )
    ).SerializeToString()
    payload = proposal_pb2.ChaincodeProposalPayload(input=cis)
    for key, value in (transient or {}).items():
        payload.TransientMap[key] = _as_bytes(value, f"transient[{key!r}]")
    proposal = proposal_pb2.Proposal(header=header.SerializeToString(), payload=payload.SerializeToString())
    return BuiltProposal(tx_id, channel, proposal.SerializeToString(), cis)


@dataclass(frozen=True)
class ProposalInfo:
    tx_id: str
    channel: str
    creator: bytes
    invocation_spec: bytes


def inspect_proposal(proposal_bytes: bytes) -> ProposalInfo:
    """Recover what `build_proposal` put in (for proposals that arrive as bytes, offline signing)."""
    try:
        proposal = proposal_pb2.Proposal.FromString(proposal_bytes)
        header = common_pb2.Header.FromString(proposal.header)
        chdr = common_pb2.ChannelHeader.FromString(header.channel_header)
        shdr = common_pb2.SignatureHeader.FromString(header.signature_header)
        payload = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
    except DecodeError as exc:
        raise ProposalError(f"not a Fabric proposal: {exc}") from exc
    return ProposalInfo(chdr.tx_id, chdr.channel_id, bytes(shdr.creator), bytes(payload.input))


def check_prepared_transaction(envelope: common_pb2.Envelope, expected: ProposalInfo) -> bytes:
    """Verify the gateway's prepared transaction is ours and return the chaincode result.

    The client signs whatever envelope the gateway returns, so before signing it checks the
    envelope carries our tx id, channel, creator and invocation unchanged, and that no
    transient (private) data leaked into what goes on the ledger.
    """
    try:
        payload = common_pb2.Payload.FromString(envelope.payload)
        chdr = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
        shdr = common_pb2.SignatureHeader.FromString(payload.header.signature_header)
        tx = transaction_pb2.Transaction.FromString(payload.data)
        if len(tx.actions) != 1:
            raise ProposalError(f"prepared transaction has {len(tx.actions)} actions, expected 1")
        cap = transaction_pb2.ChaincodeActionPayload.FromString(tx.actions[0].payload)
        cpp = proposal_pb2.ChaincodeProposalPayload.FromString(cap.chaincode_proposal_payload)
        prp = proposal_response_pb2.ProposalResponsePayload.FromString(cap.action.proposal_response_payload)
        action = proposal_pb2.ChaincodeAction.FromString(prp.extension)
    except DecodeError as exc:
        raise ProposalError(f"prepared transaction does not decode: {exc}") from exc
    if chdr.type != ENDORSER_TRANSACTION:
        raise ProposalError(f"prepared transaction has header type {chdr.type}, expected ENDORSER_TRANSACTION")
    if chdr.tx_id != expected.tx_id or chdr.channel_id != expected.channel:
        raise ProposalError(
            f"prepared transaction is {chdr.tx_id!r} on {chdr.channel_id!r}, expected {expected.tx_id!r} on {expected.channel!r}"
        )
    if bytes(shdr.creator) != expected.creator:
        raise ProposalError("prepared transaction names a different creator")
    if bytes(cpp.input) != expected.invocation_spec:
        raise ProposalError("prepared transaction invokes something other than the proposal")
    if len(cpp.TransientMap):
        raise ProposalError("prepared transaction carries transient data; refusing to sign it onto the ledger")
    if not cap.action.endorsements:
        raise ProposalError("prepared transaction has no endorsements")
    return bytes(action.response.payload)
