"""Test doubles for the gateway tests: identities, peer-built transactions, blocks, and a
fake Fabric Gateway servicer served over real gRPC with TLS (in-process, tests only)."""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from cryptography.hazmat.primitives import serialization
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import (
    chaincode_event_pb2,
    chaincode_pb2,
    events_pb2,
    events_pb2_grpc,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from fedchain.gateway.status import ErrorDetail, abort_with_details
from fedchain.identity import Identity, SigningIdentity
from fedchain.identity.certs import cert_to_pem, create_ca, issue_certificate
from fedchain.ledger import block_data_hash, block_header_hash

VALID = transaction_pb2.TxValidationCode.Value("VALID")
MVCC = transaction_pb2.TxValidationCode.Value("MVCC_READ_CONFLICT")


def make_identity(msp_id: str = "Org1MSP", cn: str = "user1", role: str | None = "hospital") -> SigningIdentity:
    ca_key, ca_cert = create_ca(f"ca.{msp_id}", msp_id)
    key, cert = issue_certificate(ca_key, ca_cert, cn, org=msp_id, ou="client", role=role)
    return SigningIdentity(Identity(msp_id, cert_to_pem(cert)), key)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass
class TLSMaterial:
    ca_pem: bytes
    server_cert: bytes
    server_key: bytes
    client_cert: bytes
    client_key: bytes


def make_tls() -> TLSMaterial:
    ca_key, ca_cert = create_ca("tlsca.test", "TestOrg")
    skey, scert = issue_certificate(ca_key, ca_cert, "gateway.test", org="TestOrg", tls=True,
                                    hosts=("localhost", "127.0.0.1", "gateway.test"))
    ckey, ccert = issue_certificate(ca_key, ca_cert, "client.test", org="TestOrg", tls=True)
    return TLSMaterial(cert_to_pem(ca_cert), cert_to_pem(scert), _pem_key(skey), cert_to_pem(ccert), _pem_key(ckey))


def rwset_bytes(namespace: str, reads: dict[str, tuple[int, int] | None], writes: dict[str, bytes | None]) -> bytes:
    """A one-namespace KV read/write set (the auditor's synthetic chains build them the same way)."""
    from fedchain.audit.synthetic import rwset_bytes as build

    return build(namespace, reads, writes, {})


def endorse_proposal(proposal_bytes: bytes, endorsers: list[SigningIdentity], *, payload: bytes = b"",
                     results: bytes = b"", event: chaincode_event_pb2.ChaincodeEvent | None = None,
                     status: int = 200, keep_transient: bool = False) -> common_pb2.Envelope:
    """What a peer + the gateway do (protoutil.CreateSignedTx): an endorsed, unsigned envelope."""
    proposal = proposal_pb2.Proposal.FromString(proposal_bytes)
    header = common_pb2.Header.FromString(proposal.header)
    cpp = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
    chdr = common_pb2.ChannelHeader.FromString(header.channel_header)
    ext = proposal_pb2.ChaincodeHeaderExtension.FromString(chdr.extension)
    stripped = cpp if keep_transient else proposal_pb2.ChaincodeProposalPayload(input=cpp.input)
    stripped_bytes = stripped.SerializeToString()
    action = proposal_pb2.ChaincodeAction(
        results=results, events=event.SerializeToString() if event else b"",
        response=proposal_response_pb2.Response(status=status, payload=payload), chaincode_id=ext.chaincode_id,
    )
    prp = proposal_response_pb2.ProposalResponsePayload(
        proposal_hash=hashlib.sha256(header.channel_header + header.signature_header + stripped_bytes).digest(),
        extension=action.SerializeToString(),
    ).SerializeToString()
    cap = transaction_pb2.ChaincodeActionPayload(
        chaincode_proposal_payload=stripped_bytes,
        action=transaction_pb2.ChaincodeEndorsedAction(
            proposal_response_payload=prp,
            endorsements=[
                proposal_response_pb2.Endorsement(endorser=e.serialize(), signature=e.sign(prp + e.serialize()))
                for e in endorsers
            ],
        ),
    )
    tx = transaction_pb2.Transaction(
        actions=[transaction_pb2.TransactionAction(header=header.signature_header, payload=cap.SerializeToString())]
    )
    return common_pb2.Envelope(payload=common_pb2.Payload(header=header, data=tx.SerializeToString()).SerializeToString())


def make_block(number: int, previous: common_pb2.Block | None, envelopes: list[bytes],
               codes: list[int] | None = None) -> common_pb2.Block:
    block = common_pb2.Block()
    block.header.number = number
    block.header.previous_hash = block_header_hash(previous.header) if previous is not None else b""
    block.data.data.extend(envelopes)
    block.header.data_hash = block_data_hash(block.data)
    block.metadata.metadata.extend([b""] * 5)
    block.metadata.metadata[2] = bytes(codes if codes is not None else [VALID] * len(envelopes))
    return block


@dataclass
class Recorded:
    proposals: list[proposal_pb2.SignedProposal] = field(default_factory=list)
    endorse_requests: list[gateway_pb2.EndorseRequest] = field(default_factory=list)
    submitted: list[common_pb2.Envelope] = field(default_factory=list)
    status_requests: list[gateway_pb2.SignedCommitStatusRequest] = field(default_factory=list)
    event_requests: list[gateway_pb2.ChaincodeEventsRequest] = field(default_factory=list)


def _verify(creator: bytes, signature: bytes, data: bytes, context: grpc.ServicerContext) -> Identity:
    identity = Identity.deserialize(creator)
    if not identity.verify(signature, data):
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "bad signature")
    return identity


