"""Devnet parts in-process: block file, config, policies, simulator rwsets, MVCC/phantom rules, ledger tamper checks."""

from __future__ import annotations

import json

import pytest
from fabric_protos.common import common_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.peer import chaincode_shim_pb2, transaction_pb2
from fedchain.identity import generate_consortium
from fedchain_devnet import policy
from fedchain_devnet.blockstore import BlockStore, LedgerInUse
from fedchain_devnet.config import ConfigError, load_config, make_devnet_config, parse_config
from fedchain_devnet.ledger import LedgerCorrupt
from fedchain_devnet.node import Node
from fedchain_devnet.simulator import TxSimulator
from fedchain_devnet.statedb import StateDB, Write
from fedchain_devnet.validator import Invalid, Validator, _Tx

CM = chaincode_shim_pb2.ChaincodeMessage
CODE = transaction_pb2.TxValidationCode


def test_blockstore_cuts_a_torn_tail(tmp_path):
    store = BlockStore(tmp_path / "b.bin")
    store.append(b"block-0")
    store.append(b"block-1")
    store.close()
    with open(tmp_path / "b.bin", "ab") as f:
        f.write(b"\x00\x00\x01\x00partial")  # a record header promising 256 bytes, crash after 7
    store = BlockStore(tmp_path / "b.bin")
    assert store.height == 2 and store.get(1) == b"block-1"
    store.append(b"block-2")
    with pytest.raises(LedgerInUse):
        BlockStore(tmp_path / "b.bin")  # a second writer is refused
    store.close()
    assert BlockStore(tmp_path / "b.bin").get(2) == b"block-2"


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="data_dir"):
        parse_config({"crypto_dir": "c"}, tmp_path)
    with pytest.raises(ConfigError, match=r"chaincodes\[0\]: policy"):
        parse_config({"data_dir": "d", "crypto_dir": "c", "chaincodes": [
            {"name": "cc", "address": "127.0.0.1:1", "policy": "SOME"}]}, tmp_path)
    with pytest.raises(ConfigError, match="qscc"):
        parse_config({"data_dir": "d", "crypto_dir": "c", "chaincodes": [{"name": "qscc", "address": "a:1"}]},
                     tmp_path)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path / "bad.json")


def test_policies():
    orgs = ["A", "B", "C"]
    assert [policy.required_count(p, orgs) for p in ("ANY", "MAJORITY", "ALL")] == [1, 2, 3]
    assert policy.satisfied("MAJORITY", {"A", "C"}, orgs) and not policy.satisfied("MAJORITY", {"A"}, orgs)
    assert not policy.satisfied("MAJORITY", {"A", "X"}, orgs)  # outsiders do not count
    assert policy.satisfied(["A", "B"], {"A", "B", "C"}, orgs) and not policy.satisfied(["A", "B"], {"A", "C"}, orgs)
    sel = policy.Selector(orgs)
    picks = [tuple(sel.select("MAJORITY")) for _ in range(3)]
    assert len(set(picks)) == 3 and all(len(set(p)) == 2 for p in picks)


@pytest.fixture()
def state(tmp_path):
    db = StateDB(tmp_path / "s.sqlite")
    db.apply_block(1, [Write("cc", k, b"v" + k.encode(), i, f"tx{i}", (0, 0)) for i, k in enumerate(["a", "b", "d"])],
                   [("tx0", 0, 0)])
    return db


def _msg(t, payload) -> CM:
    return CM(type=t, payload=payload.SerializeToString(), txid="t1", channel_id="ch")


