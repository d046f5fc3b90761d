"""Ledger integrity at start and at Submit.

1. World state edited while the network is down (a hospital's sample_cap raised, its version
   changed, a key deleted or added) is refused at `network up`, naming the key; an untouched
   restart and a state DB left behind the block file (crash between block append and state
   commit) still start.
2. A committed or in-flight transaction envelope re-sent to Submit is refused with
   ALREADY_EXISTS and nothing is ordered.

One embedded network (FL chaincode + devnet, no MPC) with a registered hospital; each test starts
from a copy of its ledger files taken right after registration.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from conftest import find_free_port_base

pytestmark = pytest.mark.slow
HOSPITAL = "h1"
SAMPLE_CAP = 5000
PARTICIPANT_KEY = "\x00participant\x00h1\x00"  # keys.participant("h1"): a Fabric composite key
NS = "fedchain"


# --- the network ------------------------------------------------------------------------------
class World:
    def __init__(self, root: Path) -> None:
        from fedchain.netctl.embedded import EmbeddedNetwork, EmbeddedSettings

        self.root = root
        self.net = EmbeddedNetwork(root / "net", EmbeddedSettings(base_port=find_free_port_base(), with_mpc=False))
        self.ledger = root / "net" / "ledger"
        self.pristine = root / "pristine"

    def snapshot(self, dest: Path) -> None:
        """Copy the ledger files (network down) so a test can start from them again."""
        dest.mkdir(parents=True, exist_ok=True)
        for f in dest.iterdir():
            f.unlink()
        for f in self.ledger.iterdir():
            shutil.copy2(f, dest / f.name)

    def restore(self, src: Path, only: str = "") -> None:
        """Put ledger files back (`only` = a name prefix, e.g. "state.sqlite" to roll back the state DB alone)."""
        for f in self.ledger.iterdir():
            if f.name.startswith(only):
                f.unlink()
        for f in src.iterdir():
            if f.name.startswith(only):
                shutil.copy2(f, self.ledger / f.name)

    def client(self, who: str = "operator"):
        from fedchain.fl_client import FLClient
        from fedchain.netconfig import load_network

        cfg = load_network(self.root / "net")
        gw = cfg.connect(who)
        return gw, FLClient(cfg.contract(gw))

    def register(self, pid: str, sample_cap: int) -> None:
        from fedchain.fl_client import participant_entry
        from fedchain.identity import Consortium
        from fedchain.netconfig import load_network

        cfg = load_network(self.root / "net")
        cons = Consortium.load(self.root / "net" / "crypto")
        cfg.wallet.put(pid, cons.enroll(cons.orgs[0].msp_id, pid, "hospital"))
        gw, op = self.client()
        with gw:
            op.register_participant(participant_entry(pid, cfg.identity(pid), "hospital", sample_cap=sample_cap))

    def participant(self, pid: str) -> dict:
        gw, op = self.client()
        with gw:
            return op.get_participant(pid)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("integrity"))
    w.net.up(ready_timeout=120)
    try:
        w.register(HOSPITAL, SAMPLE_CAP)
    finally:
        w.net.down()
    w.snapshot(w.pristine)
    yield w
    w.net.down()


@pytest.fixture()
def fresh(world: World) -> Iterator[World]:
    """The world with its ledger as it was right after registration; the network is down afterwards."""
    world.net.down()
    world.restore(world.pristine)
    yield world
    world.net.down()


def edit_state(ledger: Path, sql: str, *params) -> None:
    """Change state.sqlite behind the devnet's back (as someone with file access could)."""
    conn = sqlite3.connect(ledger / "state.sqlite")
    try:
        assert conn.execute(sql, params).rowcount == 1
        conn.commit()
    finally:
        conn.close()


