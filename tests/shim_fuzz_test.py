"""Arbitrary bytes from a peer never crash, hang or silence the shim: every transaction gets one answer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fabric_protos.peer import chaincode_pb2, chaincode_shim_pb2
from fedchain_cc.shim import ChaincodeServer
from fedchain_cc.testcc import TestChaincode
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from shim_peer import FakePeer, signed_proposal  # noqa: E402

Msg = chaincode_shim_pb2.ChaincodeMessage


@pytest.fixture(scope="module")
def peer():
    with ChaincodeServer(TestChaincode(), "127.0.0.1:0", "fuzz:1") as srv, FakePeer(srv.address) as p:
        yield p


FUNCTIONS = st.sampled_from(
    [
        b"put",
        b"get",
        b"del",
        b"inc",
        b"range",
        b"history",
        b"whoami",
        b"event",
        b"transient",
        b"fail",
        b"boom",
        b"nope",
        b"",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fn=FUNCTIONS,
    args=st.lists(st.binary(max_size=20), max_size=4),
    creator=st.one_of(st.binary(max_size=64), st.just(b"")),
    garbage_input=st.one_of(st.none(), st.binary(min_size=1, max_size=40)),
    garbage_proposal=st.one_of(st.none(), st.binary(max_size=80)),
    counter=st.integers(0, 10**9),
)
@example(fn=b"fail", args=[b""], creator=b"", garbage_input=None, garbage_proposal=None, counter=0)  # empty refusal
def test_any_transaction_gets_exactly_one_answer(
    peer, fn, args, creator, garbage_input, garbage_proposal, counter
) -> None:
    tx_id = f"fuzz-{counter}-{len(args)}-{fn.decode()}"
    payload = (
        garbage_input
        if garbage_input is not None
        else chaincode_pb2.ChaincodeInput(args=[fn, *args]).SerializeToString()
    )
    msg = Msg(type=Msg.TRANSACTION, txid=tx_id, channel_id="mychannel", payload=payload)
    if garbage_proposal is not None:
        msg.proposal.proposal_bytes = garbage_proposal
    else:
        msg.proposal.CopyFrom(signed_proposal("mychannel", tx_id, creator, [fn, *args], {}, 1.7e9))
    result = peer.submit_raw(msg).result(10)
    assert result.kind in ("COMPLETED", "ERROR")
    if result.kind == "COMPLETED" and result.status >= 400:
        assert result.message  # an error always says why
    assert peer.call("whoami", with_proposal=False).kind == "COMPLETED"  # still serving
