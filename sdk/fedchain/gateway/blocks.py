"""Full-block event stream from a peer's Deliver service (same endpoint as the Gateway).

Used by auditors and monitors that follow the chain live and re-verify it, like Fabric's
gateway clients' BlockEvents: a signed DELIVER_SEEK_INFO envelope asks for blocks from a
position onwards, blocking until they exist.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from fabric_protos.common import common_pb2
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import events_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from fedchain.gateway.errors import EventsError
from fedchain.gateway.events import ServerStream
from fedchain.gateway.proposal import NONCE_BYTES, compute_tx_id

DELIVER_SEEK_INFO = common_pb2.HeaderType.Value("DELIVER_SEEK_INFO")
_MAX_BLOCK = (1 << 64) - 1


def seek_envelope(channel: str, creator: bytes, sign: Callable[[bytes], bytes], start: ab_pb2.SeekPosition,
                  tls_cert_hash: bytes = b"") -> common_pb2.Envelope:
    """Signed request for every block from `start` on (protoutil.CreateSignedEnvelope layout)."""
    nonce = os.urandom(NONCE_BYTES)
    timestamp = Timestamp()
    timestamp.GetCurrentTime()
    chdr = common_pb2.ChannelHeader(type=DELIVER_SEEK_INFO, channel_id=channel, tx_id=compute_tx_id(nonce, creator),
                                    timestamp=timestamp, tls_cert_hash=tls_cert_hash)
    seek = ab_pb2.SeekInfo(start=start, stop=ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=_MAX_BLOCK)),
                           behavior=ab_pb2.SeekInfo.BLOCK_UNTIL_READY)
    payload = common_pb2.Payload(
        header=common_pb2.Header(
            channel_header=chdr.SerializeToString(),
            signature_header=common_pb2.SignatureHeader(creator=creator, nonce=nonce).SerializeToString(),
        ),
        data=seek.SerializeToString(),
    ).SerializeToString()
    return common_pb2.Envelope(payload=payload, signature=sign(payload))


class BlockEventStream(ServerStream, Iterator[common_pb2.Block]):
    """Iterator over delivered blocks; `close()` cancels the stream."""

    def __next__(self) -> common_pb2.Block:
        response: events_pb2.DeliverResponse = self._next_response()
        if response.HasField("block"):
            return response.block
        self._closed = True
        status = response.status
        if status == common_pb2.Status.Value("SUCCESS"):
            raise StopIteration
        raise EventsError(f"block delivery ended with status {common_pb2.Status.Name(status)} ({status})")

    def __enter__(self) -> BlockEventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
