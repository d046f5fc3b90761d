"""fedchain.records against the real chaincode: every query's JSON parses and gives back the same bytes;
malformed fields are refused by name; round ids have one strict parser."""

from __future__ import annotations

import json

import pytest
from cc_support import NEW_MODEL, REFERENCE, SPEC, b64, finalized_world, h, inference_world, make_world
from fedchain.fl_client import FLClient
from fedchain.records import (
    FAILED,
    FINALIZED,
    GENESIS_ROUND_ID,
    MAX_ROUND_ID,
    OPEN,
    TERMINAL_STATES,
    Attestation,
    Consortium,
    HistoryEntry,
    ModelRecord,
    Participant,
    RecordError,
    ReferenceRecord,
    Round,
    Update,
    ValidationBatchRecord,
    parse_round_id,
)
from hypothesis import given
from hypothesis import strategies as st


def dumps(value) -> bytes:
    """The chaincode's payload encoding (canonical JSON, UTF-8): what every query returns."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class WorldContract:
    """A gateway-like contract over the chaincode test world, keeping every query's raw payload."""

    def __init__(self, world, who) -> None:
        self.world, self.who = world, who
        self.payloads: list[tuple[str, bytes]] = []

    def evaluate(self, fn: str, *args: str) -> bytes:
        resp, _ = self.world.call(self.who, fn, *args)
        assert resp.status == 200, resp.message
        self.payloads.append((fn, resp.payload))
        return resp.payload

    def submit(self, fn: str, *args: str, transient=None):  # pragma: no cover - queries only here
        raise AssertionError("queries only")


def _ledger_with_every_kind_of_record():
    """Round 1 FINALIZED with its model published, round 2 FAILED (too few accepted), round 3 OPEN with the
    inference check; history on all of them."""
    w = finalized_world()
    w.ok(w.mpc[0], "PublishModel", "1", b64(NEW_MODEL))
    w.ok(w.mpc[2], "AttestResult", w.attestation(1, NEW_MODEL, sorted(w.hospitals)))  # a late node
    base = w.ok(w.operator, "GetConsortium")["head"]["model_hash"]
    w.ok(w.operator, "CreateRound", {"round_id": 2, "base_model_hash": base, "model_spec": SPEC,
                                     "hyperparameters": {"reference_sha256": h("r"), "seed": 4},
                                     "policy": {"min_accepted": 2, "cosine_enabled": False},
                                     "deadline": w.ledger.now + 60, "min_updates": 1})
    w.ok(w.hospitals["hospital1"], "SubmitUpdate", w.update(2, "hospital1"))
    w.ok(w.operator, "CloseRound", "2")
    too_few = {"round_id": 2, "model_hash": base, "accepted": ["hospital1"], "rejected": {},
               "report_hash": h("r2"), "outcome": "too_few_accepted"}
    w.ok(w.mpc[0], "AttestResult", too_few)
    w.ok(w.mpc[1], "AttestResult", too_few)
    return w


def _client(w):
    contract = WorldContract(w, w.auditor)
    return FLClient(contract), contract


def _same_bytes(record, payload: bytes) -> None:
    assert dumps(record.to_json()) == payload


def test_every_query_round_trips_byte_for_byte():
    w = _ledger_with_every_kind_of_record()
    fl, contract = _client(w)
    cons = fl.get_consortium()
    rounds = fl.list_rounds()
    participants = fl.list_participants()
    checks = [(cons, "GetConsortium")]
    checks += [(fl.get_round(r), "GetRound") for r in (0, 1, "2")]
    checks += [(fl.get_participant("hospital1"), "GetParticipant")]
    checks += [(fl.get_model(r), "GetModel") for r in (0, 1)]  # round 2 FAILED: no model
    for record, fn in checks:
        raw = next(p for f, p in reversed(contract.payloads) if f == fn and json.loads(p) == record.to_json())
        _same_bytes(record, raw)
    list_payload = {f: p for f, p in contract.payloads}
    assert dumps([r.to_json() for r in rounds]) == list_payload["ListRounds"]
    assert dumps([p.to_json() for p in participants]) == list_payload["ListParticipants"]
    updates = fl.get_updates(1)
    assert dumps([u.to_json() for u in updates]) == contract.payloads[-1][1]
    for kind, ident, cls in [("round", 1, Round), ("update", "1/hospital1", Update),
                             ("attestation", "1/mpc2", Attestation), ("participant", "hospital2", Participant),
                             ("consortium", "", Consortium), ("model", 1, ModelRecord)]:
        history = fl.get_history(kind, ident)
        assert dumps([e.to_json() for e in history]) == contract.payloads[-1][1]
        assert all(isinstance(e, HistoryEntry) for e in history)
        if cls is not ModelRecord:  # model~ stores metadata only (the bytes are in chunks)
            for entry in history:
                parsed = entry.record(cls)
                assert parsed is not None and parsed.to_json() == entry.value


