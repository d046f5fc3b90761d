"""The devnet over real gRPC with TLS, through the fedchain gateway client and raw proto calls.

One network (3 orgs, MAJORITY, the independent chaincode server of devnet_support) per module.
"""

from __future__ import annotations

import concurrent.futures
import os

import grpc
import pytest
from devnet_support import gateway_for, make_net
from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import proposal_pb2, proposal_response_pb2, transaction_pb2
from fedchain.audit.channel_config import channel_orgs
from fedchain.gateway import CommitError, EndorseError, EvaluateError, SubmitError
from fedchain.gateway.blocks import seek_envelope
from fedchain.identity import Identity, SigningIdentity, generate_consortium
from fedchain.ledger import tx_validation_codes, verify_chain
from fedchain_devnet.launch import DevnetProcess

pytestmark = pytest.mark.slow
CODE = transaction_pb2.TxValidationCode
CH = "fedchain"


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    root = tmp_path_factory.mktemp("devnet")
    n = make_net(root, max_message_bytes=4 * 1024 * 1024)
    proc = DevnetProcess(n.config_path)
    n.endpoint = proc.start()
    n.proc = proc
    n.alice = n.consortium.enroll("Org1MSP", "alice", "hospital")
    n.gw = gateway_for(n, n.endpoint, n.alice)
    n.contract = n.gw.network(CH).contract("cc")
    yield n
    n.gw.close()
    proc.stop()
    n.cc_proc.kill()
    n.cc_proc.wait()


def tls_channel(net) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(net.consortium.orgs[0].tls_ca_cert_path.read_bytes())
    return grpc.secure_channel(net.endpoint, creds, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])


def deliver(net, start: int, stop: int | None = None, ident: SigningIdentity | None = None,
            method: str = "Deliver") -> tuple[list, int]:
    """Blocks [start, stop] (stop None = newest) and the final status from the Deliver service."""
    ident = ident or net.alice
    env = seek_envelope(CH, ident.serialize(), ident.sign, ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=start)))
    payload = common_pb2.Payload.FromString(env.payload)
    seek = ab_pb2.SeekInfo.FromString(payload.data)
    seek.stop.CopyFrom(ab_pb2.SeekPosition(newest=ab_pb2.SeekNewest()) if stop is None
                       else ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=stop)))
    payload.data = seek.SerializeToString()
    env = common_pb2.Envelope(payload=payload.SerializeToString())
    env.signature = ident.sign(env.payload)
    with tls_channel(net) as ch:
        call = ch.stream_stream(f"/protos.Deliver/{method}", request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=lambda b: b)
        from fabric_protos.peer import events_pb2

        blocks, status = [], None
        for raw in call(iter([env]), timeout=20):
            resp = events_pb2.DeliverResponse.FromString(raw)
            if resp.HasField("block"):
                blocks.append(resp.block)
            elif resp.HasField("filtered_block"):
                blocks.append(resp.filtered_block)
            else:
                status = resp.status
                break
    return blocks, status


def qscc(net, fn: str, *args: str | bytes) -> bytes:
    return net.gw.network(CH).contract("qscc").evaluate(fn, CH, *args)


# --- happy path, qscc, deliver, audit ------------------------------------------------------
def test_valid_commit_and_query(net):
    res = net.contract.submit("put", "hello", "world")
    assert res.validation_code_name == "VALID" and res.block_number >= 1
    assert net.contract.evaluate("get", "hello") == b"world"
    ptx = transaction_pb2.ProcessedTransaction.FromString(qscc(net, "GetTransactionByID", res.tx_id))
    assert ptx.validationCode == CODE.Value("VALID")
    chdr = common_pb2.ChannelHeader.FromString(common_pb2.Payload.FromString(ptx.transactionEnvelope.payload)
                                               .header.channel_header)
    assert chdr.tx_id == res.tx_id
    block = common_pb2.Block.FromString(qscc(net, "GetBlockByNumber", str(res.block_number)))
    assert block.header.number == res.block_number
    info = ledger_pb2.BlockchainInfo.FromString(qscc(net, "GetChainInfo"))
    assert info.height >= res.block_number + 1


def test_deliver_streams_a_verifiable_chain_with_config_block(net):
    net.contract.submit("put", "deliver", "x")
    blocks, status = deliver(net, 0)
    assert status == common_pb2.Status.Value("SUCCESS")
    assert verify_chain(blocks) == len(blocks) >= 2
    orgs = channel_orgs(blocks[0])
    assert orgs.application_msp_ids == ["Org1MSP", "Org2MSP", "Org3MSP"]
    for b in blocks[1:]:
        assert len(tx_validation_codes(b)) == len(b.data.data)


