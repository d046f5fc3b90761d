"""The full access-control matrix of the FL contract: every function x every role, allowed and refused.

Each row puts the ledger in a state where the call would succeed for an allowed caller, then
simulates it (no commit) as each of: operator, hospital, mpc_node, auditor, an unregistered
identity, and a registered identity whose certificate role differs from its registration.
Allowed callers must get 200; everyone else 403 with a message naming the problem.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from cc_support import (
    GENESIS,
    NEW_MODEL,
    REFERENCE,
    SPEC,
    World,
    b64,
    closed_world,
    finalized_world,
    h,
    inference_world,
    init_config,
    make_identity,
    make_world,
    open_world,
    validation_batch,
)

CALLERS = ("operator", "hospital", "mpc_node", "auditor", "unregistered", "mismatch")
MEMBERS = {"operator", "hospital", "mpc_node", "auditor"}

_worlds: dict[str, World] = {}


def world(stage: str) -> World:
    if stage not in _worlds:
        _worlds[stage] = {
            "fresh": lambda: make_world(init=False),
            "nogenesis": lambda: make_world(genesis=False),
            "genesis": make_world,
            "open": open_world,
            "declared": lambda: open_world(publish_reference=False),
            "closed": closed_world,
            "finalized": finalized_world,
            "val_declared": lambda: inference_world(publish=False),
            "val_published": lambda: inference_world(publish=True),
        }[stage]()
    return _worlds[stage]


def caller(w: World, role: str):
    return {
        "operator": w.operator, "hospital": w.hospitals["hospital1"], "mpc_node": w.mpc[2],
        "auditor": w.auditor, "unregistered": w.extra["unregistered"], "mismatch": w.extra["mismatch"],
    }[role]


_NEWCOMER = make_identity("newcomer", "hospital", "Org3MSP")
AFTER_DEADLINE = 1_700_000_000.0 + 7200

# function, stage, args(world), allowed callers, timestamp
ROWS: list[tuple[str, str, Callable[[World], list], set[str], float | None]] = [
    ("InitConsortium", "fresh", lambda w: [init_config(w.mpc)], {"operator"}, None),
    ("RegisterParticipant", "genesis", lambda w: [{"id": "newcomer", "role": "hospital", "msp_id": "Org3MSP",
                                                  "identity": _NEWCOMER.id, "sample_cap": 50}], {"operator"}, None),
    ("PublishGenesisModel", "nogenesis", lambda w: [SPEC, b64(GENESIS)], {"operator"}, None),
    ("CreateRound", "genesis", lambda w: [{
        "round_id": 1, "base_model_hash": h_bytes(GENESIS), "model_spec": SPEC, "deadline": AFTER_DEADLINE,
        "min_updates": 1}], {"operator"}, None),
    ("SubmitUpdate", "open", lambda w: [w.update(1, "x")], {"hospital"}, None),
    ("CloseRound", "open", lambda w: ["1"], {"operator"}, None),
    # after deadline + the default max_clock_skew_s (900 s): every registered member may close
    ("CloseRound", "open", lambda w: ["1"], MEMBERS, AFTER_DEADLINE + 900),
    ("AttestResult", "closed", lambda w: [w.attestation(1, NEW_MODEL, sorted(w.hospitals))], {"mpc_node"}, None),
    ("PublishModel", "finalized", lambda w: ["1", b64(NEW_MODEL)], {"mpc_node"}, None),
    ("GetConsortium", "finalized", lambda w: [], MEMBERS, None),
    ("GetParticipant", "finalized", lambda w: ["hospital2"], MEMBERS, None),
    ("ListParticipants", "finalized", lambda w: [], MEMBERS, None),
    ("GetRound", "finalized", lambda w: ["1"], MEMBERS, None),
    ("ListRounds", "finalized", lambda w: [], MEMBERS, None),
    ("GetUpdates", "finalized", lambda w: ["1"], MEMBERS, None),
    ("GetModel", "finalized", lambda w: ["0"], MEMBERS, None),
    ("GetHistory", "finalized", lambda w: ["round", "1"], MEMBERS, None),
    ("PublishReference", "declared", lambda w: ["1", b64(REFERENCE)], {"operator"}, None),
    ("GetReference", "finalized", lambda w: ["1"], MEMBERS, None),
    ("PublishValidationBatch", "val_declared", lambda w: ["1", b64(validation_batch())], {"operator"}, None),
    ("GetValidationBatch", "val_published", lambda w: ["1"], MEMBERS, None),
]


def h_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _label(row) -> str:
    return f"{row[0]}{'@after-deadline' if row[4] else ''}"


@pytest.mark.parametrize("role", CALLERS)
@pytest.mark.parametrize("row", ROWS, ids=[_label(r) for r in ROWS])
def test_access_matrix(row, role):
    fn, stage, make_args, allowed, ts = row
    w = world(stage)
    args = [a if isinstance(a, str) else json.dumps(a) for a in make_args(w)]
    before = w.ledger.snapshot()
    sim = w.ledger.simulate(caller(w, role), fn, *args, timestamp=ts)
    assert w.ledger.snapshot() == before
    if role in allowed:
        assert sim.response.status == 200, f"{fn} as {role}: {sim.response.message}"
        assert sim.writes or fn.startswith(("Get", "List")), "a write transaction wrote nothing"
    else:
        assert sim.response.status == 403, f"{fn} as {role}: {sim.response.status} {sim.response.message}"
        assert sim.response.message.startswith(f"{fn}: ")
        assert sim.writes == {} and sim.event is None
        if role == "mismatch" and stage != "fresh":
            assert "does not match the registered role" in sim.response.message
        if role == "unregistered" and stage != "fresh":
            assert "not a registered participant" in sim.response.message


def test_queries_write_nothing():
    for fn, stage, make_args, _allowed, _ts in ROWS:
        if fn.startswith(("Get", "List")):
            w = world(stage)
            sim = w.ledger.simulate(w.auditor, fn, *[a if isinstance(a, str) else json.dumps(a)
                                                     for a in make_args(w)])
            assert sim.ok and sim.writes == {} and sim.event is None, fn


def test_every_function_is_in_the_matrix():
    from fedchain_cc.fl import FLContract

    assert {r[0] for r in ROWS} == set(FLContract.transactions)


def test_mpc_nodes_cannot_be_registered_late_and_roles_are_closed():
    w = world("genesis")
    node = make_identity("mpc9", "mpc_node", "Org1MSP")
    msg = w.refused(w.operator, "RegisterParticipant", {"id": "mpc9", "role": "mpc_node", "msp_id": "Org1MSP",
                                                        "identity": node.id})
    assert "fixed by InitConsortium" in msg
    w.refused(w.operator, "RegisterParticipant", {"id": "x", "role": "admin", "msp_id": "Org1MSP",
                                                  "identity": node.id}, contains="role must be one of")
    w.refused(w.operator, "RegisterParticipant", {"id": "x\n", "role": "auditor", "msp_id": "Org1MSP",
                                                  "identity": node.id}, contains="[A-Za-z0-9_.-]{1,64}, got 'x\\n'")


def test_identity_binding_needs_matching_msp():
    """The same certificate presented under another MSP id is a different (unregistered) caller."""
    w = world("open")
    h1 = w.hospitals["hospital1"]
    from dataclasses import replace

    other_msp = replace(h1, msp_id="Org2MSP" if h1.msp_id != "Org2MSP" else "Org3MSP")
    sim = w.ledger.simulate(other_msp, "SubmitUpdate", json.dumps(w.update(1, "hospital1")))
    assert sim.response.status == 403 and "not a registered participant" in sim.response.message


def test_second_operator_registered_by_first_can_operate():
    w = make_world()
    op2 = make_identity("op2", "operator", "Org2MSP")
    w.ok(w.operator, "RegisterParticipant", {"id": "op2", "role": "operator", "msp_id": op2.msp_id,
                                             "identity": op2.id})
    w.ok(op2, "CreateRound", {"round_id": 5, "base_model_hash": h_bytes(GENESIS), "model_spec": SPEC,
                              "deadline": AFTER_DEADLINE, "min_updates": 1})
    rnd = w.ok(w.auditor, "GetRound", "5")
    assert rnd["last_tx_creator"] == {"msp_id": "Org2MSP", "participant": "op2"}
    assert h("x") != rnd["base_model_hash"]
