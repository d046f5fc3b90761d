"""The MPC share-intake wire protocol: the one definition hospitals and MPC nodes both import.

Why it lives in the SDK: hospitals install only `fedchain`, and both ends must speak exactly the same
messages and sign exactly the same receipts, so the client (`fedchain.mpc_client`) and the node service
(`fedchain_mpc.intake`) import this module; nothing else defines a wire name.

Messages (package `fedchain.mpc.v1`, service `fedchain.mpc.ShareIntake`). No grpcio-tools on our
machines, so the messages are built from a `FileDescriptorProto` at import time; the `.proto`
equivalent is `PROTO_SOURCE` below. Pickle-free; `version` is WIRE_VERSION (2) in every request:

- `SubmitShare(stream ShareSubmission) -> Receipt`: a client stream. The first message is a
  header (version, round_id, node_index, sha256 and size of the share file, no share bytes);
  the share file bytes of `fedchain.sharing` (`share_bytes(...)`) follow in pieces of at most
  CHUNK_BYTES (`submission_messages`). Why a stream: a node checks the caller, the round and the
  declared size against the round's dimension before it reads a single share byte, gRPC refuses
  any one message over a piece's size before buffering it, and the node stops reading the moment a
  sender goes past its declared size, so no sender can make a node buffer more than the round allows.
  The hospital is the TLS client certificate (its enrolment certificate), never a field.
- `GetHoldings(HoldingsRequest) -> Holdings`: MPC nodes only; which (hospital, sha256) a node
  holds for a sealed round, so all nodes agree on the same hospital list before a run.

A receipt is a canonical-JSON statement {kind, node, node_index, round_id, hospital, sha256,
size, received_at} signed (ECDSA P-256, low-S) by the node's enrolment identity, plus that
identity (msp.SerializedIdentity). The same share sent twice yields the same receipt bytes.

Round ids on the wire are the ledger's (`fedchain.records.RoundId`, range [1, records.MAX_ROUND_ID]).
A refusal worth retrying later (the node is busy, not refusing the share) carries the trailing
metadata key RETRY_HINT_KEY.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from fedchain.canonical import canonical_json, sha256_hex
from fedchain.identity import Identity, IdentityError, SigningIdentity
from fedchain.records import RoundId

WIRE_VERSION = 2
SERVICE = "fedchain.mpc.ShareIntake"
SUBMIT_METHOD = f"/{SERVICE}/SubmitShare"
HOLDINGS_METHOD = f"/{SERVICE}/GetHoldings"
RECEIPT_KIND = "fedchain.mpc.share_receipt"
MiB = 1024 * 1024
# A share file is 10 bytes per element (a uint16 and a uint64) plus a small header: 10 MB at d = 1M.
DEFAULT_MAX_MESSAGE_BYTES = 64 * MiB
CHUNK_BYTES = 1 * MiB  # share bytes per SubmitShare stream message
MESSAGE_SLACK = 16 * 1024  # protobuf framing and header fields on top of a piece
# Trailing metadata a node sets on a refusal worth retrying later (it is busy, not refusing the share).
RETRY_HINT_KEY = "fedchain-retryable"

PROTO_SOURCE = """
syntax = "proto3";
package fedchain.mpc.v1;
message ShareSubmission { uint32 version = 1; uint64 round_id = 2; uint32 node_index = 3;
                          bytes share = 4; string sha256 = 5; uint64 size = 6; }
message Receipt { bytes statement = 1; bytes signature = 2; bytes signer = 3; }
message HoldingsRequest { uint32 version = 1; uint64 round_id = 2; }
message Holding { string hospital = 1; string sha256 = 2; }
message Holdings { uint64 round_id = 1; uint32 node_index = 2; repeated Holding holdings = 3; }
service ShareIntake { rpc SubmitShare(stream ShareSubmission) returns (Receipt);
                      rpc GetHoldings(HoldingsRequest) returns (Holdings); }