def test_chaincode_events_stream(net):
    res = net.contract.submit("event", "Hello", "payload-1")
    stream = net.gw.network(CH).chaincode_events("cc", start_block=res.block_number)
    try:
        ev = next(iter(stream))
        assert (ev.event_name, ev.payload, ev.tx_id, ev.block_number) == (
            "Hello", b"payload-1", res.tx_id, res.block_number)
    finally:
        stream.close()


# --- validation codes ------------------------------------------------------------------------
def test_mvcc_read_conflict_for_two_concurrent_transactions_on_one_key(net):
    net.contract.submit("inc", "counter")
    t1 = net.contract.new_proposal("inc", ["counter"]).endorse()
    t2 = net.contract.new_proposal("inc", ["counter"]).endorse()  # same read version as t1
    s1, s2 = t1.submit().status(), t2.submit().status()
    assert sorted([s1.code_name, s2.code_name]) == ["MVCC_READ_CONFLICT", "VALID"]
    assert net.contract.evaluate("get", "counter") == b"2"


def test_too_few_endorsements_fail_the_policy(net):
    with pytest.raises(CommitError) as err:
        net.contract.submit("put", "lonely", "x", endorsing_orgs=["Org1MSP"])
    assert err.value.validation_code_name == "ENDORSEMENT_POLICY_FAILURE"
    with pytest.raises(EvaluateError):
        net.contract.evaluate("get", "lonely")


def test_tampered_endorsement_fails_the_policy(net):
    tx = net.contract.new_proposal("put", ["tamper", "honest"]).endorse()
    env = common_pb2.Envelope()
    env.CopyFrom(tx.envelope)
    payload = common_pb2.Payload.FromString(env.payload)
    t = transaction_pb2.Transaction.FromString(payload.data)
    cap = transaction_pb2.ChaincodeActionPayload.FromString(t.actions[0].payload)
    prp = cap.action.proposal_response_payload
    assert b"honest" in prp
    cap.action.proposal_response_payload = prp.replace(b"honest", b"forged")  # same length, still decodes
    t.actions[0].payload = cap.SerializeToString()
    payload.data = t.SerializeToString()
    env.payload = payload.SerializeToString()
    env.signature = net.alice.sign(env.payload)  # the creator re-signs: only endorsements are wrong
    req = gateway_pb2.SubmitRequest(transaction_id=tx.tx_id, channel_id=CH, prepared_transaction=env)
    net.gw.context.stub.Submit(req)
    assert _wait_status(net, tx.tx_id) == "ENDORSEMENT_POLICY_FAILURE"
    with pytest.raises(EvaluateError):
        net.contract.evaluate("get", "tamper")


def _wait_status(net, tx_id: str) -> str:
    from fedchain.gateway.transaction import Commit

    return Commit.create(net.gw.context, tx_id, CH).status(timeout=20).code_name


def test_replayed_transaction_is_rejected_as_duplicate(net):
    proposal = net.contract.new_proposal("inc", ["replayed"])
    tx = proposal.endorse()
    first = tx.submit().status()
    assert first.code_name == "VALID"
    height_before = ledger_pb2.BlockchainInfo.FromString(qscc(net, "GetChainInfo")).height
    with pytest.raises(SubmitError) as replay:
        tx.submit()  # the very same signed envelope again: refused at Submit, nothing ordered
    assert replay.value.grpc_code == grpc.StatusCode.ALREADY_EXISTS and "already on the ledger" in str(replay.value)
    assert ledger_pb2.BlockchainInfo.FromString(qscc(net, "GetChainInfo")).height == height_before
    assert net.contract.evaluate("get", "replayed") == b"1"
    # the endorser also refuses a proposal whose id is already on the ledger
    with pytest.raises(EndorseError) as err:
        proposal.endorse()
    assert err.value.grpc_code == grpc.StatusCode.ALREADY_EXISTS and "duplicate transaction id" in str(err.value)


# --- endorsement errors --------------------------------------------------------------------
def test_bad_creator_signature_rejected_at_endorse(net):
    proposal = net.contract.new_proposal("put", ["sig", "x"])
    bad = proposal.with_signature(net.alice.sign(b"something else"))
    with pytest.raises(EndorseError) as err:
        bad.endorse()
    assert err.value.grpc_code == grpc.StatusCode.PERMISSION_DENIED
    assert "signature" in str(err.value) and "does not verify" in str(err.value)


def test_unknown_msp_rejected_at_endorse(net, tmp_path):
    other = generate_consortium(tmp_path / "evil", ("Evil",))
    mallory = other.enroll("EvilMSP", "mallory", "hospital")
    with gateway_for(net, net.endpoint, mallory) as gw:
        with pytest.raises(EndorseError) as err:
            gw.network(CH).contract("cc").submit("put", "evil", "x")
    assert err.value.grpc_code == grpc.StatusCode.PERMISSION_DENIED
    assert "unknown MSP 'EvilMSP'" in str(err.value)


