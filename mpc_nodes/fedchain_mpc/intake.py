"""gRPC share intake with mutual TLS: registered hospitals, open rounds, checked shares, durable receipts.

Checks, in order, each with its own gRPC status (the message says what to fix):
- UNAUTHENTICATED: no client certificate (cannot happen with require_client_auth, kept as a guard).
- PERMISSION_DENIED: the client certificate is not issued by a consortium CA, or its identity
  (MSP id + x509::subject::issuer) is not a registered participant with role hospital
  (ledger record and certificate role attribute both), or (GetHoldings) not an MPC node.
- INVALID_ARGUMENT: unknown wire version, share for another node, SHA-256 mismatch, malformed
  share file, header not matching (round, hospital, node, dim = the round's parameter count,
  t, m, l, f), any element >= p, size not matching dim.
- NOT_FOUND: no such round. FAILED_PRECONDITION: round not OPEN, past its deadline (node clock),
  already sealed here, or this node refuses the ledger (it went backwards or forked: guard.py).
- ALREADY_EXISTS: a different share for a (round, hospital) that already has one.
- RESOURCE_EXHAUSTED: message over the size cap (gRPC's own max_receive_message_length).
- UNAVAILABLE: the ledger cannot be reached (the client retries).
Nothing of the share's content is logged: only ids, sizes and hashes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from fedchain.identity import Identity, IdentityError, MSPManager, SigningIdentity
from fedchain.mpc_client import (
    HOLDINGS_METHOD,
    SERVICE,
    SUBMIT_METHOD,
    WIRE_VERSION,
    Holding,
    Holdings,
    HoldingsRequest,
    ShareSubmission,
    make_receipt,
    sha256_hex,
)
from fedchain.sharing import ShareFormatError, parse_share

from fedchain_mpc.service import LedgerError, LedgerView
from fedchain_mpc.store import RoundSealed, ShareConflict, ShareStore

log = logging.getLogger(__name__)

MiB = 1024 * 1024
HEADER_SLACK = 8192  # share file header + protobuf framing on top of 10 bytes per element


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class IntakeSettings:
    node_id: str
    node_index: int
    m: int
    t: int
    l: int = 32  # noqa: E741 - the fixed-point name
    f: int = 16
    max_message_bytes: int = 64 * MiB


class ShareIntake:
    """The ShareIntake service logic (transport-independent apart from the gRPC context it reads)."""

    def __init__(self, settings: IntakeSettings, store: ShareStore, ledger: LedgerView, msp: MSPManager,
                 signer: SigningIdentity, clock: Callable[[], float] = time.time,
                 ledger_refusal: Callable[[], str | None] = lambda: None) -> None:
        self.settings = settings
        self.ledger_refusal = ledger_refusal  # why this node refuses the ledger it sees (rolled back), or None
        self.store = store
        self.ledger = ledger
        self.msp = msp
        self.signer = signer
        self.clock = clock
        self._idents: dict[bytes, Identity] = {}
        self._lock = threading.Lock()

    # --------------------------------------------------------------- caller identity
    def _peer_identity(self, context: grpc.ServicerContext) -> Identity:
        pems = context.auth_context().get("x509_pem_cert") or []
        if not pems:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "no client certificate: connect with mutual TLS using "
                          "your enrolment certificate")
        pem = bytes(pems[0])
        with self._lock:
            hit = self._idents.get(pem)
        if hit is not None:
            self.msp.validate(hit.serialize())  # re-checks the validity period (cached chain check)
            return hit
        errors = []
        for msp_id in self.msp.msp_ids:
            ident = Identity(msp_id, pem)
            try:
                self.msp.validate(ident.serialize())
            except IdentityError as exc:
                errors.append(str(exc))
                continue
            with self._lock:
                self._idents[pem] = ident
            return ident
        raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                      "client certificate is not issued by any consortium organisation's CA")

    def _participant(self, ident: Identity, role: str) -> dict[str, Any]:
        rec = self.ledger.participant_for(ident.msp_id, ident.fabric_id)
        if rec is None:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          f"{ident.common_name!r} ({ident.msp_id}) is not a registered participant")
        if rec.get("role") != role or ident.role != role:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          f"{rec.get('id')!r} is registered as {rec.get('role')!r} with certificate role "
                          f"{ident.role!r}; only role {role!r} may do this")
        return rec

    # ------------------------------------------------------------------ SubmitShare
    def _refuse_if_ledger_refused(self) -> None:
        why = self.ledger_refusal()
        if why:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, f"MPC node {self.settings.node_index} refuses the "
                          f"ledger it sees: {why}")

    def submit(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        ident = self._peer_identity(context)
        hospital = self._participant(ident, "hospital")["id"]
        self._refuse_if_ledger_refused()
        try:
            msg = ShareSubmission.FromString(request)
        except Exception as exc:  # protobuf DecodeError
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"malformed ShareSubmission: {exc}") from None
        s = self.settings
        if msg.version != WIRE_VERSION:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"wire version {msg.version} is not supported (this node speaks {WIRE_VERSION})")
        if msg.node_index != s.node_index:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"share for MPC node {msg.node_index} sent to node {s.node_index}")
        data = bytes(msg.share)
        digest = sha256_hex(data)
        if msg.sha256 != digest:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "share bytes do not match the sha256 sent with them")
        round_id = int(msg.round_id)
        rnd = self.ledger.get_round(round_id)
        if rnd is None:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"no round {round_id} on the ledger")
        existing = self.store.get(round_id, hospital) if self.store.is_sealed(round_id) or rnd["state"] != "OPEN" \
            else None
        if existing is not None and sha256_hex(existing) == digest:
            pass  # a resend of a share stored while the round was open: hand back the same receipt
        elif rnd["state"] != "OPEN":
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"round {round_id} is {rnd['state']}; shares are accepted only while it is OPEN")
        elif self.clock() >= float(rnd.get("deadline", float("inf"))):
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"round {round_id}'s deadline {rnd['deadline']} has passed; the ledger would refuse "
                          f"the update")
        dim = int(rnd["model_spec"]["param_count"])
        if len(data) > 10 * dim + HEADER_SLACK:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"share is {len(data)} bytes, too large for dim {dim} ({10 * dim} bytes of elements)")
        expected = {"round_id": str(round_id), "hospital_id": hospital, "node_index": s.node_index, "dim": dim,
                    "t": s.t, "m": s.m, "l": s.l, "f": s.f}
        try:
            parse_share(data, expected=expected)
        except ShareFormatError as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"share rejected: {exc}") from None

        def receipt(sha: str) -> bytes:
            return make_receipt(self.signer, {
                "node": s.node_id, "node_index": s.node_index, "round_id": round_id, "hospital": hospital,
                "sha256": sha, "size": len(data), "received_at": round(self.clock(), 3)})

        try:
            raw, new = self.store.put(round_id, hospital, data, receipt)
        except ShareConflict as exc:
            raise Refused(grpc.StatusCode.ALREADY_EXISTS, str(exc)) from None
        except RoundSealed as exc:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None
        log.info("round %d: %s share from %s (%d bytes, sha256 %s)", round_id, "stored" if new else "resent",
                 hospital, len(data), digest[:16])
        return raw

    # ------------------------------------------------------------------ GetHoldings
    def holdings(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        ident = self._peer_identity(context)
        caller = self._participant(ident, "mpc_node")["id"]
        self._refuse_if_ledger_refused()
        try:
            msg = HoldingsRequest.FromString(request)
        except Exception as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"malformed HoldingsRequest: {exc}") from None
        round_id = int(msg.round_id)
        if not self.store.is_sealed(round_id):
            rnd = self.ledger.get_round(round_id, fresh=True)
            if rnd is None:
                raise Refused(grpc.StatusCode.NOT_FOUND, f"no round {round_id} on the ledger")
            if rnd["state"] == "OPEN":
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                              f"round {round_id} is still OPEN; holdings are final only once it is closed")
            self.store.seal(round_id)
        held = self.store.holdings(round_id)
        log.info("round %d: holdings (%d shares) asked by MPC node %s", round_id, len(held), caller)
        return Holdings(round_id=round_id, node_index=self.settings.node_index,
                        holdings=[Holding(hospital=h, sha256=d) for h, d in sorted(held.items())]).SerializeToString()

    # ------------------------------------------------------------------------ gRPC glue
    def _handler(self, fn: Callable[[bytes, grpc.ServicerContext], bytes]) -> Callable[..., bytes]:
        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                return fn(request, context)
            except Refused as exc:
                log.info("refused %s: %s", exc.code.name, exc)
                context.abort(exc.code, str(exc))
            except LedgerError as exc:
                log.warning("ledger unavailable: %s", exc)
                context.abort(grpc.StatusCode.UNAVAILABLE, f"ledger unavailable, retry later: {exc}")
            except IdentityError as exc:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
            raise AssertionError("unreachable")  # context.abort raises

        return handle

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE, {
            "SubmitShare": grpc.unary_unary_rpc_method_handler(self._handler(self.submit)),
            "GetHoldings": grpc.unary_unary_rpc_method_handler(self._handler(self.holdings)),
        })


def client_ca_bundle(msp: MSPManager) -> bytes:
    """Every org's signing CA: hospitals authenticate with their enrolment certificates."""
    return b"".join(pem for msp_id in msp.msp_ids for pem in msp.config(msp_id).root_pems())


def serve(intake: ShareIntake, address: str, server_cert: bytes, server_key: bytes, *,
          client_roots: bytes | None = None, max_workers: int = 8) -> tuple[grpc.Server, int]:
    """Start the intake on `address` ("127.0.0.1:0" picks a port); returns (server, port)."""
    limit = intake.settings.max_message_bytes
    # Bounded concurrency: each in-flight share may hold up to `limit` bytes in memory; beyond
    # 4 x max_workers calls clients get RESOURCE_EXHAUSTED and retry with backoff.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="intake"),
                         options=[("grpc.max_receive_message_length", limit),
                                  ("grpc.max_send_message_length", 1 * MiB)],
                         maximum_concurrent_rpcs=4 * max_workers)
    server.add_generic_rpc_handlers((intake.generic_handler(),))
    creds = grpc.ssl_server_credentials([(server_key, server_cert)],
                                        root_certificates=client_roots or client_ca_bundle(intake.msp),
                                        require_client_auth=True)
    port = server.add_secure_port(address, creds)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    server.start()
    return server, port


__all__ = ["HOLDINGS_METHOD", "SUBMIT_METHOD", "IntakeSettings", "Refused", "ShareIntake", "client_ca_bundle", "serve"]
