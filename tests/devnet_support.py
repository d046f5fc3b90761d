"""Helpers for the devnet tests: a minimal chaincode-as-a-service server, network setup, raw clients.

The chaincode server here is deliberately independent of fedchain_cc.shim: it speaks the
chaincode protocol directly, so the devnet's peer side is tested against a second,
separate implementation. Run it as a process: `python tests/devnet_support.py ADDRESS CC_ID`.
Not a test module.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from fabric_protos.peer import chaincode_event_pb2, chaincode_pb2, chaincode_shim_pb2, proposal_response_pb2

CM = chaincode_shim_pb2.ChaincodeMessage
HERE = Path(__file__).resolve()


# --------------------------------------------------------------------------- chaincode server
class _Session:
    def __init__(self, cc_id: str) -> None:
        self.out: queue.SimpleQueue = queue.SimpleQueue()
        self.replies: dict[str, queue.SimpleQueue] = {}
        self.lock = threading.Lock()
        self.pool = concurrent.futures.ThreadPoolExecutor(16)
        self.out.put(CM(type=CM.REGISTER, payload=chaincode_pb2.ChaincodeID(name=cc_id).SerializeToString()))

    def call(self, msg: CM, type_, payload: bytes) -> bytes:
        self.out.put(CM(type=type_, payload=payload, txid=msg.txid, channel_id=msg.channel_id))
        reply = self.replies[msg.txid].get(timeout=30)
        if reply.type == CM.ERROR:
            raise RuntimeError(bytes(reply.payload).decode())
        return bytes(reply.payload)

    def run_tx(self, msg: CM) -> None:
        args = [bytes(a).decode() for a in chaincode_pb2.ChaincodeInput.FromString(msg.payload).args]
        fn, rest = args[0], args[1:]
        event = None
        status, payload, message = 200, b"", ""
        try:
            if fn == "put":
                self.call(msg, CM.PUT_STATE, chaincode_shim_pb2.PutState(key=rest[0], value=rest[1].encode())
                          .SerializeToString())
            elif fn == "get":
                payload = self.call(msg, CM.GET_STATE, chaincode_shim_pb2.GetState(key=rest[0]).SerializeToString())
                if not payload:
                    status, message = 404, f"key {rest[0]} not found"
            elif fn == "inc":
                cur = self.call(msg, CM.GET_STATE, chaincode_shim_pb2.GetState(key=rest[0]).SerializeToString())
                payload = str(int(cur or b"0") + 1).encode()
                self.call(msg, CM.PUT_STATE, chaincode_shim_pb2.PutState(key=rest[0], value=payload).SerializeToString())
            elif fn == "event":
                self.call(msg, CM.PUT_STATE, chaincode_shim_pb2.PutState(key="ev:" + msg.txid, value=b"1")
                          .SerializeToString())
                event = chaincode_event_pb2.ChaincodeEvent(event_name=rest[0], payload=rest[1].encode())
            elif fn == "range":
                resp = chaincode_shim_pb2.QueryResponse.FromString(self.call(
                    msg, CM.GET_STATE_BY_RANGE, chaincode_shim_pb2.GetStateByRange(startKey=rest[0], endKey=rest[1])
                    .SerializeToString()))
                keys = []
                while True:
                    from fabric_protos.ledger.queryresult import kv_query_result_pb2
                    keys += [kv_query_result_pb2.KV.FromString(r.resultBytes).key for r in resp.results]
                    if not resp.has_more:
                        break
                    resp = chaincode_shim_pb2.QueryResponse.FromString(self.call(
                        msg, CM.QUERY_STATE_NEXT, chaincode_shim_pb2.QueryStateNext(id=resp.id).SerializeToString()))
                payload = json.dumps(keys).encode()
            elif fn == "nondet":
                payload = os.urandom(8).hex().encode()
                self.call(msg, CM.PUT_STATE, chaincode_shim_pb2.PutState(key="nd", value=payload).SerializeToString())
            elif fn == "fail":
                status, message = 500, rest[0]
            else:
                status, message = 400, f"unknown function {fn}"
        except Exception as exc:  # noqa: BLE001 - report to the peer like a shim would
            status, message = 500, f"{type(exc).__name__}: {exc}"
        resp = proposal_response_pb2.Response(status=status, message=message, payload=payload)
        done = CM(type=CM.COMPLETED, payload=resp.SerializeToString(), txid=msg.txid, channel_id=msg.channel_id)
        if event is not None:
            event.chaincode_id = "cc"
            event.tx_id = msg.txid
            done.chaincode_event.CopyFrom(event)
        with self.lock:
            self.replies.pop(msg.txid, None)
        self.out.put(done)

    def reader(self, request_iterator) -> None:
        for msg in request_iterator:
            if msg.type == CM.TRANSACTION:
                with self.lock:
                    self.replies[msg.txid] = queue.SimpleQueue()
                self.pool.submit(self.run_tx, msg)
            elif msg.type in (CM.RESPONSE, CM.ERROR):
                with self.lock:
                    q = self.replies.get(msg.txid)
                if q is not None:
                    q.put(msg)
        self.out.put(None)


def serve_chaincode(address: str, cc_id: str) -> None:
    def connect(request_iterator, context):
        s = _Session(cc_id)
        threading.Thread(target=s.reader, args=(request_iterator,), daemon=True).start()
        while True:
            msg = s.out.get()
            if msg is None:
                return
            yield msg

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(8))
    handler = grpc.stream_stream_rpc_method_handler(connect, request_deserializer=CM.FromString,
                                                    response_serializer=CM.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("protos.Chaincode", {"Connect": handler}),))
    port = server.add_insecure_port(address)
    server.start()
    print(f"READY 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


def start_chaincode(cc_id: str = "cc:1") -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(HERE), "127.0.0.1:0", cc_id], stdout=subprocess.PIPE)
    line = proc.stdout.readline().decode().strip()
    assert line.startswith("READY "), line
    return proc, line.split()[1]


# --------------------------------------------------------------------------- network
@dataclass
class Net:
    root: Path
    consortium: object
    config_path: Path
    cc_proc: subprocess.Popen
    cc_address: str


_CONSORTIUM_CACHE: dict[str, Path] = {}


def make_net(root: Path, *, policy="MAJORITY", batch_timeout_ms=50, max_message_count=100,
             max_message_bytes=16 * 1024 * 1024, client_auth=False) -> Net:
    from fedchain.identity import generate_consortium
    from fedchain_devnet.config import ChaincodeDef, make_devnet_config

    consortium = generate_consortium(root / "crypto")
    proc, address = start_chaincode()
    cfg = make_devnet_config(consortium, root / "ledger", "127.0.0.1:0",
                             [ChaincodeDef("cc", address, policy=policy, connect_timeout_s=20)],
                             batch_timeout_ms=batch_timeout_ms, max_message_count=max_message_count,
                             max_message_bytes=max_message_bytes, client_auth=client_auth)
    path = root / "devnet.json"
    path.write_text(json.dumps(cfg, indent=2))
    return Net(root, consortium, path, proc, address)


def gateway_for(net: Net, endpoint: str, identity):
    from fedchain.gateway import Gateway

    org1 = net.consortium.orgs[0]
    return Gateway.connect(identity, endpoint, tls_root_cert=org1.tls_ca_cert_path.read_bytes())


def wait_until(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


if __name__ == "__main__":
    serve_chaincode(sys.argv[1], sys.argv[2])