"""


def _build_messages() -> dict[str, type]:
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="fedchain/mpc/v1/intake.proto", package="fedchain.mpc.v1",
                                             syntax="proto3")

    def message(name: str, fields: list[tuple[str, int, int, str | None, bool]]) -> None:
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, type_name, repeated in fields:
            fd = msg.field.add(name=fname, number=number, type=ftype,
                               label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if type_name:
                fd.type_name = type_name

    message("ShareSubmission", [("version", 1, F.TYPE_UINT32, None, False), ("round_id", 2, F.TYPE_UINT64, None, False),
                                ("node_index", 3, F.TYPE_UINT32, None, False), ("share", 4, F.TYPE_BYTES, None, False),
                                ("sha256", 5, F.TYPE_STRING, None, False), ("size", 6, F.TYPE_UINT64, None, False)])
    message("Receipt", [("statement", 1, F.TYPE_BYTES, None, False), ("signature", 2, F.TYPE_BYTES, None, False),
                        ("signer", 3, F.TYPE_BYTES, None, False)])
    message("HoldingsRequest", [("version", 1, F.TYPE_UINT32, None, False), ("round_id", 2, F.TYPE_UINT64, None, False)])
    message("Holding", [("hospital", 1, F.TYPE_STRING, None, False), ("sha256", 2, F.TYPE_STRING, None, False)])
    message("Holdings", [("round_id", 1, F.TYPE_UINT64, None, False), ("node_index", 2, F.TYPE_UINT32, None, False),
                         ("holdings", 3, F.TYPE_MESSAGE, ".fedchain.mpc.v1.Holding", True)])
    pool = descriptor_pool.DescriptorPool()  # private pool: no clash with anything else loaded
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"fedchain.mpc.v1.{name}"))
            for name in ("ShareSubmission", "Receipt", "HoldingsRequest", "Holding", "Holdings")}


_MESSAGES = _build_messages()
ShareSubmission = _MESSAGES["ShareSubmission"]
Receipt = _MESSAGES["Receipt"]
HoldingsRequest = _MESSAGES["HoldingsRequest"]
Holding = _MESSAGES["Holding"]
Holdings = _MESSAGES["Holdings"]


def submission_messages(round_id: RoundId, node_index: int, share: bytes) -> list[bytes]:
    """The SubmitShare stream for one share: a header (sizes and hash), then the bytes in pieces."""
    header = ShareSubmission(version=WIRE_VERSION, round_id=round_id, node_index=node_index,
                             sha256=sha256_hex(share), size=len(share)).SerializeToString()
    view = memoryview(share)
    pieces = [ShareSubmission(share=bytes(view[i:i + CHUNK_BYTES])).SerializeToString()
              for i in range(0, len(share), CHUNK_BYTES)]
    return [header, *pieces]


# ------------------------------------------------------------------------------------- receipts
class ReceiptError(Exception):
    """A receipt that is malformed, badly signed, or about something else than what was sent."""


@dataclass(frozen=True)
class ShareReceipt:
    """A verified receipt: what the node signed, and who signed it."""

    node: str
    node_index: int
    round_id: RoundId
    hospital: str
    sha256: str
    size: int
    received_at: float
    signer: Identity
    raw: bytes  # the serialized Receipt message, to keep as evidence

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "node_index": self.node_index, "round_id": self.round_id,
                "hospital": self.hospital, "sha256": self.sha256, "size": self.size,
                "received_at": self.received_at, "signer_msp_id": self.signer.msp_id,
                "receipt_hex": self.raw.hex()}


def make_receipt(signer: SigningIdentity, statement: dict[str, Any]) -> bytes:
    """Serialized Receipt message over a statement (node side)."""
    body = canonical_json({"kind": RECEIPT_KIND, **statement})
    return Receipt(statement=body, signature=signer.sign(body), signer=signer.serialize()).SerializeToString()


def verify_receipt(raw: bytes, *, round_id: RoundId, sha256: str, node_index: int, hospital: str | None = None,
                   trust: Callable[[Identity, int], None] | None = None) -> ShareReceipt:
    """Check a receipt's signature and that it is about exactly this share at this node.

    `trust(identity, node_index)` should raise ReceiptError if the signer is not MPC node
    `node_index` (see `fedchain.mpc_client.consortium_trust`: the ledger's consortium record + the MSPs).
    """
    try:
        msg = Receipt.FromString(raw)
        signer = Identity.deserialize(bytes(msg.signer))
        body = json.loads(bytes(msg.statement))
    except (ValueError, IdentityError, Exception) as exc:  # protobuf DecodeError has no common base
        raise ReceiptError(f"malformed receipt from MPC node {node_index}: {exc}") from exc
    if not isinstance(body, dict) or body.get("kind") != RECEIPT_KIND:
        raise ReceiptError(f"receipt from MPC node {node_index} is not a share receipt")
    try:
        ok = signer.verify(bytes(msg.signature), bytes(msg.statement))
    except IdentityError as exc:
        raise ReceiptError(f"receipt from MPC node {node_index}: bad signer certificate: {exc}") from exc
    if not ok:
        raise ReceiptError(f"receipt signature of MPC node {node_index} does not verify")
    want = {"round_id": round_id, "sha256": sha256, "node_index": node_index}
    if hospital is not None:
        want["hospital"] = hospital
    wrong = [k for k, v in want.items() if body.get(k) != v]
    if wrong:
        raise ReceiptError(f"receipt from MPC node {node_index} is about another share ({', '.join(wrong)} differ)")
    if trust is not None:
        trust(signer, node_index)
    try:
        return ShareReceipt(node=str(body["node"]), node_index=int(body["node_index"]), round_id=RoundId(int(body["round_id"])),
                            hospital=str(body["hospital"]), sha256=str(body["sha256"]), size=int(body["size"]),
                            received_at=float(body["received_at"]), signer=signer, raw=raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ReceiptError(f"receipt from MPC node {node_index} lacks a field: {exc}") from exc
