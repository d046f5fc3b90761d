"""Decode and check a SignedProposal the way a Fabric endorser does before simulating it."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from fabric_protos.common import common_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2
from fedchain.identity import Identity, IdentityError, MSPManager, SignatureError
from google.protobuf.message import DecodeError

from fedchain_devnet.acl import AccessDenied, ChannelACL
from fedchain_devnet.errors import denied, invalid, not_found

ENDORSER_TRANSACTION = common_pb2.HeaderType.Value("ENDORSER_TRANSACTION")
MAX_CLOCK_SKEW = dt.timedelta(minutes=15)


@dataclass
class ParsedProposal:
    signed: proposal_pb2.SignedProposal
    header: common_pb2.Header
    channel_header: common_pb2.ChannelHeader
    signature_header: common_pb2.SignatureHeader
    tx_id: str
    channel: str
    chaincode: str
    function: str
    args: list[bytes]
    input_bytes: bytes  # ChaincodeInput, what the chaincode receives
    payload_no_transient: bytes  # ChaincodeProposalPayload without TransientMap: what goes on the ledger
    proposal_hash: bytes
    creator: Identity


def _decode(cls, data: bytes, what: str):
    try:
        return cls.FromString(data)
    except DecodeError as exc:
        raise invalid(f"{what} is not a valid protobuf message: {exc}") from None


def parse_proposal(signed: proposal_pb2.SignedProposal, msps: MSPManager, channel: str,
                   chaincodes: set[str], expected_tx_id: str = "", acl: ChannelACL | None = None) -> ParsedProposal:
    """Check structure, channel, chaincode, tx id and the creator's signature; raise RequestError."""
    if not signed.proposal_bytes:
        raise invalid("proposed transaction has no proposal bytes")
    prop = _decode(proposal_pb2.Proposal, signed.proposal_bytes, "proposal")
    header = _decode(common_pb2.Header, prop.header, "proposal header")
    chdr = _decode(common_pb2.ChannelHeader, header.channel_header, "channel header")
    shdr = _decode(common_pb2.SignatureHeader, header.signature_header, "signature header")
    if chdr.type != ENDORSER_TRANSACTION:
        raise invalid(f"proposal header type {chdr.type} is not ENDORSER_TRANSACTION")
    if chdr.channel_id != channel:
        raise not_found(f"channel {chdr.channel_id!r} not found (this network serves channel {channel!r})")
    if not shdr.nonce or not shdr.creator:
        raise invalid("signature header lacks a nonce or a creator")
    tx_id = hashlib.sha256(bytes(shdr.nonce) + bytes(shdr.creator)).hexdigest()
    if chdr.tx_id != tx_id:
        raise invalid(f"transaction id {chdr.tx_id!r} is not sha256(nonce + creator)")
    if expected_tx_id and expected_tx_id != tx_id:
        raise invalid(f"request transaction id {expected_tx_id!r} does not match the proposal's {tx_id!r}")
    if chdr.HasField("timestamp"):
        ts = chdr.timestamp.ToDatetime(tzinfo=dt.UTC)
        if abs(dt.datetime.now(dt.UTC) - ts) > MAX_CLOCK_SKEW:
            raise invalid(f"proposal timestamp {ts.isoformat()} is more than 15 minutes from the peer's clock")
    else:
        raise invalid("proposal has no timestamp")
    try:
        creator = msps.verify(bytes(shdr.creator), bytes(signed.signature), bytes(signed.proposal_bytes))
    except SignatureError as exc:
        raise denied(f"creator signature check failed: {exc}") from None
    except IdentityError as exc:
        raise denied(f"creator is not a valid member of channel {channel!r}: {exc}") from None
    if acl is not None:
        try:
            acl.check_writer(creator)
        except AccessDenied as exc:
            raise denied(str(exc)) from None
    ext = _decode(proposal_pb2.ChaincodeHeaderExtension, chdr.extension, "chaincode header extension")
    cpp = _decode(proposal_pb2.ChaincodeProposalPayload, prop.payload, "chaincode proposal payload")
    cis = _decode(chaincode_pb2.ChaincodeInvocationSpec, cpp.input, "chaincode invocation spec")
    name = ext.chaincode_id.name or cis.chaincode_spec.chaincode_id.name
    if name not in chaincodes:
        raise not_found(f"chaincode {name!r} is not deployed on channel {channel!r}")
    args = [bytes(a) for a in cis.chaincode_spec.input.args]
    if not args:
        raise invalid("chaincode input has no function name")
    no_transient = proposal_pb2.ChaincodeProposalPayload(input=cpp.input).SerializeToString()
    h = hashlib.sha256()
    h.update(header.channel_header)
    h.update(header.signature_header)
    h.update(no_transient)
    return ParsedProposal(
        signed=signed, header=header, channel_header=chdr, signature_header=shdr, tx_id=tx_id,
        channel=chdr.channel_id, chaincode=name, function=args[0].decode("utf-8", "replace"), args=args[1:],
        input_bytes=cis.chaincode_spec.input.SerializeToString(), payload_no_transient=no_transient,
        proposal_hash=h.digest(), creator=creator,
    )
