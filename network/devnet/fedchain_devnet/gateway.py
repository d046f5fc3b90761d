"""Fabric's Gateway service (gateway.Gateway) and Deliver service (protos.Deliver) over the devnet.

Handlers take raw request bytes (identity deserializer) so a malformed message gets
INVALID_ARGUMENT with a clear text instead of gRPC's generic INTERNAL; every failure is a
gRPC status, with gateway.ErrorDetail entries naming the endorser when one failed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import grpc
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import events_pb2, proposal_pb2
from fedchain.gateway.status import ErrorDetail, abort_with_details
from fedchain.identity import IdentityError
from google.protobuf.message import DecodeError

from fedchain_devnet import qscc
from fedchain_devnet.acl import AccessDenied
from fedchain_devnet.ccconn import ChaincodeUnavailable
from fedchain_devnet.errors import RequestError, denied, invalid, not_found
from fedchain_devnet.node import Node
from fedchain_devnet.orderer import OrdererOverloaded
from fedchain_devnet.peer import EndorsementFailed, build_transaction
from fedchain_devnet.proposal import MAX_CLOCK_SKEW, ParsedProposal, parse_proposal

log = logging.getLogger(__name__)
MAX_U64 = (1 << 64) - 1
TRANSACTIONS_FILTER = common_pb2.BlockMetadataIndex.Value("TRANSACTIONS_FILTER")
MAX_STREAMS = 128  # long-lived event/block streams; the rest of the RPC pool stays free for transactions


class _StreamSlots:
    """Caps concurrent streams so idle subscribers cannot take every RPC worker thread."""

    def __init__(self, n: int) -> None:
        self._sem = threading.BoundedSemaphore(n)
        self.n = n

    def acquire(self) -> bool:
        return self._sem.acquire(blocking=False)

    def release(self) -> None:
        self._sem.release()


STREAM_SLOTS = _StreamSlots(MAX_STREAMS)


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
            self.node.orderer.broadcast(env.SerializeToString())
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


class DeliverService:
    """protos.Deliver/Deliver: signed SeekInfo envelopes in, blocks and a final status out."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def _position(self, pos: ab_pb2.SeekPosition, height: int) -> int:
        kind = pos.WhichOneof("Type")
        if kind == "specified":
            return pos.specified.number
        if kind == "oldest":
            return 0
        return max(0, height - 1)  # newest (and Fabric's default)

    def Deliver(self, request_iterator, context) -> Iterator[events_pb2.DeliverResponse]:
        yield from self._stream(request_iterator, context, filtered=False)

    def DeliverFiltered(self, request_iterator, context) -> Iterator[events_pb2.DeliverResponse]:
        """Per transaction only id, type, validation code and chaincode event name (no payloads, no rwsets)."""
        yield from self._stream(request_iterator, context, filtered=True)

    def _stream(self, request_iterator, context, filtered: bool) -> Iterator[events_pb2.DeliverResponse]:
        if not STREAM_SLOTS.acquire():
            yield events_pb2.DeliverResponse(status=common_pb2.Status.Value("SERVICE_UNAVAILABLE"))
            return
        try:
            yield from self._deliver(request_iterator, context, filtered)
        finally:
            STREAM_SLOTS.release()

    def _filtered(self, number: int) -> events_pb2.FilteredBlock:
        block = self.node.ledger.block(number)
        codes = block.metadata.metadata[TRANSACTIONS_FILTER] if len(block.metadata.metadata) > TRANSACTIONS_FILTER else b""
        events = dict(self.node.ledger.block_events(number))
        out = events_pb2.FilteredBlock(channel_id=self.node.channel, number=number)
        for txnum, raw in enumerate(block.data.data):
            ftx = out.filtered_transactions.add(tx_validation_code=codes[txnum] if txnum < len(codes) else 254)
            try:
                payload = common_pb2.Payload.FromString(common_pb2.Envelope.FromString(raw).payload)
                chdr = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
                ftx.txid, ftx.type = chdr.tx_id, chdr.type
            except DecodeError:
                continue
            if txnum in events:
                ev = events[txnum]
                ftx.transaction_actions.chaincode_actions.add().chaincode_event.CopyFrom(
                    type(ev)(chaincode_id=ev.chaincode_id, tx_id=ev.tx_id, event_name=ev.event_name))
        return out

    def _deliver(self, request_iterator, context, filtered: bool) -> Iterator[events_pb2.DeliverResponse]:
        status = common_pb2.Status
        ledger = self.node.ledger
        try:
            for raw in request_iterator:
                try:
                    env = common_pb2.Envelope.FromString(raw)
                    payload = common_pb2.Payload.FromString(env.payload)
                    chdr = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
                    shdr = common_pb2.SignatureHeader.FromString(payload.header.signature_header)
                    seek = ab_pb2.SeekInfo.FromString(payload.data)
                except DecodeError:
                    yield events_pb2.DeliverResponse(status=status.Value("BAD_REQUEST"))
                    continue
                if chdr.channel_id != self.node.channel:
                    yield events_pb2.DeliverResponse(status=status.Value("NOT_FOUND"))
                    continue
                skew = abs(time.time() - (chdr.timestamp.seconds + chdr.timestamp.nanos / 1e9))
                if skew > MAX_CLOCK_SKEW.total_seconds():  # Fabric refuses stale (replayed) seek requests
                    yield events_pb2.DeliverResponse(status=status.Value("BAD_REQUEST"))
                    continue
                try:
                    self.node.msps.verify(bytes(shdr.creator), bytes(env.signature), bytes(env.payload))
                except IdentityError:
                    yield events_pb2.DeliverResponse(status=status.Value("FORBIDDEN"))
                    continue
                height = ledger.height
                start = self._position(seek.start, height)
                stop = self._position(seek.stop, height) if seek.HasField("stop") else MAX_U64
                if start > stop:
                    yield events_pb2.DeliverResponse(status=status.Value("BAD_REQUEST"))
                    continue
                n, outcome = start, "SUCCESS"
                while n <= stop:
                    if not context.is_active() or ledger.closed:
                        return
                    if n >= ledger.height:
                        if seek.behavior == ab_pb2.SeekInfo.FAIL_IF_NOT_READY:
                            outcome = "NOT_FOUND"
                            break
                        ledger.wait_for_height(n + 1, 1.0)
                        continue
                    if filtered:
                        yield events_pb2.DeliverResponse(filtered_block=self._filtered(n))
                    else:
                        yield events_pb2.DeliverResponse(block=ledger.block(n))
                    n += 1
                yield events_pb2.DeliverResponse(status=status.Value(outcome))
        except grpc.RpcError:
            return


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