def _inflated(ledger: Path) -> bytes:
    conn = sqlite3.connect(ledger / "state.sqlite")
    try:
        (value,) = conn.execute("SELECT value FROM state WHERE ns=? AND key=?", (NS, PARTICIPANT_KEY)).fetchone()
    finally:
        conn.close()
    record = json.loads(value)
    assert record["sample_cap"] == SAMPLE_CAP
    return json.dumps(record | {"sample_cap": 10**9}, sort_keys=True, separators=(",", ":")).encode()


TAMPERING: dict[str, tuple[Callable[[Path], None], str]] = {
    "value": (lambda d: edit_state(d, "UPDATE state SET value=? WHERE ns=? AND key=?", _inflated(d), NS,
                                   PARTICIPANT_KEY), "value differs"),
    "value+version": (lambda d: edit_state(d, "UPDATE state SET value=?, block=block+7 WHERE ns=? AND key=?",
                                           _inflated(d), NS, PARTICIPANT_KEY), "value and version differ"),
    "value-as-text": (lambda d: edit_state(d, "UPDATE state SET value=? WHERE ns=? AND key=?", _inflated(d).decode(),
                                           NS, PARTICIPANT_KEY), "value differs"),  # as the sqlite3 shell stores it
    "deleted": (lambda d: edit_state(d, "DELETE FROM state WHERE ns=? AND key=?", NS, PARTICIPANT_KEY),
                "missing from the state database"),
    "added": (lambda d: edit_state(d, "INSERT INTO state VALUES (?,?,?,?,?)", NS, "\x00participant\x00h9\x00",
                                   b'{"id":"h9","role":"hospital","sample_cap":1000000000}', 1, 0), "extra key"),
}


# --- 1. state DB tampering ------------------------------------------------------------------------
@pytest.mark.parametrize("how", list(TAMPERING))
def test_edited_state_is_refused_at_start_naming_the_key(fresh: World, how: str):
    from fedchain.netctl.process import ServiceError

    tamper, what = TAMPERING[how]
    tamper(fresh.ledger)
    with pytest.raises(ServiceError) as err:
        fresh.net.up(ready_timeout=60)
    message = str(err.value)
    key = "\x00participant\x00h9\x00" if how == "added" else PARTICIPANT_KEY
    assert "devnet exited with code 2" in message
    assert f"namespace {NS!r} key {key!r}: {what}" in message, message
    assert "Traceback" not in message
    assert not any(s["running"] for s in fresh.net.status().values())


def test_network_up_cli_prints_the_refusal(fresh: World, capsys):
    from fedchain.cli.main import main as cli_main

    TAMPERING["value"][0](fresh.ledger)
    assert cli_main(["network", "up", "--dir", str(fresh.root / "net")]) == 1
    err = capsys.readouterr().err
    assert "does not match the blocks" in err and repr(PARTICIPANT_KEY) in err, err


def test_untouched_restart_serves_the_registered_hospital(fresh: World):
    fresh.net.up(ready_timeout=60)
    assert fresh.participant(HOSPITAL).sample_cap == SAMPLE_CAP


def test_state_behind_the_blocks_is_replayed_then_checked(fresh: World):
    """A crash between block append and state commit leaves the state DB behind: start replays, then checks."""
    before = fresh.root / "state-before"
    fresh.snapshot(before)
    fresh.net.up(ready_timeout=60)
    fresh.register("h2", 700)
    fresh.net.down()
    fresh.restore(before, only="state.sqlite")  # blocks.bin has h2's block; the state DB has not applied it
    log = next(s for s in fresh.net.services() if s.name == "devnet").log_file
    offset = log.stat().st_size
    fresh.net.up(ready_timeout=60)
    assert fresh.participant("h2").sample_cap == 700
    assert fresh.participant(HOSPITAL).sample_cap == SAMPLE_CAP
    assert "replayed block" in log.read_text()[offset:]
    fresh.net.down()

    # the same lagging state DB with an edit in the part it did apply: replayed, then still refused
    from fedchain.netctl.process import ServiceError

    fresh.restore(before, only="state.sqlite")
    TAMPERING["value"][0](fresh.ledger)
    with pytest.raises(ServiceError, match="value differs"):
        fresh.net.up(ready_timeout=60)


