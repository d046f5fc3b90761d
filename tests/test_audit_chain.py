"""The auditor re-validates a real embedded-network chain from outside, and notices tampering."""

from __future__ import annotations

import hashlib
import time

import pytest
from conftest import running_network
from fabric_protos.common import common_pb2
from fedchain.audit.chain import ChainAuditor
from fedchain.audit.fl import FLAuditor
from fedchain.audit.report import run_audit, write_audit_report
from fedchain.fl_client import FLClient, participant_entry
from fedchain.identity import Consortium
from fedchain.netconfig import load_network

pytestmark = pytest.mark.slow
TRANSACTIONS_FILTER = common_pb2.BlockMetadataIndex.Value("TRANSACTIONS_FILTER")
REFERENCE = b"\x07" * 2048  # the rounds' FLTrust reference: 512 float32 (their policy checks cosine similarity)
REFERENCE_HYPER = {"reference_sha256": hashlib.sha256(REFERENCE).hexdigest()}




@pytest.fixture(scope="module")
def audited_network(tmp_path_factory):
    root = tmp_path_factory.mktemp("auditnet")
    with running_network(root, with_mpc=False):
        cfg = load_network(root)
        cons = Consortium.load(root / "crypto")
        hospitals = ["h1", "h2", "h3", "h4"]
        with cfg.connect("operator") as gw:
            op = FLClient(cfg.contract(gw))
            for i, name in enumerate(hospitals):
                ident = cons.enroll(cons.orgs[i % len(cons.orgs)].msp_id, name, "hospital")
                cfg.wallet.put(name, ident)
                op.register_participant(participant_entry(name, ident, "hospital", sample_cap=1000))
            genesis = b"\x05" * 2048
            op.publish_genesis_model({"arch": "test", "param_count": 512}, genesis)
            head = op.head()
            op.create_round({"round_id": 1, "base_model_hash": head.model_hash, "model_spec": {"param_count": 512},
                             "deadline": time.time() + 600, "min_updates": 2, "hyperparameters": REFERENCE_HYPER})
            op.publish_reference(1, REFERENCE)
            for name in hospitals:
                with cfg.connect(name) as hgw:
                    FLClient(cfg.contract(hgw)).submit_update({
                        "round_id": 1, "n_samples": 100, "dim": 512,
                        "share_hashes": [hashlib.sha256(f"{name}{j}".encode()).hexdigest() for j in range(3)]})
            op.close_round(1)
        model = b"\x06" * 2048
        model_hash = hashlib.sha256(model).hexdigest()
        # round 1: three of four accepted (the consortium's default privacy floor is 3) -> FINALIZED
        _attest(cfg, {"round_id": 1, "model_hash": model_hash, "accepted": ["h1", "h2", "h3"],
                      "rejected": {"h4": "norm"}, "report_hash": "ab" * 32})
        with cfg.connect("mpc0") as ngw:
            FLClient(cfg.contract(ngw)).publish_model(1, model)
        # round 2: one accepted, below the floor: the nodes do not open the aggregate -> FAILED, no model
        _round(cfg, 2, model_hash, ["h1", "h2"])
        _attest(cfg, {"round_id": 2, "model_hash": model_hash, "accepted": ["h1"], "rejected": {"h2": "norm"},
                      "report_hash": "cd" * 32, "outcome": "too_few_accepted"})
        # round 3 builds on round 1's model; its aggregate fails the nodes' sanity check -> DISPUTED, no model
        _round(cfg, 3, model_hash, ["h1", "h2", "h3"])
        _attest(cfg, {"round_id": 3, "model_hash": model_hash, "accepted": ["h1", "h2", "h3"], "rejected": {},
                      "report_hash": "ef" * 32, "outcome": "aggregate_out_of_range"})
        yield cfg


def _round(cfg, rid: int, base: str, hospitals: list[str]) -> None:
    with cfg.connect("operator") as gw:
        op = FLClient(cfg.contract(gw))
        op.create_round({"round_id": rid, "base_model_hash": base, "model_spec": {"param_count": 512},
                         "deadline": time.time() + 600, "min_updates": 1, "hyperparameters": REFERENCE_HYPER})
        op.publish_reference(rid, REFERENCE)
        for name in hospitals:
            with cfg.connect(name) as hgw:
                FLClient(cfg.contract(hgw)).submit_update({
                    "round_id": rid, "n_samples": 100, "dim": 512,
                    "share_hashes": [hashlib.sha256(f"{rid}{name}{j}".encode()).hexdigest() for j in range(3)]})
        op.close_round(rid)


def _attest(cfg, att: dict) -> None:
    for j in range(2):
        with cfg.connect(f"mpc{j}") as ngw:
            FLClient(cfg.contract(ngw)).attest_result(att)


def _blocks(cfg):
    from fedchain.gateway import qscc

    with cfg.connect("auditor") as gw:
        network = gw.network(cfg.channel)
        height = qscc.chain_info(network).height
        return list(qscc.blocks(network, 0, height))


