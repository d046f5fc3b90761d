"""The staged transaction flow: Proposal → endorse → Transaction → submit → Commit → status.

Each stage exposes the exact bytes to sign (`message`), their SHA-256 (`digest`) and a
portable serialized form (`bytes`) so signing can happen elsewhere (an HSM, an offline
machine): `with_signature(sig)` returns the signed stage. With a SigningIdentity the client
signs automatically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.peer import proposal_pb2, transaction_pb2

from fedchain.gateway.errors import (
    CommitError,
    CommitStatusError,
    EndorseError,
    EvaluateError,
    GatewayError,
    SubmitError,
    from_rpc_error,
)
from fedchain.gateway.proposal import (
    ProposalError,
    ProposalInfo,
    check_prepared_transaction,
    inspect_proposal,
)
from fedchain.ledger.blocks import VALID, validation_code_name

Signer = Callable[[bytes], bytes]


@dataclass(frozen=True)
class Timeouts:
    evaluate: float = 5.0
    endorse: float = 15.0
    submit: float = 5.0
    commit_status: float = 60.0


@dataclass(frozen=True)
class ClientContext:
    """What every stage needs; shared read-only by all threads using one Gateway."""

    stub: gateway_pb2_grpc.GatewayStub
    creator: bytes
    signer: Signer | None
    timeouts: Timeouts

    def sign(self, data: bytes, what: str) -> bytes:
        if self.signer is None:
            raise GatewayError(
                f"{what} is unsigned and this gateway has no private key: sign `.digest` offline and use with_signature()"
            )
        return self.signer(data)


@dataclass(frozen=True)
class Status:
    tx_id: str
    code: int
    code_name: str
    block_number: int

    @property
    def successful(self) -> bool:
        return self.code == VALID


@dataclass(frozen=True)
class SubmitResult:
    result: bytes
    tx_id: str
    validation_code: int
    validation_code_name: str
    block_number: int


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Proposal:
    """A signed-or-unsigned chaincode proposal, not yet sent."""

    def __init__(self, ctx: ClientContext, proposed: gateway_pb2.ProposedTransaction, info: ProposalInfo) -> None:
        self._ctx = ctx
        self._proposed = proposed
        self._info = info

    @property
    def tx_id(self) -> str:
        return self._info.tx_id

    @property
    def channel(self) -> str:
        return self._info.channel

    @property
    def message(self) -> bytes:
        """The protos.Proposal bytes the creator signs."""
        return self._proposed.proposal.proposal_bytes

    @property
    def digest(self) -> bytes:
        return _digest(self.message)

    @property
    def signature(self) -> bytes:
        return self._proposed.proposal.signature

    @property
    def bytes(self) -> bytes:
        """Portable form (gateway.ProposedTransaction); `Gateway.new_signed_proposal` restores it."""
        return self._proposed.SerializeToString()

    def with_signature(self, signature: bytes) -> Proposal:
        proposed = gateway_pb2.ProposedTransaction()
        proposed.CopyFrom(self._proposed)
        proposed.proposal.signature = signature
        return Proposal(self._ctx, proposed, self._info)

    def _signed(self) -> gateway_pb2.ProposedTransaction:
        if not self._proposed.proposal.signature:
            self._proposed.proposal.signature = self._ctx.sign(self.message, f"proposal {self.tx_id}")
        return self._proposed

    def endorse(self, *, timeout: float | None = None) -> Transaction:
        proposed = self._signed()
        timeout = self._ctx.timeouts.endorse if timeout is None else timeout
        request = gateway_pb2.EndorseRequest(
            transaction_id=self.tx_id, channel_id=self.channel, proposed_transaction=proposed.proposal,
            endorsing_organizations=proposed.endorsing_organizations,
        )
        try:
            response = self._ctx.stub.Endorse(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise from_rpc_error(EndorseError, exc, tx_id=self.tx_id, timeout=timeout) from exc
        return Transaction.from_envelope(self._ctx, response.prepared_transaction, self._info)

    def evaluate(self, *, timeout: float | None = None, target_organizations: list[str] | None = None) -> bytes:
        proposed = self._signed()
        timeout = self._ctx.timeouts.evaluate if timeout is None else timeout
        request = gateway_pb2.EvaluateRequest(
            transaction_id=self.tx_id, channel_id=self.channel, proposed_transaction=proposed.proposal,
            target_organizations=target_organizations or list(proposed.endorsing_organizations),
        )
        try:
            response = self._ctx.stub.Evaluate(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise from_rpc_error(EvaluateError, exc, tx_id=self.tx_id, timeout=timeout) from exc
        if response.result.status >= 400:
            raise EvaluateError(
                f"evaluate of transaction {self.tx_id} failed: chaincode status {response.result.status}: "
                f"{response.result.message}", tx_id=self.tx_id,
            )
        return bytes(response.result.payload)


class Transaction:
    """An endorsed transaction: the chaincode result is known, nothing is on the ledger yet."""

    def __init__(self, ctx: ClientContext, envelope: common_pb2.Envelope, info: ProposalInfo, result: bytes) -> None:
        self._ctx = ctx
        self._envelope = envelope
        self._info = info
        self.result = result

    @classmethod
    def from_envelope(cls, ctx: ClientContext, envelope: common_pb2.Envelope, info: ProposalInfo) -> Transaction:
        try:
            result = check_prepared_transaction(envelope, info)
        except ProposalError as exc:
            raise EndorseError(f"endorse of transaction {info.tx_id} returned an unacceptable transaction: {exc}",
                               tx_id=info.tx_id) from exc
        return cls(ctx, envelope, info, result)

    @property
    def tx_id(self) -> str:
        return self._info.tx_id

    @property
    def envelope(self) -> common_pb2.Envelope:
        return self._envelope

    @property
    def message(self) -> bytes:
        return self._envelope.payload

    @property
    def digest(self) -> bytes:
        return _digest(self.message)

    @property
    def bytes(self) -> bytes:
        return gateway_pb2.PreparedTransaction(transaction_id=self.tx_id, envelope=self._envelope).SerializeToString()

    def with_signature(self, signature: bytes) -> Transaction:
        env = common_pb2.Envelope(payload=self._envelope.payload, signature=signature)
        return Transaction(self._ctx, env, self._info, self.result)

    def submit(self, *, timeout: float | None = None) -> Commit:
        if not self._envelope.signature:
            self._envelope.signature = self._ctx.sign(self.message, f"transaction {self.tx_id}")
        timeout = self._ctx.timeouts.submit if timeout is None else timeout
        request = gateway_pb2.SubmitRequest(
            transaction_id=self.tx_id, channel_id=self._info.channel, prepared_transaction=self._envelope
        )
        try:
            self._ctx.stub.Submit(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise from_rpc_error(SubmitError, exc, tx_id=self.tx_id, timeout=timeout) from exc
        return Commit.create(self._ctx, self.tx_id, self._info.channel)


class Commit:
    """A submitted transaction whose validation result can be awaited."""

    def __init__(self, ctx: ClientContext, signed: gateway_pb2.SignedCommitStatusRequest, tx_id: str) -> None:
        self._ctx = ctx
        self._signed = signed
        self.tx_id = tx_id

    @classmethod
    def create(cls, ctx: ClientContext, tx_id: str, channel: str) -> Commit:
        request = gateway_pb2.CommitStatusRequest(transaction_id=tx_id, channel_id=channel, identity=ctx.creator)
        return cls(ctx, gateway_pb2.SignedCommitStatusRequest(request=request.SerializeToString()), tx_id)

    @property
    def message(self) -> bytes:
        return self._signed.request

    @property
    def digest(self) -> bytes:
        return _digest(self.message)

    @property
    def bytes(self) -> bytes:
        return self._signed.SerializeToString()

    def with_signature(self, signature: bytes) -> Commit:
        return Commit(self._ctx, gateway_pb2.SignedCommitStatusRequest(request=self.message, signature=signature), self.tx_id)

    def status(self, *, timeout: float | None = None) -> Status:
        """Block until the transaction is committed (or the timeout passes) and return its validation code."""
        if not self._signed.signature:
            self._signed.signature = self._ctx.sign(self.message, f"commit status request for {self.tx_id}")
        timeout = self._ctx.timeouts.commit_status if timeout is None else timeout
        try:
            response = self._ctx.stub.CommitStatus(self._signed, timeout=timeout)
        except grpc.RpcError as exc:
            raise from_rpc_error(CommitStatusError, exc, tx_id=self.tx_id, timeout=timeout) from exc
        return Status(self.tx_id, response.result, validation_code_name(response.result), response.block_number)


def proposal_from_bytes(ctx: ClientContext, data: bytes, signature: bytes | None) -> Proposal:
    proposed = gateway_pb2.ProposedTransaction.FromString(data)
    info = inspect_proposal(proposed.proposal.proposal_bytes)
    if info.tx_id != proposed.transaction_id:
        raise ProposalError("proposal bytes carry inconsistent transaction ids")
    if signature is not None:
        proposed.proposal.signature = signature
    return Proposal(ctx, proposed, info)


def transaction_from_bytes(ctx: ClientContext, data: bytes, signature: bytes | None,
                           creator: bytes) -> Transaction:
    prepared = gateway_pb2.PreparedTransaction.FromString(data)
    payload = common_pb2.Payload.FromString(prepared.envelope.payload)
    chdr = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    tx = transaction_pb2.Transaction.FromString(payload.data)
    if len(tx.actions) != 1:
        raise ProposalError("prepared transaction must have exactly one action")
    cap = transaction_pb2.ChaincodeActionPayload.FromString(tx.actions[0].payload)
    cpp = proposal_pb2.ChaincodeProposalPayload.FromString(cap.chaincode_proposal_payload)
    info = ProposalInfo(chdr.tx_id, chdr.channel_id, creator, bytes(cpp.input))
    tx_obj = Transaction.from_envelope(ctx, prepared.envelope, info)
    return tx_obj.with_signature(signature) if signature is not None else tx_obj


def commit_from_bytes(ctx: ClientContext, data: bytes, signature: bytes | None) -> Commit:
    signed = gateway_pb2.SignedCommitStatusRequest.FromString(data)
    request = gateway_pb2.CommitStatusRequest.FromString(signed.request)
    if signature is not None:
        signed.signature = signature
    return Commit(ctx, signed, request.transaction_id)


def raise_for_status(status: Status) -> None:
    if not status.successful:
        raise CommitError(status.tx_id, status.code, status.block_number)
