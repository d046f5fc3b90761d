"""Typed gateway errors: which step failed, the gRPC code, and every endorser's/orderer's reason."""

from __future__ import annotations

import re
from dataclasses import dataclass

import grpc

from fedchain.gateway.status import ErrorDetail, decode_details
from fedchain.ledger.blocks import validation_code_name


class GatewayError(Exception):
    """A gateway call failed. `details` lists the per-node reasons the gateway reported."""

    def __init__(self, message: str, grpc_code: grpc.StatusCode | None = None,
                 details: list[ErrorDetail] | None = None, tx_id: str | None = None) -> None:
        self.message = message
        self.grpc_code = grpc_code
        self.details = list(details or [])
        self.tx_id = tx_id
        text = message
        if self.details:
            text += "; " + "; ".join(str(d) for d in self.details)
        super().__init__(text)

    @property
    def timed_out(self) -> bool:
        return self.grpc_code == grpc.StatusCode.DEADLINE_EXCEEDED


class EndorseError(GatewayError):
    """Endorsement failed: chaincode error, policy not satisfiable, or endorsers unreachable."""


class SubmitError(GatewayError):
    """The endorsed transaction could not be handed to the ordering service."""


class CommitStatusError(GatewayError):
    """The commit status could not be obtained (the transaction may still commit)."""


class EvaluateError(GatewayError):
    """A read-only evaluation failed."""


class EventsError(GatewayError):
    """The chaincode event stream failed."""


class CommitError(GatewayError):
    """The transaction was ordered into a block but validated as invalid (e.g. MVCC_READ_CONFLICT)."""

    def __init__(self, tx_id: str, validation_code: int, block_number: int) -> None:
        self.validation_code = validation_code
        self.validation_code_name = validation_code_name(validation_code)
        self.block_number = block_number
        super().__init__(
            f"transaction {tx_id} failed to commit in block {block_number} with status code "
            f"{validation_code} ({self.validation_code_name})",
            tx_id=tx_id,
        )


_STEP_VERB = {
    EndorseError: "endorse", SubmitError: "submit", CommitStatusError: "commit status",
    EvaluateError: "evaluate", EventsError: "chaincode events",
}


def from_rpc_error(cls: type[GatewayError], error: grpc.RpcError, *, tx_id: str | None = None,
                   timeout: float | None = None) -> GatewayError:
    """Translate a grpc.RpcError into the step's typed error, keeping code and details."""
    code = error.code() if callable(getattr(error, "code", None)) else None
    text = error.details() if callable(getattr(error, "details", None)) else str(error)
    step = _STEP_VERB.get(cls, "gateway call")
    what = f"{step} of transaction {tx_id}" if tx_id else step
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = f"{what} timed out" + (f" after {timeout:g} s" if timeout is not None else "") + " (DEADLINE_EXCEEDED)"
        if cls is CommitStatusError:
            message += "; the transaction may still commit: ask for its status again"
    elif code == grpc.StatusCode.UNAVAILABLE:
        message = f"{what} failed: gateway unavailable ({text})"
    else:
        message = f"{what} failed: {code.name if code else 'UNKNOWN'}: {text}"
    return cls(message, code, decode_details(error), tx_id)


_CHAINCODE_RESPONSE = re.compile(r"chaincode response (\d{3}), (.*)", re.S)


@dataclass(frozen=True)
class ChaincodeRefusal:
    """The chaincode's answer inside a failed gateway call: its status and its message."""

    status: int
    message: str

    @property
    def final(self) -> bool:
        """A 4xx refusal: asking again will not change it, unlike an outage or a 5xx."""
        return 400 <= self.status < 500


def parse_chaincode_response(text: str) -> ChaincodeRefusal | None:
    """The chaincode's status and message in one error text, or None (unreachable, timeout, ...).

    Why from the text: the Fabric gateway (real Fabric and the devnet alike) reports a chaincode's
    error response only as text, `chaincode response <status>, <message>`, in the gRPC status message
    and in each endorser's ErrorDetail; no field carries the status. This is the one parser of it."""
    match = _CHAINCODE_RESPONSE.search(text)
    return ChaincodeRefusal(int(match.group(1)), match.group(2)) if match else None


def chaincode_refusal(exc: BaseException) -> ChaincodeRefusal | None:
    """`parse_chaincode_response` of a failed call's whole text (its message and every endorser's)."""
    return parse_chaincode_response(str(exc))


def describe_gateway_error(exc: BaseException) -> str:
    """One line for a user: the chaincode's own message when every endorser refused for the same
    reason, else the whole error with every endorser's reason."""
    details = getattr(exc, "details", [])
    refusals = [parse_chaincode_response(d.message) for d in details]
    reasons = {(r.status, r.message) for r in refusals if r is not None}
    if details and len(reasons) == 1 and all(refusals):
        status, message = reasons.pop()
        tx = f"tx {exc.tx_id[:16]} " if getattr(exc, "tx_id", None) else ""
        return f"{message.strip()} (status {status}; {tx}refused by every endorser)"
    return str(exc)
