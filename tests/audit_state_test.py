"""The world state rebuilt from the chain's write sets is compared with what the live contract serves.

The real FL contract runs on the in-memory ledger (fedchain_cc.testing.MockLedger); each committed
transaction also becomes a signed, endorsed envelope in a signed block (fedchain.audit.synthetic)
with the contract's own write set. A fake network serves those blocks through qscc and answers the
contract's queries from the in-memory ledger, so `run_audit` runs every step, including the world
state one. Tampering with the in-memory state is a peer whose state database was edited.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from fabric_protos.common import ledger_pb2
from fedchain.audit.report import audit_chain, run_audit
from fedchain.audit.state import compare_world_state, composite_key, readable_key
from fedchain.audit.synthetic import T0, SyntheticChannel
from fedchain.identity import SigningIdentity
from fedchain_cc.fl import FLContract
from fedchain_cc.testing import MockLedger, client_identity_from_pem

PARAMS = 16
GENESIS = b"\x01" * (4 * PARAMS)
REFERENCE = bytes(range(4 * PARAMS))


class World:
    """The contract on a MockLedger, mirrored block for block into a signed chain."""

    def __init__(self) -> None:
        self.ch = SyntheticChannel()
        self.ch.config_block()
        self.ledger = MockLedger(FLContract(), start_time=T0.timestamp() + 10)
        orgs = list(self.ch.orgs)
        self.ids: dict[str, SigningIdentity] = {"operator": self.ch.member(orgs[0], "operator", ou="admin",
                                                                           role="operator")}
        for j in range(3):
            self.ids[f"mpc{j}"] = self.ch.member(orgs[j], f"mpc{j}", role="mpc_node")
        for i in (1, 2, 3):
            self.ids[f"h{i}"] = self.ch.member(orgs[i % 3], f"h{i}", role="hospital")
        self.ids["auditor"] = self.ch.member(orgs[2], "auditor", role="auditor")

    def client(self, who: str):
        return client_identity_from_pem(self.ids[who].msp_id, self.ids[who].cert_pem)

    def submit(self, who: str, fn: str, *args: Any) -> None:
        raw = [a if isinstance(a, str) else json.dumps(a) for a in args]
        sim = self.ledger.simulate(self.client(who), fn, *raw)
        assert sim.ok, sim.response.message
        assert self.ledger.commit([sim]) == ["VALID"]
        when = dt.datetime.fromtimestamp(sim.timestamp, dt.UTC)
        n = len(self.ch.blocks)
        endorsers = [self.ch.peer(m) for m in list(self.ch.orgs)[n % 3:] + list(self.ch.orgs)[:n % 3]][:2]
        self.ch.block([self.ch.tx(self.ids[who], "fedchain", fn, raw, endorsers=endorsers, writes=sim.writes,
                                  reads=sim.reads, when=when, payload=sim.response.payload)])
        assert self.ledger.block_number == n  # the MVCC versions of both ledgers agree
        self.ledger.now += 5

    def evaluate(self, fn: str, *args: str) -> bytes:
        """What the live network's contract answers (an auditor's query)."""
        sim = self.ledger.simulate(self.client("auditor"), fn, *args)
        if not sim.ok:
            raise RuntimeError(sim.response.message)
        return sim.response.payload

    def tamper(self, key: str, **fields: Any) -> None:
        """Edit the state database behind the ledger's back."""
        value, version = self.ledger.state[key]
        self.ledger.state[key] = (json.dumps({**json.loads(value), **fields}).encode(), version)


class FakeNetwork:
    """Just what run_audit uses of a gateway Network: qscc and the FL contract's evaluate."""

    name = "fedchain"

    def __init__(self, world: World) -> None:
        self.world = world

    def contract(self, name: str) -> Any:
        return self if name == "qscc" else self.world

    def evaluate(self, fn: str, *args: str) -> bytes:
        blocks = self.world.ch.blocks
        if fn == "GetChainInfo":
            return ledger_pb2.BlockchainInfo(height=len(blocks)).SerializeToString()
        assert fn == "GetBlockByNumber" and args[0] == self.name
        return blocks[int(args[1])].SerializeToString()


def consortium(w: World, cap: int = 5000) -> None:
    nodes = [{"id": f"mpc{j}", "msp_id": w.ids[f"mpc{j}"].msp_id, "identity": w.client(f"mpc{j}").id} for j in range(3)]
    w.submit("operator", "InitConsortium", {"mpc_nodes": nodes, "threshold": 1, "quorum": 2, "min_accepted": 1})
    for h in ("h1", "h2", "h3"):
        w.submit("operator", "RegisterParticipant", {"id": h, "role": "hospital", "msp_id": w.ids[h].msp_id,
                                                     "identity": w.client(h).id, "sample_cap": cap})
    w.submit("operator", "RegisterParticipant", {"id": "auditor", "role": "auditor", "msp_id": w.ids["auditor"].msp_id,
                                                 "identity": w.client("auditor").id})
    w.submit("operator", "PublishGenesisModel", {"param_count": PARAMS}, base64.b64encode(GENESIS).decode())
    w.submit("operator", "CreateRound", {
        "round_id": 1, "base_model_hash": hashlib.sha256(GENESIS).hexdigest(), "model_spec": {"param_count": PARAMS},
        "hyperparameters": {"reference_sha256": hashlib.sha256(REFERENCE).hexdigest()},
        "deadline": w.ledger.now + 3600, "min_updates": 1})
    w.submit("operator", "PublishReference", "1", base64.b64encode(REFERENCE).decode())


