"""Gateway → Network → Contract: the application-facing client of Fabric's Gateway service.

Shape follows Fabric's own gateway clients (fabric-gateway pkg/client): one long-lived
Gateway per identity and endpoint, shared by any number of threads; cheap Network and
Contract handles; submit = endorse + submit + wait for commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import events_pb2_grpc

from fedchain.gateway.blocks import BlockEventStream, seek_envelope
from fedchain.gateway.events import ChaincodeEventStream, Checkpoint
from fedchain.gateway.proposal import Arg, ProposalInfo, build_proposal
from fedchain.gateway.transaction import (
    ClientContext,
    Commit,
    Proposal,
    Signer,
    SubmitResult,
    Timeouts,
    Transaction,
    commit_from_bytes,
    proposal_from_bytes,
    raise_for_status,
    transaction_from_bytes,
)
from fedchain.identity import Identity, SigningIdentity

MiB = 1024 * 1024


class Gateway:
    """A connection to one Fabric Gateway endpoint as one identity. Thread-safe."""

    def __init__(self, channel: grpc.Channel, identity: SigningIdentity | Identity, *,
                 signer: Signer | None = None, timeouts: Timeouts | None = None, owns_channel: bool = True) -> None:
        self._channel = channel
        self._owns_channel = owns_channel
        self.identity = identity
        if signer is None and isinstance(identity, SigningIdentity):
            signer = identity.sign
        creator = identity.serialize()  # once: it goes into every proposal and status request
        self._ctx = ClientContext(gateway_pb2_grpc.GatewayStub(channel), creator, signer, timeouts or Timeouts())
        self._deliver = events_pb2_grpc.DeliverStub(channel)
        self.tls_cert_hash = b""  # SHA-256 of the client TLS certificate (DER) when mutual TLS is used

    @classmethod
    def connect(cls, identity: SigningIdentity | Identity, endpoint: str, *, tls_root_cert: bytes | None,
                client_cert: bytes | None = None, client_key: bytes | None = None, server_name: str | None = None,
                insecure: bool = False, signer: Signer | None = None, evaluate_timeout: float = 5,
                endorse_timeout: float = 15, submit_timeout: float = 5, commit_status_timeout: float = 60,
                max_message_bytes: int = 16 * MiB, options: Sequence[tuple[str, Any]] = ()) -> Gateway:
        """Open a gRPC channel (TLS, optionally mutual) to `endpoint` ("host:port").

        Plaintext needs both tls_root_cert=None and insecure=True: it is never a silent fallback.
        The channel connects lazily; the first call reports an unreachable gateway.
        """
        opts: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
        ]
        if server_name:
            opts.append(("grpc.ssl_target_name_override", server_name))
        opts.extend(options)
        if (client_cert is None) != (client_key is None):
            raise ValueError("mutual TLS needs both client_cert and client_key")
        if tls_root_cert is None:
            if not insecure:
                raise ValueError(f"no tls_root_cert for {endpoint}: pass the gateway's TLS CA certificate "
                                 "(plaintext only with insecure=True, for local tests)")
            if client_cert is not None:
                raise ValueError("client certificates need TLS (tls_root_cert)")
            channel = grpc.insecure_channel(endpoint, options=opts)
        else:
            creds = grpc.ssl_channel_credentials(root_certificates=tls_root_cert, private_key=client_key,
                                                 certificate_chain=client_cert)
            channel = grpc.secure_channel(endpoint, creds, options=opts)
        timeouts = Timeouts(evaluate_timeout, endorse_timeout, submit_timeout, commit_status_timeout)
        gateway = cls(channel, identity, signer=signer, timeouts=timeouts)
        if client_cert is not None:
            der = x509.load_pem_x509_certificate(client_cert).public_bytes(serialization.Encoding.DER)
            gateway.tls_cert_hash = hashlib.sha256(der).digest()
        return gateway

    @property
    def context(self) -> ClientContext:
        return self._ctx

    @property
    def deliver_stub(self) -> events_pb2_grpc.DeliverStub:
        return self._deliver

    def network(self, channel: str) -> Network:
        return Network(self, channel)

    # Offline signing: restore a stage from its portable bytes plus a signature made elsewhere.
    def new_signed_proposal(self, proposal_bytes: bytes, signature: bytes) -> Proposal:
        return proposal_from_bytes(self._ctx, proposal_bytes, signature)

    def new_signed_transaction(self, transaction_bytes: bytes, signature: bytes) -> Transaction:
        return transaction_from_bytes(self._ctx, transaction_bytes, signature, self._ctx.creator)

    def new_signed_commit(self, commit_bytes: bytes, signature: bytes) -> Commit:
        return commit_from_bytes(self._ctx, commit_bytes, signature)

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Network:
    """One channel seen through a gateway."""

    def __init__(self, gateway: Gateway, name: str) -> None:
        self.gateway = gateway
        self.name = name

    def contract(self, chaincode_name: str) -> Contract:
        return Contract(self, chaincode_name)

    def chaincode_events(self, chaincode_name: str, *, start_block: int | None = None,
                         checkpoint: Checkpoint | None = None) -> ChaincodeEventStream:
        """Stream chaincode events of committed (valid) transactions.

        Position: the checkpoint's block and last transaction if it has one, else `start_block`,
        else only events committed from now on.
        """
        ctx = self.gateway.context
        block = checkpoint.block_number if checkpoint is not None and checkpoint.block_number is not None else start_block
        after_tx = checkpoint.transaction_id if checkpoint is not None and checkpoint.block_number is not None else None
        if block is None:
            position = ab_pb2.SeekPosition(next_commit=ab_pb2.SeekNextCommit())
        else:
            position = ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=block))
        request = gateway_pb2.ChaincodeEventsRequest(
            channel_id=self.name, chaincode_id=chaincode_name, identity=ctx.creator, start_position=position,
            after_transaction_id=after_tx or "",
        ).SerializeToString()
        signed = gateway_pb2.SignedChaincodeEventsRequest(
            request=request, signature=ctx.sign(request, "chaincode events request")
        )
        return ChaincodeEventStream(lambda: ctx.stub.ChaincodeEvents(signed), chaincode_name)

    def block_events(self, *, start_block: int | None = None,
                     checkpoint: Checkpoint | None = None) -> BlockEventStream:
        """Stream full blocks (with validation flags) from the peer's Deliver service.

        Position: the checkpoint's block if it has one, else `start_block`, else the newest block. Checkpoint a block with `checkpoint.checkpoint_block(block.header.number)`.
        """
        ctx = self.gateway.context
        block = checkpoint.block_number if checkpoint is not None and checkpoint.block_number is not None else start_block
        if block is None:
            position = ab_pb2.SeekPosition(newest=ab_pb2.SeekNewest())
        else:
            position = ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=block))
        envelope = seek_envelope(self.name, ctx.creator, lambda data: ctx.sign(data, "block events request"),
                                 position, self.gateway.tls_cert_hash)
        return BlockEventStream(self.gateway.deliver_stub.Deliver(iter([envelope])))


class Contract:
    """One chaincode on one channel."""

    def __init__(self, network: Network, chaincode_name: str) -> None:
        self.network = network
        self.name = chaincode_name

    def new_proposal(self, function: str, args: Sequence[Arg] = (), transient: Mapping[str, bytes] | None = None,
                     endorsing_orgs: Sequence[str] | None = None) -> Proposal:
        ctx = self.network.gateway.context
        built = build_proposal(self.network.name, self.name, function, args, ctx.creator, transient)
        proposed = gateway_pb2.ProposedTransaction(
            transaction_id=built.tx_id, endorsing_organizations=list(endorsing_orgs or ()),
        )
        proposed.proposal.proposal_bytes = built.proposal_bytes
        info = ProposalInfo(built.tx_id, built.channel, ctx.creator, built.invocation_spec)
        return Proposal(ctx, proposed, info)

    def evaluate(self, function: str, *args: Arg, transient: Mapping[str, bytes] | None = None,
                 target_orgs: Sequence[str] | None = None) -> bytes:
        """Run a read-only query on one peer; nothing is ordered or committed."""
        proposal = self.new_proposal(function, args, transient)
        return proposal.evaluate(target_organizations=list(target_orgs) if target_orgs else None)

    def submit(self, function: str, *args: Arg, transient: Mapping[str, bytes] | None = None,
               endorsing_orgs: Sequence[str] | None = None) -> SubmitResult:
        """Endorse, order and wait for commit; raises CommitError unless the transaction is VALID."""
        transaction = self.new_proposal(function, args, transient, endorsing_orgs).endorse()
        status = transaction.submit().status()
        raise_for_status(status)
        return SubmitResult(transaction.result, status.tx_id, status.code, status.code_name, status.block_number)

    def submit_async(self, function: str, *args: Arg, transient: Mapping[str, bytes] | None = None,
                     endorsing_orgs: Sequence[str] | None = None) -> tuple[bytes, Commit]:
        """Endorse and submit, return (result, commit) without waiting for the block."""
        transaction = self.new_proposal(function, args, transient, endorsing_orgs).endorse()
        return transaction.result, transaction.submit()
