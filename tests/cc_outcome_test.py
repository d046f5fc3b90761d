"""Round outcomes on the ledger: the min_accepted privacy floor, FAILED and out-of-range DISPUTED rounds.

The MPC nodes never open an aggregate of fewer than min_accepted accepted updates (the aggregate of
one update IS that update) and never publish an aggregate that fails their sanity check; they attest
the round with an `outcome` instead of a new model, and the contract ends the round without moving
the head model.
"""

from __future__ import annotations

import json

import pytest
from cc_support import (
    GENESIS,
    NEW_MODEL,
    REFERENCE,
    SPEC,
    World,
    b64,
    closed_world,
    init_config,
    make_world,
)
from fedchain.sharing import sha256_hex as sha
from fedchain_cc.fl import keys


def default_world(n_hospitals: int = 4, **config) -> World:
    """make_world's consortium, but InitConsortium without min_accepted (the contract's default) unless given."""
    w = make_world(n_hospitals, init=False)
    cfg = {k: val for k, val in init_config(w.mpc).items() if k != "min_accepted"}
    w.ok(w.operator, "InitConsortium", {**cfg, **config})
    for name, ident in w.hospitals.items():
        w.ok(w.operator, "RegisterParticipant", {"id": name, "role": "hospital", "msp_id": ident.msp_id,
                                                 "identity": ident.id, "sample_cap": 1000})
    w.ok(w.operator, "RegisterParticipant", {"id": "auditor", "role": "auditor", "msp_id": w.auditor.msp_id,
                                             "identity": w.auditor.id})
    w.ok(w.operator, "PublishGenesisModel", SPEC, b64(GENESIS))
    return w


def round_body(w: World, round_id: int, **extra) -> dict:
    head = w.ok(w.operator, "GetConsortium")["head"]
    return {"round_id": round_id, "base_model_hash": head["model_hash"], "model_spec": SPEC,
            "hyperparameters": {"reference_sha256": sha(REFERENCE)}, "deadline": w.ledger.now + 3600,
            "min_updates": 1, **extra}


def closed_round(w: World, round_id: int, hospitals: list[str] | None = None) -> None:
    w.ok(w.operator, "CreateRound", round_body(w, round_id))
    for name in hospitals if hospitals is not None else sorted(w.hospitals):
        w.ok(w.hospitals[name], "SubmitUpdate", w.update(round_id, name))
    w.ok(w.operator, "CloseRound", str(round_id))


def outcome_att(w: World, round_id: int, outcome: str | None, accepted: list[str], rejected: dict,
                model: bytes = GENESIS) -> dict:
    att = w.attestation(round_id, model, accepted, rejected)
    if outcome is not None:
        att["outcome"] = outcome
    return att


def events(w: World) -> list[tuple[str, dict]]:
    return [(name, json.loads(payload)) for _, name, payload in w.ledger.events]


# ------------------------------------------------------------------ min_accepted: consortium and round policy
def test_min_accepted_defaults_to_three_and_lands_in_the_round_policy():
    w = default_world()
    cons = w.ok(w.auditor, "GetConsortium")
    assert cons["min_accepted"] == 3
    rnd = w.ok(w.operator, "CreateRound", round_body(w, 1))
    assert rnd["policy"] == {"norm_bound": 10.0, "cosine_min": 0.0, "min_accepted": 3}  # default_policy + floor
    assert events(w)[-1] == ("RoundCreated", {"round_id": 1, "base_model_hash": sha(GENESIS),
                                              "deadline": rnd["deadline"], "min_updates": 1, "min_accepted": 3})
    # the consortium's default_policy itself is stored unchanged
    assert "min_accepted" not in w.ok(w.auditor, "GetConsortium")["default_policy"]


def test_a_round_may_raise_the_floor_but_not_lower_it():
    w = default_world(min_accepted=2)
    assert w.ok(w.auditor, "GetConsortium")["min_accepted"] == 2
    msg = w.refused(w.operator, "CreateRound", round_body(w, 1, policy={"norm_bound": 5.0, "min_accepted": 1}),
                    status=400)
    assert "policy.min_accepted 1 is below the consortium's minimum 2" in msg
    for bad, what in ((2.5, "must be an integer"), ("3", "must be an integer"), (True, "must be an integer"),
                      (10_001, "above the maximum")):
        w.refused(w.operator, "CreateRound", round_body(w, 1, policy={"min_accepted": bad}), status=400,
                  contains=what)
    rnd = w.ok(w.operator, "CreateRound", round_body(w, 1, policy={"norm_bound": 5.0, "min_accepted": 4}))
    assert rnd["policy"] == {"norm_bound": 5.0, "min_accepted": 4}


def test_given_policy_without_min_accepted_gets_the_consortium_floor():
    w = default_world()
    rnd = w.ok(w.operator, "CreateRound", round_body(w, 1, policy={"norm_bound": 5.0}))
    assert rnd["policy"] == {"norm_bound": 5.0, "min_accepted": 3}