@pytest.mark.parametrize("sql, params, what", [
    ("UPDATE history SET value=CAST('{}' AS BLOB) WHERE ns=? AND key=? AND block=3", (NS, PARTICIPANT_KEY),
     f"namespace {NS!r} key {PARTICIPANT_KEY!r}: history differs from the blocks"),
    ("DELETE FROM txids WHERE block=3", (), "transaction-id index: block 3 has 0 tx ids in the database, 1 per"),
])
def test_edited_history_or_tx_index_is_refused_by_verify(fresh: World, sql: str, params: tuple, what: str):
    """The history DB and the tx-id index (which refuses replays) are checked too; `--verify` needs no chaincode."""
    import subprocess
    import sys

    edit_state(fresh.ledger, sql, *params)  # block 3 registered the hospital
    check = subprocess.run([sys.executable, "-m", "fedchain_devnet", "--config", str(fresh.root / "net" / "devnet.json"),
                            "--verify"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 2, check.stderr
    assert what in check.stderr and "Traceback" not in check.stderr, check.stderr


def test_expected_state_follows_overwrites_deletes_and_last_write_wins(tmp_path):
    """In-process: ExpectedState mirrors StateDB.apply_block, including deletes and a key written twice in a tx."""
    from fedchain_devnet.integrity import ExpectedState, StateMismatch, check_state
    from fedchain_devnet.statedb import StateDB, Write

    db, expected = StateDB(tmp_path / "state.sqlite"), ExpectedState()
    blocks = [
        ([], []),
        ([Write("cc", "a", b"1", 0, "t1", (1, 0)), Write("cc", "b", b"x", 0, "t1", (1, 0))], [("t1", 0, 0)]),
        ([Write("cc", "a", None, 0, "t2", (2, 0)), Write("cc", "b", b"y", 1, "t3", (2, 1)),
          Write("cc", "b", b"z", 1, "t3", (2, 1))], [("t2", 0, 0), ("t3", 1, 0), ("t4", 2, 11)]),
    ]
    for n, (writes, txids) in enumerate(blocks):
        db.apply_block(n, writes, txids)
        expected.add_block(n, writes, txids)
    check_state(db, expected)
    assert db.get("cc", "a") is None and db.get("cc", "b") == (b"z", (2, 1))
    edit_state(tmp_path, "INSERT INTO state VALUES ('cc', 'a', CAST('1' AS BLOB), 1, 0)")  # the deleted key is back
    with pytest.raises(StateMismatch, match=r"namespace 'cc' key 'a': extra key in the state database"):
        check_state(db, expected)


# --- 2. replayed envelopes at Submit ------------------------------------------------------------------
@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    from devnet_support import gateway_for, make_net
    from fedchain_devnet.launch import DevnetProcess

    n = make_net(tmp_path_factory.mktemp("replay"), batch_timeout_ms=300)
    proc = DevnetProcess(n.config_path)
    endpoint = proc.start()
    n.alice = n.consortium.enroll("Org1MSP", "alice", "hospital")
    n.gw = gateway_for(n, endpoint, n.alice)
    n.contract = n.gw.network(NS).contract("cc")
    n.qscc = n.gw.network(NS).contract("qscc")
    yield n
    n.gw.close()
    proc.stop()
    n.cc_proc.kill()
    n.cc_proc.wait()


def _height(net) -> int:
    from fabric_protos.common import ledger_pb2

    return ledger_pb2.BlockchainInfo.FromString(net.qscc.evaluate("GetChainInfo", NS)).height


def _codes(net, first: int, last: int) -> list[list[str]]:
    from fabric_protos.common import common_pb2
    from fabric_protos.peer import transaction_pb2
    from fedchain.ledger import tx_validation_codes

    name = transaction_pb2.TxValidationCode.Name
    return [[name(c) for c in tx_validation_codes(common_pb2.Block.FromString(
        net.qscc.evaluate("GetBlockByNumber", NS, str(n))))] for n in range(first, last + 1)]


def _submit_raw(net, envelope, tx_id: str) -> None:
    from fabric_protos.gateway import gateway_pb2

    net.gw.context.stub.Submit(gateway_pb2.SubmitRequest(transaction_id=tx_id, channel_id=NS,
                                                         prepared_transaction=envelope), timeout=10)


def test_committed_envelope_resubmitted_is_already_exists_and_not_ordered(devnet):
    from fabric_protos.common import common_pb2
    from fabric_protos.peer import transaction_pb2

    res = devnet.contract.submit("inc", "replayed")
    assert res.validation_code_name == "VALID"
    ptx = transaction_pb2.ProcessedTransaction.FromString(devnet.qscc.evaluate("GetTransactionByID", NS, res.tx_id))
    captured = common_pb2.Envelope()
    captured.CopyFrom(ptx.transactionEnvelope)  # what anyone reading the blocks can take
    height = _height(devnet)
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as err:
            _submit_raw(devnet, captured, res.tx_id)
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert res.tx_id in err.value.details() and f"block {res.block_number}" in err.value.details()
    assert _height(devnet) == height
    after = devnet.contract.submit("put", "after-replay", "x")  # the next block holds only this
    assert after.block_number == height
    assert _codes(devnet, res.block_number + 1, after.block_number) == [["VALID"]]
    assert devnet.contract.evaluate("get", "replayed") == b"1"


def test_in_flight_envelope_resubmitted_is_already_exists(devnet):
    tx = devnet.contract.new_proposal("inc", ["in-flight"]).endorse()
    commit = tx.submit()  # queued: the orderer cuts the block after its batch timeout
    outcomes: list[grpc.StatusCode] = []

    def again() -> None:
        try:
            _submit_raw(devnet, tx.envelope, tx.tx_id)
            outcomes.append(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            outcomes.append(exc.code())

    threads = [threading.Thread(target=again) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    status = commit.status()
    assert status.code_name == "VALID"
    # in flight or already committed by then: refused either way, never ordered twice
    assert outcomes == [grpc.StatusCode.ALREADY_EXISTS] * 4
    assert _codes(devnet, status.block_number, status.block_number) == [["VALID"]]
    assert devnet.contract.evaluate("get", "in-flight") == b"1"


def test_orderer_refuses_an_id_in_flight_then_one_committed():
    """In-process and deterministic: the commit is held until the duplicate has been refused."""
    from fedchain_devnet.orderer import AlreadySubmitted, Orderer

    committed: dict[str, tuple[int, int]] = {}
    entered, release = threading.Event(), threading.Event()
    batches: list[list[bytes]] = []

    def commit(batch: list[bytes]) -> None:
        entered.set()
        assert release.wait(30)
        batches.append(batch)
        committed.setdefault("t1", (0, len(batches)))

    orderer = Orderer(commit, batch_timeout_s=0.01, max_count=10, tx_status=committed.get)
    orderer.start()
    try:
        orderer.broadcast(b"envelope-1", "t1")
        assert entered.wait(30)  # being committed right now: still in flight
        with pytest.raises(AlreadySubmitted, match="t1 was already submitted and is waiting to be ordered"):
            orderer.broadcast(b"envelope-1", "t1")
        release.set()
        orderer.broadcast(b"envelope-2", "t2")  # another id is fine; committing t1 comes first
    finally:
        orderer.stop()
    assert batches[0] == [b"envelope-1"]
    with pytest.raises(AlreadySubmitted, match=r"t1 is already on the ledger \(block 1, VALID\)"):
        orderer._reserve("t1")
