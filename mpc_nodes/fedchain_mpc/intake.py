"""gRPC share intake with mutual TLS: registered hospitals, open rounds, checked shares, durable receipts.

SubmitShare is a client stream (header, then the share in pieces: fedchain.mpc_protocol). Checks, in
order; the first ones run before a single share byte is read, each with its own gRPC status (the
message says what to fix):
- UNAUTHENTICATED: no client certificate (cannot happen with require_client_auth, kept as a guard).
  A certificate from a CA outside the consortium never gets here: the TLS handshake refuses it.
- PERMISSION_DENIED: the client certificate's identity (MSP id + x509::subject::issuer) is not
  a registered participant with role hospital (ledger record and certificate role attribute
  both), or (GetHoldings) not an MPC node, or it fails the MSP's checks (e.g. expired).
- RESOURCE_EXHAUSTED (retryable, trailing metadata `fedchain-retryable`): this identity already
  has `max_inflight_per_identity` SubmitShare calls in flight. Refused at once, never queued.
  Without that metadata it is gRPC's own cap: one message longer than a piece (permanent).
- FAILED_PRECONDITION: this node refuses the ledger (it went backwards or forked: guard.py).
- INVALID_ARGUMENT: unknown wire version, share for another node, round id outside the chaincode's
  range, declared size over the round's limit (10 bytes per element + header), more or fewer
  bytes than declared, SHA-256 mismatch, malformed share file, header not matching (round,
  hospital, node, dim = the round's parameter count, t, m, l, f), any element >= p.
- NOT_FOUND: no such round. FAILED_PRECONDITION: round not OPEN, past its deadline (node clock),
  already sealed here.
- ALREADY_EXISTS: a different share for a (round, hospital) that already has one.
- A ledger that answers with a refusal (LedgerError.chaincode_status 4xx) maps to INVALID_ARGUMENT /
  PERMISSION_DENIED / NOT_FOUND / FAILED_PRECONDITION; only a ledger that cannot be reached (or
  fails inside) is UNAVAILABLE, the one answer clients retry.

Memory: gRPC's own message cap is one piece (CHUNK_BYTES + slack) and grpc-core checks it from the
message's length prefix before buffering the body; a handler that refuses before reading leaves
the body unread (HTTP/2 flow control keeps it at the sender). So one call holds at most the
round's share size, and one identity at most `max_inflight_per_identity` of them. Connections
age out (`max_connection_s` + grace), so a sender that stalls mid-stream loses its slot too.
Nothing of the share's content is logged: only ids, sizes and hashes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from fedchain.canonical import sha256_hex
from fedchain.identity import Identity, IdentityError, MSPManager, SigningIdentity
from fedchain.mpc_protocol import (
    CHUNK_BYTES,
    HOLDINGS_METHOD,
    MESSAGE_SLACK,
    RETRY_HINT_KEY,
    SERVICE,
    SUBMIT_METHOD,
    WIRE_VERSION,
    Holding,
    Holdings,
    HoldingsRequest,
    ShareSubmission,
    make_receipt,
)
from fedchain.records import MAX_ROUND_ID, OPEN, Participant, Round, RoundId
from fedchain.sharing import ShareFormatError, parse_share

from fedchain_mpc.ledger_adapter import LedgerError, LedgerView
from fedchain_mpc.store import RoundSealed, ShareConflict, ShareStore

log = logging.getLogger(__name__)

MiB = 1024 * 1024
HEADER_SLACK = 8192  # share file header (JSON) on top of 10 bytes per element
BYTES_PER_ELEMENT = 10  # a share element is a uint16 and a uint64 (fedchain.sharing)
_REFUSAL_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 403: grpc.StatusCode.PERMISSION_DENIED,
                  404: grpc.StatusCode.NOT_FOUND, 409: grpc.StatusCode.FAILED_PRECONDITION}


class Refused(Exception):
    """A refusal with its gRPC status; `retryable` marks 'busy, ask again later' (not 'no')."""

    def __init__(self, code: grpc.StatusCode, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


@dataclass(frozen=True)
class IntakeSettings:
    node_id: str
    node_index: int
    m: int
    t: int
    l: int = 32  # noqa: E741 - the fixed-point name
    f: int = 16
    max_message_bytes: int = 64 * MiB  # the largest share this node takes, whatever the round's dim
    max_inflight_per_identity: int = 2  # concurrent SubmitShare calls one certificate identity may have
    # a connection is told to go away after max_connection_s and closed max_connection_grace_s later,
    # cutting any call still running on it: a stalled sender cannot keep a thread and a slot forever
    max_connection_s: float = 240.0
    max_connection_grace_s: float = 60.0


def round_share_limit(dim: int, cap: int) -> int:
    """The largest share file a round of `dim` parameters can have (never above the node's cap)."""
    return min(BYTES_PER_ELEMENT * dim + HEADER_SLACK, cap)


def ledger_refusal_code(exc: LedgerError) -> grpc.StatusCode | None:
    """The status for a ledger that answered 'no' (chaincode 4xx); None for an outage (retryable)."""
    status = exc.chaincode_status
    if status is None or not 400 <= status < 500:
        return None
    return _REFUSAL_CODES.get(status, grpc.StatusCode.FAILED_PRECONDITION)


class InflightLimiter:
    """At most `limit` concurrent calls per key; the excess is refused at once (never queued), so a
    flood from one identity costs the others nothing but the refusals' CPU."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("max_inflight_per_identity must be at least 1")
        self.limit = limit
        self._inflight: dict[Any, int] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def slot(self, key: Any, who: str) -> Iterator[None]:
        with self._lock:
            n = self._inflight.get(key, 0)
            if n >= self.limit:
                raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"{who} already has {n} SubmitShare calls in flight at this node (limit "
                              f"{self.limit} per identity); wait for them to finish", retryable=True)
            self._inflight[key] = n + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._inflight[key] - 1
                if left:
                    self._inflight[key] = left
                else:
                    del self._inflight[key]

    def inflight(self) -> int:
        with self._lock:
            return sum(self._inflight.values())


def _read_message(requests: Iterator[bytes], what: str) -> ShareSubmission | None:
    """The next stream message parsed (None at the end); gRPC already capped its size."""
    try:
        raw = next(requests)
    except StopIteration:
        return None
    try:
        return ShareSubmission.FromString(raw)
    except Exception as exc:  # protobuf DecodeError
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"malformed {what}: {exc}") from None


def read_share_body(requests: Iterator[bytes], size: int) -> bytes:
    """Exactly `size` share bytes from the pieces that follow the header; stops reading (and refuses)
    as soon as a sender goes past what it declared, so it never holds more than `size` + one piece."""
    pieces: list[bytes] = []
    got = 0
    while True:
        msg = _read_message(requests, "share piece")
        if msg is None:
            break
        piece = bytes(msg.share)
        got += len(piece)
        if got > size:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"the stream carries more than the {size} share bytes its header declared")
        pieces.append(piece)
    if got != size:
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                      f"the stream ended after {got} of the {size} share bytes its header declared")
    return b"".join(pieces)


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
        self.limiter = InflightLimiter(settings.max_inflight_per_identity)
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

    def _participant(self, ident: Identity, role: str) -> Participant:
        rec = self.ledger.participant_for(ident.msp_id, ident.fabric_id)
        if rec is None:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          f"{ident.common_name!r} ({ident.msp_id}) is not a registered participant")
        if rec.role != role or ident.role != role:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          f"{rec.id!r} is registered as {rec.role!r} with certificate role "
                          f"{ident.role!r}; only role {role!r} may do this")
        return rec

    # ------------------------------------------------------------------ SubmitShare
    def _refuse_if_ledger_refused(self) -> None:
        why = self.ledger_refusal()
        if why:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, f"MPC node {self.settings.node_index} refuses the "
                          f"ledger it sees: {why}")

    @staticmethod
    def _check_round_id(round_id: int) -> RoundId:
        """Outside the chaincode's range no round can exist: a permanent INVALID_ARGUMENT, not a ledger call."""
        if not 1 <= round_id <= MAX_ROUND_ID:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"round id {round_id} is outside the ledger's range [1, {MAX_ROUND_ID}]")
        return RoundId(round_id)

    def submit_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        """SubmitShare: caller, in-flight slot and ledger first, then the header, then the body."""
        ident = self._peer_identity(context)
        with self.limiter.slot((ident.msp_id, ident.fabric_id), repr(ident.common_name)):
            hospital = self._participant(ident, "hospital").id
            self._refuse_if_ledger_refused()
            header = _read_message(requests, "ShareSubmission header")
            if header is None:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "empty SubmitShare stream: no header")
            round_id, dim = self._check_header(header, hospital)
            data = read_share_body(requests, int(header.size))
            return self._accept(round_id, dim, hospital, header.sha256, data)

    def _check_header(self, msg: ShareSubmission, hospital: str) -> tuple[RoundId, int]:
        """Version, node, round (exists, OPEN or a resend, deadline) and declared size; returns (round, dim)."""
        s = self.settings
        if msg.version != WIRE_VERSION:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"wire version {msg.version} is not supported (this node speaks {WIRE_VERSION}): "
                          f"update fedchain")
        if msg.node_index != s.node_index:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"share for MPC node {msg.node_index} sent to node {s.node_index}")
        if msg.share:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "the header message carries share bytes; "
                          "send them in the messages that follow it")
        round_id = self._check_round_id(int(msg.round_id))
        rnd = self.ledger.get_round(round_id)
        if rnd is None:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"no round {round_id} on the ledger")
        self._check_round_open(round_id, rnd, hospital, msg.sha256)
        dim = rnd.model_spec.param_count
        limit = round_share_limit(dim, s.max_message_bytes)
        if not 0 < msg.size <= limit:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"share of {msg.size} bytes refused: round {round_id} (dim {dim}) takes shares of at "
                          f"most {limit} bytes")
        return round_id, dim

    def _check_round_open(self, round_id: RoundId, rnd: Round, hospital: str, sha256: str) -> None:
        """Only OPEN rounds before their deadline take shares; a resend of this hospital's stored share is
        always answered (its receipt may have been lost), whatever the round's state."""
        if self.store.holdings(round_id).get(hospital) == sha256:
            return
        if self.store.is_sealed(round_id) or rnd.state != OPEN:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"round {round_id} is {rnd.state}; shares are accepted only while it is OPEN")
        if rnd.deadline is not None and self.clock() >= rnd.deadline:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"round {round_id}'s deadline {rnd.deadline} has passed; the ledger would refuse "
                          f"the update")

    def _accept(self, round_id: RoundId, dim: int, hospital: str, sha256: str, data: bytes) -> bytes:
        """Hash, parse against the round's parameters, store durably, sign the receipt."""
        s = self.settings
        digest = sha256_hex(data)
        if sha256 != digest:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "share bytes do not match the sha256 sent with them")
        expected = {"round_id": round_id, "hospital_id": hospital, "node_index": s.node_index, "dim": dim,
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
        caller = self._participant(ident, "mpc_node").id
        self._refuse_if_ledger_refused()
        try:
            msg = HoldingsRequest.FromString(request)
        except Exception as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"malformed HoldingsRequest: {exc}") from None
        round_id = self._check_round_id(int(msg.round_id))
        if not self.store.is_sealed(round_id):
            rnd = self.ledger.get_round(round_id, fresh=True)
            if rnd is None:
                raise Refused(grpc.StatusCode.NOT_FOUND, f"no round {round_id} on the ledger")
            if rnd.state == OPEN:
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                              f"round {round_id} is still OPEN; holdings are final only once it is closed")
            self.store.seal(round_id)
        held = self.store.holdings(round_id)
        log.info("round %d: holdings (%d shares) asked by MPC node %s", round_id, len(held), caller)
        return Holdings(round_id=round_id, node_index=self.settings.node_index,
                        holdings=[Holding(hospital=h, sha256=d) for h, d in sorted(held.items())]).SerializeToString()

    # ------------------------------------------------------------------------ gRPC glue
    def _handler(self, fn: Callable[[Any, grpc.ServicerContext], bytes]) -> Callable[..., bytes]:
        def handle(request: Any, context: grpc.ServicerContext) -> bytes:
            try:
                return fn(request, context)
            except Refused as exc:
                # a flood's refusals at debug level: one line per refused call would flood the log too
                log.log(logging.DEBUG if exc.retryable else logging.INFO, "refused %s: %s", exc.code.name, exc)
                if exc.retryable:
                    context.set_trailing_metadata(((RETRY_HINT_KEY, "1"),))
                context.abort(exc.code, str(exc))
            except LedgerError as exc:
                code = ledger_refusal_code(exc)
                if code is not None:
                    log.info("refused %s (the ledger said no): %s", code.name, exc)
                    context.abort(code, f"the ledger refused: {exc}")
                log.warning("ledger unavailable: %s", exc)
                context.abort(grpc.StatusCode.UNAVAILABLE, f"ledger unavailable, retry later: {exc}")
            except IdentityError as exc:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
            raise AssertionError("unreachable")  # context.abort raises

        return handle

    def generic_handler(self) -> grpc.GenericRpcHandler:
        """SubmitShare as a request stream: the handler runs before any request byte is read."""
        return grpc.method_handlers_generic_handler(SERVICE, {
            "SubmitShare": grpc.stream_unary_rpc_method_handler(self._handler(self.submit_stream)),
            "GetHoldings": grpc.unary_unary_rpc_method_handler(self._handler(self.holdings)),
        })


