"""The FL auditor re-applies the contract's rules to a world rebuilt from the chain.

Hand-built transactions (as in audit_outcome_test.py) show the auditor chains the chaincode would
have refused: an inflated sample count, a caller nobody registered, a back-dated update, an early
close, a tampered FLTrust reference. Times are seconds after T0; each transaction is its own block.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from cc_support import make_identity
from fedchain.audit.chain import ChainAudit, TxRecord
from fedchain.audit.fl import FLAuditor
from fedchain.audit.timeline import backwards_timestamps
from fedchain.sharing import sha256_hex as sha

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
DEADLINE = 3600  # seconds after T0
PARAMS = 10
GENESIS = b"g" * (4 * PARAMS)
REFERENCE = bytes(range(4 * PARAMS))
IDS = {name: make_identity(name, role) for name, role in
       [("operator", "operator"), ("mpc0", "mpc_node"), ("mpc1", "mpc_node"), ("mpc2", "mpc_node"),
        ("h1", "hospital"), ("h2", "hospital"), ("h3", "hospital"), ("auditor", "auditor"),
        ("stranger", "hospital"), ("liar", "hospital")]}


class Chain:
    def __init__(self) -> None:
        self.records: list[TxRecord] = []
        self.now = 0.0

    def tx(self, who: str, fn: str, *args: Any, at: float | None = None, block: int | None = None) -> TxRecord:
        """One VALID transaction stamped T0 + `at` s (default: one second after the previous one)."""
        ident, n = IDS[who], len(self.records)
        self.now = self.now + 1 if at is None else at
        raw = tuple(a if isinstance(a, bytes) else (a if isinstance(a, str) else json.dumps(a)).encode() for a in args)
        from fedchain.ledger.txparse import TxInfo

        info = TxInfo(tx_id=f"{n:064x}", channel="fedchain", type=3, type_name="ENDORSER_TRANSACTION",
                      creator_msp_id=ident.msp_id, creator_cert_pem=ident.cert_pem, creator=b"", nonce=b"",
                      timestamp=T0 + dt.timedelta(seconds=self.now), signature=b"", signed_payload=b"",
                      chaincode="fedchain", function=fn, args=raw)
        rec = TxRecord(block=n + 1 if block is None else block, index=0, info=info, code=0)
        self.records.append(rec)
        return rec

    def problems(self) -> list[str]:
        return [f.problem for f in FLAuditor().run(ChainAudit(transactions=self.records)).findings]

    def setup(self, cap: int = 5000, **cfg: Any) -> None:
        nodes = [{"id": n, "msp_id": IDS[n].msp_id, "identity": IDS[n].id} for n in ("mpc0", "mpc1", "mpc2")]
        self.tx("operator", "InitConsortium", {"mpc_nodes": nodes, "threshold": 1, "quorum": 2, "min_accepted": 1,
                                               **cfg})
        for h in ("h1", "h2", "h3"):
            self.tx("operator", "RegisterParticipant", {"id": h, "role": "hospital", "msp_id": IDS[h].msp_id,
                                                        "identity": IDS[h].id, "sample_cap": cap})
        self.tx("operator", "RegisterParticipant", {"id": "auditor", "role": "auditor", "msp_id": IDS["auditor"].msp_id,
                                                    "identity": IDS["auditor"].id})
        self.tx("operator", "PublishGenesisModel", {"param_count": PARAMS}, base64.b64encode(GENESIS))

    def create(self, rid: int = 1, cosine: bool = True, **extra: Any) -> None:
        self.tx("operator", "CreateRound", {
            "round_id": rid, "base_model_hash": sha(GENESIS), "model_spec": {"param_count": PARAMS},
            "hyperparameters": {"reference_sha256": sha(REFERENCE)}, "policy": {"cosine_enabled": cosine},
            "deadline": (T0 + dt.timedelta(seconds=DEADLINE)).timestamp(), "min_updates": 1, **extra})

    def update(self, who: str, rid: int = 1, n_samples: int = 100, dim: int = PARAMS, **kw: Any) -> None:
        self.tx(who, "SubmitUpdate", {"round_id": rid, "share_hashes": [sha(f"{rid}{who}{j}".encode()) for j in range(3)],
                                      "n_samples": n_samples, "dim": dim}, **kw)

    def reference(self, data: bytes = REFERENCE, rid: int = 1, who: str = "operator") -> None:
        self.tx(who, "PublishReference", str(rid), base64.b64encode(data))

    def finish(self, rid: int = 1, accepted: tuple[str, ...] = ("h1", "h2")) -> None:
        att = {"round_id": rid, "model_hash": sha(GENESIS), "accepted": list(accepted), "rejected": {},
               "report_hash": "ab" * 32}
        self.tx("mpc0", "AttestResult", att)
        self.tx("mpc1", "AttestResult", att)


def honest() -> Chain:
    c = Chain()
    c.setup()
    c.create()
    c.reference()
    c.update("h1")
    c.update("h2", n_samples=5000)  # exactly at the cap
    c.tx("operator", "CloseRound", "1")
    c.finish()
    return c


def test_an_honest_round_audits_clean():
    c = honest()
    fl = FLAuditor().run(ChainAudit(transactions=c.records))
    assert fl.findings == []
    assert fl.rounds[1].state == "FINALIZED" and sorted(fl.rounds[1].updates) == ["h1", "h2"]
    assert set(fl.registry.participants) == {"operator", "mpc0", "mpc1", "mpc2", "h1", "h2", "h3", "auditor"}
    assert fl.rounds[1].as_dict()["reference_published"] == sha(REFERENCE)
    assert backwards_timestamps(c.records) == []


def test_an_inflated_sample_count_is_reported():
    c = Chain()
    c.setup(cap=5000)
    c.create()
    c.reference()
    c.update("h1", n_samples=1_000_000)
    c.update("h2", dim=PARAMS + 1)
    assert c.problems() == [
        "update by h1 to round 1 claims n_samples 1000000, above its enrolment sample_cap 5000",
        f"update by h2 to round 1 has dim {PARAMS + 1}, the round's model_spec.param_count is {PARAMS}",
    ]


def test_roles_need_a_registration_not_only_a_certificate():
    c = Chain()
    c.setup()
    liar = IDS["liar"]  # a hospital certificate registered as an auditor
    c.tx("operator", "RegisterParticipant", {"id": "liar", "role": "auditor", "msp_id": liar.msp_id,
                                             "identity": liar.id})
    c.create()
    c.reference()
    c.update("stranger")
    c.update("liar")
    c.tx("operator", "RegisterParticipant", {"id": "h1", "role": "hospital", "msp_id": "Org1MSP",
                                             "identity": "x509::CN=other::CN=ca", "sample_cap": 1})
    problems = c.problems()
    assert len(problems) == 4, problems
    assert problems[0].startswith("SubmitUpdate committed for x509::") and problems[0].endswith(
        "of Org1MSP (certificate role 'hospital'), who is not a registered participant")
    assert problems[1:] == [
        "SubmitUpdate committed for liar, whose certificate role 'hospital' differs from its registered role 'auditor'",
        "SubmitUpdate committed for a creator with role 'auditor' (allowed: ['hospital'])",
        "participant 'h1' registered twice",
    ]


def test_updates_after_the_deadline_and_back_dated_updates():
    c = Chain()
    c.setup()
    c.create()
    c.reference()
    c.update("h1", at=DEADLINE)  # stamped at the deadline: the contract refuses it
    c.tx("auditor", "GetRound", "1", at=DEADLINE + 900)  # any VALID tx: real time had passed deadline + skew
    c.update("h2", at=DEADLINE - 5)  # stamped in time, committed after that witness: back-dated
    problems = c.problems()
    assert problems[0] == ("update by h1 to round 1 stamped 2026-03-01T01:00:00Z, at or after the round's deadline "
                           "2026-03-01T01:00:00Z")
    assert problems[1] == (f"update by h2 to round 1 committed after the round's deadline: block "
                           f"{c.records[-2].block} already held tx {c.records[-2].info.tx_id} stamped "
                           f"2026-03-01T01:15:00Z, at or after the deadline 2026-03-01T01:00:00Z + max_clock_skew_s "
                           f"900 s; the update (stamped 2026-03-01T00:59:55Z) was back-dated")
    assert len(problems) == 2


def test_a_witness_within_the_clock_skew_or_in_the_same_block_proves_nothing():
    c = Chain()
    c.setup()
    c.create()
    c.reference()
    c.tx("auditor", "GetRound", "1", at=DEADLINE + 899)
    c.update("h1", at=DEADLINE - 5)
    c.tx("auditor", "GetRound", "1", at=DEADLINE + 2000, block=100)
    c.update("h2", at=DEADLINE - 4, block=100)
    assert c.problems() == []


def test_early_closes_are_reported_by_role():
    c = Chain()
    c.setup(max_clock_skew_s=60)
    for rid, who, at in [(1, "operator", 10), (2, "mpc0", DEADLINE), (3, "h1", DEADLINE + 60),
                         (4, "mpc1", DEADLINE - 1), (5, "h2", DEADLINE + 59), (6, "auditor", DEADLINE)]:
        c.now = at - 3
        c.create(rid, cosine=False, base_model_hash=sha(GENESIS))
        c.tx(who, "CloseRound", str(rid), at=at)
        c.tx("mpc0", "AttestResult", {"round_id": rid, "model_hash": sha(GENESIS), "accepted": [], "rejected": {},
                                      "report_hash": "ab" * 32, "outcome": "too_few_accepted"})
        c.tx("mpc1", "AttestResult", {"round_id": rid, "model_hash": sha(GENESIS), "accepted": [], "rejected": {},
                                      "report_hash": "ab" * 32, "outcome": "too_few_accepted"})
    problems = c.problems()
    early = [p for p in problems if p.startswith("early close")]
    assert "round 3 created with deadline 2026-03-01T01:00:00Z, not after its transaction time " \
           "2026-03-01T01:00:58Z" in problems
    assert early == [
        "early close: mpc1 (mpc_node) closed round 4 at 2026-03-01T00:59:59Z, before the deadline "
        "(2026-03-01T01:00:00Z); only operators may close a round early",
        "early close: h2 (hospital) closed round 5 at 2026-03-01T01:00:59Z, before the deadline + max_clock_skew_s "
        "60 s (2026-03-01T01:01:00Z); only operators may close a round early",
        "early close: auditor (auditor) closed round 6 at 2026-03-01T01:00:00Z, before the deadline + "
        "max_clock_skew_s 60 s (2026-03-01T01:01:00Z); only operators may close a round early",
    ]


def test_timestamps_running_backwards_across_blocks():
    c = honest()
    c.tx("auditor", "GetRound", "1", at=5000)
    c.tx("auditor", "GetRound", "1", at=4950)  # 50 s back: within the default tolerance
    late = c.tx("auditor", "GetRound", "1", at=6000, block=200)
    early = c.tx("auditor", "GetRound", "1", at=5900, block=200)  # same block: no order between them
    back = c.tx("auditor", "GetRound", "1", at=5800, block=201)
    findings = backwards_timestamps(c.records)
    assert [(f.block, f.tx_id) for f in findings] == [(201, back.info.tx_id)]
    assert findings[0].problem == (f"timestamp 2026-03-01T01:36:40Z runs backwards: block 200 already held tx "
                                   f"{late.info.tx_id} stamped 2026-03-01T01:40:00Z, 200 s later (tolerance 60 s)")
    assert early.info.tx_id not in {f.tx_id for f in findings}
    assert len(backwards_timestamps(c.records, tolerance_s=30)) == 2  # the 50 s step counts now
    assert backwards_timestamps(c.records, tolerance_s=200) == []


def test_a_tampered_reference_is_reported():
    c = Chain()
    c.setup()
    c.create()
    c.reference(REFERENCE[:-1] + b"\xff")
    c.update("h1")
    c.tx("operator", "CloseRound", "1")
    c.finish(accepted=("h1",))
    tampered = sha(REFERENCE[:-1] + b"\xff")
    assert c.problems() == [f"reference published for round 1 hashes to {tampered}, not the round's declared "
                            f"reference_sha256 {sha(REFERENCE)}"]


def test_reference_rules():
    c = Chain()
    c.setup()
    c.create()
    c.reference(who="h1")  # not an operator
    c.reference()  # a second one
    c.tx("operator", "CloseRound", "1")
    c.reference(rid=1)  # after the close (allowed until a node attests): only "twice" applies
    c.create(2, hyperparameters={"reference_sha256": sha(REFERENCE[:8])})
    c.reference(REFERENCE[:8], rid=2)  # the declared bytes, but not 4 x param_count of them
    assert c.problems() == [
        "PublishReference committed for a creator with role 'hospital' (allowed: ['operator'])",
        "reference of round 1 published twice",
        "reference of round 1 published twice",
        "round 2 created while an earlier round was still open",
        f"reference of round 2 has 8 bytes; a float32 vector of {PARAMS} parameters has {4 * PARAMS}",
    ]


def test_a_reference_after_an_attestation_is_reported_and_a_late_one_before_is_not():
    c = Chain()
    c.setup()
    c.create()
    c.update("h1")
    c.tx("operator", "CloseRound", "1")
    c.reference()  # CLOSED, nobody attested yet: the declared hash was fixed by CreateRound
    assert c.problems() == []
    c = Chain()
    c.setup()
    c.create()
    c.update("h1")
    c.tx("operator", "CloseRound", "1")
    c.tx("mpc0", "AttestResult", {"round_id": 1, "model_hash": sha(GENESIS), "accepted": [],
                                  "rejected": {"h1": "no_reference"}, "report_hash": "ab" * 32,
                                  "outcome": "too_few_accepted"})
    c.reference()
    assert c.problems() == ["reference published for round 1 while CLOSED after an attestation"]


def test_a_round_failed_for_want_of_a_reference_is_not_a_cosine_finding():
    c = Chain()
    c.setup()
    c.tx("operator", "CreateRound", {"round_id": 1, "base_model_hash": sha(GENESIS), "model_spec": {"param_count": PARAMS},
                                     "deadline": (T0 + dt.timedelta(seconds=DEADLINE)).timestamp(), "min_updates": 1})
    c.update("h1")
    c.tx("operator", "CloseRound", "1")
    att = {"round_id": 1, "model_hash": sha(GENESIS), "accepted": [], "rejected": {"h1": "no_reference"},
           "report_hash": "ab" * 32, "outcome": "too_few_accepted"}
    c.tx("mpc0", "AttestResult", att)
    c.tx("mpc1", "AttestResult", att)
    assert c.problems() == []


def test_a_cosine_round_attested_without_a_reference_is_reported():
    for cosine, expected in [(True, 1), (False, 0)]:
        c = Chain()
        c.setup()
        c.create(cosine=cosine)
        c.update("h1")
        c.tx("operator", "CloseRound", "1")
        c.finish(accepted=("h1",))
        problems = c.problems()
        assert len(problems) == expected, problems
    assert problems == [] and c.records  # cosine off: no reference needed
    c = Chain()
    c.setup(default_policy={"norm_bound": 1.0})  # no policy in the round: the consortium's, cosine on by default
    c.tx("operator", "CreateRound", {"round_id": 1, "base_model_hash": sha(GENESIS), "model_spec": {"param_count": PARAMS},
                                     "deadline": (T0 + dt.timedelta(seconds=DEADLINE)).timestamp(), "min_updates": 1})
    c.update("h1")
    c.tx("operator", "CloseRound", "1")
    c.finish(accepted=("h1",))
    assert c.problems() == ["round 1 checks cosine similarity (policy cosine_enabled) and was attested, but no "
                            "reference was published for it: its cosine verdicts had no audited reference"]


def test_round_ids_must_increase():
    c = honest()
    c.create(3, cosine=False)
    c.tx("operator", "CloseRound", "3")
    c.finish(3, accepted=())
    c.create(2, cosine=False)
    assert "round ids must increase: round 2 created after round 3" in c.problems()