@pytest.mark.parametrize("value,msg", [(0, "must be in [1, 10000]"), (10_001, "must be in [1, 10000]"),
                                       (2.0, "must be an integer"), ("3", "must be an integer")])
def test_init_consortium_checks_min_accepted(value, msg):
    w = make_world(init=False)
    w.refused(w.operator, "InitConsortium", {**init_config(w.mpc), "min_accepted": value}, status=400, contains=msg)


def test_init_consortium_refuses_a_default_policy_below_the_floor():
    w = make_world(init=False)
    cfg = {**init_config(w.mpc), "min_accepted": 3, "default_policy": {"norm_bound": 1.0, "min_accepted": 2}}
    w.refused(w.operator, "InitConsortium", cfg, status=400,
              contains="default_policy.min_accepted 2 is below the consortium's minimum 3")


# ------------------------------------------------------------------------------ outcome validation
def test_outcome_must_be_known():
    w = default_world()
    closed_round(w, 1)
    for bad in ("OK", "failed", "", 3):
        w.refused(w.mpc[0], "AttestResult", outcome_att(w, 1, bad, sorted(w.hospitals), {}), status=400,
                  contains="outcome")


def test_ok_below_min_accepted_is_refused():
    w = default_world()
    closed_round(w, 1)
    two = ["hospital1", "hospital2"]
    rej = {"hospital3": "norm", "hospital4": "cosine"}
    msg = w.refused(w.mpc[0], "AttestResult", outcome_att(w, 1, None, two, rej, NEW_MODEL), status=400)
    assert "only 2 accepted update(s), fewer than the round's policy.min_accepted 3" in msg
    # also with the base model: the round did not produce an aggregate, it failed
    w.refused(w.mpc[0], "AttestResult", outcome_att(w, 1, "ok", two, rej), status=400, contains="min_accepted 3")
    # three accepted: an ok aggregate is allowed
    w.ok(w.mpc[0], "AttestResult", outcome_att(w, 1, "ok", sorted(w.hospitals)[:3], {"hospital4": "norm"},
                                               NEW_MODEL))


def test_non_ok_outcomes_publish_no_model():
    w = default_world()
    closed_round(w, 1)
    for outcome, accepted in (("too_few_accepted", ["hospital1"]), ("aggregate_out_of_range", sorted(w.hospitals))):
        rejected = {hid: "norm" for hid in w.hospitals if hid not in accepted}
        w.refused(w.mpc[0], "AttestResult", outcome_att(w, 1, outcome, accepted, rejected, NEW_MODEL), status=400,
                  contains="model_hash must be the base model")


def test_too_few_accepted_needs_fewer_than_the_floor():
    w = default_world()
    closed_round(w, 1)
    w.refused(w.mpc[0], "AttestResult",
              outcome_att(w, 1, "too_few_accepted", sorted(w.hospitals)[:3], {"hospital4": "norm"}), status=400,
              contains="at least the round's policy.min_accepted 3")


# ------------------------------------------------------------------------------------- FAILED round
def test_too_few_accepted_fails_the_round_and_the_next_builds_on_the_last_model():
    w = default_world()
    closed_round(w, 1)
    att = outcome_att(w, 1, "too_few_accepted", ["hospital2"],
                      {"hospital1": "norm", "hospital3": "cosine", "hospital4": "outlier"})
    assert w.ok(w.mpc[0], "AttestResult", att)["state"] == "CLOSED"
    before_head = w.ok(w.auditor, "GetConsortium")["head"]
    rnd = w.ok(w.mpc[1], "AttestResult", att)
    assert rnd["state"] == "FAILED" and rnd["failure_reason"] == "too_few_accepted"
    assert rnd["finalized"] is None and rnd["failed_at"] == w.ledger.now
    assert rnd["agreed"]["outcome"] == "too_few_accepted" and rnd["agreed"]["accepted"] == ["hospital2"]
    assert rnd["attestations"]["mpc0"]["outcome"] == "too_few_accepted"
    name, payload = events(w)[-1]
    assert name == "RoundFailed"
    assert payload == {"round_id": 1, "reason": "too_few_accepted", "accepted": ["hospital2"],
                       "rejected": {"hospital1": "norm", "hospital3": "cosine", "hospital4": "outlier"}}
    # no model: the head is unchanged, nothing to fetch or publish
    head = w.ok(w.auditor, "GetConsortium")["head"]
    assert head == {**before_head, "last_round_id": 1}
    assert head["model_hash"] == sha(GENESIS) and head["finalized_round_id"] == 0
    w.refused(w.auditor, "GetModel", "1", status=404, contains="the round is FAILED")
    w.refused(w.mpc[0], "PublishModel", "1", b64(GENESIS), status=409, contains="only once FINALIZED")
    # the attestation record stores the outcome
    hist = w.ok(w.auditor, "GetHistory", "attestation", "1/mpc0")
    assert hist[0]["value"]["outcome"] == "too_few_accepted"
    # a late node: recorded; dissent only if its claim differs
    assert w.ok(w.mpc[2], "AttestResult", att)["dissent"] == []
    # the next round starts from the last finalized model (genesis)
    w.ok(w.operator, "CreateRound", round_body(w, 2))
    assert w.ok(w.auditor, "GetRound", "2")["base_model_hash"] == sha(GENESIS)


