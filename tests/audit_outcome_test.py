"""The FL auditor's replay of round outcomes (FAILED, out-of-range DISPUTED, the privacy floor) on synthetic chains.

test_audit_chain.py audits a real chain (which the chaincode keeps honest); here the transactions are
built by hand, so that the auditor can be shown chains the chaincode would have refused.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from cc_support import make_identity
from fedchain.audit.chain import ChainAudit, TxRecord
from fedchain.audit.fl import FLAuditor
from fedchain.ledger.txparse import TxInfo
from fedchain.sharing import sha256_hex as sha

GENESIS = b"genesis" * 10
MODEL1 = b"model-1" * 10
IDS = {name: make_identity(name, role) for name, role in
       [("operator", "operator"), ("mpc0", "mpc_node"), ("mpc1", "mpc_node"), ("h1", "hospital"),
        ("h2", "hospital"), ("h3", "hospital"), ("h4", "hospital")]}
HOSPITALS = ["h1", "h2", "h3", "h4"]


class Chain:
    def __init__(self) -> None:
        self.records: list[TxRecord] = []

    def tx(self, who: str, fn: str, *args: Any) -> TxRecord:
        ident = IDS[who]
        n = len(self.records)
        raw = tuple(a if isinstance(a, bytes) else (a if isinstance(a, str) else json.dumps(a)).encode()
                    for a in args)
        info = TxInfo(tx_id=f"{n:064x}", channel="fedchain", type=3, type_name="ENDORSER_TRANSACTION",
                      creator_msp_id=ident.msp_id, creator_cert_pem=ident.cert_pem, creator=b"", nonce=b"",
                      timestamp=dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=n), signature=b"",
                      signed_payload=b"", chaincode="fedchain", function=fn, args=raw)
        rec = TxRecord(block=n + 1, index=0, info=info, code=0)
        self.records.append(rec)
        return rec

    def audit(self):
        return FLAuditor().run(ChainAudit(transactions=self.records))

    # --- protocol steps ------------------------------------------------------------------------------------
    def init(self, **cfg: Any) -> None:
        nodes = [{"id": n, "msp_id": IDS[n].msp_id, "identity": IDS[n].id} for n in ("mpc0", "mpc1")]
        self.tx("operator", "InitConsortium", {"mpc_nodes": nodes, "threshold": 1, "quorum": 2, **cfg})
        for h in HOSPITALS:
            self.tx("operator", "RegisterParticipant", {"id": h, "role": "hospital", "msp_id": IDS[h].msp_id,
                                                        "identity": IDS[h].id, "sample_cap": 1000})
        self.tx("operator", "PublishGenesisModel", {"param_count": 10}, base64.b64encode(GENESIS))

    def round(self, rid: int, base: bytes, hospitals: list[str], **extra: Any) -> None:
        # these rounds check no cosine similarity: they publish no FLTrust reference (audit_rules_test does)
        extra["policy"] = {"cosine_enabled": False, **extra.get("policy", {})}
        self.tx("operator", "CreateRound", {"round_id": rid, "base_model_hash": sha(base),
                                            "model_spec": {"param_count": 10}, "deadline": 1e10,
                                            "min_updates": 1, **extra})
        for h in hospitals:
            self.tx(h, "SubmitUpdate", {"round_id": rid, "share_hashes": [sha(f"{rid}{h}".encode())],
                                        "n_samples": 100, "dim": 10})
        self.tx("operator", "CloseRound", str(rid))

    def attest(self, rid: int, model: bytes, accepted: list[str], outcome: str | None = None,
               nodes: tuple[str, ...] = ("mpc0", "mpc1"), submitted: list[str] = HOSPITALS) -> None:
        att: dict[str, Any] = {"round_id": rid, "model_hash": sha(model), "accepted": accepted,
                               "rejected": {h: "norm" for h in submitted if h not in accepted},
                               "report_hash": "ab" * 32}
        if outcome is not None:
            att["outcome"] = outcome
        for node in nodes:
            self.tx(node, "AttestResult", att)

    def publish(self, rid: int, model: bytes) -> None:
        self.tx("mpc0", "PublishModel", str(rid), base64.b64encode(model))


def honest_chain() -> Chain:
    c = Chain()
    c.init()
    c.round(1, GENESIS, HOSPITALS)
    c.attest(1, MODEL1, ["h1", "h2", "h3"])
    c.publish(1, MODEL1)
    c.round(2, MODEL1, ["h1", "h2"])
    c.attest(2, MODEL1, ["h1"], "too_few_accepted", submitted=["h1", "h2"])
    c.round(3, MODEL1, HOSPITALS)
    c.attest(3, MODEL1, HOSPITALS, "aggregate_out_of_range")
    return c


def test_honest_outcomes_audit_clean():
    fl = honest_chain().audit()
    assert fl.findings == []
    rounds = {r.round_id: r for r in fl.rounds.values()}
    assert (rounds[1].state, rounds[1].outcome, rounds[1].finalized_hash) == ("FINALIZED", "ok", sha(MODEL1))
    assert (rounds[2].state, rounds[2].reason, rounds[2].finalized_hash) == ("FAILED", "too_few_accepted", None)
    assert rounds[2].accepted == ["h1"] and rounds[2].published_hash is None
    assert (rounds[3].state, rounds[3].reason) == ("DISPUTED", "aggregate_out_of_range")
    assert fl.min_accepted == 3 and rounds[1].min_accepted == 3
    # the next round builds on round 1's model, not on anything of rounds 2-3
    c = honest_chain()
    c.round(4, MODEL1, [])
    assert c.audit().findings == []


def test_a_failed_round_that_publishes_a_model_is_flagged():
    c = honest_chain()
    c.publish(2, MODEL1)
    c.publish(3, MODEL1)
    problems = [f.problem for f in c.audit().findings]
    assert "model published for round 2 while FAILED" in problems
    assert "model published for round 3 while DISPUTED" in problems


def test_the_round_after_a_failed_one_must_build_on_the_last_finalized_model():
    c = Chain()
    c.init()
    c.round(1, GENESIS, HOSPITALS)
    c.attest(1, MODEL1, ["h1"], "too_few_accepted")
    c.round(2, MODEL1, [])  # as if round 1 had produced MODEL1
    problems = [f.problem for f in c.audit().findings]
    assert any("round 2 builds on" in p and "not the last finalized model" in p for p in problems), problems


def test_outcome_claims_against_the_rules():
    c = Chain()
    c.init(min_accepted=3)
    c.round(1, GENESIS, HOSPITALS)
    c.attest(1, MODEL1, ["h1", "h2"])  # an "ok" aggregate of 2 < 3
    c.round(2, GENESIS, HOSPITALS)
    c.attest(2, MODEL1, ["h1"], "too_few_accepted")  # a model although nothing was aggregated
    c.round(3, GENESIS, HOSPITALS)
    c.attest(3, GENESIS, ["h1", "h2", "h3"], "too_few_accepted")  # enough were accepted
    c.round(4, GENESIS, HOSPITALS)
    c.attest(4, GENESIS, HOSPITALS, "maybe")
    problems = [f.problem for f in c.audit().findings]
    assert any("round 1 claims an aggregate (outcome 'ok') of 2 accepted update(s), below the round's "
               "min_accepted 3" in p for p in problems), problems
    assert any("round 2 with outcome 'too_few_accepted' names model" in p for p in problems), problems
    assert any("round 3 claims too_few_accepted with 3 accepted" in p for p in problems), problems
    assert any("round 4 with unknown outcome 'maybe'" in p for p in problems), problems


def test_round_policy_floor_and_consortium_floor():
    c = Chain()
    c.init(min_accepted=2, default_policy={"min_accepted": 2})
    c.round(1, GENESIS, HOSPITALS, policy={"min_accepted": 4})  # a round may raise the floor
    c.attest(1, MODEL1, ["h1", "h2", "h3"])
    c.round(2, GENESIS, HOSPITALS, policy={"min_accepted": 1})  # ... never lower it
    fl = c.audit()
    problems = [f.problem for f in fl.findings]
    assert fl.rounds[1].min_accepted == 4 and fl.rounds[2].min_accepted == 2
    assert any("below the round's min_accepted 4" in p for p in problems), problems
    assert "round 2's policy.min_accepted 1 is below the consortium's minimum 2" in problems


def test_claims_differing_only_in_outcome_dispute():
    c = Chain()
    c.init()
    c.round(1, GENESIS, HOSPITALS)
    c.attest(1, GENESIS, HOSPITALS, "aggregate_out_of_range", nodes=("mpc0",))
    c.attest(1, GENESIS, HOSPITALS, "ok", nodes=("mpc1",))
    fl = c.audit()
    assert (fl.rounds[1].state, fl.rounds[1].reason) == ("DISPUTED", "attestations differ")


def test_late_attestation_after_failed_is_no_finding():
    c = honest_chain()
    c.tx("mpc0", "AttestResult", {"round_id": 2, "model_hash": sha(MODEL1), "accepted": ["h1"],
                                  "rejected": {"h2": "norm"}, "report_hash": "ab" * 32,
                                  "outcome": "too_few_accepted"})
    problems = [f.problem for f in c.audit().findings]
    assert problems == ["node attested round 2 twice"]  # same node again: flagged; the state is fine
