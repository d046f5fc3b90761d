"""One peer's chaincode stream: handshake, concurrent transactions, reply routing, one writer.

Threads per stream (why: gRPC's sync API blocks on both reading and writing):
- the gRPC handler thread drains `_out` and is the ONLY writer of the stream, so concurrent
  transactions can never interleave or lose writes (the fabric-chaincode-python bug);
- a reader thread takes every peer message: KEEPALIVE is echoed, RESPONSE/ERROR go to the
  waiting transaction keyed by (channel_id, txid), TRANSACTION/INIT start a transaction on the
  shared worker pool;
- pool workers run the contract; a ledger call puts its request on `_out` and blocks on the
  transaction's own reply queue (one outstanding request per transaction, as in Fabric).
Every transaction ends with exactly one COMPLETED or ERROR, whatever the contract does; a
reply that never comes times out instead of pinning a worker forever.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Executor

from fabric_protos.peer import chaincode_pb2, chaincode_shim_pb2, proposal_response_pb2
from google.protobuf.message import DecodeError

from fedchain_cc.shim.errors import PeerError, ShimError, StreamClosedError
from fedchain_cc.shim.interface import Chaincode, Response
from fedchain_cc.shim.proposal import ProposalError, parse_transaction
from fedchain_cc.shim.stub import ChaincodeStub

log = logging.getLogger("fedchain_cc.shim")
Msg = chaincode_shim_pb2.ChaincodeMessage
_TYPE_NAME = {v: k for k, v in Msg.Type.items()}
_CLOSED = object()  # sentinel: stream gone
MAX_ERROR_CHARS = 4096


def type_name(t: int) -> str:
    return _TYPE_NAME.get(t, str(t))


class _Tx:
    """Reply routing for one in-flight transaction."""

    __slots__ = ("channel_id", "tx_id", "replies", "broken", "lock")

    def __init__(self, channel_id: str, tx_id: str) -> None:
        self.channel_id = channel_id
        self.tx_id = tx_id
        self.replies: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.broken: str | None = None  # set when a reply timed out: later replies can't be matched
        self.lock = (
            threading.Lock()
        )  # one outstanding request per transaction, even if a contract uses threads


class PeerSession:
    """Serves one `Connect` stream. `run()` is the response iterator handed to gRPC."""

    def __init__(
        self,
        chaincode: Chaincode,
        chaincode_id: str,
        executor: Executor,
        request_timeout_s: float,
        peer: str = "?",
    ) -> None:
        self._cc = chaincode
        self._chaincode_id = chaincode_id
        self._executor = executor
        self._timeout = request_timeout_s
        self.peer = peer
        self._out: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._txs: dict[tuple[str, str], _Tx] = {}
        self.state = "created"  # created -> established (REGISTERED) -> ready (READY) -> closed
        self.ready = threading.Event()
        self.completed = 0
        self.draining = False  # set by the server on shutdown: new transactions are refused
        self.write_batch_size: int | None = None  # set when the peer offers WRITE_BATCH_STATE

    def _negotiate(self, payload: bytes) -> None:
        """Newer Fabric peers list optional features in REGISTERED; older ones (and the devnet) send none."""
        if not payload:
            return
        try:
            params = chaincode_pb2.ChaincodeAdditionalParams.FromString(payload)
        except DecodeError:
            log.warning("peer %s sent an unreadable REGISTERED payload; optional features off", self.peer)
            return
        if params.use_write_batch:
            self.write_batch_size = params.max_size_write_batch
            log.info(
                "peer %s accepts write batches (max %s records)",
                self.peer,
                params.max_size_write_batch or "any",
            )

    @property
    def in_flight(self) -> int:
        return len(self._txs)

    # ----------------------------------------------------------------- writer side
    def run(
        self, requests: Iterator[chaincode_shim_pb2.ChaincodeMessage]
    ) -> Iterator[chaincode_shim_pb2.ChaincodeMessage]:
        register = chaincode_pb2.ChaincodeID(name=self._chaincode_id).SerializeToString()
        reader = threading.Thread(
            target=self._read_loop, args=(requests,), name=f"cc-reader-{self.peer}", daemon=True
        )
        reader.start()
        yield Msg(type=Msg.REGISTER, payload=register)
        try:
            while True:
                msg = self._out.get()
                if msg is _CLOSED:
                    return
                yield msg  # type: ignore[misc]
        finally:
            self.close("stream ended")

    def _send(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> None:
        if self.state != "closed":
            self._out.put(msg)

    def close(self, reason: str) -> None:
        """Fail every waiting transaction and stop the writer (idempotent)."""
        with self._lock:
            if self.state == "closed":
                return
            self.state = "closed"
            waiting = list(self._txs.values())
        log.info(
            "stream from %s closed: %s (%d transactions completed, %d in flight)",
            self.peer,
            reason,
            self.completed,
            len(waiting),
        )
        for tx in waiting:
            tx.replies.put(_CLOSED)
        self._out.put(_CLOSED)
        self.ready.set()  # nobody waits forever for a handshake that will not come

    # ----------------------------------------------------------------- reader side
    def _read_loop(self, requests: Iterator[chaincode_shim_pb2.ChaincodeMessage]) -> None:
        reason = "peer closed the stream"
        try:
            for msg in requests:
                self._handle(msg)
        except Exception as exc:  # grpc.RpcError on cancel/disconnect, or a bug: never leave waiters hanging
            reason = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            self.close(reason)

    def _handle(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> None:
        t = msg.type
        if t == Msg.RESPONSE or t == Msg.ERROR:
            if self.state == "ready":
                self._route(msg)
            elif t == Msg.ERROR:
                self.close(f"peer refused registration: {msg.payload.decode('utf-8', 'replace')[:300]}")
            else:
                log.warning("unexpected RESPONSE from %s before READY; ignored", self.peer)
        elif t == Msg.TRANSACTION or t == Msg.INIT:
            self._start(msg)
        elif t == Msg.KEEPALIVE:
            self._send(msg)  # Fabric's shim echoes keepalives
        elif t == Msg.REGISTERED and self.state == "created":
            self._negotiate(msg.payload)
            self.state = "established"
        elif t == Msg.READY and self.state in ("created", "established"):
            self.state = "ready"
            self.ready.set()
            log.info("registered with peer %s as %r", self.peer, self._chaincode_id)
        else:
            log.warning(
                "peer %s sent %s in state %s; answered with ERROR", self.peer, type_name(t), self.state
            )
            self._send(self._error(msg, f"chaincode cannot handle {type_name(t)} in state {self.state}"))

    def _route(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> None:
        tx = self._txs.get((msg.channel_id, msg.txid))
        if tx is None:
            log.warning(
                "%s from %s for unknown transaction %s/%s dropped",
                type_name(msg.type),
                self.peer,
                msg.channel_id,
                msg.txid[:16],
            )
            return
        tx.replies.put(msg)

    def _start(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> None:
        if self.state != "ready":
            self._send(self._error(msg, f"chaincode is not ready (state {self.state})"))
            return
        if self.draining:
            self._send(self._error(msg, "chaincode server is shutting down"))
            return
        key = (msg.channel_id, msg.txid)
        with self._lock:
            if key in self._txs:
                dup = True
            else:
                dup = False
                tx = self._txs[key] = _Tx(msg.channel_id, msg.txid)
        if dup:
            self._send(
                self._error(msg, f"transaction {msg.txid} on channel {msg.channel_id} is already in flight")
            )
            return
        try:
            self._executor.submit(self._run_tx, msg, tx)
        except RuntimeError:  # executor shut down: the server is stopping
            self._finish(tx, self._error(msg, "chaincode server is shutting down"))

    # ----------------------------------------------------------------- transactions
    @staticmethod
    def _error(msg: chaincode_shim_pb2.ChaincodeMessage, text: str) -> chaincode_shim_pb2.ChaincodeMessage:
        return Msg(
            type=Msg.ERROR,
            payload=text[:MAX_ERROR_CHARS].encode("utf-8", "replace"),
            txid=msg.txid,
            channel_id=msg.channel_id,
        )

    def _finish(self, tx: _Tx, out: chaincode_shim_pb2.ChaincodeMessage) -> None:
        # Unregister BEFORE replying: the peer may reuse the tx id as soon as it has the answer.
        with self._lock:
            self._txs.pop((tx.channel_id, tx.tx_id), None)
            self.completed += 1
        self._send(out)

    def _run_tx(self, msg: chaincode_shim_pb2.ChaincodeMessage, tx: _Tx) -> None:
        try:
            out = self._execute(msg, tx)
        except Exception as exc:  # a shim bug: the peer must still get an answer
            log.exception("shim failed in tx %s", msg.txid[:16])
            out = self._error(msg, f"chaincode shim failed: {type(exc).__name__}: {exc}")
        self._finish(tx, out)

    def _execute(
        self, msg: chaincode_shim_pb2.ChaincodeMessage, tx: _Tx
    ) -> chaincode_shim_pb2.ChaincodeMessage:
        try:
            ctx = parse_transaction(msg)
        except ProposalError as exc:
            log.warning(
                "malformed %s from %s (tx %s): %s", type_name(msg.type), self.peer, msg.txid[:16], exc
            )
            return self._error(msg, str(exc))
        stub = ChaincodeStub(ctx, lambda t, p: self._request(tx, t, p), self.write_batch_size)
        try:
            resp = self._cc.init(stub) if msg.type == Msg.INIT else self._cc.invoke(stub)
            if not isinstance(resp, Response):
                return self._error(msg, f"chaincode returned {type(resp).__name__} instead of a Response")
            if resp.status < 400:
                stub.flush_writes()
        except BaseException as exc:  # even SystemExit from a contract must not kill the server
            log.error("chaincode raised in tx %s: %s", msg.txid[:16], type(exc).__name__, exc_info=True)
            return self._error(msg, f"{type(exc).__name__}: {exc}")
        finally:
            tx.broken = tx.broken or "transaction finished"  # a leaked iterator must not talk after the end
        message = resp.message
        if resp.status >= 400 and not message:  # a refusal always says why, even if the contract did not
            message = f"chaincode returned status {resp.status} without a message"
        if msg.type == Msg.INIT and resp.status >= 500:  # as Fabric's Go shim: a failed Init is an ERROR
            return self._error(msg, message)
        payload = proposal_response_pb2.Response(status=resp.status, message=message, payload=resp.payload)
        out = Msg(
            type=Msg.COMPLETED, payload=payload.SerializeToString(), txid=msg.txid, channel_id=msg.channel_id
        )
        if stub.event is not None:
            out.chaincode_event.CopyFrom(stub.event)
        return out

    def _request(self, tx: _Tx, msg_type: int, payload: bytes) -> bytes:
        """One ledger call for `tx`: send, wait for its reply, RESPONSE -> payload, ERROR -> PeerError."""
        with tx.lock:
            return self._request_locked(tx, msg_type, payload)

    def _request_locked(self, tx: _Tx, msg_type: int, payload: bytes) -> bytes:
        if tx.broken:
            raise ShimError(f"{type_name(msg_type)} refused: {tx.broken}")
        if self.state == "closed":
            raise StreamClosedError(f"{type_name(msg_type)}: the peer's stream is closed")
        self._out.put(Msg(type=msg_type, payload=payload, txid=tx.tx_id, channel_id=tx.channel_id))
        try:
            reply = tx.replies.get(timeout=self._timeout)
        except queue.Empty:
            tx.broken = f"no reply to an earlier request within {self._timeout:g} s"
            raise ShimError(
                f"{type_name(msg_type)}: no reply from the peer within {self._timeout:g} s"
            ) from None
        if reply is _CLOSED:
            tx.broken = "the peer's stream is closed"
            raise StreamClosedError(
                f"{type_name(msg_type)}: the peer's stream closed while waiting for the reply"
            )
        assert isinstance(reply, Msg)
        if reply.type == Msg.RESPONSE:
            return reply.payload
        if reply.type == Msg.ERROR:
            raise PeerError(
                f"{type_name(msg_type)} failed on the peer: "
                f"{reply.payload.decode('utf-8', 'replace')[:MAX_ERROR_CHARS]}"
            )
        tx.broken = f"protocol error (unexpected {type_name(reply.type)})"
        raise ShimError(f"{type_name(msg_type)}: unexpected {type_name(reply.type)} reply from the peer")