def test_simulator_records_reads_writes_and_refuses_private_data(state):
    sim = TxSimulator(state, "cc", "t1")
    assert sim.handle(_msg(CM.GET_STATE, chaincode_shim_pb2.GetState(key="a"))).payload == b"va"
    sim.handle(_msg(CM.PUT_STATE, chaincode_shim_pb2.PutState(key="z", value=b"1")))
    sim.handle(_msg(CM.PUT_STATE, chaincode_shim_pb2.PutState(key="c", value=b"2")))
    sim.handle(_msg(CM.DEL_STATE, chaincode_shim_pb2.DelState(key="b")))
    assert sim.handle(_msg(CM.GET_STATE, chaincode_shim_pb2.GetState(key="c"))).payload == b""  # no read-your-writes
    err = sim.handle(_msg(CM.GET_STATE, chaincode_shim_pb2.GetState(key="a", collection="pdc")))
    assert err.type == CM.ERROR and b"private data" in err.payload
    assert sim.handle(_msg(CM.PUT_STATE, chaincode_shim_pb2.PutState(key="", value=b"x"))).type == CM.ERROR
    kv = kv_rwset_pb2.KVRWSet.FromString(rwset_pb2.TxReadWriteSet.FromString(sim.rwset_bytes()).ns_rwset[0].rwset)
    assert [(r.key, r.version.block_num, r.HasField("version")) for r in kv.reads] == [("a", 1, True), ("c", 0, False)]
    assert [(w.key, w.is_delete) for w in kv.writes] == [("b", True), ("c", False), ("z", False)]


def _tx(state, reads=(), ranges=()) -> _Tx:
    kv = kv_rwset_pb2.KVRWSet(reads=list(reads), range_queries_info=list(ranges))
    return _Tx("t", (0, 0), "cc", [("cc", kv)], b"")


def test_mvcc_and_phantom_rules(state):
    v = Validator("ch", None, ["A"], {"cc": "ANY"}, state)
    fresh = kv_rwset_pb2.KVRead(key="a", version=kv_rwset_pb2.Version(block_num=1, tx_num=0))
    stale = kv_rwset_pb2.KVRead(key="a", version=kv_rwset_pb2.Version(block_num=0, tx_num=9))
    absent = kv_rwset_pb2.KVRead(key="nope")
    v._check_mvcc(_tx(state, [fresh, absent]), {})
    for reads, updated in (([stale], {}), ([fresh], {("cc", "a"): None}), ([kv_rwset_pb2.KVRead(key="b")], {})):
        with pytest.raises(Invalid) as err:
            v._check_mvcc(_tx(state, reads), updated)
        assert err.value.code == CODE.Value("MVCC_READ_CONFLICT")
    sim = TxSimulator(state, "cc", "t2")
    sim.range_query("a", "c")
    rq = sim.range_infos[0]
    v._check_mvcc(_tx(state, ranges=[rq]), {})
    state.apply_block(2, [Write("cc", "bb", b"new", 0, "tx9", (0, 0))], [])  # a key appears inside the range
    with pytest.raises(Invalid) as err:
        v._check_mvcc(_tx(state, ranges=[rq]), {})
    assert err.value.code == CODE.Value("PHANTOM_READ_CONFLICT")
    with pytest.raises(Invalid):
        v._check_mvcc(_tx(state, ranges=[sim.range_infos[0]]), {("cc", "ab"): None})


def test_altered_validation_flag_is_caught_at_start(tmp_path):
    consortium = generate_consortium(tmp_path / "crypto", ("Org1",))
    cfg_path = tmp_path / "devnet.json"
    cfg_path.write_text(json.dumps(make_devnet_config(consortium, tmp_path / "ledger")))
    node = Node(load_config(cfg_path))
    node.open_ledger()
    block = node.ledger.commit([b"\x0a\x03bad"])  # not a transaction: BAD_PAYLOAD
    assert list(block.metadata.metadata[2]) == [CODE.Value("BAD_PAYLOAD")]
    node.ledger.close()
    blocks = tmp_path / "ledger" / "blocks.bin"
    raw = blocks.read_bytes()
    original = block.SerializeToString()
    forged = common_pb2.Block()
    forged.CopyFrom(block)
    forged.metadata.metadata[2] = bytes([CODE.Value("VALID")])
    assert len(forged.SerializeToString()) == len(original)
    blocks.write_bytes(raw.replace(original, forged.SerializeToString()))
    with pytest.raises(LedgerCorrupt, match="corrupt at block 1: commit hash"):
        Node(load_config(cfg_path)).open_ledger()


