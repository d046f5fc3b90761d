"""Fabric's Gateway service (gateway.Gateway) over the devnet, and the registration of both services.

Handlers take raw request bytes (identity deserializer) so a malformed message gets
INVALID_ARGUMENT with a clear text instead of gRPC's generic INTERNAL; every failure is a
gRPC status, with gateway.ErrorDetail entries naming the endorser when one failed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.peer import proposal_pb2
from fedchain.gateway.status import ErrorDetail, abort_with_details
from fedchain.identity import IdentityError
from google.protobuf.message import DecodeError

from fedchain_devnet import qscc
from fedchain_devnet.acl import AccessDenied
from fedchain_devnet.ccconn import ChaincodeUnavailable
from fedchain_devnet.deliver import DeliverService
from fedchain_devnet.errors import RequestError, denied, invalid, not_found
from fedchain_devnet.node import Node
from fedchain_devnet.orderer import AlreadySubmitted, OrdererOverloaded
from fedchain_devnet.peer import EndorsementFailed, build_transaction
from fedchain_devnet.proposal import ParsedProposal, parse_proposal
from fedchain_devnet.slots import STREAM_SLOTS

log = logging.getLogger(__name__)



def _decode(cls, data: bytes, what: str):
    try:
        return cls.FromString(data)
    except DecodeError as exc:
        raise invalid(f"request is not a valid {what} protobuf message: {exc}") from None


def _guard(fn):
    """Turn RequestError and unexpected exceptions into gRPC statuses; the server keeps serving."""
    def wrapper(self, request: bytes, context: grpc.ServicerContext):
        try:
            return fn(self, request, context)
        except RequestError as exc:
            abort_with_details(context, exc.code, exc.message, exc.details)
        except Exception as exc:  # noqa: BLE001 - last line of defence, logged with traceback
            if isinstance(exc, grpc.RpcError) or type(exc).__name__ == "_AbortError":
                raise
            log.exception("%s failed", fn.__name__)
            abort_with_details(context, grpc.StatusCode.INTERNAL, f"internal error in {fn.__name__}: {type(exc).__name__}")
    wrapper.__name__ = fn.__name__
    return wrapper


class GatewayService:
    def __init__(self, node: Node) -> None:
        self.node = node

    # --- helpers -------------------------------------------------------------------------
    def _channel(self, channel_id: str) -> None:
        if channel_id and channel_id != self.node.channel:
            raise not_found(f"channel {channel_id!r} not found (this network serves {self.node.channel!r})")

    def _proposal(self, signed: proposal_pb2.SignedProposal, tx_id: str, allow_qscc: bool) -> ParsedProposal:
        """Evaluate (allow_qscc) needs a channel reader; Endorse needs a writer."""
        names = set(self.node.chaincode_names) | ({"qscc"} if allow_qscc else set())
        return parse_proposal(signed, self.node.msps, self.node.channel, names, tx_id,
                              acl=None if allow_qscc else self.node.acl)

    def _verify_signed(self, identity: bytes, signature: bytes, data: bytes, what: str) -> None:
        try:
            self.node.msps.verify(identity, signature, data)
        except IdentityError as exc:
            raise denied(f"{what}: {exc}") from None

    # --- Endorse / Evaluate ---------------------------------------------------------------
    @_guard
    def Endorse(self, request: bytes, context) -> gateway_pb2.EndorseResponse:
        req = _decode(gateway_pb2.EndorseRequest, request, "EndorseRequest")
        self._channel(req.channel_id)
        p = self._proposal(req.proposed_transaction, req.transaction_id, allow_qscc=False)
        if self.node.ledger.tx_status(p.tx_id) is not None:
            raise RequestError(grpc.StatusCode.ALREADY_EXISTS, f"duplicate transaction id {p.tx_id}: already on the ledger")
        orgs = list(dict.fromkeys(req.endorsing_organizations)) or self.node.select_endorsers(p.chaincode)
        unknown = [o for o in orgs if o not in self.node.peers]
        if unknown:
            raise not_found(f"endorsing organization(s) {', '.join(unknown)} not in channel {self.node.channel!r}")
        peers = [self.node.peers[o] for o in orgs]
        results, details, handles = [], [], []
        for peer in peers:  # every peer's simulation in flight at once, then collect
            try:
                handles.append(peer.begin(p))
            except ChaincodeUnavailable as exc:
                handles.append(exc)
        for peer, handle in zip(peers, handles, strict=True):
            try:
                if isinstance(handle, Exception):
                    raise handle
                results.append(peer.endorse(p, handle))
            except (EndorsementFailed, ChaincodeUnavailable) as exc:
                details.append(ErrorDetail(peer.name, peer.msp_id, str(exc)))
            except Exception as exc:  # noqa: BLE001 - keep collecting so no simulation is left pending
                log.exception("endorsement by %s failed", peer.name)
                details.append(ErrorDetail(peer.name, peer.msp_id, f"internal error: {type(exc).__name__}"))
        if details:
            raise RequestError(grpc.StatusCode.ABORTED, f"failed to endorse transaction {p.tx_id}: {details[0].message}",
                               details)
        if len({r.prp_bytes for r in results}) != 1:
            raise RequestError(grpc.StatusCode.ABORTED, "endorsers returned different results (non-deterministic "
                               "chaincode?): the transaction would fail validation",
                               [ErrorDetail(pe.name, pe.msp_id, "proposal response differs") for pe in peers])
        env = build_transaction(p, results[0].prp_bytes, [r.endorsement for r in results])
        return gateway_pb2.EndorseResponse(prepared_transaction=env)

    @_guard
    def Evaluate(self, request: bytes, context) -> gateway_pb2.EvaluateResponse:
        req = _decode(gateway_pb2.EvaluateRequest, request, "EvaluateRequest")
        self._channel(req.channel_id)
        p = self._proposal(req.proposed_transaction, req.transaction_id, allow_qscc=True)
        if p.chaincode == "qscc":
            response = qscc.invoke(self.node.ledger, p.function, p.args)
            peer = self.node.peers[self.node.gateway_org]
        else:
            targets = [o for o in req.target_organizations if o in self.node.peers]
            if req.target_organizations and not targets:
                raise not_found(f"target organization(s) {', '.join(req.target_organizations)} not in the channel")
            peer = self.node.peers[targets[0] if targets else self.node.gateway_org]
            try:
                response = peer.simulate(p).response
            except ChaincodeUnavailable as exc:
                raise RequestError(grpc.StatusCode.UNAVAILABLE, str(exc),
                                   [ErrorDetail(peer.name, peer.msp_id, str(exc))]) from None
        if response.status >= 400:
            message = f"chaincode response {response.status}, {response.message}"
            raise RequestError(grpc.StatusCode.ABORTED, f"evaluate of {p.chaincode}.{p.function} failed: {message}",
                               [ErrorDetail(peer.name, peer.msp_id, message)])
        return gateway_pb2.EvaluateResponse(result=response)

    # --- Submit / CommitStatus -------------------------------------------------------------
    @_guard
    def Submit(self, request: bytes, context) -> gateway_pb2.SubmitResponse:
        req = _decode(gateway_pb2.SubmitRequest, request, "SubmitRequest")
        self._channel(req.channel_id)
        env = req.prepared_transaction
        payload = _decode(common_pb2.Payload, env.payload, "transaction Payload")
        chdr = _decode(common_pb2.ChannelHeader, payload.header.channel_header, "ChannelHeader")
        shdr = _decode(common_pb2.SignatureHeader, payload.header.signature_header, "SignatureHeader")
        self._channel(chdr.channel_id or "?")
        if req.transaction_id and chdr.tx_id != req.transaction_id:
            raise invalid(f"transaction id {req.transaction_id!r} does not match the envelope's {chdr.tx_id!r}")
        if not env.signature:
            raise invalid("prepared transaction is not signed")
        self._verify_signed(bytes(shdr.creator), bytes(env.signature), bytes(env.payload), "transaction signature")
        try:
            self.node.acl.check_writer(self.node.msps.validate(bytes(shdr.creator)))
        except AccessDenied as exc:
            raise denied(str(exc)) from None
        try:
            self.node.orderer.broadcast(env.SerializeToString(), chdr.tx_id)
        except AlreadySubmitted as exc:  # a re-sent envelope would only take a DUPLICATE_TXID slot
            raise RequestError(grpc.StatusCode.ALREADY_EXISTS, str(exc)) from None
        except OrdererOverloaded as exc:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"ordering service: {exc}",
                               [ErrorDetail("orderer0", self.node.orderer_msp_id, str(exc))]) from None
        return gateway_pb2.SubmitResponse()

    @_guard
    def CommitStatus(self, request: bytes, context) -> gateway_pb2.CommitStatusResponse:
        signed = _decode(gateway_pb2.SignedCommitStatusRequest, request, "SignedCommitStatusRequest")
        req = _decode(gateway_pb2.CommitStatusRequest, signed.request, "CommitStatusRequest")
        self._channel(req.channel_id or "?")
        self._verify_signed(bytes(req.identity), bytes(signed.signature), bytes(signed.request), "commit status request")
        remaining = context.time_remaining()
        status = self.node.ledger.wait_for_tx(req.transaction_id, None if remaining is None else max(0.0, remaining - 0.05))
        if status is None:
            raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               f"transaction {req.transaction_id} was not committed before the deadline")
        return gateway_pb2.CommitStatusResponse(result=status[0], block_number=status[1])

    # --- ChaincodeEvents --------------------------------------------------------------------
    def ChaincodeEvents(self, request: bytes, context) -> Iterator[gateway_pb2.ChaincodeEventsResponse]:
        try:
            signed = _decode(gateway_pb2.SignedChaincodeEventsRequest, request, "SignedChaincodeEventsRequest")
            req = _decode(gateway_pb2.ChaincodeEventsRequest, signed.request, "ChaincodeEventsRequest")
            self._channel(req.channel_id or "?")
            self._verify_signed(bytes(req.identity), bytes(signed.signature), bytes(signed.request), "events request")
            if req.chaincode_id not in self.node.chaincode_names:
                raise not_found(f"chaincode {req.chaincode_id!r} is not deployed on channel {self.node.channel!r}")
        except RequestError as exc:
            abort_with_details(context, exc.code, exc.message, exc.details)
            return
        if not STREAM_SLOTS.acquire():
            abort_with_details(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"too many open event streams (limit {STREAM_SLOTS.n}); retry later")
            return
        try:
            yield from self._events(req, context)
        finally:
            STREAM_SLOTS.release()

    def _events(self, req: gateway_pb2.ChaincodeEventsRequest, context) -> Iterator[gateway_pb2.ChaincodeEventsResponse]:
        ledger = self.node.ledger
        kind = req.start_position.WhichOneof("Type")
        if kind == "specified":
            start = req.start_position.specified.number
        elif kind == "oldest":
            start = 0
        elif kind == "newest":
            start = max(0, ledger.height - 1)
        else:
            start = ledger.height
        n = start
        skip_through = -1  # resume after a checkpointed transaction of the start block (in transaction order)
        if req.after_transaction_id:
            loc = ledger.tx_location(req.after_transaction_id)
            if loc is not None and loc[1] == start:
                skip_through = loc[2]
        while context.is_active() and not ledger.closed:
            if n >= ledger.height:
                ledger.wait_for_height(n + 1, 1.0)
                continue
            events = [ev for txnum, ev in ledger.block_events(n)
                      if ev.chaincode_id == req.chaincode_id and (n != start or txnum > skip_through)]
            if events:
                yield gateway_pb2.ChaincodeEventsResponse(events=events, block_number=n)
            n += 1


def _identity(b: bytes) -> bytes:
    return b


def _ser(msg) -> bytes:
    return msg.SerializeToString()


def add_services(server: grpc.Server, node: Node) -> None:
    gw = GatewayService(node)
    unary = {name: grpc.unary_unary_rpc_method_handler(getattr(gw, name), request_deserializer=_identity,
                                                        response_serializer=_ser)
             for name in ("Endorse", "Evaluate", "Submit", "CommitStatus")}
    unary["ChaincodeEvents"] = grpc.unary_stream_rpc_method_handler(
        gw.ChaincodeEvents, request_deserializer=_identity, response_serializer=_ser)
    dl = DeliverService(node)
    deliver = {name: grpc.stream_stream_rpc_method_handler(getattr(dl, name), request_deserializer=_identity,
                                                           response_serializer=_ser)
               for name in ("Deliver", "DeliverFiltered")}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("gateway.Gateway", unary),
                                     grpc.method_handlers_generic_handler("protos.Deliver", deliver)))
