"""fedchain.gateway against a fake Gateway servicer over real gRPC with TLS."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2
from fedchain.gateway import (
    CommitError,
    EndorseError,
    EvaluateError,
    FileCheckpoint,
    Gateway,
    GatewayError,
    InMemoryCheckpoint,
)
from fedchain.identity import crypto
from gw_fakes import FakeGateway, make_identity, make_tls, serve


@pytest.fixture(scope="module")
def env():
    tls = make_tls()
    servicer = FakeGateway([make_identity("Org1MSP", "peer0", None), make_identity("Org2MSP", "peer0", None)])
    server, endpoint = serve(servicer, tls)
    user = make_identity("Org1MSP", "hospital1")
    gateway = Gateway.connect(user, endpoint, tls_root_cert=tls.ca_pem, server_name="gateway.test", evaluate_timeout=2)
    yield type("Env", (), dict(tls=tls, servicer=servicer, endpoint=endpoint, user=user, gateway=gateway))
    gateway.close()
    server.stop(None)


def contract(env):
    return env.gateway.network("fedchain").contract("fedchain")


def _decode_proposal(signed):
    proposal = proposal_pb2.Proposal.FromString(signed.proposal_bytes)
    header = common_pb2.Header.FromString(proposal.header)
    chdr = common_pb2.ChannelHeader.FromString(header.channel_header)
    shdr = common_pb2.SignatureHeader.FromString(header.signature_header)
    cpp = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
    return chdr, shdr, cpp


def test_submit_builds_fabric_proposal_and_commits(env):
    result = contract(env).submit("echo", "hello", b"\x00\xff", endorsing_orgs=["Org1MSP", "Org2MSP"])
    assert result.result == b"hello"
    assert (result.validation_code, result.validation_code_name, result.block_number) == (0, "VALID", 5)
    request = next(r for r in env.servicer.rec.endorse_requests if r.transaction_id == result.tx_id)
    assert list(request.endorsing_organizations) == ["Org1MSP", "Org2MSP"] and request.channel_id == "fedchain"
    chdr, shdr, cpp = _decode_proposal(request.proposed_transaction)
    assert chdr.type == common_pb2.HeaderType.Value("ENDORSER_TRANSACTION")
    assert (chdr.channel_id, chdr.tx_id) == ("fedchain", result.tx_id)
    assert abs(chdr.timestamp.seconds - time.time()) < 60
    assert proposal_pb2.ChaincodeHeaderExtension.FromString(chdr.extension).chaincode_id.name == "fedchain"
    assert shdr.creator == env.user.serialize() and len(shdr.nonce) == 24
    assert result.tx_id == hashlib.sha256(shdr.nonce + shdr.creator).hexdigest()
    spec = chaincode_pb2.ChaincodeInvocationSpec.FromString(cpp.input).chaincode_spec
    assert spec.chaincode_id.name == "fedchain"
    assert list(spec.input.args) == [b"echo", b"hello", b"\x00\xff"]
    sig = request.proposed_transaction.signature
    assert crypto.is_low_s(sig) and env.user.identity.verify(sig, request.proposed_transaction.proposal_bytes)
    submitted = next(e for e in env.servicer.rec.submitted
                     if common_pb2.ChannelHeader.FromString(common_pb2.Payload.FromString(e.payload).header.channel_header).tx_id == result.tx_id)
    assert crypto.is_low_s(submitted.signature) and env.user.identity.verify(submitted.signature, submitted.payload)
    status_req = gateway_pb2.CommitStatusRequest.FromString(env.servicer.rec.status_requests[-1].request)
    assert status_req.identity == env.user.serialize() and status_req.channel_id == "fedchain"


def test_transient_data_in_proposal_but_not_in_transaction(env):
    result = contract(env).submit("echo", "x", transient={"share": b"TOP-SECRET-SHARE"})
    request = next(r for r in env.servicer.rec.endorse_requests if r.transaction_id == result.tx_id)
    _, _, cpp = _decode_proposal(request.proposed_transaction)
    assert dict(cpp.TransientMap) == {"share": b"TOP-SECRET-SHARE"}
    submitted = [e for e in env.servicer.rec.submitted if result.tx_id.encode() in e.payload]
    assert len(submitted) == 1 and b"TOP-SECRET-SHARE" not in submitted[0].SerializeToString()


@pytest.mark.parametrize("fn,reason", [("leak", "transient"), ("tamper", "expected")])
def test_client_refuses_to_sign_a_transaction_it_did_not_propose(env, fn, reason):
    before = len(env.servicer.rec.submitted)
    with pytest.raises(EndorseError) as err:
        contract(env).submit(fn, "a", transient={"k": b"secret"})
    assert reason in str(err.value)
    assert len(env.servicer.rec.submitted) == before


def test_endorse_error_carries_grpc_code_and_details(env):
    with pytest.raises(EndorseError) as err:
        contract(env).submit("fail")
    e = err.value
    assert e.grpc_code == grpc.StatusCode.ABORTED and e.tx_id
    assert [(d.msp_id, d.address) for d in e.details] == [
        ("Org1MSP", "peer0.org1.example.com:7051"), ("Org2MSP", "peer0.org2.example.com:7051")]
    assert all("round 3 is closed" in d.message for d in e.details)
    assert "round 3 is closed" in str(e)


def test_evaluate_returns_payload_and_typed_error(env):
    assert contract(env).evaluate("echo", "a", "b") == b"a|b"
    assert contract(env).evaluate("whoami") == b"Org1MSP"
    with pytest.raises(EvaluateError) as err:
        contract(env).evaluate("fail")
    assert err.value.grpc_code == grpc.StatusCode.UNKNOWN and err.value.details[0].message == "no such round"


def test_commit_error_names_validation_code(env):
    with pytest.raises(CommitError) as err:
        contract(env).submit("conflict", "k")
    e = err.value
    assert (e.validation_code, e.validation_code_name, e.block_number) == (11, "MVCC_READ_CONFLICT", 5)
    assert e.tx_id and "MVCC_READ_CONFLICT" in str(e)


def test_deadline_is_a_clear_timeout(env):
    started = time.monotonic()
    with pytest.raises(EvaluateError) as err:
        contract(env).new_proposal("slow", ["1.5"]).evaluate(timeout=0.3)
    assert time.monotonic() - started < 1.2
    assert err.value.timed_out and "timed out after 0.3 s" in str(err.value)
    with pytest.raises(EndorseError) as err:
        contract(env).new_proposal("slow", ["1.5"]).endorse(timeout=0.3)
    assert err.value.grpc_code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_offline_signing_round_trip(env):
    key = env.user.private_key
    offline = Gateway.connect(env.user.identity, env.endpoint, tls_root_cert=env.tls.ca_pem, server_name="gateway.test")
    with offline:
        c = offline.network("fedchain").contract("fedchain")
        unsigned = c.new_proposal("echo", ["offline"])
        with pytest.raises(GatewayError, match="no private key"):
            unsigned.endorse()
        assert unsigned.digest == hashlib.sha256(unsigned.message).digest()
        proposal = offline.new_signed_proposal(unsigned.bytes, crypto.sign(key, unsigned.message))
        assert proposal.tx_id == unsigned.tx_id
        tx = proposal.endorse()
        assert tx.result == b"offline"
        tx = offline.new_signed_transaction(tx.bytes, crypto.sign(key, tx.message))
        commit = tx.submit()
        commit = offline.new_signed_commit(commit.bytes, crypto.sign(key, commit.message))
        status = commit.status()
        assert status.successful and status.tx_id == unsigned.tx_id


def test_plaintext_needs_explicit_opt_in_and_mtls_needs_both_halves(env):
    with pytest.raises(ValueError, match="tls_root_cert"):
        Gateway.connect(env.user, env.endpoint, tls_root_cert=None)
    with pytest.raises(ValueError, match="both"):
        Gateway.connect(env.user, env.endpoint, tls_root_cert=env.tls.ca_pem, client_cert=env.tls.client_cert)


def test_mutual_tls(env):
    server, endpoint = serve(env.servicer, env.tls, require_client_auth=True)
    try:
        with Gateway.connect(env.user, endpoint, tls_root_cert=env.tls.ca_pem, server_name="gateway.test",
                             evaluate_timeout=2) as anonymous:
            with pytest.raises(EvaluateError) as err:
                anonymous.network("fedchain").contract("fedchain").evaluate("echo", "x")
            assert err.value.grpc_code == grpc.StatusCode.UNAVAILABLE
        with Gateway.connect(env.user, endpoint, tls_root_cert=env.tls.ca_pem, server_name="gateway.test",
                             client_cert=env.tls.client_cert, client_key=env.tls.client_key) as authed:
            assert authed.network("fedchain").contract("fedchain").evaluate("echo", "x") == b"x"
    finally:
        server.stop(None)


def test_one_gateway_many_threads(env):
    c = contract(env)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: c.submit("echo", f"v{i}"), range(48)))
    assert [r.result for r in results] == [f"v{i}".encode() for i in range(48)]
    assert len({r.tx_id for r in results}) == 48


def test_chaincode_events_resume_from_file_checkpoint(env, tmp_path):
    s = env.servicer
    s.add_event_block(10, [("tx-a", "E", b"1"), ("tx-b", "E", b"2")])
    s.add_event_block(11, [("tx-c", "E", b"3")])
    s.add_event_block(12, [("tx-d", "E", b"4")])
    network = env.gateway.network("fedchain")
    cp = FileCheckpoint(tmp_path / "cp.json")
    assert cp.block_number is None
    seen = []
    with network.chaincode_events("fedchain", start_block=10, checkpoint=cp) as events:
        for ev in events:
            seen.append((ev.block_number, ev.tx_id, ev.payload))
            cp.checkpoint_event(ev)
            if ev.tx_id == "tx-c":
                break  # "crash" after processing tx-c
    assert seen == [(10, "tx-a", b"1"), (10, "tx-b", b"2"), (11, "tx-c", b"3")]
    assert json.loads((tmp_path / "cp.json").read_text()) == {"blockNumber": 11, "transactionId": "tx-c"}
    restored = FileCheckpoint(tmp_path / "cp.json")
    with network.chaincode_events("fedchain", start_block=0, checkpoint=restored) as events:
        ev = next(events)
    assert (ev.block_number, ev.tx_id) == (12, "tx-d")
    req = s.rec.event_requests[-1]
    assert req.start_position.specified.number == 11 and req.after_transaction_id == "tx-c"
    # Resuming mid-block delivers the rest of that block, without repeats.
    mid = InMemoryCheckpoint(10, "tx-a")
    with network.chaincode_events("fedchain", checkpoint=mid) as events:
        assert [next(events).tx_id, next(events).tx_id] == ["tx-b", "tx-c"]
    done = InMemoryCheckpoint()
    done.checkpoint_block(11)
    assert (done.block_number, done.transaction_id) == (12, None)


def test_event_stream_close_unblocks_consumer(env):
    events = env.gateway.network("fedchain").chaincode_events("other-chaincode")
    got = []
    consumer = threading.Thread(target=lambda: got.extend(events))
    consumer.start()
    time.sleep(0.2)
    events.close()
    consumer.join(timeout=3)
    assert not consumer.is_alive() and got == []
    assert not env.servicer.rec.event_requests[-1].start_position.HasField("specified")


def test_corrupt_checkpoint_file_is_reported(tmp_path):
    path = tmp_path / "cp.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        FileCheckpoint(path)
    path.write_text('{"blockNumber": -3}')
    with pytest.raises(ValueError, match="corrupt"):
        FileCheckpoint(path)


def test_status_details_skip_foreign_and_malformed_entries():
    from fedchain.gateway.status import STATUS_DETAILS_KEY, ErrorDetail, Status, decode_details, encode_status

    raw = encode_status(grpc.StatusCode.ABORTED, "x", [ErrorDetail("a:1", "Org1MSP", "m")])
    status = Status.FromString(raw)
    foreign = status.details.add()
    foreign.type_url, foreign.value = "type.googleapis.com/google.rpc.DebugInfo", b"\x0a\x01z"
    broken = status.details.add()
    broken.type_url, broken.value = "type.googleapis.com/gateway.ErrorDetail", b"\xff\xff"

    class Err(grpc.RpcError):
        def __init__(self, md):
            self.md = md

        def trailing_metadata(self):
            return self.md

    assert status.code == grpc.StatusCode.ABORTED.value[0]
    assert decode_details(Err(((STATUS_DETAILS_KEY, status.SerializeToString()),))) == [ErrorDetail("a:1", "Org1MSP", "m")]
    assert decode_details(Err(((STATUS_DETAILS_KEY, b"\xff\xff\xff"),))) == []
    assert decode_details(Err(None)) == []


def test_block_events_follow_the_chain_and_resume(tmp_path):
    from fedchain.gateway import EventsError
    from fedchain.ledger import verify_chain
    from gw_fakes import FakeDeliver, serve_deliver

    tls = make_tls()
    deliver = FakeDeliver()
    for i in range(3):
        deliver.append([f"env-{i}".encode()])
    server, endpoint = serve_deliver(FakeGateway([]), deliver, tls)
    user = make_identity("Org3MSP", "auditor", "auditor")
    try:
        with Gateway.connect(user, endpoint, tls_root_cert=tls.ca_pem, server_name="gateway.test") as gw:
            network = gw.network("fedchain")
            cp = FileCheckpoint(tmp_path / "blocks.json")
            got = []
            with network.block_events(start_block=0, checkpoint=cp) as blocks:
                for block in blocks:
                    got.append(block)
                    cp.checkpoint_block(block.header.number)
                    if block.header.number == 1:
                        deliver.append([b"late"])  # committed while we follow
                    if block.header.number == 3:
                        break
            assert [b.header.number for b in got] == [0, 1, 2, 3] and verify_chain(got) == 4
            chdr = deliver.requests[0]
            assert chdr.type == common_pb2.HeaderType.Value("DELIVER_SEEK_INFO") and chdr.channel_id == "fedchain"
            deliver.append([b"after-restart"])
            with network.block_events(checkpoint=FileCheckpoint(tmp_path / "blocks.json")) as blocks:
                nxt = next(blocks)
            assert nxt.header.number == 4 and verify_chain([nxt], previous=got[-1]) == 1
            with pytest.raises(EventsError, match="NOT_FOUND"):
                next(gw.network("nochannel").block_events(start_block=0))
    finally:
        server.stop(None)


def test_bad_arguments_are_rejected_before_anything_is_sent(env):
    from fedchain.gateway import ProposalError

    sent = len(env.servicer.rec.endorse_requests)
    with pytest.raises(ProposalError, match="argument 1 must be str or bytes"):
        contract(env).submit("echo", "ok", 5)
    with pytest.raises(ProposalError, match="non-empty"):
        contract(env).submit("")
    with pytest.raises(ProposalError, match="transient"):
        contract(env).submit("echo", "x", transient={"k": 1.5})
    assert len(env.servicer.rec.endorse_requests) == sent


def test_chaincode_refusal_is_parsed_in_one_place():
    """The gateway reports a chaincode's answer only as text; gateway.errors is its one parser, and the
    hospital's follower and the MPC node's ledger adapter classify refusals through it."""
    from fedchain.gateway.errors import EndorseError, chaincode_refusal, parse_chaincode_response
    from fedchain.gateway.status import ErrorDetail
    from fedchain.hospital.follow import ledger_refused

    refused = EndorseError("endorse failed", details=[
        ErrorDetail("peer0.org1", "Org1MSP", "chaincode response 409, SubmitUpdate: round 3 is CLOSED")])
    got = chaincode_refusal(refused)
    assert got is not None and (got.status, got.message) == (409, "SubmitUpdate: round 3 is CLOSED") and got.final
    assert ledger_refused(refused)
    broken = EndorseError("endorse failed", details=[ErrorDetail("peer0.org1", "Org1MSP", "chaincode response 500, x")])
    assert not ledger_refused(broken) and not chaincode_refusal(broken).final
    assert not ledger_refused(EndorseError("endorse failed: UNAVAILABLE: gateway unavailable"))
    assert parse_chaincode_response("no answer") is None