class FakeGateway(gateway_pb2_grpc.GatewayServicer):
    """Endorses with fixed peer identities; function names select behaviours:
    echo (returns its first arg), fail (ABORTED with error details), slow (sleeps), conflict
    (commits with MVCC_READ_CONFLICT), tamper (returns someone else's transaction),
    leak (keeps transient data in the transaction)."""

    def __init__(self, endorsers: list[SigningIdentity]) -> None:
        self.endorsers = endorsers
        self.rec = Recorded()
        self.lock = threading.Lock()
        self.commits: dict[str, tuple[int, int]] = {}
        self.next_block = 5
        self.event_blocks: list[tuple[int, list[chaincode_event_pb2.ChaincodeEvent]]] = []

    def _invocation(self, signed: proposal_pb2.SignedProposal, context) -> tuple[str, list[bytes], Identity]:
        proposal = proposal_pb2.Proposal.FromString(signed.proposal_bytes)
        header = common_pb2.Header.FromString(proposal.header)
        shdr = common_pb2.SignatureHeader.FromString(header.signature_header)
        identity = _verify(shdr.creator, signed.signature, signed.proposal_bytes, context)
        cpp = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
        cis = chaincode_pb2.ChaincodeInvocationSpec.FromString(cpp.input)
        args = list(cis.chaincode_spec.input.args)
        return args[0].decode(), args[1:], identity

    def Endorse(self, request, context):
        fn, args, _ = self._invocation(request.proposed_transaction, context)
        with self.lock:
            self.rec.proposals.append(request.proposed_transaction)
            self.rec.endorse_requests.append(request)
        if fn == "fail":
            abort_with_details(context, grpc.StatusCode.ABORTED, "failed to endorse transaction", [
                ErrorDetail("peer0.org1.example.com:7051", "Org1MSP", "chaincode response 500, round 3 is closed"),
                ErrorDetail("peer0.org2.example.com:7051", "Org2MSP", "chaincode response 500, round 3 is closed"),
            ])
        if fn == "slow":
            time.sleep(float(args[0]))
        proposal_bytes = request.proposed_transaction.proposal_bytes
        if fn == "tamper":
            other = common_pb2.Envelope()
            proposal = proposal_pb2.Proposal.FromString(proposal_bytes)
            header = common_pb2.Header.FromString(proposal.header)
            chdr = common_pb2.ChannelHeader.FromString(header.channel_header)
            chdr.tx_id = "0" * 64
            header.channel_header = chdr.SerializeToString()
            proposal.header = header.SerializeToString()
            other = endorse_proposal(proposal.SerializeToString(), self.endorsers)
            return gateway_pb2.EndorseResponse(prepared_transaction=other)
        event = chaincode_event_pb2.ChaincodeEvent(chaincode_id="fedchain", tx_id=request.transaction_id,
                                                   event_name=fn, payload=b"".join(args))
        env = endorse_proposal(proposal_bytes, self.endorsers, payload=args[0] if args else b"",
                               results=rwset_bytes("fedchain", {}, {"k": b"v"}), event=event,
                               keep_transient=fn == "leak")
        return gateway_pb2.EndorseResponse(prepared_transaction=env)

    def Submit(self, request, context):
        env = request.prepared_transaction
        payload = common_pb2.Payload.FromString(env.payload)
        shdr = common_pb2.SignatureHeader.FromString(payload.header.signature_header)
        _verify(shdr.creator, env.signature, env.payload, context)
        tx = transaction_pb2.Transaction.FromString(payload.data)
        cap = transaction_pb2.ChaincodeActionPayload.FromString(tx.actions[0].payload)
        cpp = proposal_pb2.ChaincodeProposalPayload.FromString(cap.chaincode_proposal_payload)
        fn = chaincode_pb2.ChaincodeInvocationSpec.FromString(cpp.input).chaincode_spec.input.args[0].decode()
        with self.lock:
            self.rec.submitted.append(env)
            self.commits[request.transaction_id] = (MVCC if fn == "conflict" else VALID, self.next_block)
        return gateway_pb2.SubmitResponse()

    def CommitStatus(self, request, context):
        req = gateway_pb2.CommitStatusRequest.FromString(request.request)
        _verify(req.identity, request.signature, request.request, context)
        with self.lock:
            self.rec.status_requests.append(request)
            found = self.commits.get(req.transaction_id)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown transaction {req.transaction_id}")
        return gateway_pb2.CommitStatusResponse(result=found[0], block_number=found[1])

    def Evaluate(self, request, context):
        fn, args, identity = self._invocation(request.proposed_transaction, context)
        if fn == "fail":
            abort_with_details(context, grpc.StatusCode.UNKNOWN, "evaluate call to endorser returned error", [
                ErrorDetail("peer0.org1.example.com:7051", "Org1MSP", "no such round"),
            ])
        if fn == "slow":
            time.sleep(float(args[0]))
        if fn == "whoami":
            return gateway_pb2.EvaluateResponse(result=proposal_response_pb2.Response(status=200, payload=identity.msp_id.encode()))
        return gateway_pb2.EvaluateResponse(result=proposal_response_pb2.Response(status=200, payload=b"|".join(args)))

    def ChaincodeEvents(self, request, context):
        req = gateway_pb2.ChaincodeEventsRequest.FromString(request.request)
        _verify(req.identity, request.signature, request.request, context)
        with self.lock:
            self.rec.event_requests.append(req)
        # Fabric's gateway (internal/pkg/gateway/api.go): with after_transaction_id, start at the
        # block holding that transaction and deliver only events after it.
        start = req.start_position.specified.number if req.start_position.HasField("specified") else None
        with self.lock:
            holding = [n for n, evs in self.event_blocks if any(e.tx_id == req.after_transaction_id for e in evs)]
        if req.after_transaction_id and holding:
            start = holding[0]
        if start is None:
            start = self.event_blocks[-1][0] + 1 if self.event_blocks else 0
        sent = start
        passed = not req.after_transaction_id
        while context.is_active():
            with self.lock:
                blocks = [(n, evs) for n, evs in self.event_blocks if n >= sent]
            for number, events in blocks:
                selected = []
                for e in events:
                    if not passed:
                        passed = e.tx_id == req.after_transaction_id
                    elif e.chaincode_id == req.chaincode_id:
                        selected.append(e)
                sent = number + 1
                if selected:
                    yield gateway_pb2.ChaincodeEventsResponse(block_number=number, events=selected)
            time.sleep(0.01)

    def add_event_block(self, number: int, tx_events: list[tuple[str, str, bytes]]) -> None:
        with self.lock:
            self.event_blocks.append((number, [
                chaincode_event_pb2.ChaincodeEvent(chaincode_id="fedchain", tx_id=tx, event_name=name, payload=payload)
                for tx, name, payload in tx_events
            ]))


