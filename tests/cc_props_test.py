"""Property-based tests: malformed, missing, oversize and wrong-type arguments always give a clear
error (status 400-409, "<Function>: ..." message, never an internal error) and never change state.

Each function starts from a call that WOULD succeed on a prepared ledger; hypothesis then breaks
exactly one thing about it (drops a field, swaps in a wrong-typed / out-of-range / oversize
value, adds an unknown field, garbles the JSON or the argument count).
"""

from __future__ import annotations

import json
import re
import string

import fedchain_cc.fl.blobs as blobs_mod
import fedchain_cc.fl.validate as validate_mod
from cc_support import (
    GENESIS,
    NEW_MODEL,
    SPEC,
    T0,
    World,
    b64,
    closed_world,
    finalized_world,
    init_config,
    make_identity,
    make_world,
    open_world,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_worlds: dict[str, World] = {}


def world(stage: str) -> World:
    if stage not in _worlds:
        _worlds[stage] = {"fresh": lambda: make_world(init=False), "nogenesis": lambda: make_world(genesis=False),
                          "genesis": make_world, "open": open_world, "closed": closed_world,
                          "finalized": finalized_world}[stage]()
    return _worlds[stage]


# --- wrong values by expected type --------------------------------------------------------
_scalar_junk = st.one_of(st.none(), st.booleans(), st.text(max_size=8),
                         st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not float(x).is_integer()),
                         st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                              max_size=2))
