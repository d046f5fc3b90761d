"""Decode a transaction envelope into one flat, auditable record.

Fabric nests a transaction as bytes-inside-protobuf seven levels deep (Envelope → Payload →
Transaction → ChaincodeActionPayload → ProposalResponsePayload → ChaincodeAction → rwset).
The devnet's validator, the auditor and the CLI all need the same fields, so they are
decoded here once. Signed byte strings are kept verbatim (`signed_payload`,
`Endorsement.signed_data`) so callers verify signatures over exactly what was signed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from fabric_protos.common import common_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import (
    chaincode_event_pb2,
    chaincode_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from google.protobuf.message import DecodeError

from fedchain.ledger.blocks import block_header_hash, tx_validation_codes, validation_code_name

ENDORSER_TRANSACTION = common_pb2.HeaderType.Value("ENDORSER_TRANSACTION")


class TxParseError(ValueError):
    """Envelope bytes that do not decode as a Fabric transaction; says which layer failed."""


@dataclass(frozen=True)
class KVRead:
    key: str
    version: tuple[int, int] | None  # (block_num, tx_num); None = key did not exist


@dataclass(frozen=True)
class KVWrite:
    key: str
    value: bytes
    is_delete: bool


@dataclass(frozen=True)
class NsRWSet:
    namespace: str
    reads: tuple[KVRead, ...]
    writes: tuple[KVWrite, ...]
    range_queries: int = 0


@dataclass(frozen=True)
class Endorsement:
    msp_id: str
    cert_pem: bytes
    signature: bytes
    endorser: bytes  # SerializedIdentity bytes as signed
    signed_data: bytes  # proposal_response_payload + endorser: what the signature covers


@dataclass(frozen=True)
class ChaincodeEventInfo:
    chaincode_id: str
    tx_id: str
    event_name: str
    payload: bytes


@dataclass(frozen=True)
class TxInfo:
    tx_id: str
    channel: str
    type: int
    type_name: str
    creator_msp_id: str
    creator_cert_pem: bytes
    creator: bytes  # SerializedIdentity bytes
    nonce: bytes
    timestamp: dt.datetime | None
    signature: bytes
    signed_payload: bytes  # envelope.payload: what `signature` covers
    chaincode: str = ""
    function: str = ""
    args: tuple[bytes, ...] = ()
    response_status: int = 0
    response_message: str = ""
    response_payload: bytes = b""
    rwset: tuple[NsRWSet, ...] = ()
    event: ChaincodeEventInfo | None = None
    endorsements: tuple[Endorsement, ...] = ()
    proposal_response_payload: bytes = b""
    extra: dict[str, object] = field(default_factory=dict)


def _decode(message_type, data: bytes, what: str):
    try:
        return message_type.FromString(data)
    except DecodeError as exc:
        raise TxParseError(f"{what} does not decode: {exc}") from exc


def _identity(serialized: bytes, what: str) -> tuple[str, bytes]:
    sid = _decode(identities_pb2.SerializedIdentity, serialized, what)
    return sid.mspid, bytes(sid.id_bytes)


def _timestamp(chdr: common_pb2.ChannelHeader) -> dt.datetime | None:
    if not chdr.HasField("timestamp"):
        return None
    return chdr.timestamp.ToDatetime(tzinfo=dt.UTC)


def parse_rwset(results: bytes) -> tuple[NsRWSet, ...]:
    """Public read/write sets per namespace (private-data hashes are not decoded)."""
    if not results:
        return ()
    txrw = _decode(rwset_pb2.TxReadWriteSet, results, "TxReadWriteSet")
    out = []
    for ns in txrw.ns_rwset:
        kv = _decode(kv_rwset_pb2.KVRWSet, ns.rwset, f"KVRWSet of {ns.namespace!r}")
        reads = tuple(
            KVRead(r.key, (r.version.block_num, r.version.tx_num) if r.HasField("version") else None)
            for r in kv.reads
        )
        writes = tuple(KVWrite(w.key, bytes(w.value), w.is_delete) for w in kv.writes)
        out.append(NsRWSet(ns.namespace, reads, writes, len(kv.range_queries_info)))
    return tuple(out)


def parse_envelope(env: bytes | common_pb2.Envelope) -> TxInfo:
    """Decode an envelope (block data entry). Non-endorser transactions (config) get header fields only."""
    envelope = _decode(common_pb2.Envelope, env, "Envelope") if isinstance(env, (bytes, bytearray)) else env
    payload = _decode(common_pb2.Payload, envelope.payload, "Payload")
    chdr = _decode(common_pb2.ChannelHeader, payload.header.channel_header, "ChannelHeader")
    shdr = _decode(common_pb2.SignatureHeader, payload.header.signature_header, "SignatureHeader")
    creator_msp, creator_cert = ("", b"")
    if shdr.creator:
        creator_msp, creator_cert = _identity(shdr.creator, "creator SerializedIdentity")
    try:
        type_name = common_pb2.HeaderType.Name(chdr.type)
    except ValueError:
        type_name = f"UNKNOWN({chdr.type})"
    base = dict(
        tx_id=chdr.tx_id, channel=chdr.channel_id, type=chdr.type, type_name=type_name,
        creator_msp_id=creator_msp, creator_cert_pem=creator_cert, creator=bytes(shdr.creator),
        nonce=bytes(shdr.nonce), timestamp=_timestamp(chdr), signature=bytes(envelope.signature),
        signed_payload=bytes(envelope.payload),
    )
    if chdr.type != ENDORSER_TRANSACTION:
        return TxInfo(**base)

    tx = _decode(transaction_pb2.Transaction, payload.data, "Transaction")
    if len(tx.actions) != 1:
        raise TxParseError(f"transaction {chdr.tx_id} has {len(tx.actions)} actions, Fabric allows exactly 1")
    cap = _decode(transaction_pb2.ChaincodeActionPayload, tx.actions[0].payload, "ChaincodeActionPayload")
    cpp = _decode(proposal_pb2.ChaincodeProposalPayload, cap.chaincode_proposal_payload, "ChaincodeProposalPayload")
    cis = _decode(chaincode_pb2.ChaincodeInvocationSpec, cpp.input, "ChaincodeInvocationSpec")
    all_args = [bytes(a) for a in cis.chaincode_spec.input.args]
    prp_bytes = bytes(cap.action.proposal_response_payload)
    prp = _decode(proposal_response_pb2.ProposalResponsePayload, prp_bytes, "ProposalResponsePayload")
    action = _decode(proposal_pb2.ChaincodeAction, prp.extension, "ChaincodeAction")
    event = None
    if action.events:
        ev = _decode(chaincode_event_pb2.ChaincodeEvent, action.events, "ChaincodeEvent")
        event = ChaincodeEventInfo(ev.chaincode_id, ev.tx_id, ev.event_name, bytes(ev.payload))
    endorsements = []
    for e in cap.action.endorsements:
        msp_id, cert = _identity(e.endorser, "endorser SerializedIdentity")
        endorsements.append(Endorsement(msp_id, cert, bytes(e.signature), bytes(e.endorser), prp_bytes + bytes(e.endorser)))
    chaincode = action.chaincode_id.name or cis.chaincode_spec.chaincode_id.name
    return TxInfo(
        **base,
        chaincode=chaincode,
        function=all_args[0].decode("utf-8", "replace") if all_args else "",
        args=tuple(all_args[1:]),
        response_status=action.response.status,
        response_message=action.response.message,
        response_payload=bytes(action.response.payload),
        rwset=parse_rwset(action.results),
        event=event,
        endorsements=tuple(endorsements),
        proposal_response_payload=prp_bytes,
        extra={"transient_fields_present": len(cpp.TransientMap)},
    )


@dataclass(frozen=True)
class BlockTx:
    index: int
    validation_code: int
    validation_code_name: str
    info: TxInfo | None  # None when the envelope does not decode (see `error`)
    error: str = ""


@dataclass(frozen=True)
class BlockInfo:
    number: int
    header_hash: bytes
    previous_hash: bytes
    data_hash: bytes
    transactions: tuple[BlockTx, ...]


def parse_block(block: common_pb2.Block | bytes) -> BlockInfo:
    """Every transaction of a block with its validation code; undecodable entries are kept, not dropped."""
    if isinstance(block, bytes | bytearray):
        block = _decode(common_pb2.Block, block, "Block")
    codes = tx_validation_codes(block)
    txs = []
    for i, (env, code) in enumerate(zip(block.data.data, codes, strict=True)):
        try:
            txs.append(BlockTx(i, code, validation_code_name(code), parse_envelope(env)))
        except TxParseError as exc:
            txs.append(BlockTx(i, code, validation_code_name(code), None, str(exc)))
    return BlockInfo(block.header.number, block_header_hash(block.header), bytes(block.header.previous_hash),
                     bytes(block.header.data_hash), tuple(txs))