def test_typed_fields_of_real_records():
    w = _ledger_with_every_kind_of_record()
    fl, _ = _client(w)
    cons = fl.get_consortium()
    assert [n.id for n in cons.mpc_nodes] == ["mpc0", "mpc1", "mpc2"] and cons.mpc_nodes[2].node_index == 2
    assert (cons.threshold, cons.quorum, cons.min_accepted, cons.min_accepted_floor) == (1, 2, 1, 1)
    assert cons.head is not None and cons.head == fl.head()
    assert fl.head().last_round_id == 2 and fl.head().finalized_round_id == 1
    assert fl.head().model_hash == h_bytes(NEW_MODEL) and fl.head().param_count == SPEC["param_count"]
    assert cons.default_policy.get("norm_bound") == 10.0 and cons.default_policy.min_accepted is None

    genesis, r1, r2 = fl.list_rounds()
    assert genesis.genesis and genesis.round_id == GENESIS_ROUND_ID and genesis.state == FINALIZED
    assert genesis.base_model_hash is None and genesis.deadline is None and genesis.hyper.to_json() == {}
    assert genesis.finalized is not None and genesis.finalized.report_hash is None
    assert genesis.finalized.outcome == "ok" and genesis.over
    assert r1.model_spec.param_count == SPEC["param_count"] and r1.model_spec.arch == SPEC["arch"]
    assert r1.model_spec.fields == {k: v for k, v in SPEC.items() if k != "param_count"}
    assert r1.hyper.reference_sha256 == h_bytes(REFERENCE) and r1.hyper.validation_sha256 is None
    assert r1.hyper.get("lr") == 0.01 and r1.base_round_id == 0 and r1.min_updates == 2
    assert r1.submitted == ("hospital1", "hospital2", "hospital3") and r1.dissent == ()
    assert r1.finalized is not None and r1.result == r1.finalized and r1.finalized.model_hash == h_bytes(NEW_MODEL)
    assert set(r1.attestations) == {"mpc0", "mpc1", "mpc2"} and r1.attestations["mpc2"].outcome == "ok"
    assert r1.mpc is not None and r1.mpc.nodes == ("mpc0", "mpc1", "mpc2") and r1.mpc.quorum == 2
    assert r1.policy.min_accepted == 1 == r1.min_accepted and r1.policy.cosine_enabled
    assert r2.state == FAILED and r2.failure_reason == "too_few_accepted" and r2.over
    assert r2.agreed is not None and r2.result == r2.agreed and r2.agreed.outcome == "too_few_accepted"
    assert r2.hyper.seed == 4 and not r2.policy.cosine_enabled and r2.min_accepted == 2
    assert r2.stamp is not None and r2.stamp.function == "AttestResult" and r2.stamp.participant == "mpc1"

    upd = fl.get_updates(1)[0]
    assert upd.round_id == 1 and upd.hospital == "hospital1" and upd.dim == SPEC["param_count"]
    assert len(upd.share_hashes) == 3 and upd.n_samples == 100
    model = fl.get_model(1)
    assert model.round_id == 1 and model.model == NEW_MODEL and model.size == len(NEW_MODEL)
    hosp = fl.get_participant("hospital1")
    assert hosp.role == "hospital" and hosp.sample_cap == 1000 and hosp.node_index is None
    node = next(p for p in fl.list_participants("mpc_node") if p.id == "mpc1")
    assert node.node_index == 1 and node.sample_cap is None
    att = fl.get_history("attestation", "1/mpc2")[0].record(Attestation)
    assert att is not None and att.node == "mpc2" and att.node_index == 2 and att.outcome == "ok"


