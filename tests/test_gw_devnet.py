"""fedchain.gateway + fedchain.ledger against the real embedded devnet (separate processes, TLS)."""

from __future__ import annotations

import threading

import grpc
import pytest
from fabric_protos.common import common_pb2, ledger_pb2
from fedchain.gateway import CommitError, EndorseError, FileCheckpoint, Gateway, qscc
from fedchain.gateway.transaction import raise_for_status
from fedchain.identity import Identity
from fedchain.ledger import block_header_hash, parse_block, parse_envelope, verify_chain

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    import devnet_support as ds
    from fedchain_devnet.launch import DevnetProcess

    net = ds.make_net(tmp_path_factory.mktemp("gwdevnet"))
    proc = DevnetProcess(net.config_path)
    try:
        endpoint = proc.start()
        user = net.consortium.enroll("Org2MSP", "hospital2", "hospital")
        ca = net.consortium.orgs[0].tls_ca_cert_path.read_bytes()
        with Gateway.connect(user, endpoint, tls_root_cert=ca) as gateway:
            yield type("Devnet", (), dict(net=net, gateway=gateway, user=user, endpoint=endpoint, ca=ca))
    finally:
        proc.stop()
        net.cc_proc.kill()
        net.cc_proc.wait()


def qscc_block(gateway, number: int):
    raw = gateway.network("fedchain").contract("qscc").evaluate("GetBlockByNumber", "fedchain", str(number))
    return common_pb2.Block.FromString(raw)


def chain_height(gateway) -> int:
    raw = gateway.network("fedchain").contract("qscc").evaluate("GetChainInfo", "fedchain")
    return ledger_pb2.BlockchainInfo.FromString(raw).height


def test_submit_commits_an_endorsed_verifiable_transaction(devnet):
    cc = devnet.gateway.network("fedchain").contract("cc")
    res = cc.submit("put", "alpha", "1", transient={"secret": b"NEVER-ON-LEDGER"})
    assert res.validation_code_name == "VALID" and res.block_number >= 1
    assert cc.evaluate("get", "alpha") == b"1"
    info = parse_block(qscc_block(devnet.gateway, res.block_number))
    tx = next(t for t in info.transactions if t.info and t.info.tx_id == res.tx_id)
    assert tx.validation_code_name == "VALID"
    assert (tx.info.creator_msp_id, tx.info.function, tx.info.args) == ("Org2MSP", "put", (b"alpha", b"1"))
    assert devnet.user.identity.verify(tx.info.signature, tx.info.signed_payload)
    assert len({e.msp_id for e in tx.info.endorsements}) >= 2  # MAJORITY of 3 orgs
    for e in tx.info.endorsements:
        assert Identity(e.msp_id, e.cert_pem).verify(e.signature, e.signed_data)
    writes = {w.key: w.value for ns in tx.info.rwset for w in ns.writes}
    assert writes == {"alpha": b"1"}
    height = chain_height(devnet.gateway)
    blocks = [qscc_block(devnet.gateway, n) for n in range(height)]
    assert verify_chain(blocks) == height
    assert all(b"NEVER-ON-LEDGER" not in d for b in blocks for d in b.data.data)


def test_chaincode_failure_is_an_endorse_error_with_details(devnet):
    cc = devnet.gateway.network("fedchain").contract("cc")
    with pytest.raises(EndorseError) as err:
        cc.submit("fail", "round 3 is closed")
    assert err.value.details and all("round 3 is closed" in d.message for d in err.value.details)
    assert {d.msp_id for d in err.value.details} <= {"Org1MSP", "Org2MSP", "Org3MSP"}


def test_mvcc_conflict_raises_commit_error(devnet):
    cc = devnet.gateway.network("fedchain").contract("cc")
    first = cc.new_proposal("inc", ["counter"]).endorse()
    second = cc.new_proposal("inc", ["counter"]).endorse()  # read the same version
    commits = [first.submit(), second.submit()]
    statuses = [c.status() for c in commits]
    assert sorted(s.code_name for s in statuses) == ["MVCC_READ_CONFLICT", "VALID"]
    third = cc.new_proposal("inc", ["counter2"]).endorse()
    fourth = cc.new_proposal("inc", ["counter2"]).endorse()
    third.submit().status()
    with pytest.raises(CommitError) as err:
        raise_for_status(fourth.submit().status())
    assert err.value.validation_code_name == "MVCC_READ_CONFLICT" and err.value.tx_id == fourth.tx_id


