"""Typed gateway errors: which step failed, the gRPC code, and every endorser's/orderer's reason."""

from __future__ import annotations

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
