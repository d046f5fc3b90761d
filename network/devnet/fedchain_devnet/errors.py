"""Request errors that map to a gRPC status (with Fabric's per-node ErrorDetail list)."""

from __future__ import annotations

import grpc
from fedchain.gateway.status import ErrorDetail


class RequestError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, details: list[ErrorDetail] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details or [])


def invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.NOT_FOUND, message)


def denied(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.PERMISSION_DENIED, message)
