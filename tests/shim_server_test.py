"""The chaincode server over real gRPC, driven by the in-test fake peer (tests/shim_peer.py)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from fabric_protos.peer import chaincode_pb2, chaincode_shim_pb2
from fedchain.identity.certs import cert_to_pem, create_ca, issue_certificate
from fedchain_cc.shim import ChaincodeServer, PeerError, ServerTLS
from fedchain_cc.shim.identity import _parse as parse_identity_cached
from fedchain_cc.shim.interface import Chaincode, ChaincodeStubAPI, Response, error, success
from fedchain_cc.testcc import TestChaincode

sys.path.insert(0, str(Path(__file__).parent))
from shim_peer import FakePeer, Result, creator_bytes  # noqa: E402

Msg = chaincode_shim_pb2.ChaincodeMessage
CC_ID = "testcc_1.0:0123abcd"


@pytest.fixture(scope="module")
def pki():
    ca_key, ca_cert = create_ca("ca.org1.example.com", "Org1MSP")
    _, alice = issue_certificate(ca_key, ca_cert, "alice", org="Org1MSP", ou="client", role="hospital")
    _, bob = issue_certificate(ca_key, ca_cert, "bob", org="Org1MSP", ou="client")
    return {
        "ca": (ca_key, ca_cert),
        "alice": creator_bytes("Org1MSP", cert_to_pem(alice)),
        "bob": creator_bytes("Org1MSP", cert_to_pem(bob)),
    }


@pytest.fixture(scope="module")
def server():
    with ChaincodeServer(TestChaincode(), "127.0.0.1:0", CC_ID) as srv:
        yield srv


@pytest.fixture
def peer(server):
    with FakePeer(server.address, expect_id=CC_ID) as p:
        yield p


class RawCC(Chaincode):
    """A chaincode without the Contract helper: exceptions reach the shim itself."""

    def init(self, stub: ChaincodeStubAPI) -> Response:
        stub.put_state("initialized", b"yes")
        return success(b"init:" + b",".join(stub.get_args()))

    def invoke(self, stub: ChaincodeStubAPI) -> Response:
        fn, params = stub.get_function_and_parameters()
        if fn == "raise":
            raise ValueError("contract bug: " + params[0])
        if fn == "exit":
            raise SystemExit(3)
        if fn == "not_a_response":
            return "oops"  # type: ignore[return-value]
        if fn == "catch_get":
            try:
                stub.get_state(params[0])
            except PeerError as exc:
                return success(f"{type(exc).__name__}|{exc}".encode())
            return error("no exception")
        if fn == "peek":  # take the first item of a range, abandon the rest
            it = stub.get_state_by_range("", "")
            first = next(it)
            it.close()
            return success(first.key.encode())
        if fn == "composite":
            stub.put_state(stub.create_composite_key("obj", ["a", "1"]), b"x")
            return success()
        if fn == "composite_range":
            kvs = list(stub.get_state_by_partial_composite_key("obj", ["a"]))
            page, bm = stub.get_state_by_partial_composite_key_with_pagination("obj", [], 1)
            return success(
                json.dumps([[stub.split_composite_key(kv.key) for kv in kvs], len(page), bm != ""]).encode()
            )
        if fn == "plain_range_with_composite_start":
            try:
                stub.get_state_by_range("\x00obj", "")
            except ValueError as exc:
                return success(str(exc).encode())
            return error("accepted a composite key")
        if fn == "range_then_get":  # ledger calls interleaved with a batched iterator
            out = []
            for kv in stub.get_state_by_range("", ""):
                out.append(kv.value == stub.get_state(kv.key))
                stub.put_state("seen-" + kv.key, kv.value)
            return success(json.dumps(out).encode())
        if fn == "threads":  # a contract that calls the stub from several threads at once
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(8) as pool:
                values = list(pool.map(stub.get_state, [f"t{i}" for i in range(40)]))
            return success(json.dumps([v.decode() for v in values]).encode())
        if fn == "writes":  # n puts, then delete the first key, then re-put the second
            n = int(params[0])
            for i in range(n):
                stub.put_state(f"w{i}", str(i).encode())
            stub.del_state("w0")
            stub.put_state("w1", b"last")
            return success() if params[1:] != ["refuse"] else error("refused after writing", 400)
        if fn == "sleep":
            time.sleep(float(params[0]))
            return success(b"slept")
        if fn == "slow_get":
            t0 = time.monotonic()
            try:
                stub.get_state(params[0])
            except Exception as exc:  # noqa: BLE001
                return success(f"{type(exc).__name__} after {time.monotonic() - t0:.1f}s".encode())
            return error("reply came")
        return error(f"unknown {fn}", 400)


@pytest.fixture(scope="module")
def raw_server():
    with ChaincodeServer(RawCC(), "127.0.0.1:0", "raw:1", request_timeout_s=1.0) as srv:
        yield srv


def ok(result: Result) -> bytes:
    assert result.ok, result
    return result.payload


def test_handshake_registers_chaincode_id(server, peer) -> None:
    assert peer.registered_id == CC_ID
    assert peer.received[0] == Msg.REGISTER
    assert any(s.ready.wait(5) and s.state == "ready" for s in server.sessions)


def test_all_stub_operations(peer, pki) -> None:
    alice = pki["alice"]
    assert ok(peer.call("put", "a", "1", creator=alice)) == b""
    assert peer.world["a"] == b"1"
    assert ok(peer.call("get", "a", creator=alice)) == b"1"
    r = peer.call("get", "zz", creator=alice)
    assert (r.kind, r.status) == ("COMPLETED", 404) and "not found" in r.message
    assert ok(peer.call("inc", "a", "4", creator=alice)) == b"5"
    for k in ("b", "c"):
        ok(peer.call("put", k, k.upper(), creator=alice))
    items = json.loads(ok(peer.call("range", "a", "c", creator=alice)))["items"]
    assert items == [{"key": "a", "value": "5"}, {"key": "b", "value": "B"}]
    ok(peer.call("del", "b", creator=alice))
    assert "b" not in peer.world
    hist = json.loads(ok(peer.call("history", "a", creator=alice)))
    assert [h["value"] for h in hist] == ["5", "1"] and not any(h["is_delete"] for h in hist)
    hist_b = json.loads(ok(peer.call("history", "b", creator=alice)))
    assert [h["is_delete"] for h in hist_b] == [True, False]
    ts = 1_700_000_123.25
    who = json.loads(ok(peer.call("whoami", creator=alice, tx_id="tx-who", timestamp=ts)))
    assert who == {
        "msp_id": "Org1MSP",
        "role": "hospital",
        "common_name": "alice",
        "tx_id": "tx-who",
        "channel_id": "mychannel",
        "timestamp": ts,
        "id": who["id"],
    }
    assert (
        who["id"].startswith("x509::CN=alice,OU=client,O=Org1MSP") and "::CN=ca.org1.example.com" in who["id"]
    )
    assert json.loads(ok(peer.call("whoami", creator=pki["bob"])))["role"] is None
    assert (
        ok(peer.call("transient", "secret", creator=alice, transient={"secret": b"\x00\xffs"}))
        == b"\x00\xffs"
    )
    assert peer.call("transient", "nope", creator=alice).status == 404
    r = peer.call("fail", "refused politely", creator=alice)
    assert (r.kind, r.status, r.message) == ("COMPLETED", 400, "refused politely")
    r = peer.call("boom", creator=alice)
    assert (r.kind, r.status) == (
        "COMPLETED",
        500,
    ) and r.message == "boom: internal error: RuntimeError: boom requested"


def test_event_reaches_completed(peer, pki) -> None:
    r = peer.call("event", "RoundCreated", '{"round": 1}', creator=pki["alice"])
    assert r.ok and r.event == ("RoundCreated", b'{"round": 1}')
    assert peer.call("put", "x", "1", creator=pki["alice"]).event is None
    r = peer.call("event", "", "p", creator=pki["alice"])
    assert r.status == 500 and "event name" in r.message


def test_creator_parse_is_cached(peer, pki) -> None:
    peer.call("whoami", creator=pki["alice"])
    hits = parse_identity_cached.cache_info().hits
    for _ in range(5):
        peer.call("whoami", creator=pki["alice"])
    assert parse_identity_cached.cache_info().hits >= hits + 5


def test_bad_creator_is_a_clear_error(peer) -> None:
    r = peer.call("whoami", creator=creator_bytes("Org1MSP", b"not a pem"))
    assert r.status == 500 and "not a PEM X.509 certificate" in r.message
    r = peer.call("whoami", with_proposal=False)
    assert r.status == 500 and "no creator" in r.message


def test_paging_across_pages_and_batches(server, pki) -> None:
    with FakePeer(server.address, batch_size=3) as p:
        for i in range(10):
            p.world[f"k{i:02d}"] = str(i).encode()
        p.world["\x00composite\x00x\x00"] = b"hidden from plain ranges"
        # unpaged: 10 results in 4 batches of <= 3 (3 QUERY_STATE_NEXT)
        items = json.loads(ok(p.call("range", "", "", creator=pki["alice"])))["items"]
        assert [it["key"] for it in items] == [f"k{i:02d}" for i in range(10)]
        assert p.received.count(Msg.QUERY_STATE_NEXT) == 3
        # pages of 4 (each spans two batches), following bookmarks to the end
        seen, bookmark, pages = [], "", 0
        while True:
            page = json.loads(ok(p.call("range", "k00", "k99", "4", bookmark, creator=pki["alice"])))
            seen += [it["key"] for it in page["items"]]
            pages += 1
            bookmark = page["bookmark"]
            if not bookmark:
                break
        assert pages == 3 and seen == [f"k{i:02d}" for i in range(10)]
        assert json.loads(ok(p.call("range", "k03", "k05", "10", creator=pki["alice"]))) == {
            "items": [{"key": "k03", "value": "3"}, {"key": "k04", "value": "4"}],
            "bookmark": "",
        }
        assert p.call("range", "a", "b", "0", creator=pki["alice"]).status == 400


def test_abandoned_iterator_is_closed_and_composite_keys(raw_server) -> None:
    with FakePeer(raw_server.address, batch_size=2) as p:
        for k in "abcde":
            p.world[k] = b"v"
        r = p.call("peek")
        assert r.ok and r.payload == b"a"
        assert len(p.closed_iterators) == 1 and p.received.count(Msg.QUERY_STATE_CLOSE) == 1
        ok(p.call("composite"))
        p.world["\x00obj\x00b\x002\x00"] = b"y"
        assert json.loads(ok(p.call("composite_range"))) == [[["obj", ["a", "1"]]], 1, True]
        assert b"null character" in ok(p.call("plain_range_with_composite_start"))
        assert json.loads(ok(p.call("range_then_get"))) == [True] * 5  # 5 plain keys, 3 batches
        assert all(p.world["seen-" + k] == b"v" for k in "abcde")


def test_stub_calls_from_contract_threads_are_serialized(raw_server) -> None:
    with FakePeer(raw_server.address, jitter_s=0.002) as p:
        p.world.update({f"t{i}": str(i).encode() for i in range(40)})
        assert json.loads(ok(p.call("threads"))) == [str(i) for i in range(40)]


def test_concurrent_transactions_on_one_stream(server, pki) -> None:
    """200 transactions in flight on one stream, replies out of order: every one answered correctly."""
    with FakePeer(server.address, jitter_s=0.003) as p:
        for i in range(200):
            p.world[f"c{i}"] = str(i * 1000).encode()
        futures = [p.submit("inc", f"c{i}", str(i), creator=pki["alice"]) for i in range(200)]
        results = [f.result(60) for f in futures]
        assert [r.payload for r in results] == [str(i * 1000 + i).encode() for i in range(200)]
        assert all(r.ok for r in results)
        assert [p.world[f"c{i}"] for i in range(200)] == [str(i * 1001).encode() for i in range(200)]
        # mixed readers and writers in flight together
        futures = [
            p.submit("get", f"c{i}", creator=pki["alice"])
            if i % 2
            else p.submit("put", f"d{i}", f"v{i}", creator=pki["alice"])
            for i in range(200)
        ]
        results = [f.result(60) for f in futures]
        assert all(r.ok for r in results)
        assert [results[i].payload for i in range(1, 200, 2)] == [
            str(i * 1001).encode() for i in range(1, 200, 2)
        ]
        assert all(p.world[f"d{i}"] == f"v{i}".encode() for i in range(0, 200, 2))


def test_exception_becomes_error_not_hang(raw_server) -> None:
    with FakePeer(raw_server.address) as p:
        t0 = time.monotonic()
        r = p.call("raise", "details", timeout=5)
        assert r.kind == "ERROR" and r.error == "ValueError: contract bug: details"
        r = p.call("exit", timeout=5)
        assert r.kind == "ERROR" and "SystemExit" in r.error
        r = p.call("not_a_response", timeout=5)
        assert r.kind == "ERROR" and "instead of a Response" in r.error
        assert time.monotonic() - t0 < 5
        assert p.call("unknown", timeout=5).status == 400  # the stream still serves


def test_peer_error_raises_in_contract(raw_server, server, pki) -> None:
    with FakePeer(raw_server.address) as p:
        p.fail_keys.add("bad")
        r = p.call("catch_get", "bad")
        assert r.ok and r.payload == b"PeerError|GET_STATE failed on the peer: injected failure reading bad"
    with FakePeer(server.address) as p:
        p.fail_keys.add("bad")
        r = p.call("put", "bad", "1", creator=pki["alice"])
        assert r.status == 500 and "PeerError" in r.message and "bad" not in p.world


def test_missing_reply_times_out(raw_server) -> None:
    with FakePeer(raw_server.address) as p:
        p.drop_keys.add("never")
        r = p.call("slow_get", "never", timeout=10)
        assert r.ok and r.payload.startswith(b"ShimError after 1.")


def test_malformed_messages_get_error_and_server_keeps_serving(peer, pki) -> None:
    bad_input = Msg(type=Msg.TRANSACTION, txid="bad1", channel_id="mychannel", payload=b"\xff\xff\xff")
    r = peer.submit_raw(bad_input).result(5)
    assert r.kind == "ERROR" and "ChaincodeInput" in r.error
    good_input = chaincode_pb2.ChaincodeInput(args=[b"get", b"a"]).SerializeToString()
    bad_prop = Msg(type=Msg.TRANSACTION, txid="bad2", channel_id="mychannel", payload=good_input)
    bad_prop.proposal.proposal_bytes = b"\x0a\xff\xff"
    r = peer.submit_raw(bad_prop).result(5)
    assert r.kind == "ERROR" and "proposal" in r.error
    # an unexpected message type for a transaction gets ERROR too
    r = peer.submit_raw(Msg(type=Msg.INVOKE_CHAINCODE, txid="bad3", channel_id="mychannel")).result(5)
    assert r.kind == "ERROR" and "cannot handle INVOKE_CHAINCODE" in r.error
    ok(peer.call("put", "after", "ok", creator=pki["alice"]))
    assert peer.world["after"] == b"ok"


def test_duplicate_txid_in_flight_is_refused(raw_server) -> None:
    with FakePeer(raw_server.address) as p:
        p.drop_keys.add("hang")
        first = p.submit("slow_get", "hang", tx_id="same")
        time.sleep(0.2)
        dup = Msg(
            type=Msg.TRANSACTION,
            txid="same",
            channel_id="mychannel",
            payload=chaincode_pb2.ChaincodeInput(args=[b"x"]).SerializeToString(),
        )
        p.send(dup)  # its ERROR resolves the first future: the fake peer routes by txid
        r = first.result(5)
        assert r.kind == "ERROR" and "already in flight" in r.error


def test_init_and_keepalive(raw_server) -> None:
    with FakePeer(raw_server.address) as p:
        r = p.call("a1", "a2", init=True)
        assert r.ok and r.payload == b"init:a1,a2" and p.world["initialized"] == b"yes"
        p.send(Msg(type=Msg.KEEPALIVE))
        deadline = time.monotonic() + 5
        while p.keepalives == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p.keepalives == 1


def test_transaction_before_ready_is_refused(server) -> None:
    """A peer that skips REGISTERED/READY gets ERROR, not silence."""
    channel = grpc.insecure_channel(server.address)
    out = [
        Msg(
            type=Msg.TRANSACTION,
            txid="early",
            channel_id="c",
            payload=chaincode_pb2.ChaincodeInput(args=[b"get", b"a"]).SerializeToString(),
        )
    ]
    responses = chaincode_shim_pb2_grpc_stub(channel).Connect(iter_then_wait(out, 2.0))
    got = [next(responses), next(responses)]
    channel.close()
    assert got[0].type == Msg.REGISTER
    assert got[1].type == Msg.ERROR and got[1].txid == "early" and b"not ready" in got[1].payload


def chaincode_shim_pb2_grpc_stub(channel):  # noqa: ANN001, ANN201
    from fabric_protos.peer import chaincode_shim_pb2_grpc

    return chaincode_shim_pb2_grpc.ChaincodeStub(channel)


def iter_then_wait(messages, seconds):  # noqa: ANN001, ANN201
    yield from messages
    time.sleep(seconds)


def test_two_peers_at_once(server, pki) -> None:
    with FakePeer(server.address) as p1, FakePeer(server.address) as p2:
        for i in range(30):
            p1.world[f"s{i}"] = str(i).encode()
            p2.world[f"s{i}"] = str(100 + i).encode()  # same keys, different world: replies must not cross
        f1 = [p1.submit("inc", f"s{i}", creator=pki["alice"]) for i in range(30)]
        f2 = [p2.submit("inc", f"s{i}", creator=pki["alice"], tx_id=f"t{i}") for i in range(30)]
        f3 = [
            p1.submit("get", f"s{i}", creator=pki["alice"], tx_id=f"t{i}") for i in range(30)
        ]  # same tx ids
        assert [f.result(30).payload for f in f1] == [str(i + 1).encode() for i in range(30)]
        assert [f.result(30).payload for f in f2] == [str(101 + i).encode() for i in range(30)]
        assert all(f.result(30).ok for f in f3)
        assert len([s for s in server.sessions if s.state == "ready"]) >= 2


def test_peer_disconnect_fails_waiting_transaction(raw_server) -> None:
    p = FakePeer(raw_server.address)
    p.wait_ready()
    p.drop_keys.add("hang")
    p.submit("slow_get", "hang")
    time.sleep(0.2)
    session = [s for s in raw_server.sessions if s.state == "ready"][-1]
    p.close()
    deadline = time.monotonic() + 5
    while session.state != "closed" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert session.state == "closed"
    t0 = time.monotonic()  # the waiting transaction is released at once, not after the 1 s reply timeout
    while session._txs and time.monotonic() - t0 < 0.5:
        time.sleep(0.01)
    assert not session._txs


def _tls_material(pki, tmp_path: Path):
    ca_key, ca_cert = pki["ca"]
    skey, scert = issue_certificate(
        ca_key,
        ca_cert,
        "cc.org1.example.com",
        org="Org1MSP",
        ou="peer",
        tls=True,
        hosts=("localhost", "127.0.0.1"),
    )
    ckey, ccert = issue_certificate(
        ca_key, ca_cert, "peer0.org1.example.com", org="Org1MSP", ou="peer", tls=True
    )
    from cryptography.hazmat.primitives import serialization

    def pem_key(k) -> bytes:  # noqa: ANN001
        return k.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca_pem = cert_to_pem(ca_cert)
    for name, data in {
        "server.crt": cert_to_pem(scert),
        "server.key": pem_key(skey),
        "ca.crt": ca_pem,
    }.items():
        (tmp_path / name).write_bytes(data)
    return ca_pem, (pem_key(ckey), cert_to_pem(ccert))


def test_mutual_tls(pki, tmp_path) -> None:
    ca_pem, (client_key, client_cert) = _tls_material(pki, tmp_path)
    tls = ServerTLS.from_files(tmp_path / "server.crt", tmp_path / "server.key", tmp_path / "ca.crt")
    with ChaincodeServer(TestChaincode(), "127.0.0.1:0", CC_ID, tls) as srv:
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca_pem, private_key=client_key, certificate_chain=client_cert
        )
        with FakePeer(srv.address, credentials=creds, server_name="localhost") as p:
            ok(p.call("put", "tls", "yes", creator=pki["alice"]))
            assert ok(p.call("whoami", creator=pki["alice"]))
        # without a client certificate the handshake fails
        anon = FakePeer(
            srv.address,
            credentials=grpc.ssl_channel_credentials(root_certificates=ca_pem),
            server_name="localhost",
        )
        with pytest.raises(ConnectionError):
            anon.wait_ready(timeout=5)  # stream error, no REGISTER
        anon.close()
        assert anon.registered_id is None and anon.stream_error is not None


def test_large_values_round_trip(peer, pki) -> None:
    big = "m" * (6 * 1024 * 1024)  # the FL contract's largest model chunking input
    assert peer.call("put", "big", big, creator=pki["alice"], timeout=30).ok
    assert peer.call("get", "big", creator=pki["alice"], timeout=30).payload == big.encode()


def test_graceful_stop_finishes_in_flight_and_refuses_new() -> None:
    srv = ChaincodeServer(RawCC(), "127.0.0.1:0", "raw:2").start()
    p = FakePeer(srv.address)
    p.wait_ready()
    slow = p.submit("sleep", "0.6")
    time.sleep(0.2)
    stopper = threading.Thread(target=srv.stop, kwargs={"grace": 5.0})
    t0 = time.monotonic()
    stopper.start()
    time.sleep(0.1)
    late = p.submit("sleep", "0")
    assert late.result(5).kind == "ERROR" and "shutting down" in late.result().error
    assert slow.result(5).payload == b"slept"
    stopper.join(10)
    assert not stopper.is_alive() and time.monotonic() - t0 < 3
    p._done.wait(5)
    assert p._done.is_set()  # the server ended the stream
    p.close()


def test_write_batches_when_the_peer_offers_them(raw_server) -> None:
    with FakePeer(raw_server.address, write_batch=4) as p:
        r = p.call("writes", "10")
        assert r.ok, r
        assert Msg.PUT_STATE not in p.received and Msg.DEL_STATE not in p.received
        assert p.write_batches == [4, 4, 2]  # 10 keys, batches of <= 4 records
        assert p.world == {**{f"w{i}": str(i).encode() for i in range(2, 10)}, "w1": b"last"}
        assert p.call("writes", "3", "refuse").status == 400 and p.write_batches == [4, 4, 2]  # nothing sent
        p.fail_keys.add("w2")
        r = p.call("writes", "3")
        assert r.kind == "ERROR" and "injected failure in write batch" in r.error
    with FakePeer(raw_server.address) as p:  # a peer that offers nothing gets one PUT_STATE per write
        assert p.call("writes", "3").ok
        assert (
            p.received.count(Msg.PUT_STATE) == 4
            and p.received.count(Msg.DEL_STATE) == 1
            and not p.write_batches
        )
        assert p.world == {"w1": b"last", "w2": b"2"}


def test_failed_init_is_an_error_like_fabric(raw_server) -> None:
    class FailingInit(RawCC):
        def init(self, stub: ChaincodeStubAPI) -> Response:
            return error("cannot initialize", 500)

    with ChaincodeServer(FailingInit(), "127.0.0.1:0", "x:1") as srv, FakePeer(srv.address) as p:
        r = p.call("x", init=True)
        assert r.kind == "ERROR" and r.error == "cannot initialize"