def test_honest_chain_audits_clean(audited_network, tmp_path):
    cfg = audited_network
    with cfg.connect("auditor") as gw:
        report = run_audit(gw.network(cfg.channel))
    assert report["ok"], report["chain"]["findings"] + report["fl"]["findings"]
    assert report["chain"]["application_orgs"] == ["Org1MSP", "Org2MSP", "Org3MSP"]
    rounds = {r["round_id"]: r for r in report["fl"]["rounds"]}
    assert rounds[1]["state"] == "FINALIZED" and rounds[1]["accepted"] == ["h1", "h2", "h3"]
    assert rounds[1]["published_hash"] == rounds[1]["finalized_hash"] and rounds[1]["outcome"] == "ok"
    assert len(rounds[1]["submitted"]) == 4 and len(rounds[1]["attested_by"]) == 2
    assert rounds[1]["min_accepted"] == 3 and report["fl"]["min_accepted"] == 3
    assert rounds[2]["state"] == "FAILED" and rounds[2]["reason"] == "too_few_accepted"
    assert rounds[2]["accepted"] == ["h1"] and rounds[2]["published_hash"] is None
    assert rounds[2]["finalized_hash"] is None
    assert rounds[3]["state"] == "DISPUTED" and rounds[3]["reason"] == "aggregate_out_of_range"
    assert rounds[3]["published_hash"] is None
    # the ledger agrees: no model for rounds 2 and 3, the head still at round 1
    with cfg.connect("auditor") as gw:
        fl = FLClient(cfg.contract(gw))
        assert fl.get_round(2).state == "FAILED" and fl.get_round(3).dispute_reason == "aggregate_out_of_range"
        assert fl.head().finalized_round_id == 1 and fl.head().last_round_id == 3
    files = write_audit_report(report, tmp_path)
    md = (tmp_path / "audit.md").read_text()
    assert "Verdict: **OK**" in md and len(files) == 2
    assert "| 2 | FAILED (too_few_accepted) |" in md and "| 3 | DISPUTED (aggregate_out_of_range) |" in md


def test_rewritten_history_is_detected(audited_network):
    blocks = _blocks(audited_network)
    # 1) a validation flag flipped from VALID to invalid: the MVCC replay and the hash chain disagree
    victim = next(b for b in blocks[1:] if b.data.data)
    flags = bytearray(victim.metadata.metadata[TRANSACTIONS_FILTER])
    flags[0] = 11  # MVCC_READ_CONFLICT although its reads were current
    victim.metadata.metadata[TRANSACTIONS_FILTER] = bytes(flags)
    chain = ChainAuditor().feed_all(blocks)
    assert any("reads were current" in f.problem for f in chain.findings)

    # 2) a transaction's bytes altered: the data hash no longer matches, named by block number
    blocks = _blocks(audited_network)
    target = blocks[3]
    target.data.data[0] = target.data.data[0][:-1] + bytes([target.data.data[0][-1] ^ 1])
    chain = ChainAuditor().feed_all(blocks)
    assert any(f.block == 3 and "data_hash" in f.problem for f in chain.findings)


def test_fl_replay_flags_a_forged_attestation_quorum(audited_network):
    chain = ChainAuditor().feed_all(_blocks(audited_network))
    fl = FLAuditor().run(chain)
    assert not fl.findings
    # pretend the consortium demanded 3 attestations: the round can then not be FINALIZED, and
    # the model published for it is reported
    chain = ChainAuditor().feed_all(_blocks(audited_network))
    auditor = FLAuditor()
    auditor.result.quorum = 3
    real_init = auditor._on_InitConsortium
    auditor._on_InitConsortium = lambda rec, when: (real_init(rec, when), setattr(auditor.result, "quorum", 3))
    fl = auditor.run(chain)
    assert any("published for round 1 while CLOSED" in f.problem for f in fl.findings)


def test_fl_replay_flags_an_aggregate_below_the_privacy_floor(audited_network):
    """Had the consortium's floor been 4, round 1's 'ok' aggregate of 3 updates would be a finding."""
    chain = ChainAuditor().feed_all(_blocks(audited_network))
    auditor = FLAuditor()
    real_init = auditor._on_InitConsortium
    auditor._on_InitConsortium = lambda rec, when: (real_init(rec, when), setattr(auditor.result, "min_accepted", 4))
    fl = auditor.run(chain)
    problems = [f.problem for f in fl.findings]
    assert any("round 1 claims an aggregate (outcome 'ok') of 3 accepted update(s), below the round's "
               "min_accepted 4" in p for p in problems), problems
    assert "round 1's policy.min_accepted 3 is below the consortium's minimum 4" in problems
    # rounds 2 and 3 published nothing: only their (now too low) policy is reported
    assert [p for p in problems if "round 2" in p or "round 3" in p] == [
        f"round {r}'s policy.min_accepted 3 is below the consortium's minimum 4" for r in (2, 3)], problems
