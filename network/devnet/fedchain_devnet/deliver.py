"""protos.Deliver: Deliver (full blocks) and DeliverFiltered, as a Fabric peer serves them.

A signed DELIVER_SEEK_INFO envelope names a start and stop position; blocks are streamed
(waiting for new ones with BLOCK_UNTIL_READY) and a final status ends each request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
from fabric_protos.common import common_pb2
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import events_pb2
from fedchain.identity import IdentityError
from google.protobuf.message import DecodeError

from fedchain_devnet.node import Node
from fedchain_devnet.proposal import MAX_CLOCK_SKEW
from fedchain_devnet.slots import STREAM_SLOTS

MAX_U64 = (1 << 64) - 1
TRANSACTIONS_FILTER = common_pb2.BlockMetadataIndex.Value("TRANSACTIONS_FILTER")


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