WRONG = {
    "int": st.one_of(_scalar_junk, st.integers(max_value=0), st.integers(min_value=10**13)),
    "hex": st.one_of(_scalar_junk.filter(lambda x: not isinstance(x, str)),
                     st.text(max_size=70).filter(lambda s: not re.fullmatch(r"[0-9a-f]{64}", s)),
                     st.just("A" * 64), st.just("0" * 63)),
    "id": st.one_of(_scalar_junk.filter(lambda x: not isinstance(x, str)), st.just(""), st.just("a" * 65),
                    st.text(min_size=1, max_size=10).filter(lambda s: not re.fullmatch(r"[A-Za-z0-9_.-]+", s))),
    "obj": st.one_of(st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                     st.just({"deep": {"deeper": {"deepest": 1}}}), st.just({"bad key": 1}),
                     st.just({"k": "x" * 9000})),
    "list": st.one_of(st.booleans(), st.integers(), st.text(max_size=5), st.dictionaries(st.text(max_size=3),
                                                                                           st.integers(), max_size=2),
                      st.lists(st.integers(), min_size=1, max_size=3)),
    "identity": st.one_of(_scalar_junk.filter(lambda x: not isinstance(x, str) or not x.startswith("x509::")),
                          st.just("x509::only-one-part"), st.just("x509::" + "a" * 3000 + "::b")),
    "role": st.one_of(_scalar_junk, st.text(max_size=12).filter(
        lambda s: s not in ("hospital", "operator", "auditor"))),
    "rejected": st.one_of(st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                          st.just({"hospital1": 5}), st.just({"bad id": "norm"}), st.just({"hospital1": "Norm"})),
    "number": st.one_of(st.none(), st.booleans(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                        st.floats(max_value=-0.001), st.floats(min_value=1e12, allow_infinity=False)),
}
OVERSIZE = "x" * (65 * 1024)


def newcomer_id() -> str:
    return make_identity("newcomer", "hospital", "Org3MSP").id


_NEWCOMER = newcomer_id()

# function -> (stage, caller attribute, valid JSON template, {field: kind}, required fields)
CASES = {
    "InitConsortium": ("fresh", "operator", lambda w: init_config(w.mpc),
                       {"mpc_nodes": "list", "threshold": "int", "quorum": "int", "max_model_bytes": "int",
                        "default_policy": "obj", "operator_id": "id"}, {"mpc_nodes", "threshold", "quorum"}),
    "RegisterParticipant": ("genesis", "operator",
                            lambda w: {"id": "newcomer", "role": "hospital", "msp_id": "Org3MSP",
                                       "identity": _NEWCOMER, "sample_cap": 10},
                            {"id": "id", "role": "role", "msp_id": "id", "identity": "identity", "sample_cap": "int"},
                            {"id", "role", "msp_id", "identity", "sample_cap"}),
    "CreateRound": ("genesis", "operator",
                    lambda w: {"round_id": 1, "base_model_hash": h_bytes(GENESIS), "model_spec": SPEC,
                               "hyperparameters": {"lr": 0.1}, "policy": {"norm_bound": 1.0},
                               "deadline": T0 + 100, "min_updates": 1},
                    {"round_id": "int", "base_model_hash": "hex", "model_spec": "obj", "hyperparameters": "obj",
                     "policy": "obj", "deadline": "number", "min_updates": "int"},
                    {"round_id", "base_model_hash", "model_spec", "deadline", "min_updates"}),
    "SubmitUpdate": ("open", "hospital", lambda w: w.update(1, "hospital1"),
                     {"round_id": "int", "share_hashes": "list", "n_samples": "int", "dim": "int"},
                     {"round_id", "share_hashes", "n_samples", "dim"}),
    "AttestResult": ("closed", "mpc", lambda w: w.attestation(1, NEW_MODEL, sorted(w.hospitals)),
                     {"round_id": "int", "model_hash": "hex", "accepted": "list", "rejected": "rejected",
                      "report_hash": "hex"}, {"round_id", "model_hash", "accepted", "report_hash"}),
}


def h_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def who(w: World, name: str):
    return {"operator": w.operator, "hospital": w.hospitals["hospital1"], "mpc": w.mpc[0],
            "auditor": w.auditor}[name]


def assert_clean_refusal(w: World, caller, fn: str, *args: str) -> str:
    before = w.ledger.snapshot()
    n_events = len(w.ledger.events)
    resp, code = w.ledger.invoke(caller, fn, *args)
    assert 400 <= resp.status < 500, f"{fn}{args!r:.200}: status {resp.status} {resp.message}"
    assert resp.message.startswith(f"{fn}: ") and len(resp.message) > len(fn) + 5, resp.message
    assert "Traceback" not in resp.message
    assert code is None
    assert w.ledger.snapshot() == before and len(w.ledger.events) == n_events
    return resp.message


def _mutations(fn: str):
    stage, caller_name, template, kinds, required = CASES[fn]

    @st.composite
    def strat(draw):
        w = world(stage)
        base = template(w)
        choice = draw(st.sampled_from(["drop", "wrong", "extra", "oversize", "garble", "argc", "notobj"]))
        if choice == "drop":
            field = draw(st.sampled_from(sorted(required)))
            return [json.dumps({k: v for k, v in base.items() if k != field})]
        if choice == "wrong":
            field = draw(st.sampled_from(sorted(kinds)))
            value = draw(WRONG[kinds[field]])
            if value is None and field not in required:
                value = "not valid!"  # null means "absent" for optional fields; this is wrong for every kind
            return [json.dumps({**base, field: value})]
        if choice == "extra":
            name = draw(st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8).filter(
                lambda s: s not in kinds))
            return [json.dumps({**base, name: draw(st.integers())})]
        if choice == "oversize":
            field = draw(st.sampled_from(sorted(kinds)))
            return [json.dumps({**base, field: OVERSIZE})]
        if choice == "garble":
            text = json.dumps(base)
            cut = draw(st.integers(min_value=0, max_value=len(text) - 1))
            garbled = text[:cut] + draw(st.sampled_from(["", "}", "{", "NaN", "\x00", "\"", "]"]))
            try:  # a cut right after a complete member plus "}" is valid JSON: make it invalid
                json.loads(garbled)
                garbled = text[:cut] + "{"
            except ValueError:
                pass
            return [garbled]
        if choice == "argc":
            n = draw(st.sampled_from([0, 2, 3]))
            return [json.dumps(base)] * n
        return [json.dumps(draw(st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers()),
                                          st.none(), st.booleans())))]

    return stage, caller_name, strat()


def _prop_test(fn: str):
    stage, caller_name, strat = _mutations(fn)

    @SETTINGS
    @given(args=strat)
    def test(args):
        w = world(stage)
        assert_clean_refusal(w, who(w, caller_name), fn, *args)

    test.__name__ = f"test_malformed_{fn}"
    return test