def update(w: World, who: str, n_samples: int = 100) -> None:
    w.submit(who, "SubmitUpdate", {"round_id": 1, "n_samples": n_samples, "dim": PARAMS, "share_hashes": [
        hashlib.sha256(f"{who}{j}".encode()).hexdigest() for j in range(3)]})


def finish(w: World, accepted: list[str]) -> None:
    w.submit("operator", "CloseRound", "1")
    for node in ("mpc0", "mpc1"):
        w.submit(node, "AttestResult", {"round_id": 1, "model_hash": hashlib.sha256(GENESIS).hexdigest(),
                                        "accepted": accepted, "rejected": {}, "report_hash": "ab" * 32})


@pytest.fixture
def world() -> World:
    w = World()
    consortium(w)
    update(w, "h1")
    update(w, "h2")
    return w


def _problems(report: dict[str, Any], section: str) -> list[str]:
    return [f["problem"] for f in report[section]["findings"]]


def test_the_real_contracts_chain_audits_clean_with_its_live_state(world):
    finish(world, ["h1", "h2"])
    report = run_audit(FakeNetwork(world))
    assert report["ok"], report["chain"]["findings"] + report["fl"]["findings"] + report["state"]["findings"]
    # consortium, head, 5 participants (operator, 3 MPC nodes, 3 hospitals, auditor), rounds 0-1, 2 updates
    assert report["state"]["keys_compared"] == 2 + 8 + 2 + 2
    assert report["fl"]["rounds"][1]["state"] == "FINALIZED"
    assert report["head"]["checkpoint"] == f"{len(world.ch.blocks) - 1}:{report['chain']['head_hash']}"


def test_a_raised_cap_in_the_state_database_lets_an_inflated_update_through_and_both_are_reported(world):
    world.tamper(composite_key("participant", "h3"), sample_cap=1_000_000_000)
    update(world, "h3", n_samples=1_000_000)  # the contract read the edited cap and accepted it
    finish(world, ["h1", "h2", "h3"])
    report = run_audit(FakeNetwork(world))
    assert not report["ok"]
    assert _problems(report, "fl") == ["update by h3 to round 1 claims n_samples 1000000, above its enrolment "
                                       "sample_cap 5000"]
    assert report["state"]["findings"] == [{
        "block": 4, "tx_id": report["state"]["findings"][0]["tx_id"],  # block 4: h3's RegisterParticipant
        "problem": "world state key participant~h3 differs from the chain's write sets: sample_cap 1000000000 "
                   "(state) vs 5000 (chain)"}]
    assert report["chain"]["findings"] == []  # the blocks themselves are in order


def test_records_on_one_side_only_are_reported(world):
    key = composite_key("update", f"{1:020d}", "h3")
    forged = {"round_id": 1, "hospital": "h3", "n_samples": 7, "dim": PARAMS, "share_hashes": []}
    world.ledger.state[key] = (json.dumps(forged).encode(), (99, 0))
    del world.ledger.state[composite_key("participant", "h3")]
    report = run_audit(FakeNetwork(world))
    assert sorted(_problems(report, "state")) == [
        "world state key participant~h3, written by the chain, is missing from the live network's state",
        "world state key update~00000000000000000001~h3 is served by the live network but no VALID transaction "
        "wrote it",
    ]
    assert [f["block"] for f in report["state"]["findings"]] == [4, -1]


def test_the_state_step_runs_only_with_a_live_network(world):
    report = run_audit(FakeNetwork(world), compare_state=False)
    assert "state" not in report and report["ok"]
    assert readable_key(composite_key("round", "00000000000000000001")) == "round~00000000000000000001"



def test_an_unreadable_live_state_is_a_finding_not_a_crash(world):
    class Down:
        def evaluate(self, fn: str, *args: str) -> bytes:
            raise ConnectionError("gateway unreachable")

    chain, _ = audit_chain(world.ch.blocks)
    compared, findings = compare_world_state(Down(), chain.transactions, "fedchain")
    assert compared == 0 and [(f.block, f.problem) for f in findings] == [
        (-1, "could not read the world state from the live network: ConnectionError: gateway unreachable")]


def test_a_transaction_committed_during_the_state_queries_is_no_false_finding(world):
    """A late attestation commits after the audit fetched the blocks but before it reads the state: the
    state is then newer than the audited chain. The audit notices the height moved, fetches the new
    blocks and compares again (before: a false 'differs from the chain's write sets' finding)."""
    finish(world, ["h1", "h2"])
    late = {"round_id": 1, "model_hash": hashlib.sha256(GENESIS).hexdigest(), "accepted": ["h1", "h2"],
            "rejected": {}, "report_hash": "ab" * 32}
    real_evaluate = World.evaluate
    committed = []

    def evaluate_racing_a_commit(self, fn: str, *args: str) -> bytes:
        if not committed:  # the first state query: mpc2's attestation lands just before it
            committed.append(True)
            self.submit("mpc2", "AttestResult", late)
        return real_evaluate(self, fn, *args)

    world.evaluate = evaluate_racing_a_commit.__get__(world)
    report = run_audit(FakeNetwork(world))
    assert committed and report["state"]["findings"] == [] and report["ok"], report["state"]
    assert report["chain"]["height"] == len(world.ch.blocks)  # the late block was audited too
