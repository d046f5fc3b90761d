"""Share intake over real gRPC with mutual TLS, against a fake ledger."""

from __future__ import annotations

import struct

import grpc
import numpy as np
import pytest
from fedchain.canonical import sha256_hex
from fedchain.mpc_client import IntakeError, get_holdings, send_shares, submit_share
from fedchain.mpc_protocol import ReceiptError, verify_receipt
from mpc_node_support import IntakeNode as Node
from mpc_node_support import make_shares, make_world

DIM = 64


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def node(world, tmp_path):
    world.ledger.rounds.clear()
    world.ledger.down = False
    world.ledger.open_round(1, DIM)
    n = Node(world, 0, tmp_path / "node0")
    yield n
    n.stop()


def shares_for(hospital: str, round_id: int = 1, dim: int = DIM, seed: int = 0) -> list[bytes]:
    update = np.random.default_rng(seed).normal(0, 0.1, dim)
    return make_shares(update, round_id, hospital, seed=seed)


def send(node: Node, identity, share: bytes, round_id: int = 1, hospital: str | None = None, index: int | None = None):
    ep = node.endpoint if index is None else type(node.endpoint)(**{**node.endpoint.__dict__, "index": index})
    return submit_share(ep, identity, round_id, share, hospital=hospital, retries=0, timeout_s=10)


def code_of(excinfo) -> grpc.StatusCode:
    return excinfo.value.code


def test_accepts_registered_hospital_and_signs_receipt(world, node):
    share = shares_for("hosp0")[0]
    receipt = send(node, world.hospitals["hosp0"], share, hospital="hosp0")
    assert receipt.sha256 == sha256_hex(share) and receipt.hospital == "hosp0" and receipt.node_index == 0
    assert receipt.signer.fabric_id == world.nodes[0].identity.fabric_id
    stored = node.store.get(1, "hosp0")
    assert stored == share
    assert (node.store.path(1, "hosp0").stat().st_mode & 0o777) == 0o600
    # a receipt cannot be passed off for another share or node
    with pytest.raises(ReceiptError):
        verify_receipt(receipt.raw, round_id=1, sha256="0" * 64, node_index=0)
    with pytest.raises(ReceiptError):
        verify_receipt(receipt.raw, round_id=1, sha256=receipt.sha256, node_index=1)


def test_receipt_signer_must_be_the_ledgers_mpc_node(world, node):
    from fedchain.mpc_client import consortium_trust
    from fedchain.records import Consortium

    trust = consortium_trust(world.ledger.get_consortium(), world.consortium.msp_manager())
    share = shares_for("hosp0")[0]
    receipt = submit_share(node.endpoint, world.hospitals["hosp0"], 1, share, retries=0, trust=trust)
    assert receipt.node == "mpc0"
    nodes = world.ledger.consortium["mpc_nodes"]
    swapped = [{**nodes[0], "identity": nodes[1]["identity"]}, nodes[1], nodes[2]]  # node 0 is someone else
    with pytest.raises(ReceiptError, match="not by MPC node"):
        verify_receipt(receipt.raw, round_id=1, sha256=receipt.sha256, node_index=0,
                       trust=consortium_trust(Consortium.from_json({**world.ledger.consortium, "mpc_nodes": swapped})))


def test_tampered_receipt_is_refused(world, node):
    share = shares_for("hosp0")[0]
    receipt = send(node, world.hospitals["hosp0"], share)
    from fedchain.mpc_protocol import Receipt

    msg = Receipt.FromString(receipt.raw)
    msg.statement = msg.statement.replace(b'"size":', b'"size":1')
    with pytest.raises(ReceiptError, match="does not verify"):
        verify_receipt(msg.SerializeToString(), round_id=1, sha256=receipt.sha256, node_index=0)


def test_resend_is_idempotent_and_conflict_is_refused(world, node):
    share = shares_for("hosp1")[0]
    first = send(node, world.hospitals["hosp1"], share)
    again = send(node, world.hospitals["hosp1"], share)
    assert again.raw == first.raw
    other = shares_for("hosp1", seed=7)[0]
    with pytest.raises(IntakeError) as exc:
        send(node, world.hospitals["hosp1"], other)
    assert code_of(exc) == grpc.StatusCode.ALREADY_EXISTS
    assert node.store.get(1, "hosp1") == share


def test_unregistered_and_wrong_role_are_refused(world, node):
    with pytest.raises(IntakeError) as exc:
        send(node, world.outsider, shares_for("stranger")[0])
    assert code_of(exc) == grpc.StatusCode.PERMISSION_DENIED and "not a registered participant" in str(exc.value)
    with pytest.raises(IntakeError) as exc:
        send(node, world.nodes[1], shares_for("mpc1")[0])
    assert code_of(exc) == grpc.StatusCode.PERMISSION_DENIED
    assert node.store.shares(1) == []


