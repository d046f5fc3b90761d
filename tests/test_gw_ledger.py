"""fedchain.ledger: Fabric-exact block hashing, chain verification, transaction parsing."""

from __future__ import annotations

import functools
import hashlib

import pytest
from fabric_protos.common import common_pb2
from fabric_protos.peer import chaincode_event_pb2
from fedchain.gateway.proposal import build_proposal
from fedchain.ledger import (
    ChainError,
    KVRead,
    KVWrite,
    TxParseError,
    block_data_hash,
    block_header_bytes,
    block_header_hash,
    parse_envelope,
    tx_validation_codes,
    validation_code_name,
    verify_chain,
)
from gw_fakes import MVCC, VALID, endorse_proposal, make_block, make_identity, rwset_bytes
from hypothesis import given, settings
from hypothesis import strategies as st


def header(number: int, prev: bytes, data: bytes) -> common_pb2.BlockHeader:
    return common_pb2.BlockHeader(number=number, previous_hash=prev, data_hash=data)


def test_header_der_matches_go_asn1_marshal():
    # Go: asn1.Marshal(struct{Number *big.Int; PreviousHash, DataHash []byte})
    h = header(1, b"\xaa" * 32, b"\xbb" * 32)
    assert block_header_bytes(h) == b"\x30\x47\x02\x01\x01\x04\x20" + b"\xaa" * 32 + b"\x04\x20" + b"\xbb" * 32
    assert block_header_hash(h) == hashlib.sha256(block_header_bytes(h)).digest()


@pytest.mark.parametrize("number,encoded", [
    (0, b"\x02\x01\x00"), (127, b"\x02\x01\x7f"), (128, b"\x02\x02\x00\x80"), (256, b"\x02\x02\x01\x00"),
    (2**64 - 1, b"\x02\x09\x00" + b"\xff" * 8),
])
def test_header_integer_is_minimal_positive_der(number, encoded):
    der = block_header_bytes(header(number, b"", b""))
    assert der == b"\x30" + bytes([len(encoded) + 4]) + encoded + b"\x04\x00\x04\x00"


def test_header_long_form_lengths():
    der = block_header_bytes(header(2, b"\x01" * 200, b"\x02" * 32))
    # content = 3 + (3 + 200) + (2 + 32) = 240 -> 0x81 0xf0
    assert der[:2] == b"\x30\x81" and der[2] == 240
    assert der[6:9] == b"\x04\x81\xc8"


def test_data_hash_is_sha256_of_concatenation():
    data = common_pb2.BlockData(data=[b"ab", b"cd", b""])
    assert block_data_hash(data) == hashlib.sha256(b"abcd").digest()
    assert block_data_hash([b"abc", b"d"]) == block_data_hash(data)


def _chain(n: int) -> list[common_pb2.Block]:
    blocks: list[common_pb2.Block] = []
    for i in range(n):
        blocks.append(make_block(i, blocks[-1] if blocks else None, [f"tx{i}-{j}".encode() for j in range(3)]))
    return blocks


def test_verify_chain_accepts_good_chain_and_bytes():
    blocks = _chain(4)
    assert verify_chain(blocks) == 4
    assert verify_chain([b.SerializeToString() for b in blocks]) == 4
    assert verify_chain(blocks[2:], previous=blocks[1]) == 2


def test_verify_chain_names_first_tampered_block():
    blocks = _chain(5)
    blocks[2].data.data[1] = b"forged"
    with pytest.raises(ChainError) as err:
        verify_chain(blocks)
    assert err.value.block_number == 2 and "data_hash" in str(err.value)


def test_verify_chain_detects_rewritten_history():
    blocks = _chain(4)
    # Rewrite block 1 consistently (new data + data hash): block 2's link breaks.
    blocks[1].data.data[0] = b"rewritten"
    blocks[1].header.data_hash = block_data_hash(blocks[1].data)
    with pytest.raises(ChainError) as err:
        verify_chain(blocks)
    assert err.value.block_number == 2 and "previous_hash" in err.value.reason


def test_verify_chain_detects_gap():
    blocks = _chain(4)
    with pytest.raises(ChainError) as err:
        verify_chain([blocks[0], blocks[2]])
    assert err.value.block_number == 2


def test_validation_codes_and_names():
    block = make_block(0, None, [b"a", b"b"], [VALID, MVCC])
    assert tx_validation_codes(block) == [0, 11]
    assert [validation_code_name(c) for c in tx_validation_codes(block)] == ["VALID", "MVCC_READ_CONFLICT"]
    assert validation_code_name(200) == "UNKNOWN(200)"
    unvalidated = make_block(0, None, [b"a"], [])
    assert tx_validation_codes(unvalidated) == [254]
    broken = make_block(3, None, [b"a", b"b"], [VALID])
    with pytest.raises(ChainError):
        tx_validation_codes(broken)