def test_state_ahead_of_an_emptied_block_file_refuses_to_start(tmp_path):
    consortium = generate_consortium(tmp_path / "crypto", ("Org1",))
    cfg_path = tmp_path / "devnet.json"
    cfg_path.write_text(json.dumps(make_devnet_config(consortium, tmp_path / "ledger")))
    node = Node(load_config(cfg_path))
    node.open_ledger()
    node.ledger.commit([b""])
    node.ledger.close()
    (tmp_path / "ledger" / "blocks.bin").write_bytes(b"")
    with pytest.raises(LedgerCorrupt, match="has applied block 1 but the block file"):
        Node(load_config(cfg_path)).open_ledger()


def test_orderer_cuts_by_count_and_by_timeout():
    import threading
    import time

    from fedchain_devnet.orderer import Orderer, OrdererOverloaded

    batches: list[tuple[int, float]] = []
    done = threading.Event()

    def commit(batch: list[bytes]) -> None:
        batches.append((len(batch), time.monotonic()))
        if sum(n for n, _ in batches) >= 13:
            done.set()

    orderer = Orderer(commit, batch_timeout_s=1.0, max_count=5, max_pending=20)
    orderer.start()
    t0 = time.monotonic()
    for i in range(12):
        orderer.broadcast(b"tx%d" % i)
    time.sleep(1.3)
    t1 = time.monotonic()
    orderer.broadcast(b"late")
    assert done.wait(10)
    orderer.stop()
    assert [n for n, _ in batches] == [5, 5, 2, 1]
    assert batches[1][1] - t0 < 0.8  # full batches are cut at once, not after the timeout
    assert 0.95 <= batches[2][1] - t0 < 3  # the remainder waits for the batch timeout
    assert 0.95 <= batches[3][1] - t1 < 3
    with pytest.raises(OrdererOverloaded):
        orderer.broadcast(b"after stop")


def test_orderer_cuts_by_preferred_max_bytes():
    import threading

    from fedchain_devnet.orderer import Orderer

    batches: list[list[int]] = []
    done = threading.Event()

    def commit(batch: list[bytes]) -> None:
        batches.append([len(b) for b in batch])
        if sum(map(len, batches)) >= 5:
            done.set()

    orderer = Orderer(commit, batch_timeout_s=0.2, max_count=100, preferred_max_bytes=1000)
    for size in (400, 400, 400, 5000, 10):  # queued before the cutter starts: one pass decides
        orderer.broadcast(b"x" * size)
    orderer.start()
    assert done.wait(5)
    orderer.stop()
    assert batches == [[400, 400], [400], [5000], [10]]


def test_chain_info_names_one_block_while_a_block_is_being_committed(tmp_path):
    """GetChainInfo between the block file append and the header update must still describe one block:
    height - 1's own hash and previous hash (before the fix it paired the new height with the old header,
    and MPC nodes remembered a wrong hash for a block and refused the ledger as forked)."""
    from fedchain.ledger import block_header_hash

    consortium = generate_consortium(tmp_path / "crypto", ("Org1",))
    cfg_path = tmp_path / "devnet.json"
    cfg_path.write_text(json.dumps(make_devnet_config(consortium, tmp_path / "ledger")))
    node = Node(load_config(cfg_path))
    node.open_ledger()
    ledger = node.ledger
    node.ledger.commit([b"\x0a\x03bad"])
    seen = []
    apply_block = ledger.state.apply_block

    def apply_and_look(*args, **kwargs):
        seen.append(ledger.chain_info())  # the new block is in the file; its header is not published yet
        return apply_block(*args, **kwargs)

    ledger.state.apply_block = apply_and_look
    for _ in range(3):
        ledger.commit([b"\x0a\x03bad"])
    ledger.state.apply_block = apply_block
    seen.append(ledger.chain_info())
    for info in seen:
        header = ledger.block(info.height - 1).header
        assert bytes(info.currentBlockHash) == block_header_hash(header)
        assert bytes(info.previousBlockHash) == bytes(header.previous_hash)
    assert [info.height for info in seen] == [2, 3, 4, 5]
    ledger.close()