def test_hospital_cannot_send_a_share_in_another_hospitals_name(world, node):
    with pytest.raises(IntakeError) as exc:
        send(node, world.hospitals["hosp0"], shares_for("hosp1")[0])
    assert code_of(exc) == grpc.StatusCode.INVALID_ARGUMENT and "hospital_id" in str(exc.value)


def test_foreign_ca_cannot_connect(world, node, tmp_path, monkeypatch):
    import fedchain.mpc_client as mc
    from fedchain.identity import generate_consortium
    from fedchain.mpc_client import TLSRejected

    def no_retry(_s: float) -> None:
        raise AssertionError("a rejected certificate was retried")

    monkeypatch.setattr(mc, "backoff_sleep", no_retry)
    foreign = generate_consortium(tmp_path / "foreign", ("Evil",)).enroll("EvilMSP", "hosp0", "hospital")
    with pytest.raises(TLSRejected) as exc:  # the TLS handshake fails; named, and never retried
        submit_share(node.endpoint, foreign, 1, shares_for("hosp0")[0], retries=5)
    assert str(exc.value).startswith("MPC node 0 rejected this client's certificate: not issued by a consortium CA")
    assert node.store.shares(1) == []


def test_round_state_and_shape_checks(world, node):
    hosp = world.hospitals["hosp0"]
    with pytest.raises(IntakeError) as exc:
        send(node, hosp, shares_for("hosp0", round_id=9)[0], round_id=9)
    assert code_of(exc) == grpc.StatusCode.NOT_FOUND
    world.ledger.open_round(2, DIM)
    world.ledger.close_round(2)
    with pytest.raises(IntakeError) as exc:
        send(node, hosp, shares_for("hosp0", round_id=2)[0], round_id=2)
    assert code_of(exc) == grpc.StatusCode.FAILED_PRECONDITION and "CLOSED" in str(exc.value)
    world.ledger.open_round(3, DIM)
    world.ledger.rounds[3]["deadline"] = 1.0  # long past
    with pytest.raises(IntakeError) as exc:
        send(node, hosp, shares_for("hosp0", round_id=3)[0], round_id=3)
    assert code_of(exc) == grpc.StatusCode.FAILED_PRECONDITION and "deadline" in str(exc.value)
    with pytest.raises(IntakeError) as exc:
        send(node, hosp, shares_for("hosp0", dim=DIM + 1)[0])
    assert code_of(exc) == grpc.StatusCode.INVALID_ARGUMENT and "dim" in str(exc.value)
    with pytest.raises(IntakeError) as exc:  # share 1 sent to node 0
        send(node, hosp, shares_for("hosp0")[1], index=1)
    assert code_of(exc) == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(IntakeError) as exc:  # right node, wrong share inside
        send(node, hosp, shares_for("hosp0")[1])
    assert code_of(exc) == grpc.StatusCode.INVALID_ARGUMENT and "node_index" in str(exc.value)
    assert node.store.shares(1) == []


def test_element_not_below_p_is_refused(world, node):
    share = bytearray(shares_for("hosp0")[0])
    hlen = struct.unpack_from("<I", share, 5)[0]
    body = 9 + hlen
    share[body:body + 2] = b"\xff\xff"  # element 0 = 2^80 - 1 >= p (p = 2^80 - 65 at l=32, f=16)
    share[body + 2 * DIM:body + 2 * DIM + 8] = b"\xff" * 8
    with pytest.raises(IntakeError) as exc:
        send(node, world.hospitals["hosp0"], bytes(share))
    assert code_of(exc) == grpc.StatusCode.INVALID_ARGUMENT and ">= p" in str(exc.value)
    with pytest.raises(IntakeError) as exc:
        send(node, world.hospitals["hosp0"], b"not a share at all")
    assert code_of(exc) == grpc.StatusCode.INVALID_ARGUMENT


def test_oversize_message_is_refused(world, tmp_path):
    from fedchain.mpc_client import channel_for
    from fedchain.mpc_protocol import SUBMIT_METHOD, ShareSubmission

    world.ledger.open_round(1, DIM)
    world.ledger.open_round(2, 10_000)  # 100 kB shares: over this node's own cap
    small = Node(world, 1, tmp_path / "small", max_message_bytes=16 * 1024)
    try:
        with pytest.raises(IntakeError) as exc:  # declared size over the round's limit: refused from the header
            send(small, world.hospitals["hosp0"], b"FCSH" + b"\0" * 12_000)
        assert code_of(exc) == grpc.StatusCode.INVALID_ARGUMENT and "takes shares of at most 8832 bytes" in str(exc.value)
        with pytest.raises(IntakeError) as exc:  # the node's max_message_bytes caps every round
            send(small, world.hospitals["hosp0"], b"FCSH" + b"\0" * 20_000, round_id=2)
        assert code_of(exc) == grpc.StatusCode.INVALID_ARGUMENT and "at most 16384 bytes" in str(exc.value)
        # one gRPC message over a piece's size (an old unary client, or anyone): gRPC's own cap
        big = ShareSubmission(version=2, round_id=1, node_index=1, share=b"\0" * (3 << 20)).SerializeToString()
        with channel_for(small.endpoint, world.hospitals["hosp0"]) as channel:
            with pytest.raises(grpc.RpcError) as raw:
                channel.unary_unary(SUBMIT_METHOD)(big, timeout=10)
        assert raw.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert small.store.shares(1) == [] and small.store.shares(2) == []
    finally:
        small.stop()


