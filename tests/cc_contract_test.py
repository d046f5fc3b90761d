"""FL contract behaviour on the in-memory ledger: lifecycle, state machine, rules, history, events."""

from __future__ import annotations

import json

import fedchain_cc.fl.blobs as blobs_mod
import pytest
from cc_support import (
    GENESIS,
    NEW_MODEL,
    SPEC,
    T0,
    b64,
    closed_world,
    finalized_world,
    h,
    init_config,
    make_world,
    open_world,
)
from fedchain.sharing import sha256_hex as sha


def test_whole_round_and_events():
    w = finalized_world()
    rnd = w.ok(w.auditor, "GetRound", "1")
    assert rnd["state"] == "FINALIZED"
    assert rnd["finalized"]["model_hash"] == sha(NEW_MODEL)
    assert rnd["finalized"]["accepted"] == ["hospital1", "hospital2", "hospital3"]
    assert rnd["submitted"] == ["hospital1", "hospital2", "hospital3"]
    w.ok(w.mpc[1], "PublishModel", "1", b64(NEW_MODEL))
    got = w.ok(w.hospitals["hospital1"], "GetModel", "1")
    assert got["sha256"] == sha(NEW_MODEL) and got["model_b64"] == b64(NEW_MODEL)
    names = [name for _, name, _ in w.ledger.events]
    assert names == ["RoundCreated", "UpdateSubmitted", "UpdateSubmitted", "UpdateSubmitted", "RoundClosed",
                     "RoundFinalized"]
    fin = json.loads(w.ledger.events[-1][2])
    assert fin["round_id"] == 1 and fin["model_hash"] == sha(NEW_MODEL)
    cons = w.ok(w.auditor, "GetConsortium")
    assert cons["head"] == {"last_round_id": 1, "finalized_round_id": 1, "model_hash": sha(NEW_MODEL),
                            "param_count": SPEC["param_count"], "last_tx_creator": cons["head"]["last_tx_creator"],
                            "last_tx_function": "AttestResult"}
    # the next round builds on round 1's model
    w.refused(w.operator, "CreateRound", {"round_id": 2, "base_model_hash": sha(GENESIS), "model_spec": SPEC,
                                          "deadline": T0 + 99, "min_updates": 1}, status=409,
              contains="last finalized model")
    w.ok(w.operator, "CreateRound", {"round_id": 2, "base_model_hash": sha(NEW_MODEL), "model_spec": SPEC,
                                     "deadline": T0 + 99, "min_updates": 1})


def test_round_needs_published_base_model():
    w = finalized_world()
    msg = w.refused(w.operator, "CreateRound", {"round_id": 2, "base_model_hash": sha(NEW_MODEL),
                                                "model_spec": SPEC, "deadline": T0 + 99, "min_updates": 1},
                    status=409)
    assert "not published yet" in msg


def test_state_machine_refuses_out_of_order_calls():
    w = make_world()
    w.refused(w.hospitals["hospital1"], "SubmitUpdate", w.update(1, "hospital1"), status=404, contains="no round 1")
    w.refused(w.operator, "CloseRound", "1", status=404)
    w.refused(w.mpc[0], "AttestResult", w.attestation(1, NEW_MODEL, []), status=404)
    w.create_round(1)
    w.refused(w.operator, "CreateRound", {"round_id": 2, "base_model_hash": sha(GENESIS), "model_spec": SPEC,
                                          "deadline": T0 + 99, "min_updates": 1}, status=409, contains="still OPEN")
    w.refused(w.mpc[0], "AttestResult", w.attestation(1, NEW_MODEL, []), status=409, contains="is OPEN")
    w.refused(w.mpc[0], "PublishModel", "1", b64(NEW_MODEL), status=409, contains="is OPEN")
    w.ok(w.hospitals["hospital1"], "SubmitUpdate", w.update(1, "hospital1"))
    w.ok(w.operator, "CloseRound", "1")
    msg = w.refused(w.hospitals["hospital2"], "SubmitUpdate", w.update(1, "hospital2"), status=409)
    assert msg == "SubmitUpdate: round 1 is CLOSED, updates are accepted only while OPEN"
    w.refused(w.operator, "CloseRound", "1", status=409, contains="only an OPEN round")
    w.refused(w.mpc[0], "PublishModel", "1", b64(NEW_MODEL), status=409, contains="is CLOSED")