def serve(servicer: FakeGateway, tls: TLSMaterial, *, require_client_auth: bool = False,
          start: bool = True) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, server)
    creds = grpc.ssl_server_credentials([(tls.server_key, tls.server_cert)], root_certificates=tls.ca_pem,
                                        require_client_auth=require_client_auth)
    port = server.add_secure_port("127.0.0.1:0", creds)
    if start:
        server.start()
    return server, f"127.0.0.1:{port}"


class FakeDeliver(events_pb2_grpc.DeliverServicer):
    """Peer Deliver service over a list of blocks; seeks past the end wait for new blocks."""

    def __init__(self) -> None:
        self.blocks: list[common_pb2.Block] = []
        self.requests: list[common_pb2.ChannelHeader] = []
        self.lock = threading.Lock()

    def append(self, envelopes: list[bytes]) -> common_pb2.Block:
        with self.lock:
            prev = self.blocks[-1] if self.blocks else None
            block = make_block(len(self.blocks), prev, envelopes)
            self.blocks.append(block)
            return block

    def Deliver(self, request_iterator, context):
        env = next(request_iterator)
        payload = common_pb2.Payload.FromString(env.payload)
        chdr = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
        shdr = common_pb2.SignatureHeader.FromString(payload.header.signature_header)
        _verify(shdr.creator, env.signature, env.payload, context)
        self.requests.append(chdr)
        if chdr.channel_id != "fedchain":
            yield events_pb2.DeliverResponse(status=common_pb2.Status.Value("NOT_FOUND"))
            return
        seek = ab_pb2.SeekInfo.FromString(payload.data)
        with self.lock:
            number = seek.start.specified.number if seek.start.HasField("specified") else max(len(self.blocks) - 1, 0)
        while context.is_active():
            with self.lock:
                block = self.blocks[number] if number < len(self.blocks) else None
            if block is None:
                time.sleep(0.01)
                continue
            yield events_pb2.DeliverResponse(block=block)
            number += 1


def serve_deliver(servicer: FakeGateway, deliver: FakeDeliver, tls: TLSMaterial) -> tuple[grpc.Server, str]:
    server, endpoint = serve(servicer, tls, start=False)
    events_pb2_grpc.add_DeliverServicer_to_server(deliver, server)
    server.start()
    return server, endpoint