def client_ca_bundle(msp: MSPManager) -> bytes:
    """Every org's signing CA: hospitals authenticate with their enrolment certificates."""
    return b"".join(pem for msp_id in msp.msp_ids for pem in msp.config(msp_id).root_pems())


def server_options(settings: IntakeSettings) -> list[tuple[str, Any]]:
    """gRPC's message cap is one SubmitShare piece: grpc-core refuses a longer message from its length
    prefix, before buffering it. Few streams per connection: one connection cannot queue a flood.
    Connections age out (grpc-core closes them; cancelling a call from another Python thread can
    deadlock in grpcio), which bounds how long a stalled call holds its worker thread and slot."""
    return [("grpc.max_receive_message_length", CHUNK_BYTES + MESSAGE_SLACK),
            ("grpc.max_send_message_length", 1 * MiB),
            ("grpc.max_concurrent_streams", 16),
            ("grpc.max_connection_age_ms", int(settings.max_connection_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(settings.max_connection_grace_s * 1000))]


def serve(intake: ShareIntake, address: str, server_cert: bytes, server_key: bytes, *,
          client_roots: bytes | None = None, max_workers: int = 16) -> tuple[grpc.Server, int]:
    """Start the intake on `address` ("127.0.0.1:0" picks a port); returns (server, port).

    No server-wide maximum_concurrent_rpcs: it refused honest callers during one identity's flood.
    The per-identity bound refuses a flood at once, so calls wait only behind cheap refusals, and
    at most `max_inflight_per_identity` calls per identity hold a worker thread while reading.
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="intake"),
                         options=server_options(intake.settings))
    server.add_generic_rpc_handlers((intake.generic_handler(),))
    creds = grpc.ssl_server_credentials([(server_key, server_cert)],
                                        root_certificates=client_roots or client_ca_bundle(intake.msp),
                                        require_client_auth=True)
    port = server.add_secure_port(address, creds)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    server.start()
    return server, port


__all__ = ["HOLDINGS_METHOD", "SUBMIT_METHOD", "InflightLimiter", "IntakeSettings", "Refused", "ShareIntake",
           "client_ca_bundle", "ledger_refusal_code", "round_share_limit", "serve"]
