"""Hospital side of the MPC share intake: send share j to MPC node j over mutual TLS, get signed receipts.

The wire protocol itself (messages, method names, limits, receipts) is `fedchain.mpc_protocol`, the one
definition the MPC nodes import too; this module is only the client: channels, calls, retries, and the
check that a receipt's signer is the ledger's MPC node.

Retries: only a node that is unreachable or busy (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED
marked retryable by the node) is retried; refusals (bad round, closed round, bad share, TLS
certificate not trusted) are permanent and raise at once with the node's message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc

from fedchain.canonical import sha256_hex
from fedchain.identity import Identity, IdentityError, SigningIdentity
from fedchain.mpc_protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    HOLDINGS_METHOD,
    RETRY_HINT_KEY,
    SUBMIT_METHOD,
    WIRE_VERSION,
    Holdings,
    HoldingsRequest,
    ReceiptError,
    ShareReceipt,
    submission_messages,
    verify_receipt,
)
from fedchain.records import Consortium, RoundId

log = logging.getLogger(__name__)

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


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


# ------------------------------------------------------------------------------ receipt signer
def consortium_trust(consortium: Consortium, msp: Any | None = None) -> Callable[[Identity, int], None]:
    """Receipt signer check: it must be the ledger's MPC node j (GetConsortium's `mpc_nodes[j]`:
    same MSP id and x509::subject::issuer) and, given an MSPManager, chain to that MSP's CA."""
    nodes = {n.node_index: n for n in consortium.mpc_nodes}

    def check(signer: Identity, node_index: int) -> None:
        node = nodes.get(node_index)
        if node is None:
            raise ReceiptError(f"the consortium has no MPC node {node_index}")
        if (signer.msp_id, signer.fabric_id) != (node.msp_id, node.identity):
            raise ReceiptError(f"receipt for node {node_index} is signed by {signer.common_name!r} "
                               f"({signer.msp_id}), not by MPC node {node.id}")
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


def submit_share(node: NodeEndpoint, identity: SigningIdentity, round_id: RoundId, share: bytes, *,
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


def send_shares(round_id: RoundId, shares: Sequence[bytes], nodes: Sequence[NodeEndpoint], identity: SigningIdentity,
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


def get_holdings(node: NodeEndpoint, identity: SigningIdentity, round_id: RoundId, *, timeout_s: float = 10.0,
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