def test_chaincode_events_resume_after_restart(devnet, tmp_path):
    network = devnet.gateway.network("fedchain")
    cc = network.contract("cc")
    start = chain_height(devnet.gateway)
    tx_ids = [cc.submit("event", "Tick", str(i)).tx_id for i in range(3)]
    cp = FileCheckpoint(tmp_path / "cp.json")
    with network.chaincode_events("cc", start_block=start, checkpoint=cp) as events:
        first_two = [next(events), next(events)]
        for ev in first_two:
            cp.checkpoint_event(ev)
    assert [e.tx_id for e in first_two] == tx_ids[:2] and first_two[0].payload == b"0"
    with network.chaincode_events("cc", start_block=start, checkpoint=FileCheckpoint(tmp_path / "cp.json")) as events:
        third = next(events)
    assert third.tx_id == tx_ids[2] and third.event_name == "Tick" and third.payload == b"2"


def test_block_events_deliver_a_verifiable_chain(devnet):
    network = devnet.gateway.network("fedchain")
    got = []
    with network.block_events(start_block=0) as blocks:
        for block in blocks:
            got.append(block)
            if len(got) == 3:
                break
    assert [b.header.number for b in got] == [0, 1, 2] and verify_chain(got) == 3


def test_many_threads_one_gateway(devnet):
    cc = devnet.gateway.network("fedchain").contract("cc")
    errors: list[Exception] = []
    results = []

    def worker(i: int) -> None:
        try:
            results.append(cc.submit("put", f"par/{i}", str(i)))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len({r.tx_id for r in results}) == 40
    assert all(r.validation_code_name == "VALID" for r in results)


def test_qscc_helpers(devnet):
    network = devnet.gateway.network("fedchain")
    res = network.contract("cc").submit("put", "q", "1")
    processed = qscc.transaction_by_id(network, res.tx_id)
    assert processed.validationCode == 0 and parse_envelope(processed.transactionEnvelope).tx_id == res.tx_id
    assert qscc.block_by_tx_id(network, res.tx_id).header.number == res.block_number
    info = qscc.chain_info(network)
    chain = list(qscc.blocks(network))
    assert len(chain) == info.height and verify_chain(chain) == info.height
    assert block_header_hash(chain[-1].header) == info.currentBlockHash


def test_mutual_tls_devnet(tmp_path):
    import devnet_support as ds
    from fedchain.gateway import EvaluateError
    from fedchain_devnet.launch import DevnetProcess

    net = ds.make_net(tmp_path, client_auth=True)
    proc = DevnetProcess(net.config_path)
    try:
        endpoint = proc.start()
        org2 = net.consortium.orgs[1]
        user = net.consortium.enroll(org2.msp_id, "hospital9", "hospital")
        ca = net.consortium.orgs[0].tls_ca_cert_path.read_bytes()
        cert_path, key_path = net.consortium.issue_tls(org2.msp_id, "hospital9-client")
        with Gateway.connect(user, endpoint, tls_root_cert=ca, evaluate_timeout=3) as anonymous:
            with pytest.raises(EvaluateError) as err:
                anonymous.network("fedchain").contract("cc").evaluate("get", "x")
            assert err.value.grpc_code == grpc.StatusCode.UNAVAILABLE
        with Gateway.connect(user, endpoint, tls_root_cert=ca, client_cert=cert_path.read_bytes(),
                             client_key=key_path.read_bytes()) as gw:
            assert len(gw.tls_cert_hash) == 32
            res = gw.network("fedchain").contract("cc").submit("put", "mtls", "ok")
            assert res.validation_code_name == "VALID"
            with gw.network("fedchain").block_events(start_block=res.block_number) as blocks:
                assert next(blocks).header.number == res.block_number
    finally:
        proc.stop()
        net.cc_proc.kill()
        net.cc_proc.wait()
