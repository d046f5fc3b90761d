"""Clients of a round that ends without a model: FLClient states, the demo operator and the demo's settle step.

The FL chaincode runs on the in-memory ledger (cc_support); the clients talk to it through a minimal
gateway-Contract adapter.
"""

from __future__ import annotations

from types import SimpleNamespace

from cc_support import GENESIS, NEW_MODEL, SPEC, World, b64, init_config, make_world
from fedchain.demo.operator import Operator
from fedchain.demo.rounds import Demo
from fedchain.fl_client import FLClient
from fedchain.records import TERMINAL_STATES


class Contract:
    """submit/evaluate of a gateway Contract on top of the MockLedger, as one identity."""

    def __init__(self, w: World, who) -> None:
        self.w, self.who = w, who

    def submit(self, fn, *args, transient=None):
        resp, code = self.w.call(self.who, fn, *args)
        assert resp.status == 200 and code == "VALID", resp.message
        return SimpleNamespace(result=resp.payload, validation_code_name=code)

    def evaluate(self, fn, *args):
        resp, _ = self.w.call(self.who, fn, *args)
        if resp.status != 200:
            raise RuntimeError(resp.message)
        return resp.payload


def world_with_closed_round() -> World:
    """Default privacy floor (3), four hospitals; round 1 CLOSED with every hospital's update."""
    w = make_world(4, init=False)
    cfg = {k: v for k, v in init_config(w.mpc).items() if k != "min_accepted"}
    w.ok(w.operator, "InitConsortium", cfg)
    for name, ident in w.hospitals.items():
        w.ok(w.operator, "RegisterParticipant", {"id": name, "role": "hospital", "msp_id": ident.msp_id,
                                                 "identity": ident.id, "sample_cap": 1000})
    w.ok(w.operator, "PublishGenesisModel", SPEC, b64(GENESIS))
    w.create_round(1, min_updates=1)
    for name, ident in w.hospitals.items():
        w.ok(ident, "SubmitUpdate", w.update(1, name))
    w.ok(w.operator, "CloseRound", "1")
    return w


def attest(w: World, outcome: str, accepted: list[str], model: bytes = GENESIS) -> None:
    att = {**w.attestation(1, model, accepted, {h: "norm" for h in w.hospitals if h not in accepted}),
           "outcome": outcome}
    for node in w.mpc[:2]:
        w.ok(node, "AttestResult", att)


def operator_for(w: World) -> Operator:
    op = Operator.__new__(Operator)  # no gateway: the FL client talks to the in-memory ledger
    op.fl = FLClient(Contract(w, w.operator))
    return op


def test_terminal_states_and_round_over():
    assert TERMINAL_STATES == ("FINALIZED", "FAILED", "DISPUTED")
    w = world_with_closed_round()
    fl = FLClient(Contract(w, w.operator))
    assert not fl.round_over(1)
    attest(w, "too_few_accepted", ["hospital1"])
    assert fl.round_over(1) and fl.get_round(1).state == "FAILED"


def test_wait_published_returns_no_model_for_a_failed_round():
    w = world_with_closed_round()
    attest(w, "too_few_accepted", ["hospital1", "hospital2"])
    rnd, model = operator_for(w).wait_published(1, timeout_s=1)
    assert model is None
    assert rnd.state == "FAILED" and rnd.failure_reason == "too_few_accepted"
    assert rnd.agreed is not None and rnd.agreed.accepted == ("hospital1", "hospital2")


def test_wait_published_still_returns_the_model_of_a_finalized_round():
    w = world_with_closed_round()
    attest(w, "ok", sorted(w.hospitals), NEW_MODEL)
    w.ok(w.mpc[0], "PublishModel", "1", b64(NEW_MODEL))
    rnd, model = operator_for(w).wait_published(1, timeout_s=1)
    assert rnd.state == "FINALIZED" and model is not None and model.model == NEW_MODEL


def test_wait_published_returns_no_model_for_an_out_of_range_aggregate():
    """The nodes agree the aggregate failed their sanity check: the round is over without a model,
    like a FAILED one (the demo goes on from the last finalized model and says why)."""
    w = world_with_closed_round()
    attest(w, "aggregate_out_of_range", sorted(w.hospitals))
    rnd, model = operator_for(w).wait_published(1, timeout_s=1)
    assert model is None and rnd.state == "DISPUTED" and rnd.dispute_reason == "aggregate_out_of_range"
    note = Demo._failed_note(rnd)
    assert "DISPUTED (aggregate_out_of_range)" in note and "\n" not in note


def _demo(w: World, lines: list[str], before_wait=None) -> Demo:
    demo = Demo.__new__(Demo)
    demo.operator = operator_for(w)
    if before_wait is not None:
        real = demo.operator.wait_published

        def wait(rid, timeout_s):
            before_wait()
            return real(rid, timeout_s)

        demo.operator.wait_published = wait
    demo.cfg = SimpleNamespace(round_timeout_s=1)
    demo.out = lines.append
    return demo


def test_settle_previous_round_treats_failed_as_over():
    w = world_with_closed_round()
    attest(w, "too_few_accepted", [])
    lines: list[str] = []
    _demo(w, lines).settle_previous_round()
    assert lines == []  # a FAILED round is over: nothing to settle


def test_settle_previous_round_waits_for_a_round_that_then_fails():
    w = world_with_closed_round()
    lines: list[str] = []
    _demo(w, lines, before_wait=lambda: attest(w, "too_few_accepted", ["hospital3"])).settle_previous_round()
    assert lines[0].startswith("round 1 was left CLOSED")
    assert lines[1] == ("warning: round 1 FAILED (too_few_accepted): 1 update(s) accepted, the privacy floor is 3; "
                        "no new model, the next round builds on round 0's model")
    # the next round can be created on the last finalized model (genesis)
    assert FLClient(Contract(w, w.operator)).head().finalized_round_id == 0
    w.create_round(2)
