"""A small in-test "peer" that drives a chaincode server over the real chaincode gRPC protocol.

Not a test module: imported by tests/shim_*_test.py and tests/shim_bench.py. It dials the
chaincode (chaincode-as-a-service), answers REGISTER with REGISTERED + READY, sends
TRANSACTION/INIT messages with real SignedProposals, and answers the chaincode's ledger
requests from a dict world state the way a Fabric peer's simulator does: reads see committed
state only, writes are buffered per transaction and committed when it COMPLETES with
status < 400. Range/history results are cut into batches of `batch_size` (QUERY_STATE_NEXT),
pagination follows Fabric's peer (metadata on the last batch, bookmark = next key or "").
Fault injection: `fail_keys` (ERROR reply), `drop_keys` (no reply), `jitter_s` (replies
sent out of order after a random delay).
"""

from __future__ import annotations

import itertools
import os
import queue
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
from fabric_protos.common import common_pb2
from fabric_protos.ledger.queryresult import kv_query_result_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import (
    chaincode_pb2,
    chaincode_shim_pb2,
    chaincode_shim_pb2_grpc,
    proposal_pb2,
    proposal_response_pb2,
)
from google.protobuf.timestamp_pb2 import Timestamp

Msg = chaincode_shim_pb2.ChaincodeMessage
_END = object()


def creator_bytes(msp_id: str, cert_pem: bytes) -> bytes:
    return identities_pb2.SerializedIdentity(mspid=msp_id, id_bytes=cert_pem).SerializeToString()


def signed_proposal(
    channel: str,
    tx_id: str,
    creator: bytes,
    args: list[bytes],
    transient: dict[str, bytes],
    timestamp: float,
    cc_name: str = "testcc",
) -> proposal_pb2.SignedProposal:
    ts = Timestamp(seconds=int(timestamp), nanos=int(round((timestamp % 1) * 1e9)))
    chdr = common_pb2.ChannelHeader(
        type=common_pb2.HeaderType.ENDORSER_TRANSACTION, channel_id=channel, tx_id=tx_id, timestamp=ts
    )
    shdr = common_pb2.SignatureHeader(creator=creator, nonce=os.urandom(24))
    header = common_pb2.Header(
        channel_header=chdr.SerializeToString(), signature_header=shdr.SerializeToString()
    )
    spec = chaincode_pb2.ChaincodeInvocationSpec(
        chaincode_spec=chaincode_pb2.ChaincodeSpec(
            chaincode_id=chaincode_pb2.ChaincodeID(name=cc_name),
            input=chaincode_pb2.ChaincodeInput(args=args),
        )
    )
    payload = proposal_pb2.ChaincodeProposalPayload(input=spec.SerializeToString(), TransientMap=transient)
    prop = proposal_pb2.Proposal(header=header.SerializeToString(), payload=payload.SerializeToString())
    return proposal_pb2.SignedProposal(
        proposal_bytes=prop.SerializeToString(), signature=b"not-checked-by-the-shim"
    )


@dataclass
class Result:
    """How the chaincode ended a transaction."""

    kind: str  # "COMPLETED" or "ERROR"
    status: int = 0
    message: str = ""
    payload: bytes = b""
    event: tuple[str, bytes] | None = None
    error: str = ""  # ERROR message payload

    @property
    def ok(self) -> bool:
        return self.kind == "COMPLETED" and self.status < 400


@dataclass
class _Sim:
    writes: dict[str, bytes | None] = field(default_factory=dict)
    timestamp: float = 0.0