test_malformed_InitConsortium = _prop_test("InitConsortium")
test_malformed_RegisterParticipant = _prop_test("RegisterParticipant")
test_malformed_CreateRound = _prop_test("CreateRound")
test_malformed_SubmitUpdate = _prop_test("SubmitUpdate")
test_malformed_AttestResult = _prop_test("AttestResult")


def test_templates_are_valid():
    """The mutated calls start from calls that succeed: otherwise the properties would prove nothing."""
    for fn, (stage, caller_name, template, _kinds, _req) in CASES.items():
        w = world(stage)
        sim = w.ledger.simulate(who(w, caller_name), fn, json.dumps(template(w)))
        assert sim.ok, f"{fn}: {sim.response.message}"


_bare_junk = st.one_of(st.text(max_size=20), st.just(""), st.just("-1"), st.just("1.5"), st.just("99999999999999"),
                       st.just(" 1"), st.just("0x1"), st.just("\x00"), st.just(OVERSIZE[:70000]))


@SETTINGS
@given(arg=_bare_junk.filter(lambda s: not re.fullmatch(r"[0-9]{1,13}", s) or int(s) > 10**12))
def test_bare_round_ids(arg):
    w = world("finalized")
    for fn in ("CloseRound", "GetRound", "GetUpdates", "GetModel"):
        assert_clean_refusal(w, w.operator, fn, arg)


@SETTINGS
@given(arg=_bare_junk.filter(lambda s: not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", s)))
def test_bare_participant_ids(arg):
    w = world("finalized")
    assert_clean_refusal(w, w.auditor, "GetParticipant", arg)
    assert_clean_refusal(w, w.auditor, "GetHistory", "participant", arg)
    assert_clean_refusal(w, w.auditor, "GetHistory", "update", f"1/{arg}")


@SETTINGS
@given(model=st.one_of(st.text(max_size=40).filter(lambda s: not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", s)),
                       st.just(""), st.just("AAA"), st.just(" " + b64(NEW_MODEL)), st.just(b64(NEW_MODEL) + "\n"),
                       st.binary(min_size=1, max_size=64).map(b64)),
       round_arg=st.sampled_from(["1", "x", "", "2"]))
def test_publish_model_garbage(model, round_arg):
    w = world("finalized")
    if round_arg == "1" and model == b64(NEW_MODEL):
        return
    assert_clean_refusal(w, w.mpc[0], "PublishModel", round_arg, model)


@SETTINGS
@given(spec=st.one_of(st.just({}), st.just({"param_count": 0}), st.just({"param_count": "10"}),
                      st.just({"param_count": True}), st.just([1]), st.just({"param_count": 10, "x": [[1]]})),
       model=st.sampled_from([b64(GENESIS), "", "!!", "A" * (4 * 64 * 1024)]))
def test_genesis_garbage(spec, model):
    w = world("nogenesis")
    if isinstance(spec, dict) and spec.get("param_count") == 10 and "x" not in spec and model == b64(GENESIS):
        return
    assert_clean_refusal(w, w.operator, "PublishGenesisModel", json.dumps(spec), model)


def test_oversize_model_is_refused_before_decoding(monkeypatch):
    """10 MiB of base64 against a 64 KiB limit: refused by its length alone, the bytes are never decoded."""
    w = world("finalized")
    monkeypatch.setattr(blobs_mod, "CHUNK_SIZE", 8)

    def no_decoding(*_args, **_kwargs):
        raise AssertionError("an oversize model argument was decoded")

    monkeypatch.setattr(validate_mod.base64, "b64decode", no_decoding)  # a decode would answer 500, not 4xx
    message = assert_clean_refusal(w, w.mpc[0], "PublishModel", "1", "A" * (10 * 1024 * 1024))
    assert message == ("PublishModel: model_b64 decodes to more than the consortium's model size limit of "
                       f"{64 * 1024} bytes (raise max_model_bytes in InitConsortium, up to the hard cap, or "
                       "shrink the model)"), message
