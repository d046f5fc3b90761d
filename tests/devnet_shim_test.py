"""The devnet driving the project's own chaincode shim (`python -m fedchain_cc`, testcc) over mutual TLS,
and the gateway itself with mutual TLS: range queries, pagination, history, transient data, identity."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import grpc
import pytest
from fedchain.gateway import EndorseError, Gateway
from fedchain.identity import generate_consortium
from fedchain_devnet.config import ChaincodeDef, make_devnet_config
from fedchain_devnet.launch import DevnetProcess

pytestmark = pytest.mark.slow
CH = "fedchain"


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    root = tmp_path_factory.mktemp("shimnet")
    consortium = generate_consortium(root / "crypto")
    org1 = consortium.orgs[0]
    cc_cert, cc_key = consortium.issue_tls("Org1MSP", "testcc")
    peer_cert, peer_key = consortium.issue_tls("Org1MSP", "peer-cc-client")
    env = dict(os.environ, CHAINCODE_ID="testcc_1.0:abc", CHAINCODE_SERVER_ADDRESS="127.0.0.1:0",
               FEDCHAIN_CHAINCODE="testcc", CHAINCODE_TLS_CERT=str(cc_cert), CHAINCODE_TLS_KEY=str(cc_key),
               CHAINCODE_TLS_CLIENT_CA=str(org1.tls_ca_cert_path))
    cc = subprocess.Popen([sys.executable, "-m", "fedchain_cc"], stdout=subprocess.PIPE, env=env)
    line = cc.stdout.readline().decode().strip()
    assert line.startswith("READY "), line
    address = line.split()[1]
    cfg = make_devnet_config(consortium, root / "ledger", "127.0.0.1:0", [ChaincodeDef(
        "testcc", address, policy="ALL", tls_root_cert=str(org1.tls_ca_cert_path),
        client_cert=str(peer_cert), client_key=str(peer_key))], client_auth=True)
    (root / "devnet.json").write_text(json.dumps(cfg))
    proc = DevnetProcess(root / "devnet.json")
    endpoint = proc.start()
    user = consortium.enroll("Org2MSP", "bob", "hospital")
    tls_cert, tls_key = consortium.issue_tls("Org2MSP", "bob-client")
    gw = Gateway.connect(user, endpoint, tls_root_cert=org1.tls_ca_cert_path.read_bytes(),
                         client_cert=tls_cert.read_bytes(), client_key=tls_key.read_bytes())
    yield {"gw": gw, "contract": gw.network(CH).contract("testcc"), "endpoint": endpoint, "org1": org1}
    gw.close()
    proc.stop()
    cc.terminate()
    cc.wait(10)


def test_all_orgs_endorse_and_state_ops_work(net):
    c = net["contract"]
    for i in range(5):
        assert c.submit("put", f"r{i}", f"v{i}").validation_code_name == "VALID"
    assert c.submit("inc", "n").result == b"1"
    assert c.submit("inc", "n").result == b"2"
    items = json.loads(c.evaluate("range", "r0", "r9"))["items"]
    assert [i["key"] for i in items] == [f"r{i}" for i in range(5)]
    page = json.loads(c.evaluate("range", "r0", "r9", "2", ""))
    assert [i["key"] for i in page["items"]] == ["r0", "r1"] and page["bookmark"] == "r2"
    page = json.loads(c.evaluate("range", "r0", "r9", "2", page["bookmark"]))
    assert [i["key"] for i in page["items"]] == ["r2", "r3"]
    with pytest.raises(EndorseError) as err:
        c.submit("range", "r0", "r9", "2", "")
    assert "read-only" in str(err.value)
    hist = json.loads(c.evaluate("history", "n"))
    assert [h["value"] for h in hist] == ["2", "1"]
    who = json.loads(c.evaluate("whoami"))
    assert who["msp_id"] == "Org2MSP" and who["role"] == "hospital"
    assert c.evaluate("transient", "secret", transient={"secret": b"s3"}) == b"s3"
    tx = c.new_proposal("put", ["with-transient", "x"], transient={"secret": b"never-on-ledger"}).endorse()
    assert b"never-on-ledger" not in tx.envelope.SerializeToString()
    assert tx.submit().status().code_name == "VALID"


def test_events_from_the_shim_carry_chaincode_and_tx_id(net):
    res = net["contract"].submit("event", "Round", "r1")
    stream = net["gw"].network(CH).chaincode_events("testcc", start_block=res.block_number)
    try:
        ev = next(iter(stream))
    finally:
        stream.close()
    assert (ev.chaincode_name, ev.tx_id, ev.event_name, ev.payload) == ("testcc", res.tx_id, "Round", b"r1")


def test_gateway_requires_a_client_certificate(net):
    creds = grpc.ssl_channel_credentials(net["org1"].tls_ca_cert_path.read_bytes())
    with grpc.secure_channel(net["endpoint"], creds) as ch:
        call = ch.unary_unary("/gateway.Gateway/Evaluate", request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as err:
            call(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