def test_round_ids_strictly_increase():
    w = make_world()
    w.create_round(3, min_updates=1)
    w.ok(w.hospitals["hospital1"], "SubmitUpdate", w.update(3, "hospital1"))
    w.ok(w.operator, "CloseRound", "3")
    att = {**w.attestation(3, GENESIS, [], {"hospital1": "norm"}), "outcome": "too_few_accepted"}  # nobody accepted
    w.ok(w.mpc[0], "AttestResult", att)
    assert w.ok(w.mpc[1], "AttestResult", att)["state"] == "FAILED"
    for rid in (2, 3):
        w.refused(w.operator, "CreateRound", {"round_id": rid, "base_model_hash": sha(GENESIS), "model_spec": SPEC,
                                              "deadline": T0 + 99, "min_updates": 1}, status=409,
                  contains="ids must increase")
    w.create_round(4)
    assert [r["round_id"] for r in w.ok(w.auditor, "ListRounds")] == [0, 3, 4]


def test_unchanged_model_is_fetchable_without_republishing():
    w = closed_world()
    att = w.attestation(1, GENESIS, ["hospital1"], {"hospital2": "cosine", "hospital3": "outlier"})
    w.ok(w.mpc[0], "AttestResult", att)
    w.ok(w.mpc[2], "AttestResult", att)
    got = w.ok(w.auditor, "GetModel", "1")
    assert got["sha256"] == sha(GENESIS) and got["model_b64"] == b64(GENESIS)
    w.refused(w.mpc[0], "PublishModel", "1", b64(GENESIS), status=409, contains="already published")


def test_too_few_accepted_updates_keep_the_base_model():
    w = closed_world()  # min_updates = 2
    msg = w.refused(w.mpc[0], "AttestResult",
                    w.attestation(1, NEW_MODEL, ["hospital1"], {"hospital2": "norm", "hospital3": "norm"}))
    assert "fewer than min_updates 2" in msg


def test_attestation_must_cover_exactly_the_submitted_updates():
    w = closed_world()
    w.refused(w.mpc[0], "AttestResult", w.attestation(1, NEW_MODEL, ["hospital1", "hospital2"]),
              contains="missing: ['hospital3']")
    w.refused(w.mpc[0], "AttestResult", w.attestation(1, NEW_MODEL, ["hospital1", "hospital2", "hospital3",
                                                                      "hospital9"]),
              contains="not submitted: ['hospital9']")
    w.refused(w.mpc[0], "AttestResult", w.attestation(1, NEW_MODEL, ["hospital1", "hospital2"],
                                                      {"hospital2": "norm", "hospital3": "norm"}),
              contains="both accepted and rejected")
    w.refused(w.mpc[0], "AttestResult", w.attestation(1, NEW_MODEL, ["hospital1", "hospital1", "hospital2",
                                                                      "hospital3"]), contains="twice")
    w.refused(w.mpc[0], "AttestResult", w.attestation(1, NEW_MODEL, ["hospital1", "hospital2"],
                                                      {"hospital3": "Bad Reason"}), contains="reason")


def test_conflicting_attestations_dispute_the_round():
    w = closed_world()
    a = w.attestation(1, NEW_MODEL, sorted(w.hospitals))
    b = w.attestation(1, NEW_MODEL, ["hospital1", "hospital2"], {"hospital3": "outlier"})
    assert w.ok(w.mpc[0], "AttestResult", a)["state"] == "CLOSED"
    rnd = w.ok(w.mpc[1], "AttestResult", b)
    assert rnd["state"] == "DISPUTED"
    assert w.ledger.events[-1][1] == "RoundDisputed"
    w.refused(w.mpc[2], "AttestResult", a, status=409, contains="is DISPUTED")
    w.refused(w.mpc[2], "PublishModel", "1", b64(NEW_MODEL), status=409)
    # a disputed round does not block the consortium: the next round starts from the last good model
    w.ok(w.operator, "CreateRound", {"round_id": 2, "base_model_hash": sha(GENESIS), "model_spec": SPEC,
                                     "deadline": T0 + 99, "min_updates": 1})