def test_parse_envelope_full_transaction():
    creator = make_identity("Org1MSP", "hospital1")
    peers = [make_identity("Org1MSP", "peer0", None), make_identity("Org2MSP", "peer0", None)]
    built = build_proposal("fedchain", "fedchain", "SubmitUpdate", ["r1", b"\x00\x01"], creator.serialize(),
                           {"secret": b"do-not-store"})
    event = chaincode_event_pb2.ChaincodeEvent(chaincode_id="fedchain", tx_id=built.tx_id, event_name="UpdateSubmitted",
                                               payload=b"{}")
    env = endorse_proposal(built.proposal_bytes, peers, payload=b"ok",
                           results=rwset_bytes("fedchain", {"round/r1": (3, 1), "new": None}, {"upd/r1/h1": b"x", "old": None}),
                           event=event)
    env.signature = creator.sign(env.payload)
    info = parse_envelope(env.SerializeToString())
    assert info.tx_id == built.tx_id and info.channel == "fedchain" and info.type_name == "ENDORSER_TRANSACTION"
    assert info.creator_msp_id == "Org1MSP" and info.creator_cert_pem == creator.cert_pem
    assert info.timestamp is not None and info.timestamp.tzinfo is not None
    assert hashlib.sha256(info.nonce + info.creator).hexdigest() == info.tx_id
    assert (info.chaincode, info.function, info.args) == ("fedchain", "SubmitUpdate", (b"r1", b"\x00\x01"))
    assert (info.response_status, info.response_payload) == (200, b"ok")
    assert info.event is not None and info.event.event_name == "UpdateSubmitted"
    ns = info.rwset[0]
    assert ns.namespace == "fedchain"
    assert set(ns.reads) == {KVRead("round/r1", (3, 1)), KVRead("new", None)}
    assert set(ns.writes) == {KVWrite("upd/r1/h1", b"x", False), KVWrite("old", b"", True)}
    assert info.extra["transient_fields_present"] == 0
    assert creator.identity.verify(info.signature, info.signed_payload)
    assert [e.msp_id for e in info.endorsements] == ["Org1MSP", "Org2MSP"]
    for e, peer in zip(info.endorsements, peers, strict=True):
        assert e.cert_pem == peer.cert_pem and peer.identity.verify(e.signature, e.signed_data)


def test_parse_envelope_config_and_garbage():
    chdr = common_pb2.ChannelHeader(type=common_pb2.HeaderType.Value("CONFIG"), channel_id="fedchain")
    payload = common_pb2.Payload(header=common_pb2.Header(channel_header=chdr.SerializeToString()), data=b"cfg")
    info = parse_envelope(common_pb2.Envelope(payload=payload.SerializeToString()))
    assert info.type_name == "CONFIG" and info.chaincode == "" and info.endorsements == ()
    with pytest.raises(TxParseError):
        parse_envelope(b"\xff\xff\xff")


def test_parse_block_keeps_codes_and_undecodable_entries():
    from fedchain.ledger import parse_block

    creator = make_identity("Org2MSP", "h2")
    built = build_proposal("fedchain", "fedchain", "Put", ["a"], creator.serialize())
    env = endorse_proposal(built.proposal_bytes, [make_identity("Org1MSP", "peer0", None)])
    block = make_block(7, None, [env.SerializeToString(), b"\xff\xfe"], [VALID, 255])
    info = parse_block(block.SerializeToString())
    assert info.number == 7 and info.header_hash == block_header_hash(block.header)
    first, second = info.transactions
    assert (first.validation_code_name, first.info.tx_id, first.info.function) == ("VALID", built.tx_id, "Put")
    assert second.info is None and second.validation_code_name == "INVALID_OTHER_REASON" and second.error


@functools.cache
def _signer():
    """Key generation is slow next to the property's body: one creator and endorser for all examples."""
    return make_identity("Org1MSP", "prop"), [make_identity("Org2MSP", "peer0", None)]


@settings(max_examples=60, deadline=None)
@given(function=st.text(min_size=1, max_size=20),
       args=st.lists(st.one_of(st.binary(max_size=64), st.text(max_size=32)), max_size=6),
       transient=st.dictionaries(st.text(min_size=1, max_size=8), st.binary(min_size=1, max_size=32), max_size=3))
def test_proposal_round_trips_through_an_endorsed_transaction(function, args, transient):
    from fedchain.gateway.proposal import check_prepared_transaction, inspect_proposal

    creator, peers = _signer()
    built = build_proposal("fedchain", "fedchain", function, args, creator.serialize(), transient)
    info = inspect_proposal(built.proposal_bytes)
    assert (info.tx_id, info.channel, info.creator) == (built.tx_id, "fedchain", creator.serialize())
    env = endorse_proposal(built.proposal_bytes, peers, payload=b"r")
    assert check_prepared_transaction(env, info) == b"r"
    tx = parse_envelope(env)
    expected = tuple(a.encode() if isinstance(a, str) else a for a in args)
    assert (tx.tx_id, tx.function, tx.args) == (built.tx_id, function, expected)
    assert tx.extra["transient_fields_present"] == 0
    assert hashlib.sha256(tx.nonce + tx.creator).hexdigest() == tx.tx_id
