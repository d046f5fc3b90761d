"""One peer's connection to a chaincode-as-a-service server (the peer dials, as Fabric's ccaas builder does).

Each org's peer holds its own Connect stream. The chaincode registers, the peer answers
REGISTERED and READY, then sends TRANSACTION messages; the chaincode's state requests are
answered inline by the transaction's simulator on the reader thread (SQLite point reads
are microseconds), so one stream carries any number of concurrent transactions.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from fabric_protos.peer import (
    chaincode_pb2,
    chaincode_shim_pb2,
    chaincode_shim_pb2_grpc,
    proposal_response_pb2,
)
from google.protobuf.message import DecodeError

from fedchain_devnet.config import ChaincodeDef
from fedchain_devnet.simulator import TxSimulator

log = logging.getLogger(__name__)
CM = chaincode_shim_pb2.ChaincodeMessage
_CLOSE = object()


class ChaincodeUnavailable(Exception):
    """The chaincode is not connected, disconnected mid-transaction, or timed out."""


@dataclass
class Execution:
    """What one simulation produced."""

    response: proposal_response_pb2.Response
    event: bytes  # serialized ChaincodeEvent, b"" if none
    simulator: TxSimulator


@dataclass
class _Pending:
    sim: TxSimulator
    done: threading.Event = field(default_factory=threading.Event)
    reply: chaincode_shim_pb2.ChaincodeMessage | None = None
    error: str | None = None
    tx_id: str = ""


def _channel(cc: ChaincodeDef, max_bytes: int) -> grpc.Channel:
    opts = [("grpc.max_send_message_length", max_bytes), ("grpc.max_receive_message_length", max_bytes)]
    if cc.tls_root_cert is None:
        return grpc.insecure_channel(cc.address, options=opts)
    if cc.server_name:
        opts.append(("grpc.ssl_target_name_override", cc.server_name))
    creds = grpc.ssl_channel_credentials(
        root_certificates=Path(cc.tls_root_cert).read_bytes(),
        private_key=Path(cc.client_key).read_bytes() if cc.client_key else None,
        certificate_chain=Path(cc.client_cert).read_bytes() if cc.client_cert else None,
    )
    return grpc.secure_channel(cc.address, creds, options=opts)


class ChaincodeConnection:
    def __init__(self, cc: ChaincodeDef, peer_name: str, max_bytes: int) -> None:
        self.cc = cc
        self.peer_name = peer_name
        self._max_bytes = max_bytes
        self._outq: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self.ready = threading.Event()
        self.registered_id = ""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"cc-{cc.name}-{peer_name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._outq.put(_CLOSE)
        self._fail_all("peer is shutting down")

    # --- stream -----------------------------------------------------------------------
    def _requests(self, outq: queue.SimpleQueue):
        while True:
            msg = outq.get()
            if msg is _CLOSE:
                return
            yield msg

    def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            channel = _channel(self.cc, self._max_bytes)
            outq: queue.SimpleQueue = queue.SimpleQueue()
            self._outq = outq
            try:
                stream = chaincode_shim_pb2_grpc.ChaincodeStub(channel).Connect(self._requests(outq))
                for msg in stream:
                    self._on_message(msg)
                    backoff = 0.1
                reason = "chaincode closed the stream"
            except grpc.RpcError as exc:
                reason = f"chaincode stream failed: {exc.code().name if exc.code() else ''} {exc.details()}"
            except Exception as exc:  # noqa: BLE001 - never let the peer's reader die silently
                log.exception("%s: chaincode stream handler failed", self.peer_name)
                reason = f"peer internal error on the chaincode stream: {type(exc).__name__}"
            finally:
                outq.put(_CLOSE)
                channel.close()
            if self.ready.is_set():
                log.warning("%s: %s %s; reconnecting", self.peer_name, self.cc.name, reason)
            self.ready.clear()
            self._fail_all(reason)
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, 2.0)

    def _send(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> None:
        self._outq.put(msg)

    def _on_message(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> None:
        t = msg.type
        if t == CM.REGISTER:
            try:
                self.registered_id = chaincode_pb2.ChaincodeID.FromString(msg.payload).name
            except DecodeError:
                self.registered_id = ""
            self._send(CM(type=CM.REGISTERED))
            self._send(CM(type=CM.READY))
            self.ready.set()
            log.info("%s: chaincode %s registered as %r", self.peer_name, self.cc.name, self.registered_id)
            return
        if t == CM.KEEPALIVE:
            return
        with self._lock:
            pending = self._pending.get(msg.txid)
        if pending is None:
            if t not in (CM.COMPLETED, CM.ERROR):
                self._send(CM(type=CM.ERROR, payload=f"unknown transaction {msg.txid}".encode(), txid=msg.txid,
                              channel_id=msg.channel_id))
            return
        if t in (CM.COMPLETED, CM.ERROR):
            pending.reply = msg
            pending.done.set()
            return
        self._send(pending.sim.handle(msg))

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            pendings = list(self._pending.values())
        for p in pendings:
            p.error = reason
            p.done.set()

    # --- execute ----------------------------------------------------------------------
    def execute(self, channel_id: str, tx_id: str, input_bytes: bytes, signed_proposal,
                sim: TxSimulator, timeout: float) -> Execution:
        return self.finish(self.begin(channel_id, tx_id, input_bytes, signed_proposal, sim), timeout)

    def begin(self, channel_id: str, tx_id: str, input_bytes: bytes, signed_proposal, sim: TxSimulator) -> _Pending:
        """Send TRANSACTION and return at once, so several peers simulate concurrently without extra threads."""
        if not self.ready.is_set():
            raise ChaincodeUnavailable(f"chaincode {self.cc.name!r} is not connected to {self.peer_name}")
        pending = _Pending(sim)
        pending.tx_id = tx_id
        with self._lock:
            if tx_id in self._pending:
                raise ChaincodeUnavailable(f"transaction {tx_id} is already executing on {self.peer_name}")
            self._pending[tx_id] = pending
        self._send(CM(type=CM.TRANSACTION, payload=input_bytes, txid=tx_id, channel_id=channel_id,
                      proposal=signed_proposal))
        return pending

    def finish(self, pending: _Pending, timeout: float) -> Execution:
        try:
            if not pending.done.wait(timeout):
                raise ChaincodeUnavailable(f"chaincode {self.cc.name!r} did not answer within {timeout:g} s")
        finally:
            with self._lock:
                self._pending.pop(pending.tx_id, None)
        if pending.error is not None:
            raise ChaincodeUnavailable(pending.error)
        reply = pending.reply
        if reply.type == CM.ERROR:
            message = bytes(reply.payload).decode("utf-8", "replace")
            return Execution(proposal_response_pb2.Response(status=500, message=message), b"", pending.sim)
        response = proposal_response_pb2.Response.FromString(reply.payload)
        event = b""
        if reply.HasField("chaincode_event"):
            ev = reply.chaincode_event  # the peer, not the chaincode, vouches for name and tx id (as Fabric does)
            ev.chaincode_id = self.cc.name
            ev.tx_id = pending.tx_id
            event = ev.SerializeToString()
        return Execution(response, event, pending.sim)
