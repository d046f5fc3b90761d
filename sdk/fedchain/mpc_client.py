"""Hospital side of the MPC share intake: send share j to MPC node j over mutual TLS, get signed receipts.

Why it lives here and not in fedchain_mpc: hospitals install only `fedchain`, and the wire
format must be one definition for both ends, so the protobuf messages are defined in this
module and the node service (`fedchain_mpc.wire`) imports them.

Wire format (package `fedchain.mpc.v1`, service `fedchain.mpc.ShareIntake`). No grpcio-tools on
our machines, so the messages are built from a `FileDescriptorProto` at import time; the
`.proto` equivalent is `PROTO_SOURCE` below. Pickle-free, versioned (`version`, now 2):

- `SubmitShare(stream ShareSubmission) -> Receipt`: a client stream. The first message is a
  header (version, round_id, node_index, sha256 and size of the share file, no share bytes);
  the share file bytes of `fedchain.sharing` (`share_bytes(...)`) follow in pieces of at most
  CHUNK_BYTES. Why a stream: a node checks the caller, the round and the declared size against
  the round's dimension before it reads a single share byte, gRPC refuses any one message over
  a piece's size before buffering it, and the node stops reading the moment a sender goes past
  its declared size, so no sender can make a node buffer more than the round allows.
  The hospital is the TLS client certificate (its enrolment certificate), never a field.
- `GetHoldings(HoldingsRequest) -> Holdings`: MPC nodes only; which (hospital, sha256) a node
  holds for a sealed round, so all nodes agree on the same hospital list before a run.

A receipt is a canonical-JSON statement {kind, node, node_index, round_id, hospital, sha256,
size, received_at} signed (ECDSA P-256, low-S) by the node's enrolment identity, plus that
identity (msp.SerializedIdentity). The same share sent twice yields the same receipt bytes.

Retries: only a node that is unreachable or busy (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED
marked retryable by the node) is retried; refusals (bad round, closed round, bad share, TLS
certificate not trusted) are permanent and raise at once with the node's message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from fedchain.identity import Identity, IdentityError, SigningIdentity

log = logging.getLogger(__name__)

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
MAX_ROUND_ID = 10**12  # the FL chaincode's range for round ids is [1, MAX_ROUND_ID] (fedchain_cc.fl.validate)
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
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


class ReceiptError(Exception):
    """A receipt that is malformed, badly signed, or about something else than what was sent."""


class IntakeError(Exception):
    """A node refused a share (or stayed unreachable); carries the gRPC status code and the node's message."""

    def __init__(self, node_index: int, code: grpc.StatusCode | None, message: str, *, text: str | None = None) -> None:
        name = code.name if code is not None else "ERROR"
        super().__init__(text or f"MPC node {node_index}: {name}: {message}")
        self.node_index = node_index
        self.code = code
        self.details = message


class TLSRejected(IntakeError):
    """The mutual-TLS handshake failed: one side does not trust the other's certificate. Never retried."""


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------- receipts
@dataclass(frozen=True)
class ShareReceipt:
    """A verified receipt: what the node signed, and who signed it."""

    node: str
    node_index: int
    round_id: int
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


def verify_receipt(raw: bytes, *, round_id: int, sha256: str, node_index: int, hospital: str | None = None,
                   trust: Callable[[Identity, int], None] | None = None) -> ShareReceipt:
    """Check a receipt's signature and that it is about exactly this share at this node.

    `trust(identity, node_index)` should raise ReceiptError if the signer is not MPC node
    `node_index` (see `consortium_trust`: the ledger's consortium record + the MSPs).
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
        return ShareReceipt(node=str(body["node"]), node_index=int(body["node_index"]), round_id=int(body["round_id"]),
                            hospital=str(body["hospital"]), sha256=str(body["sha256"]), size=int(body["size"]),
                            received_at=float(body["received_at"]), signer=signer, raw=raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ReceiptError(f"receipt from MPC node {node_index} lacks a field: {exc}") from exc


def consortium_trust(consortium: dict[str, Any], msp: Any | None = None) -> Callable[[Identity, int], None]:
    """Receipt signer check: it must be the ledger's MPC node j (GetConsortium's `mpc_nodes[j]`:
    same MSP id and x509::subject::issuer) and, given an MSPManager, chain to that MSP's CA."""
    nodes = {int(n.get("node_index", i)): n for i, n in enumerate(consortium["mpc_nodes"])}

    def check(signer: Identity, node_index: int) -> None:
        node = nodes.get(node_index)
        if node is None:
            raise ReceiptError(f"the consortium has no MPC node {node_index}")
        if (signer.msp_id, signer.fabric_id) != (node["msp_id"], node["identity"]):
            raise ReceiptError(f"receipt for node {node_index} is signed by {signer.common_name!r} "
                               f"({signer.msp_id}), not by MPC node {node['id']}")
        if msp is not None:
            try:
                msp.validate(signer.serialize())
            except IdentityError as exc:
                raise ReceiptError(f"receipt signer of node {node_index} is not valid: {exc}") from exc

    return check