class FakePeer:
    """One peer connection to a chaincode server; shares a `world` dict if given one."""

    def __init__(
        self,
        address: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        expect_id: str | None = None,
        batch_size: int = 100,
        jitter_s: float = 0.0,
        channel: str = "mychannel",
        world: dict[str, bytes] | None = None,
        server_name: str | None = None,
        write_batch: int | None = None,
    ) -> None:
        options = [
            ("grpc.max_receive_message_length", 100 << 20),
            ("grpc.max_send_message_length", 100 << 20),
        ]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        self._channel = (
            grpc.secure_channel(address, credentials, options=options)
            if credentials
            else grpc.insecure_channel(address, options=options)
        )
        self.channel_id = channel
        self.batch_size = batch_size
        self.jitter_s = jitter_s
        self.world: dict[str, bytes] = world if world is not None else {}
        self.history: dict[str, list[kv_query_result_pb2.KeyModification]] = {}
        self.fail_keys: set[str] = set()
        self.drop_keys: set[str] = set()
        self.received: list[int] = []  # message types from the chaincode, in order
        self.closed_iterators: list[str] = []
        self.keepalives = 0
        self.registered_id: str | None = None
        self._expect_id = expect_id
        self._write_batch = write_batch  # offer WRITE_BATCH_STATE with this max size (None: don't)
        self.write_batches: list[int] = []  # record counts of the WRITE_BATCH_STATE messages received
        self._lock = threading.Lock()
        self._sims: dict[tuple[str, str], _Sim] = {}
        self._futures: dict[tuple[str, str], Future[Result]] = {}
        self._iters: dict[str, list[bytes]] = {}
        self._iter_meta: dict[str, str | None] = {}  # id -> bookmark when paginated
        self._count: dict[str, int] = {}
        self._ids = itertools.count()
        self._out: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._done = threading.Event()
        self._jitter_pool = ThreadPoolExecutor(8) if jitter_s else None
        self.stream_error: BaseException | None = None
        self._responses = chaincode_shim_pb2_grpc.ChaincodeStub(self._channel).Connect(self._requests())
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------ plumbing
    def _requests(self):
        while True:
            msg = self._out.get()
            if msg is _END:
                return
            yield msg

    def send(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> None:
        self._out.put(msg)

    def wait_ready(self, timeout: float = 10.0) -> None:
        if not self._ready.wait(timeout):
            raise TimeoutError(f"no REGISTER from the chaincode within {timeout} s")
        if self.registered_id is None:
            raise ConnectionError(f"stream ended before REGISTER: {self.stream_error}")

    def close(self) -> None:
        self._out.put(_END)
        self._channel.close()
        self._done.wait(5)
        if self._jitter_pool:
            self._jitter_pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> FakePeer:
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_loop(self) -> None:
        try:
            for msg in self._responses:
                self.received.append(msg.type)
                self._on_message(msg)
        except grpc.RpcError as exc:
            self.stream_error = exc
        finally:
            self._done.set()
            self._ready.set()
            with self._lock:
                futures = list(self._futures.values())
                self._futures.clear()
            for fut in futures:
                if not fut.done():
                    fut.set_exception(ConnectionError(f"stream ended: {self.stream_error}"))

    def _reply(
        self, req: chaincode_shim_pb2.ChaincodeMessage, payload: bytes = b"", error: str | None = None
    ) -> None:
        msg = Msg(
            type=Msg.ERROR if error is not None else Msg.RESPONSE,
            payload=error.encode() if error is not None else payload,
            txid=req.txid,
            channel_id=req.channel_id,
        )
        if self._jitter_pool is not None:
            delay = random.random() * self.jitter_s

            def later() -> None:
                time.sleep(delay)
                self._out.put(msg)

            self._jitter_pool.submit(later)
        else:
            self._out.put(msg)

    # ------------------------------------------------------------------ peer logic
    def _on_message(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> None:
        t = msg.type
        if t == Msg.REGISTER:
            self.registered_id = chaincode_pb2.ChaincodeID.FromString(msg.payload).name
            if self._expect_id is not None and self.registered_id != self._expect_id:
                self.send(Msg(type=Msg.ERROR, payload=b"unknown chaincode id"))
                return
            params = b""
            if self._write_batch is not None:
                params = chaincode_pb2.ChaincodeAdditionalParams(
                    use_write_batch=True, max_size_write_batch=self._write_batch
                ).SerializeToString()
            self.send(Msg(type=Msg.REGISTERED, payload=params))
            self.send(Msg(type=Msg.READY))
            self._ready.set()
        elif t == Msg.KEEPALIVE:
            self.keepalives += 1
        elif t in (Msg.COMPLETED, Msg.ERROR):
            self._finish(msg)
        else:
            self._serve(msg)

    def _finish(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> None:
        key = (msg.channel_id, msg.txid)
        with self._lock:
            fut = self._futures.pop(key, None)
            sim = self._sims.pop(key, None)
            for it_id in [i for i in self._iters if i.startswith(msg.txid + "#")]:
                self._iters.pop(it_id)
        if msg.type == Msg.ERROR:
            result = Result("ERROR", error=msg.payload.decode("utf-8", "replace"))
        else:
            resp = proposal_response_pb2.Response.FromString(msg.payload)
            event = None
            if msg.HasField("chaincode_event"):
                event = (msg.chaincode_event.event_name, msg.chaincode_event.payload)
            result = Result("COMPLETED", resp.status, resp.message, resp.payload, event)
            if result.ok and sim is not None:
                self._commit(msg.txid, sim)
        if fut is not None:
            fut.set_result(result)

    def _commit(self, tx_id: str, sim: _Sim) -> None:
        with self._lock:
            for key, value in sorted(sim.writes.items()):
                if value is None:
                    self.world.pop(key, None)
                else:
                    self.world[key] = value
                self.history.setdefault(key, []).append(
                    kv_query_result_pb2.KeyModification(
                        tx_id=tx_id,
                        value=value or b"",
                        is_delete=value is None,
                        timestamp=Timestamp(seconds=int(sim.timestamp), nanos=int((sim.timestamp % 1) * 1e9)),
                    )
                )

    def _batch(self, it_id: str, paginated: bool) -> bytes:
        with self._lock:
            rest = self._iters.get(it_id, [])
            batch, rest = rest[: self.batch_size], rest[self.batch_size :]
            has_more = bool(rest)
            if has_more:
                self._iters[it_id] = rest
            else:
                self._iters.pop(it_id, None)
            bookmark = self._iter_meta.get(it_id)
        resp = chaincode_shim_pb2.QueryResponse(
            results=[chaincode_shim_pb2.QueryResultBytes(resultBytes=b) for b in batch],
            has_more=has_more,
            id=it_id,
        )
        if paginated and not has_more:
            resp.metadata = chaincode_shim_pb2.QueryResponseMetadata(
                fetched_records_count=self._count.get(it_id, 0), bookmark=bookmark or ""
            ).SerializeToString()
        return resp.SerializeToString()

    def _serve(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> None:
        t = msg.type
        sim = self._sims.get((msg.channel_id, msg.txid))
        if sim is None:
            self._reply(msg, error=f"no transaction context for {msg.txid}")
            return
        if t == Msg.GET_STATE:
            req = chaincode_shim_pb2.GetState.FromString(msg.payload)
            if req.key in self.drop_keys:
                return
            if req.key in self.fail_keys:
                self._reply(msg, error=f"injected failure reading {req.key}")
                return
            with self._lock:
                value = self.world.get(req.key, b"")
            self._reply(msg, value)
        elif t == Msg.PUT_STATE:
            req = chaincode_shim_pb2.PutState.FromString(msg.payload)
            if req.key in self.fail_keys:
                self._reply(msg, error=f"injected failure writing {req.key}")
                return
            sim.writes[req.key] = req.value
            self._reply(msg)
        elif t == Msg.WRITE_BATCH_STATE:
            recs = chaincode_shim_pb2.WriteBatchState.FromString(msg.payload).rec
            self.write_batches.append(len(recs))
            if any(r.key in self.fail_keys for r in recs):
                self._reply(msg, error="injected failure in write batch")
                return
            for r in recs:
                sim.writes[r.key] = r.value if r.type == chaincode_shim_pb2.WriteRecord.PUT_STATE else None
            self._reply(msg)
        elif t == Msg.DEL_STATE:
            sim.writes[chaincode_shim_pb2.DelState.FromString(msg.payload).key] = None
            self._reply(msg)
        elif t == Msg.GET_STATE_BY_RANGE:
            req = chaincode_shim_pb2.GetStateByRange.FromString(msg.payload)
            meta = chaincode_shim_pb2.QueryMetadata.FromString(req.metadata) if req.metadata else None
            start = meta.bookmark if meta and meta.bookmark else req.startKey
            with self._lock:
                keys = sorted(k for k in self.world if k >= start and (not req.endKey or k < req.endKey))
                items = [(k, self.world[k]) for k in keys]
            bookmark = None
            if meta is not None:
                bookmark = items[meta.pageSize][0] if len(items) > meta.pageSize else ""
                items = items[: meta.pageSize]
            it_id = f"{msg.txid}#{next(self._ids)}"
            with self._lock:
                self._iters[it_id] = [
                    kv_query_result_pb2.KV(namespace="testcc", key=k, value=v).SerializeToString()
                    for k, v in items
                ]
                self._iter_meta[it_id] = bookmark
                self._count[it_id] = len(items)
            self._reply(msg, self._batch(it_id, meta is not None))
        elif t == Msg.QUERY_STATE_NEXT:
            it_id = chaincode_shim_pb2.QueryStateNext.FromString(msg.payload).id
            if it_id not in self._iters:
                self._reply(msg, error=f"query iterator {it_id} not found")
                return
            self._reply(msg, self._batch(it_id, self._iter_meta.get(it_id) is not None))
        elif t == Msg.QUERY_STATE_CLOSE:
            it_id = chaincode_shim_pb2.QueryStateClose.FromString(msg.payload).id
            with self._lock:
                self._iters.pop(it_id, None)
                self.closed_iterators.append(it_id)
            self._reply(msg, chaincode_shim_pb2.QueryResponse(has_more=False, id=it_id).SerializeToString())
        elif t == Msg.GET_HISTORY_FOR_KEY:
            key = chaincode_shim_pb2.GetHistoryForKey.FromString(msg.payload).key
            it_id = f"{msg.txid}#{next(self._ids)}"
            with self._lock:
                mods = list(reversed(self.history.get(key, [])))
                self._iters[it_id] = [m.SerializeToString() for m in mods]
                self._iter_meta[it_id] = None
            self._reply(msg, self._batch(it_id, False))
        else:
            self._reply(msg, error=f"fake peer does not support {Msg.Type.Name(t)}")

    # ------------------------------------------------------------------ client API
    def submit(
        self,
        fn: str,
        *args: str | bytes,
        creator: bytes = b"",
        transient: dict[str, bytes] | None = None,
        tx_id: str | None = None,
        init: bool = False,
        timestamp: float | None = None,
        with_proposal: bool = True,
    ) -> Future[Result]:
        """Start one transaction; the future resolves when the chaincode ends it."""
        tx_id = tx_id or os.urandom(16).hex()
        ts = time.time() if timestamp is None else timestamp
        raw = [fn.encode()] + [a if isinstance(a, bytes) else a.encode() for a in args]
        msg = Msg(
            type=Msg.INIT if init else Msg.TRANSACTION,
            txid=tx_id,
            channel_id=self.channel_id,
            payload=chaincode_pb2.ChaincodeInput(args=raw).SerializeToString(),
        )
        if with_proposal:
            msg.proposal.CopyFrom(signed_proposal(self.channel_id, tx_id, creator, raw, transient or {}, ts))
        return self.submit_raw(msg, timestamp=ts)

    def submit_raw(self, msg: chaincode_shim_pb2.ChaincodeMessage, timestamp: float = 0.0) -> Future[Result]:
        fut: Future[Result] = Future()
        key = (msg.channel_id, msg.txid)
        with self._lock:
            self._futures[key] = fut
            self._sims[key] = _Sim(timestamp=timestamp)
        self.send(msg)
        return fut

    def call(self, fn: str, *args: str | bytes, timeout: float = 10.0, **kw: object) -> Result:
        return self.submit(fn, *args, **kw).result(timeout)  # type: ignore[arg-type]