def test_published_inputs_round_trip_and_carry_their_bytes():
    w = inference_world(publish=True)
    fl, contract = _client(w)
    ref = ReferenceRecord.from_json(json.loads(contract.evaluate("GetReference", "1")))
    _same_bytes(ref, contract.payloads[-1][1])
    assert ref.data == REFERENCE == fl.get_reference(1) and ref.size == len(REFERENCE) and ref.batch is None
    batch = ValidationBatchRecord.from_json(json.loads(contract.evaluate("GetValidationBatch", "1")))
    _same_bytes(batch, contract.payloads[-1][1])
    assert batch.data == fl.get_validation_batch(1) and batch.batch == 8 and batch.sha256 == h_bytes(batch.data)
    with pytest.raises(RecordError, match="field 'validation_b64' is missing"):
        ValidationBatchRecord.from_json(ref.to_json())


def test_inference_round_policy_and_validation_declaration():
    w = inference_world(publish=True)
    fl, _ = _client(w)
    rnd = fl.get_round(1)
    assert rnd.state == OPEN and not rnd.over and rnd.policy.inference_enabled and rnd.policy.inference_batch == 8
    assert rnd.hyper.validation_sha256 is not None and fl.get_validation_batch(1)
    assert rnd.submitted is None and rnd.closed_at is None and rnd.finalized is None and rnd.result is None


def h_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _a_round() -> dict:
    w = make_world()
    w.create_round(1)
    return w.ok(w.operator, "GetRound", "1")


def test_extra_fields_are_kept_and_given_back():
    raw = _a_round()
    raw["reviewed_by"] = {"who": "later chaincode", "n": [1, 2]}
    raw["model_spec"]["quantized"] = True
    rnd = Round.from_json(raw)
    assert dict(rnd.extra) == {"reviewed_by": {"who": "later chaincode", "n": (1, 2)}}
    assert rnd.to_json() == raw and dumps(rnd.to_json()) == dumps(raw)
    assert rnd.model_spec.to_json()["quantized"] is True


def test_records_are_immutable_and_to_json_is_a_copy():
    raw = _a_round()
    rnd = Round.from_json(raw)
    raw["state"] = "CLOSED"
    raw["hyperparameters"]["reference_sha256"] = "x"
    assert rnd.state == OPEN and rnd.to_json()["state"] == OPEN
    out = rnd.to_json()
    out["model_spec"]["param_count"] = 1
    assert rnd.to_json()["model_spec"]["param_count"] == SPEC["param_count"]
    with pytest.raises(AttributeError):
        rnd.state = "CLOSED"  # type: ignore[misc]


@pytest.mark.parametrize("path, value, message", [
    (("round_id",), "1", "round: field 'round_id' must be an integer round id, got string '1'"),
    (("state",), "PENDING", "field 'state' must be one of OPEN, CLOSED, FINALIZED, FAILED, DISPUTED"),
    (("deadline",), None, "field 'deadline' must be a finite number, got null"),
    (("model_spec", "param_count"), "7", "model_spec: field 'param_count' must be an integer"),
    (("policy", "inference_enabled"), "yes", "policy: field 'inference_enabled' must be true or false"),
    (("policy", "min_accepted"), 2.5, "policy: field 'min_accepted' must be an integer"),
    (("mpc", "nodes"), "mpc0", "mpc: field 'nodes' must be an array of strings"),
    (("submitted",), [1], "field 'submitted' must be an array of strings or null"),
    (("base_round_id",), -1, "field 'base_round_id' must be in [0, 1000000000000], got -1"),
])
def test_malformed_round_fields_are_named(path, value, message):
    raw = _a_round()
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(RecordError) as err:
        Round.from_json(raw)
    assert message in str(err.value), str(err.value)


@pytest.mark.parametrize("key, value, message", [
    ("reference_sha256", 5, "hyperparameters: field 'reference_sha256' must be a string"),
    ("seed", "3", "hyperparameters: field 'seed' must be an integer"),
])
def test_mistyped_hyperparameter_fails_when_read_not_when_listed(key, value, message):
    """The chaincode stores hyperparameters unchecked: one hand-made round with a mistyped key must not make
    the round (and so every round listing) unreadable; reading that key names it."""
    raw = _a_round()
    raw["hyperparameters"][key] = value
    rnd = Round.from_json(raw)
    assert rnd.to_json() == raw
    with pytest.raises(RecordError) as err:
        getattr(rnd.hyper, key)
    assert message in str(err.value), str(err.value)