# --------------------------------------------------------------------------------------- client
@dataclass(frozen=True)
class NodeEndpoint:
    """Where MPC node `index` takes shares (as listed in network.json's mpc_nodes)."""

    index: int
    endpoint: str
    tls_root_cert: bytes
    server_name: str | None = None
    id: str = ""


def channel_for(node: NodeEndpoint, identity: SigningIdentity,
                max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> grpc.Channel:
    """Mutual-TLS channel: the client certificate is the caller's enrolment certificate."""
    creds = grpc.ssl_channel_credentials(root_certificates=node.tls_root_cert,
                                         private_key=identity.private_key_pem(),
                                         certificate_chain=identity.cert_pem)
    opts: list[tuple[str, Any]] = [("grpc.max_send_message_length", max_message_bytes),
                                   ("grpc.max_receive_message_length", max_message_bytes)]
    if node.server_name:
        opts.append(("grpc.ssl_target_name_override", node.server_name))
    return grpc.secure_channel(node.endpoint, creds, options=opts)


def _tls_failure(node_index: int, details: str) -> str | None:
    """What a failed TLS handshake means, in words, from what grpc reports (None: not a TLS failure).

    Why guess from the text: grpc has no status code for it. TLS 1.3 finishes the client's side of
    the handshake before the node checks the client certificate, so a node that does not trust the
    certificate just closes the connection: the client sees "Socket closed" while connecting.
    """
    low = details.lower()
    if "failed to connect" in low and ("socket closed" in low or "connection reset" in low):
        return (f"MPC node {node_index} rejected this client's certificate: not issued by a consortium CA "
                f"(or expired); the node closed the connection during the TLS handshake")
    if "certificate_verify_failed" in low or "handshake failed" in low:
        return (f"MPC node {node_index}'s TLS certificate is not trusted: it is not issued by the CA in "
                f"network.json's tls_root_cert for this node ({details})")
    if "peer name" in low and "not in peer certificate" in low:
        return f"MPC node {node_index}'s TLS certificate is for another host name ({details})"
    return None


def _retryable(exc: grpc.RpcError) -> bool:
    """Only an unreachable, slow or busy node is worth asking again; every other refusal is permanent."""
    code = exc.code() if hasattr(exc, "code") else None
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        trailers = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
        return any(k == RETRY_HINT_KEY for k, _ in trailers or ())
    return code in RETRYABLE


def backoff_sleep(seconds: float) -> None:
    """The wait between attempts (a module function so tests can count retries by replacing it)."""
    time.sleep(seconds)


def _call_with_retries(call: Callable[[], bytes], node_index: int, retries: int, backoff_s: float) -> bytes:
    attempt = 0
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = (exc.details() if hasattr(exc, "details") else str(exc)) or ""
            tls = _tls_failure(node_index, details) if code == grpc.StatusCode.UNAVAILABLE else None
            if tls is not None:
                raise TLSRejected(node_index, code, details, text=tls) from None
            if not _retryable(exc) or attempt >= retries:
                raise IntakeError(node_index, code, details) from None
            attempt += 1
            log.info("MPC node %d: %s, retrying (attempt %d of %d)", node_index, code.name if code else "?",
                     attempt, retries)
            backoff_sleep(backoff_s * 2 ** (attempt - 1))


def submission_messages(round_id: int, node_index: int, share: bytes) -> list[bytes]:
    """The SubmitShare stream for one share: a header (sizes and hash), then the bytes in pieces."""
    header = ShareSubmission(version=WIRE_VERSION, round_id=round_id, node_index=node_index,
                             sha256=sha256_hex(share), size=len(share)).SerializeToString()
    view = memoryview(share)
    pieces = [ShareSubmission(share=bytes(view[i:i + CHUNK_BYTES])).SerializeToString()
              for i in range(0, len(share), CHUNK_BYTES)]
    return [header, *pieces]


def submit_share(node: NodeEndpoint, identity: SigningIdentity, round_id: int, share: bytes, *,
                 hospital: str | None = None, timeout_s: float = 30.0, retries: int = 4, backoff_s: float = 0.5,
                 trust: Callable[[Identity, int], None] | None = None) -> ShareReceipt:
    """Send one share to one node; returns its verified receipt. Re-sending the same share is safe."""
    digest = sha256_hex(share)
    messages = submission_messages(round_id, node.index, share)
    with channel_for(node, identity) as channel:
        rpc = channel.stream_unary(SUBMIT_METHOD, request_serializer=None, response_deserializer=None)
        raw = _call_with_retries(lambda: rpc(iter(messages), timeout=timeout_s), node.index, retries, backoff_s)
    return verify_receipt(raw, round_id=round_id, sha256=digest, node_index=node.index, hospital=hospital,
                          trust=trust)


def send_shares(round_id: int, shares: Sequence[bytes], nodes: Sequence[NodeEndpoint], identity: SigningIdentity,
                *, hospital: str | None = None, timeout_s: float = 30.0, retries: int = 4, backoff_s: float = 0.5,
                trust: Callable[[Identity, int], None] | None = None) -> list[ShareReceipt]:
    """Share j to node j, in parallel; every receipt verified. Raises the first IntakeError/ReceiptError.

    Submit the share hashes to the ledger (SubmitUpdate) only after this returned: then every
    node holds the share the ledger commits to. If some node failed, keep these exact share
    bytes and send them again (idempotent): a fresh split is refused (ALREADY_EXISTS) by the
    nodes that stored the first one.
    """
    if len(shares) != len(nodes):
        raise ValueError(f"{len(shares)} shares for {len(nodes)} MPC nodes: need one share per node")
    by_index = sorted(nodes, key=lambda n: n.index)
    if [n.index for n in by_index] != list(range(len(nodes))):
        raise ValueError(f"MPC node indexes must be 0..{len(nodes) - 1}, got {[n.index for n in nodes]}")
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        futures = [pool.submit(submit_share, node, identity, round_id, shares[node.index], hospital=hospital,
                               timeout_s=timeout_s, retries=retries, backoff_s=backoff_s, trust=trust)
                   for node in by_index]
        return [f.result() for f in futures]


def endpoints_from_network(net: Any) -> list[NodeEndpoint]:
    """NodeEndpoints from a loaded network.json (`fedchain.netconfig.NetworkConfig`)."""
    return [NodeEndpoint(index=n.index, endpoint=n.endpoint, tls_root_cert=n.tls_root_cert.read_bytes(),
                         server_name=n.server_name, id=n.id) for n in net.mpc_nodes]


def get_holdings(node: NodeEndpoint, identity: SigningIdentity, round_id: int, *, timeout_s: float = 10.0,
                 retries: int = 2, backoff_s: float = 0.5) -> dict[str, str]:
    """{hospital: sha256} a node holds for a sealed round (callable by MPC nodes only)."""
    request = HoldingsRequest(version=WIRE_VERSION, round_id=round_id).SerializeToString()
    with channel_for(node, identity) as channel:
        rpc = channel.unary_unary(HOLDINGS_METHOD, request_serializer=None, response_deserializer=None)
        raw = _call_with_retries(lambda: rpc(request, timeout=timeout_s), node.index,
                                 retries, backoff_s)
    msg = Holdings.FromString(raw)
    if msg.round_id != round_id:
        raise IntakeError(node.index, None, f"holdings are for round {msg.round_id}, asked for {round_id}")
    return {h.hospital: h.sha256 for h in msg.holdings}


@dataclass(frozen=True)
class Submission:
    """What a hospital did for one round: the receipts (keep them as evidence) and the ledger result."""

    receipts: list[ShareReceipt]
    share_hashes: list[str]
    submit_result: Any


def share_and_submit(fl_client: Any, round_id: int, hospital: str, update: Any, n_samples: int,
                     nodes: Sequence[NodeEndpoint], identity: SigningIdentity, *, t: int, l: int = 32,  # noqa: E741
                     f: int = 16, trust: Callable[[Identity, int], None] | None = None,
                     rng: Any = None) -> Submission:
    """The hospital's whole step 3: encode, split (share j for node j), send with receipts, then
    SubmitUpdate(round, share hashes, n_samples, dim). Nothing reaches the ledger unless every
    node has acknowledged its share. `rng` only for tests (default: the OS CSPRNG)."""
    import numpy as np

    from fedchain.sharing import FixedPoint, ShareHeader, encode, share_bytes, split

    fp = FixedPoint(l, f)
    vector = np.asarray(update, dtype=np.float64).reshape(-1)
    m = len(nodes)
    parts = split(encode(vector, fp), t, m, fp, rng=rng)
    shares = [share_bytes(parts[j], ShareHeader(str(round_id), hospital, j, len(vector), l, f, t, m))
              for j in range(m)]
    receipts = send_shares(round_id, shares, nodes, identity, hospital=hospital, trust=trust)
    hashes = [r.sha256 for r in receipts]
    result = fl_client.submit_update({"round_id": int(round_id), "share_hashes": hashes,
                                      "n_samples": int(n_samples), "dim": len(vector)})
    return Submission(receipts, hashes, result)