def test_late_attestation_recorded_and_dissent_listed():
    w = finalized_world()
    w.refused(w.mpc[0], "AttestResult", w.attestation(1, NEW_MODEL, sorted(w.hospitals)), status=409,
              contains="already attested")
    late = w.attestation(1, b"other", sorted(w.hospitals))
    rnd = w.ok(w.mpc[2], "AttestResult", late)
    assert rnd["state"] == "FINALIZED" and rnd["dissent"] == ["mpc2"]
    assert rnd["finalized"]["model_hash"] == sha(NEW_MODEL)


def test_publish_model_checks_hash_and_size(monkeypatch):
    w = finalized_world()
    w.refused(w.mpc[0], "PublishModel", "1", b64(NEW_MODEL + b"x"), status=400, contains="does not match")
    w.refused(w.mpc[0], "PublishModel", "1", b64(b"\0" * (64 * 1024 + 1)), contains="limit of 65536 bytes")
    w.refused(w.mpc[0], "PublishModel", "1", "A" * 90000, contains="model size limit")
    monkeypatch.setattr(blobs_mod, "CHUNK_SIZE", 16)  # many chunks for a small model
    w.ok(w.mpc[0], "PublishModel", "1", b64(NEW_MODEL))
    chunks = [k for k in w.ledger.state if k.startswith("\x00modelchunk\x00" + f"{1:020d}")]
    assert len(chunks) == -(-len(NEW_MODEL) // 16)
    assert w.ok(w.auditor, "GetModel", "1")["model_b64"] == b64(NEW_MODEL)
    w.refused(w.mpc[1], "PublishModel", "1", b64(NEW_MODEL), status=409, contains="already published")


def test_submit_rules():
    w = open_world()
    hosp = w.hospitals["hospital1"]
    w.refused(hosp, "SubmitUpdate", w.update(1, "hospital1", n_samples=1001), contains="enrolment cap 1000")
    u = w.update(1, "hospital1")
    w.refused(hosp, "SubmitUpdate", {**u, "dim": 999}, contains="parameter count 1000")
    w.refused(hosp, "SubmitUpdate", {**u, "share_hashes": u["share_hashes"][:2]}, contains="one hash per MPC node (3)")
    w.refused(hosp, "SubmitUpdate", {**u, "share_hashes": [x.upper() for x in u["share_hashes"]]},
              contains="share_hashes[0]")
    w.refused(hosp, "SubmitUpdate", {**u, "extra": 1}, contains="unknown field(s) 'extra'")
    rnd = w.ok(hosp, "GetRound", "1")
    w.refused(hosp, "SubmitUpdate", u, status=409, contains="deadline", timestamp=rnd["deadline"])
    rec = w.ok(hosp, "SubmitUpdate", u, timestamp=rnd["deadline"] - 0.001)
    assert rec["hospital"] == "hospital1" and rec["n_samples"] == 100
    w.refused(hosp, "SubmitUpdate", u, status=409, contains="already submitted")
    assert [x["hospital"] for x in w.ok(w.auditor, "GetUpdates", "1")] == ["hospital1"]


def test_close_after_deadline_by_anyone_registered():
    w = open_world()
    deadline = w.ok(w.auditor, "GetRound", "1")["deadline"]
    skew = w.ok(w.auditor, "GetConsortium")["max_clock_skew_s"]
    assert skew == 900  # Fabric's default proposal time window
    w.refused(w.hospitals["hospital2"], "CloseRound", "1", status=403, contains="only from",
              timestamp=deadline - 1)
    rnd = w.ok(w.hospitals["hospital2"], "CloseRound", "1", timestamp=deadline + skew)
    assert rnd["state"] == "CLOSED" and rnd["submitted"] == []
    assert rnd["last_tx_creator"]["participant"] == "hospital2"


def test_forward_dated_close_by_a_hospital_is_refused():
    """A hospital forward-dates CloseRound by up to the skew: still refused before deadline + skew,
    so no client can close a round before its deadline and lock honest hospitals out."""
    w = open_world()
    deadline = w.ok(w.auditor, "GetRound", "1")["deadline"]
    hosp = w.hospitals["hospital2"]
    for ts in (deadline - 600, deadline, deadline + 899.999):  # e.g. 10 min early, forward-dated 15 min
        msg = w.refused(hosp, "CloseRound", "1", status=403, contains="max_clock_skew_s", timestamp=ts)
        assert "operators may close it any time" in msg
    w.refused(w.auditor, "CloseRound", "1", status=403, timestamp=deadline + 10)
    assert w.ok(w.auditor, "GetRound", "1")["state"] == "OPEN"


def test_mpc_node_closes_at_the_deadline_not_before():
    w = open_world()
    deadline = w.ok(w.auditor, "GetRound", "1")["deadline"]
    node = w.mpc[0]
    w.refused(node, "CloseRound", "1", status=403, contains="only from", timestamp=deadline - 0.001)
    assert w.ok(node, "CloseRound", "1", timestamp=deadline)["state"] == "CLOSED"


def test_clock_skew_is_a_consortium_setting():
    w = make_world(init=False)
    cfg = {**init_config(w.mpc), "max_clock_skew_s": 60}
    assert w.ok(w.operator, "InitConsortium", cfg)["max_clock_skew_s"] == 60
    w2 = make_world(init=False)
    w2.refused(w2.operator, "InitConsortium", {**init_config(w2.mpc), "max_clock_skew_s": -1},
               contains="max_clock_skew_s")


def test_round_records_its_creating_transaction():
    w = open_world()
    rnd = w.ok(w.auditor, "GetRound", "1")
    hist = w.ok(w.auditor, "GetHistory", "round", "1")
    assert rnd["created_tx_id"] and rnd["created_tx_id"] == hist[0]["tx_id"]


def test_create_round_validation():
    w = make_world()
    base = {"round_id": 1, "base_model_hash": sha(GENESIS), "model_spec": SPEC, "deadline": T0 + 10,
            "min_updates": 1}
    w.refused(w.operator, "CreateRound", {**base, "deadline": T0}, contains="not after the transaction time")
    w.refused(w.operator, "CreateRound", {**base, "model_spec": {**SPEC, "param_count": 5}},
              contains="differs from the model's 1000")
    w.refused(w.operator, "CreateRound", {**base, "policy": {"nested": {"a": 1}}}, contains="must be a number")
    rnd = w.ok(w.operator, "CreateRound", {**base, "policy": {"norm_bound": 3, "krum_f": 1}})
    assert rnd["policy"] == {"norm_bound": 3, "krum_f": 1, "min_accepted": 1}  # the consortium's floor added


def test_genesis_once_and_consortium_once():
    w = make_world()
    w.refused(w.operator, "PublishGenesisModel", SPEC, b64(GENESIS), status=409, contains="already published")
    w.refused(w.operator, "InitConsortium", {"mpc_nodes": []}, status=409, contains="already initialized")
    fresh = make_world(init=False)
    fresh.refused(fresh.operator, "GetConsortium", status=409, contains="not initialized")


@pytest.mark.parametrize("t,q,msg", [(2, 2, "honest majority"), (1, 1, "quorum"), (1, 4, "quorum"),
                                     (0, 2, "threshold")])
def test_init_threshold_and_quorum_bounds(t, q, msg):
    from cc_support import init_config

    w = make_world(init=False)
    w.refused(w.operator, "InitConsortium", {**init_config(w.mpc), "threshold": t, "quorum": q}, contains=msg)


def test_init_refuses_duplicate_node_identities():
    from cc_support import init_config

    w = make_world(init=False)
    cfg = init_config(w.mpc)
    cfg["mpc_nodes"][1]["identity"] = cfg["mpc_nodes"][0]["identity"]
    cfg["mpc_nodes"][1]["msp_id"] = cfg["mpc_nodes"][0]["msp_id"]
    w.refused(w.operator, "InitConsortium", cfg, contains="own identity")


def test_history_shows_who_did_what():
    w = finalized_world()
    hist = w.ok(w.auditor, "GetHistory", "round", "1")
    assert [e["value"]["last_tx_function"] for e in hist] == ["AttestResult", "AttestResult", "CloseRound",
                                                             "CreateRound"]  # newest first (Fabric 2.x)
    assert [e["value"]["state"] for e in hist] == ["FINALIZED", "CLOSED", "CLOSED", "OPEN"]
    assert hist[-1]["value"]["last_tx_creator"] == {"msp_id": "Org1MSP", "participant": "operator"}
    assert hist[-1]["creator"] == {"msp_id": "Org1MSP", "participant": "operator"}
    assert [e["function"] for e in hist] == [e["value"]["last_tx_function"] for e in hist]
    assert all(len(e["tx_id"]) == 64 and e["timestamp"] == T0 and not e["is_delete"] for e in hist)
    upd = w.ok(w.auditor, "GetHistory", "update", "1/hospital2")
    assert len(upd) == 1 and upd[0]["value"]["last_tx_creator"]["participant"] == "hospital2"
    att = w.ok(w.auditor, "GetHistory", "attestation", "1/mpc1")
    assert att[0]["value"]["node"] == "mpc1"
    assert w.ok(w.auditor, "GetHistory", "consortium", "")[0]["value"]["threshold"] == 1
    assert w.ok(w.auditor, "GetHistory", "participant", "hospital3")[0]["value"]["sample_cap"] == 1000
    assert w.ok(w.auditor, "GetHistory", "model", "0")[0]["value"]["sha256"] == sha(GENESIS)
    w.refused(w.auditor, "GetHistory", "blocks", "1", contains="kind must be one of")
    w.refused(w.auditor, "GetHistory", "attestation", "1/hospital1", status=404)


def test_deterministic_across_endorsers():
    """Two independent ledgers fed the same transactions end in byte-identical state."""
    a, b = finalized_world(), finalized_world()

    def normalized(w):  # identities differ between worlds (fresh keys): compare the structure
        return sorted((k.split("\x00")[1] if k.startswith("\x00") else k, len(v)) for k, v in w.ledger.snapshot().items())

    assert normalized(a) == normalized(b)
    sim1 = a.ledger.simulate(a.mpc[0], "PublishModel", "1", b64(NEW_MODEL), tx_id="t" * 64)
    sim2 = a.ledger.simulate(a.mpc[0], "PublishModel", "1", b64(NEW_MODEL), tx_id="t" * 64)
    assert sim1.writes == sim2.writes and sim1.response == sim2.response


def test_unknown_function_and_bad_arg_counts():
    w = make_world()
    resp, _ = w.call(w.auditor, "DropTables")
    assert resp.status == 400 and "unknown function" in resp.message
    w.refused(w.auditor, "GetRound", contains="takes 1 argument(s), got 0")
    w.refused(w.auditor, "ListRounds", "x", contains="takes 0 argument(s), got 1")
    assert h("a") != h("b")


def test_queries_filter_and_report_missing_things():
    w = finalized_world()
    assert [p["id"] for p in w.ok(w.auditor, "ListParticipants", "mpc_node")] == ["mpc0", "mpc1", "mpc2"]
    assert [p["node_index"] for p in w.ok(w.auditor, "ListParticipants", "mpc_node")] == [0, 1, 2]
    assert {p["role"] for p in w.ok(w.auditor, "ListParticipants")} == {"operator", "hospital", "mpc_node", "auditor"}
    w.refused(w.auditor, "ListParticipants", "admin", contains="role filter")
    w.refused(w.auditor, "GetUpdates", "9", status=404, contains="no round 9")
    w.refused(w.auditor, "GetParticipant", "nobody", status=404)
    w.refused(w.auditor, "GetModel", "1", status=404, contains="finalized but not published yet")
    w.refused(w.auditor, "GetModel", "2", status=404, contains="no model for round 2: there is no round 2")


def test_mock_stub_follows_fabric_range_rules():
    """Plain ranges skip composite keys and refuse them as bounds, as the real stub and Fabric do."""
    import pytest
    from cc_support import make_world
    from fedchain_cc.testing import MockStub

    w = make_world()
    sim_stub = MockStub(w.ledger, [b"x"], w.operator, "tx-range", w.ledger.now, {})
    keys = [kv.key for kv in sim_stub.get_state_by_range("", "")]
    assert keys and not any(k.startswith("\x00") for k in keys)  # the contract's records are all composite
    assert [kv.key for kv in sim_stub.get_state_by_partial_composite_key("participant", [])]
    with pytest.raises(ValueError, match="null character"):
        sim_stub.get_state_by_range("\x00participant\x00", "")
