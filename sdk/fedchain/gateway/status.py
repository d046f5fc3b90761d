"""Rich gRPC error status (google.rpc.Status) with Fabric's gateway.ErrorDetail entries.

The Fabric gateway reports *which* endorser or orderer failed and why in the
`grpc-status-details-bin` trailer. `googleapis-common-protos` is used when installed;
otherwise a wire-compatible copy of the three-field message is built at import time in a
private descriptor pool (no generated code, no clash with the real one). Both directions
live here: clients decode, the devnet encodes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import grpc
from fabric_protos.gateway import gateway_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_DETAIL_TYPE_URL = "type.googleapis.com/gateway.ErrorDetail"


def _status_class():
    try:
        from google.rpc import status_pb2  # type: ignore[import-not-found]

        return status_pb2.Status
    except ImportError:
        pass
    fdp = descriptor_pb2.FileDescriptorProto(name="fedchain/rpc_status_wire.proto", package="fedchain.wire", syntax="proto3")
    any_msg = fdp.message_type.add(name="AnyWire")
    any_msg.field.add(name="type_url", number=1, type=9, label=1)
    any_msg.field.add(name="value", number=2, type=12, label=1)
    status = fdp.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=5, label=1)
    status.field.add(name="message", number=2, type=9, label=1)
    status.field.add(name="details", number=3, type=11, label=3, type_name=".fedchain.wire.AnyWire")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("fedchain.wire.Status"))


Status = _status_class()


@dataclass(frozen=True)
class ErrorDetail:
    """One node's failure as reported by the gateway: which peer/orderer, which org, why."""

    address: str
    msp_id: str
    message: str

    def __str__(self) -> str:
        return f"{self.address} ({self.msp_id}): {self.message}"


def encode_status(code: grpc.StatusCode, message: str, details: Iterable[ErrorDetail] = ()) -> bytes:
    """Serialized google.rpc.Status for the `grpc-status-details-bin` trailer (server side)."""
    status = Status(code=code.value[0], message=message)
    for d in details:
        entry = status.details.add()
        entry.type_url = ERROR_DETAIL_TYPE_URL
        entry.value = gateway_pb2.ErrorDetail(address=d.address, msp_id=d.msp_id, message=d.message).SerializeToString()
    return status.SerializeToString()


def abort_with_details(context: grpc.ServicerContext, code: grpc.StatusCode, message: str,
                       details: Iterable[ErrorDetail] = ()) -> None:
    """Server side: end the RPC with `code` and Fabric-style error details (raises)."""
    context.set_trailing_metadata(((STATUS_DETAILS_KEY, encode_status(code, message, details)),))
    context.abort(code, message)


def decode_details(error: grpc.RpcError) -> list[ErrorDetail]:
    """The gateway.ErrorDetail entries of a failed call; [] when there are none or they are malformed."""
    trailers = getattr(error, "trailing_metadata", None)
    metadata = trailers() if callable(trailers) else None
    for key, value in metadata or ():
        if key != STATUS_DETAILS_KEY:
            continue
        try:
            status = Status.FromString(value)
        except DecodeError:
            return []
        out = []
        for entry in status.details:
            if not entry.type_url.endswith("/gateway.ErrorDetail"):
                continue
            try:
                d = gateway_pb2.ErrorDetail.FromString(entry.value)
            except DecodeError:
                continue
            out.append(ErrorDetail(d.address, d.msp_id, d.message))
        return out
    return []