def test_restart_keeps_shares_and_receipts(world, node):
    share = shares_for("hosp2")[0]
    first = send(node, world.hospitals["hosp2"], share)
    node.stop()
    node.start()  # new process state, same data directory
    assert node.store.get(1, "hosp2") == share
    assert send(node, world.hospitals["hosp2"], share).raw == first.raw
    with pytest.raises(IntakeError) as exc:
        send(node, world.hospitals["hosp2"], shares_for("hosp2", seed=3)[0])
    assert code_of(exc) == grpc.StatusCode.ALREADY_EXISTS


def test_ledger_down_is_unavailable(world, node):
    world.ledger.down = True
    with pytest.raises(IntakeError) as exc:
        send(node, world.hospitals["hosp0"], shares_for("hosp0")[0])
    assert code_of(exc) == grpc.StatusCode.UNAVAILABLE
    assert node.store.shares(1) == []


def test_holdings_only_for_mpc_nodes_and_closed_rounds(world, node):
    send(node, world.hospitals["hosp0"], shares_for("hosp0")[0])
    with pytest.raises(IntakeError) as exc:
        get_holdings(node.endpoint, world.hospitals["hosp0"], 1, retries=0)
    assert code_of(exc) == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(IntakeError) as exc:
        get_holdings(node.endpoint, world.nodes[1], 1, retries=0)
    assert code_of(exc) == grpc.StatusCode.FAILED_PRECONDITION
    world.ledger.close_round(1)
    held = get_holdings(node.endpoint, world.nodes[1], 1, retries=0)
    assert held == {"hosp0": sha256_hex(shares_for("hosp0")[0])}
    assert node.store.is_sealed(1)
    world.ledger.rounds[1]["state"] = "OPEN"  # even a stale ledger view cannot add shares after sealing
    with pytest.raises(IntakeError) as exc:
        send(node, world.hospitals["hosp1"], shares_for("hosp1")[0])
    assert code_of(exc) == grpc.StatusCode.FAILED_PRECONDITION
    assert send(node, world.hospitals["hosp0"], shares_for("hosp0")[0]).hospital == "hosp0"  # resend still fine


def test_send_shares_to_three_nodes(world, tmp_path):
    world.ledger.rounds.clear()
    world.ledger.open_round(1, DIM)
    nodes = [Node(world, j, tmp_path / f"n{j}") for j in range(3)]
    try:
        shares = shares_for("hosp0")
        receipts = send_shares(1, shares, [n.endpoint for n in nodes], world.hospitals["hosp0"], hospital="hosp0")
        assert [r.node_index for r in receipts] == [0, 1, 2]
        assert [r.sha256 for r in receipts] == [sha256_hex(s) for s in shares]
        for j, n in enumerate(nodes):
            assert n.store.get(1, "hosp0") == shares[j]
        with pytest.raises(ValueError):
            send_shares(1, shares[:2], [n.endpoint for n in nodes], world.hospitals["hosp0"])
    finally:
        for n in nodes:
            n.stop()


def test_concurrent_sends_one_share_wins(world, node):
    from concurrent.futures import ThreadPoolExecutor

    from fedchain_mpc.intake import InflightLimiter

    node.intake.limiter = InflightLimiter(6)  # the race itself, not the per-identity bound (intake_limits_test)
    same = shares_for("hosp0")[0]
    with ThreadPoolExecutor(6) as pool:
        receipts = list(pool.map(lambda _: send(node, world.hospitals["hosp0"], same), range(6)))
    assert len({r.raw for r in receipts}) == 1  # one receipt, however many times it raced

    rivals = [shares_for("hosp1", seed=s)[0] for s in range(6)]

    def attempt(share):
        try:
            return send(node, world.hospitals["hosp1"], share).sha256
        except IntakeError as exc:
            return exc.code

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(attempt, rivals))
    winners = [o for o in outcomes if isinstance(o, str)]
    assert len(winners) == 1 and outcomes.count(grpc.StatusCode.ALREADY_EXISTS) == 5
    assert sha256_hex(node.store.get(1, "hosp1")) == winners[0]