def test_late_dissent_after_failed():
    w = default_world()
    closed_round(w, 1)
    att = outcome_att(w, 1, "too_few_accepted", [], {hid: "norm" for hid in w.hospitals})
    w.ok(w.mpc[0], "AttestResult", att)
    w.ok(w.mpc[2], "AttestResult", att)
    other = outcome_att(w, 1, "aggregate_out_of_range", [], {hid: "norm" for hid in w.hospitals})
    rnd = w.ok(w.mpc[1], "AttestResult", other)
    assert rnd["state"] == "FAILED" and rnd["dissent"] == ["mpc1"]
    assert rnd["attestations"]["mpc1"]["outcome"] == "aggregate_out_of_range"


def test_empty_round_fails():
    w = default_world()
    closed_round(w, 1, hospitals=[])
    att = outcome_att(w, 1, "too_few_accepted", [], {})
    w.ok(w.mpc[0], "AttestResult", att)
    assert w.ok(w.mpc[1], "AttestResult", att)["state"] == "FAILED"


# ------------------------------------------------------------------------------ out-of-range DISPUTED
def test_aggregate_out_of_range_disputes_with_a_reason_and_keeps_the_head():
    w = default_world()
    closed_round(w, 1)
    att = outcome_att(w, 1, "aggregate_out_of_range", sorted(w.hospitals), {})
    w.ok(w.mpc[0], "AttestResult", att)
    rnd = w.ok(w.mpc[1], "AttestResult", att)
    assert rnd["state"] == "DISPUTED" and rnd["dispute_reason"] == "aggregate_out_of_range"
    assert rnd["agreed"]["outcome"] == "aggregate_out_of_range" and rnd["finalized"] is None
    name, payload = events(w)[-1]
    assert name == "RoundDisputed" and payload["reason"] == "aggregate_out_of_range"
    assert set(payload["attestations"]) == {"mpc0", "mpc1"}
    head = w.ok(w.auditor, "GetConsortium")["head"]
    assert head["model_hash"] == sha(GENESIS) and head["finalized_round_id"] == 0
    w.refused(w.mpc[2], "AttestResult", att, status=409, contains="is DISPUTED")
    w.refused(w.auditor, "GetModel", "1", status=404)
    w.ok(w.operator, "CreateRound", round_body(w, 2))


def test_claims_with_different_outcomes_dispute():
    w = default_world()
    closed_round(w, 1)
    a = outcome_att(w, 1, "aggregate_out_of_range", sorted(w.hospitals), {})
    b = outcome_att(w, 1, "ok", sorted(w.hospitals), {})  # same model hash (the base) and accepted set
    w.ok(w.mpc[0], "AttestResult", a)
    rnd = w.ok(w.mpc[1], "AttestResult", b)
    assert rnd["state"] == "DISPUTED" and rnd["dispute_reason"] == "attestations differ"
    name, payload = events(w)[-1]
    assert name == "RoundDisputed" and payload["reason"] == "attestations differ"
    head = w.ok(w.auditor, "GetConsortium")["head"]
    assert head["model_hash"] == sha(GENESIS)


def test_ok_outcome_finalizes_as_before():
    w = default_world()
    closed_round(w, 1)
    plain = w.attestation(1, NEW_MODEL, sorted(w.hospitals))  # no outcome field: "ok"
    explicit = {**plain, "outcome": "ok"}
    w.ok(w.mpc[0], "AttestResult", plain)
    rnd = w.ok(w.mpc[1], "AttestResult", explicit)
    assert rnd["state"] == "FINALIZED" and rnd["finalized"]["outcome"] == "ok"
    assert rnd["finalized"]["model_hash"] == sha(NEW_MODEL)
    assert "failure_reason" not in rnd and "dispute_reason" not in rnd
    assert w.ok(w.auditor, "GetConsortium")["head"]["model_hash"] == sha(NEW_MODEL)


def test_legacy_round_records_without_outcome_still_compare():
    """A round record written before `outcome` existed (attestations without it) counts them as "ok"."""
    w = closed_world()
    att = w.attestation(1, NEW_MODEL, sorted(w.hospitals))
    w.ok(w.mpc[0], "AttestResult", att)
    key = keys.round_(1)
    raw, version = w.ledger.state[key]
    rec = json.loads(raw)
    for a in rec["attestations"].values():
        a.pop("outcome")
    w.ledger.state[key] = (json.dumps(rec, sort_keys=True, separators=(",", ":")).encode(), version)
    assert w.ok(w.mpc[1], "AttestResult", att)["state"] == "FINALIZED"