def test_missing_and_wrong_shapes():
    raw = _a_round()
    del raw["min_updates"]
    with pytest.raises(RecordError, match="round 1: field 'min_updates' is missing"):
        Round.from_json(raw)
    with pytest.raises(RecordError, match="round must be a JSON object, got array"):
        Round.from_json([])
    with pytest.raises(RecordError, match=r"update: field 'share_hashes' must be an array of strings"):
        Update.from_json({"round_id": 1, "hospital": "h", "msp_id": "M", "share_hashes": "ab", "n_samples": 1,
                          "dim": 1})
    with pytest.raises(RecordError, match=r"consortium.mpc_nodes\[0\]: field 'node_index' is missing"):
        Consortium.from_json({"name": "x", "mpc_nodes": [{"id": "a", "msp_id": "M", "identity": "x509::a::b"}],
                              "threshold": 1, "quorum": 2, "max_model_bytes": 10})
    with pytest.raises(RecordError, match="model: field 'model_b64' is not valid base64"):
        ModelRecord.from_json({"round_id": 0, "sha256": "0" * 64, "size": 1, "model_spec": {"param_count": 1},
                               "model_b64": "not base64!"})


def test_a_consortium_default_policy_is_read_as_the_chaincode_checked_it():
    """InitConsortium checks only default_policy.min_accepted: a mistyped inference key (which every CreateRound
    without its own policy refuses) leaves GetConsortium readable; a round's policy was checked, so it is strict."""
    w = make_world()
    cons = w.ok(w.operator, "GetConsortium")
    cons["default_policy"] = {"inference_enabled": "yes", "inference_batch": 0, "min_accepted": 2}
    parsed = Consortium.from_json(cons)
    assert (parsed.default_policy.inference_enabled, parsed.default_policy.inference_batch) == (False, 32)
    assert parsed.default_policy.min_accepted == 2 and parsed.to_json() == cons
    cons["default_policy"]["min_accepted"] = "2"
    with pytest.raises(RecordError, match=r"consortium.default_policy: field 'min_accepted' must be an integer"):
        Consortium.from_json(cons)


@pytest.mark.parametrize("value, want", [(1, 1), ("1", 1), ("42", 42), (MAX_ROUND_ID, MAX_ROUND_ID),
                                         (str(MAX_ROUND_ID), MAX_ROUND_ID), ("007", 7)])
def test_parse_round_id_accepts(value, want):
    got = parse_round_id(value)
    assert got == want and type(got) is int


@pytest.mark.parametrize("value, message", [
    (0, "must be in [1, 1000000000000], got 0"), ("0", "must be in [1, 1000000000000], got 0"),
    (MAX_ROUND_ID + 1, "got 1000000000001"), (-3, "got -3"), ("-3", "must be a decimal integer, got '-3'"),
    (" 3", "decimal integer"), ("3\n", "decimal integer"), ("", "decimal integer"), ("1e3", "decimal integer"),
    ("+3", "decimal integer"), ("١٢", "decimal integer"), ("12345678901234", "decimal integer"),
    (True, "got a boolean"), (3.0, "got float"), (None, "got NoneType"),
])
def test_parse_round_id_refuses(value, message):
    with pytest.raises(RecordError) as err:
        parse_round_id(value)
    assert message in str(err.value)


def test_parse_round_id_genesis_and_numpy():
    import numpy as np

    assert parse_round_id(0, genesis_ok=True) == GENESIS_ROUND_ID == parse_round_id("0", genesis_ok=True)
    assert parse_round_id(np.int64(5)) == 5 and type(parse_round_id(np.int64(5))) is int
    with pytest.raises(RecordError, match="--round must be in"):
        parse_round_id(0, what="--round")


@given(st.integers(min_value=-(10**13), max_value=10**13 + 5))
def test_parse_round_id_int_and_its_decimal_agree(n):
    """An int and its decimal string are the same round id, and both are refused outside [1, 10**12]."""
    inside = 1 <= n <= MAX_ROUND_ID
    for value in (n, str(n)):
        if inside:
            assert parse_round_id(value) == n
        else:
            with pytest.raises(RecordError):
                parse_round_id(value)


def test_terminal_states_are_one_definition():
    import fedchain.fl_client as fl_client

    assert not hasattr(fl_client, "TERMINAL_STATES"), "round states are defined once, in fedchain.records"
    assert TERMINAL_STATES == ("FINALIZED", "FAILED", "DISPUTED")  # the chaincode's terminal round states