def test_forged_certificate_for_known_msp_rejected(net, tmp_path):
    other = generate_consortium(tmp_path / "fake", ("Org1",))  # same MSP id, different CA
    fake = other.enroll("Org1MSP", "fake", "hospital")
    with gateway_for(net, net.endpoint, fake) as gw:
        with pytest.raises(EndorseError) as err:
            gw.network(CH).contract("cc").submit("put", "fake", "x")
    assert "not issued by a CA of MSP 'Org1MSP'" in str(err.value)


def test_chaincode_error_reported_with_endorser_details(net):
    with pytest.raises(EndorseError) as err:
        net.contract.submit("fail", "the reason")
    assert err.value.grpc_code == grpc.StatusCode.ABORTED
    assert "the reason" in str(err.value)
    assert err.value.details and all("the reason" in d.message for d in err.value.details)
    assert {d.msp_id for d in err.value.details} <= {"Org1MSP", "Org2MSP", "Org3MSP"}


def test_nondeterministic_chaincode_rejected_at_endorse(net):
    with pytest.raises(EndorseError) as err:
        net.contract.submit("nondet")
    assert "different results" in str(err.value)


# --- load --------------------------------------------------------------------------------
def test_50_concurrent_submissions_from_10_identities_all_valid(net):
    users = [net.consortium.enroll(f"Org{1 + i % 3}MSP", f"user{i}", "hospital") for i in range(10)]
    gws = [gateway_for(net, net.endpoint, u) for u in users]
    try:
        def submit(i: int):
            return gws[i % 10].network(CH).contract("cc").submit("put", f"load-{i}", f"value-{i}")

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            results = list(pool.map(submit, range(50)))
    finally:
        for g in gws:
            g.close()
    assert [r.validation_code_name for r in results] == ["VALID"] * 50
    assert len({r.tx_id for r in results}) == 50
    assert net.contract.evaluate("get", "load-37") == b"value-37"


# --- bad input -----------------------------------------------------------------------------
def _raw(net, method: str, payload: bytes, timeout: float = 10):
    with tls_channel(net) as ch:
        return ch.unary_unary(f"/gateway.Gateway/{method}", request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)(payload, timeout=timeout)


@pytest.mark.parametrize("method", ["Endorse", "Evaluate", "Submit", "CommitStatus"])
def test_malformed_protobuf_is_invalid_argument(net, method):
    with pytest.raises(grpc.RpcError) as err:
        _raw(net, method, b"\xff\xff\xff\x00garbage")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid" in err.value.details()


def test_malformed_inner_proposal_is_invalid_argument(net):
    req = gateway_pb2.EndorseRequest(channel_id=CH, proposed_transaction=proposal_pb2.SignedProposal(
        proposal_bytes=b"\x0a\x05abc", signature=b"x"))
    with pytest.raises(grpc.RpcError) as err:
        _raw(net, "Endorse", req.SerializeToString())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_oversize_message_is_resource_exhausted(net):
    req = gateway_pb2.EndorseRequest(channel_id=CH, transaction_id="x" * (5 * 1024 * 1024))
    with pytest.raises(grpc.RpcError) as err:
        _raw(net, "Endorse", req.SerializeToString())
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_unknown_channel_and_chaincode_are_not_found(net):
    with pytest.raises(EvaluateError) as err:
        net.gw.network("nochannel").contract("cc").evaluate("get", "x")
    assert err.value.grpc_code == grpc.StatusCode.NOT_FOUND and "nochannel" in str(err.value)
    with pytest.raises(EndorseError) as err:
        net.contract.network.contract("nocc").submit("put", "x", "y")
    assert err.value.grpc_code == grpc.StatusCode.NOT_FOUND and "nocc" in str(err.value)


def test_still_serving_after_bad_input(net):
    for _ in range(3):
        with pytest.raises(grpc.RpcError):
            _raw(net, "Submit", os.urandom(64))
    assert net.contract.submit("put", "after-bad-input", "ok").validation_code_name == "VALID"


def test_deliver_rejects_unknown_identity(net, tmp_path):
    other = generate_consortium(tmp_path / "evil2", ("Evil",))
    mallory = other.enroll("EvilMSP", "mallory", "auditor")
    blocks, status = deliver(net, 0, 0, ident=mallory)
    assert blocks == [] and status == common_pb2.Status.Value("FORBIDDEN")


def test_identity_roundtrip_sanity(net):
    assert Identity.deserialize(net.alice.serialize()).msp_id == "Org1MSP"
    assert proposal_response_pb2.Response(status=200).status == 200


def test_chaincode_events_resume_after_checkpointed_transaction(net):
    from fedchain.gateway.events import InMemoryCheckpoint

    first = net.contract.submit("event", "Resume", "one")
    second = net.contract.submit("event", "Resume", "two")
    stream = net.gw.network(CH).chaincode_events("cc", checkpoint=InMemoryCheckpoint(first.block_number, first.tx_id))
    try:
        ev = next(iter(stream))
        assert (ev.tx_id, ev.payload) == (second.tx_id, b"two")
    finally:
        stream.close()


def test_endorsement_by_a_client_identity_does_not_count(net):
    tx = net.contract.new_proposal("put", ["client-endorsed", "x"]).endorse()
    env = common_pb2.Envelope()
    env.CopyFrom(tx.envelope)
    payload = common_pb2.Payload.FromString(env.payload)
    t = transaction_pb2.Transaction.FromString(payload.data)
    cap = transaction_pb2.ChaincodeActionPayload.FromString(t.actions[0].payload)
    prp = bytes(cap.action.proposal_response_payload)
    assert len(cap.action.endorsements) == 2
    bob = net.consortium.enroll("Org3MSP", "bob-not-a-peer", "hospital")  # valid member, but a client
    del cap.action.endorsements[1]
    cap.action.endorsements.add(endorser=bob.serialize(), signature=bob.sign(prp + bob.serialize()))
    t.actions[0].payload = cap.SerializeToString()
    payload.data = t.SerializeToString()
    env.payload = payload.SerializeToString()
    env.signature = net.alice.sign(env.payload)
    net.gw.context.stub.Submit(gateway_pb2.SubmitRequest(transaction_id=tx.tx_id, channel_id=CH, prepared_transaction=env))
    assert _wait_status(net, tx.tx_id) == "ENDORSEMENT_POLICY_FAILURE"


def test_submit_and_commit_status_check_the_signature(net):
    tx = net.contract.new_proposal("put", ["unsigned", "x"]).endorse()
    forged = tx.with_signature(net.alice.sign(b"not the payload"))
    with pytest.raises(SubmitError) as err:
        forged.submit()
    assert err.value.grpc_code == grpc.StatusCode.PERMISSION_DENIED and "does not verify" in str(err.value)
    status_req = gateway_pb2.CommitStatusRequest(transaction_id=tx.tx_id, channel_id=CH,
                                                 identity=net.alice.serialize()).SerializeToString()
    with pytest.raises(grpc.RpcError) as rpc_err:
        net.gw.context.stub.CommitStatus(gateway_pb2.SignedCommitStatusRequest(request=status_req, signature=b"0"),
                                         timeout=5)
    assert rpc_err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_deliver_filtered_gives_ids_codes_and_event_names_only(net):
    res = net.contract.submit("event", "Filtered", "secret-payload")
    blocks, status = deliver(net, res.block_number, res.block_number, method="DeliverFiltered")
    assert status == common_pb2.Status.Value("SUCCESS") and len(blocks) == 1
    fb = blocks[0]
    assert fb.number == res.block_number and fb.channel_id == CH
    ftx = next(t for t in fb.filtered_transactions if t.txid == res.tx_id)
    assert ftx.tx_validation_code == CODE.Value("VALID")
    ev = ftx.transaction_actions.chaincode_actions[0].chaincode_event
    assert (ev.event_name, ev.tx_id, ev.payload) == ("Filtered", res.tx_id, b"")
    assert b"secret-payload" not in fb.SerializeToString()


def test_peers_and_orderers_may_read_but_not_transact(net):
    for node in (net.consortium.orgs[1].peer_identity, net.consortium.orderer.node_identity):
        with gateway_for(net, net.endpoint, node) as gw:
            contract = gw.network(CH).contract("cc")
            with pytest.raises(EndorseError) as err:
                contract.submit("put", "by-a-node", "x")
            assert err.value.grpc_code == grpc.StatusCode.PERMISSION_DENIED and "may not submit" in str(err.value)
            assert contract.evaluate("get", "hello") == b"world"  # readers may query


def test_independent_auditor_accepts_the_whole_chain(net):
    """Runs last in this module: the chain then holds VALID, MVCC and policy-failure transactions."""
    from fedchain.audit.chain import ChainAuditor

    net.contract.submit("put", "audit", "x")
    blocks, status = deliver(net, 0)
    audit = ChainAuditor(policies={"cc": "MAJORITY"}).feed_all(blocks)
    assert audit.ok, audit.findings[:5]
    assert audit.height == len(blocks) and audit.orgs == ["Org1MSP", "Org2MSP", "Org3MSP"]
    assert audit.codes.get("VALID", 0) >= 50
    for expected in ("MVCC_READ_CONFLICT", "ENDORSEMENT_POLICY_FAILURE"):
        assert audit.codes.get(expected, 0) >= 1, audit.codes
