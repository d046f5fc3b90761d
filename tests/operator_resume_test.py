"""The operator's round driver resumes from the ledger: its next action for every ledger state, and a
campaign killed at every ledger write (before or after the write commits) that a fresh driver finishes
with exactly rounds 1..N, each created once and with its reference published.

The FL chaincode runs on the in-memory ledger (cc_support); two MPC nodes are simulated by the
ledger adapter: when a round closes they attest a new model (base + 0.01) and one publishes it.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from cc_support import World, b64, make_world
from fedchain.campaign.driver import CampaignError, DriverSettings, RoundDriver
from fedchain.campaign.ledger import OperatorLedger
from fedchain.campaign.plan import (
    AWAIT,
    COLLECT,
    CREATE,
    DONE,
    GENESIS,
    PUBLISH_REFERENCE,
    STUCK,
    LedgerView,
    next_action,
    read_view,
)
from fedchain.campaign.recipe import RoundMaker, RoundRecipe
from fedchain.canonical import sha256_hex
from fedchain.fl_client import FLClient
from fedchain.models import ModelSpec, build_model, flatten, load_model_bytes, to_safetensors_bytes, unflatten
from fedchain.records import Round
from fedchain.training import TrainConfig

SPEC = ModelSpec(in_channels=1, n_classes=2, widths=(2,), hidden=0)  # 806 parameters: fast references
ROUNDS = 2


# ------------------------------------------------------------------ next action per ledger state
@pytest.mark.parametrize(("view", "kind", "rid"), [
    (LedgerView(has_model=False), GENESIS, 0),
    (LedgerView(has_model=True), CREATE, 1),
    (LedgerView(True, 1, "OPEN", reference_declared=True, reference_published=False), PUBLISH_REFERENCE, 1),
    (LedgerView(True, 1, "OPEN", reference_declared=True, reference_published=True), COLLECT, 1),
    (LedgerView(True, 1, "OPEN", reference_declared=False, cosine_enabled=False), COLLECT, 1),
    (LedgerView(True, 1, "OPEN", reference_declared=False, cosine_enabled=True), STUCK, 1),
    (LedgerView(True, 1, "CLOSED", reference_declared=True, reference_published=True, submitted=3), AWAIT, 1),
    (LedgerView(True, 1, "CLOSED", reference_declared=True, reference_published=False, submitted=0),
     PUBLISH_REFERENCE, 1),
    (LedgerView(True, 1, "CLOSED", reference_declared=True, reference_published=False, submitted=2),
     PUBLISH_REFERENCE, 1),
    (LedgerView(True, 1, "CLOSED", reference_declared=False, cosine_enabled=True, submitted=2), AWAIT, 1),
    (LedgerView(True, 1, "CLOSED", reference_declared=True, cosine_enabled=False, submitted=2), AWAIT, 1),
    (LedgerView(True, 1, "FINALIZED"), CREATE, 2),
    (LedgerView(True, 1, "FAILED"), CREATE, 2),
    (LedgerView(True, 1, "DISPUTED"), CREATE, 2),
    (LedgerView(True, 2, "FINALIZED"), DONE, 2),
    (LedgerView(True, 2, "OPEN", reference_declared=True, reference_published=True), COLLECT, 2),
    (LedgerView(True, 3, "OPEN", reference_declared=True), DONE, 3),  # beyond the campaign: left alone
])
def test_next_action_for_each_ledger_state(view, kind, rid):
    action = next_action(view, last_round=2)
    assert (action.kind, action.round_id) == (kind, rid)
    if kind == STUCK:
        assert action.reason and "\n" not in action.reason


# ------------------------------------------------------------------ a ledger with simulated MPC nodes
class Killed(BaseException):
    """The operator process dies (kill -9): nothing of it runs any more."""


class Ledger:
    """submit/evaluate of a gateway Contract on the in-memory ledger, as one identity. Closing a round makes
    two MPC nodes attest base + 0.01 and publish it. `kill_at` = (n, when): the n-th submit of this client
    dies 'before' it reaches the ledger or 'after' it committed (the reply is lost)."""

    def __init__(self, w: World, who, kill_at: tuple[int, str] | None = None, reference_published=None) -> None:
        self.w, self.who, self.kill_at, self.submits = w, who, kill_at, 0

    def submit(self, fn, *args, transient=None):
        self.submits += 1
        if self.kill_at == (self.submits, "before"):
            raise Killed(fn)
        resp, code = self.w.call(self.who, fn, *args)
        if resp.status != 200:
            raise RuntimeError(f"{fn}: chaincode response {resp.status}, {resp.message}")
        if fn == "CloseRound" or (fn == "PublishReference" and self.w.ok(self.w.operator, "GetRound",
                                                                          str(args[0]))["state"] == "CLOSED"):
            mpc_nodes_finish(self.w, int(args[0]))  # (the nodes of a CLOSED round wait for its reference)
        if self.kill_at == (self.submits, "after"):
            raise Killed(fn)
        return SimpleNamespace(result=resp.payload, validation_code_name=code, tx_id="t", block_number=0)

    def evaluate(self, fn, *args):
        resp, _ = self.w.call(self.who, fn, *args)
        if resp.status != 200:
            raise RuntimeError(f"{fn}: chaincode response {resp.status}, {resp.message}")
        return resp.payload


def mpc_nodes_finish(w: World, rid: int) -> None:
    rnd = w.ok(w.operator, "GetRound", str(rid))
    base = w.ok(w.operator, "GetModel", str(rnd["base_round_id"]))
    import base64

    if not rnd["submitted"]:  # nothing to aggregate: the round FAILS on the base model
        att = {**w.attestation(rid, base64.b64decode(base["model_b64"]), []), "outcome": "too_few_accepted"}
        for node in w.mpc[:2]:
            w.ok(node, "AttestResult", att)
        return
    model = load_model_bytes(base64.b64decode(base["model_b64"]), SPEC)
    new = to_safetensors_bytes(unflatten(model, flatten(model) + 0.01))
    att = w.attestation(rid, new, sorted(rnd["submitted"]))
    for node in w.mpc[:2]:
        w.ok(node, "AttestResult", att)
    w.ok(w.mpc[0], "PublishModel", str(rid), b64(new))


def hospitals_submit(w: World) -> None:
    """What the hospitals do while the operator waits: every registered hospital updates the OPEN round."""
    head = w.ok(w.operator, "GetConsortium")["head"]
    rid = head["last_round_id"]
    rnd = w.ok(w.operator, "GetRound", str(rid))
    if rnd["state"] != "OPEN":
        return
    have = {u["hospital"] for u in w.ok(w.operator, "GetUpdates", str(rid))}
    for name, ident in w.hospitals.items():
        if name not in have:
            w.ok(ident, "SubmitUpdate", {**w.update(rid, name), "dim": 806})


def fresh_world() -> World:
    return make_world(3, genesis=False)  # consortium and hospitals, no model yet


def root_pool() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(16, 28, 28), dtype=np.uint8), np.repeat(np.arange(2), 8)


def driver(w: World, kill_at=None, **kw) -> RoundDriver:
    op = OperatorLedger.over(FLClient(Ledger(w, w.operator, kill_at)))
    maker = RoundMaker(RoundRecipe(train=TrainConfig(steps=2, batch_size=4)), SPEC, root_pool(), 8)
    settings = DriverSettings(deadline_s=3600, close_after=3, min_updates=1, round_timeout_s=1, poll_s=0.01)
    return RoundDriver(op, maker, settings, genesis=lambda: to_safetensors_bytes(build_model(SPEC, seed=0)),
                       sleep=lambda _s: hospitals_submit(w), **kw)


def check_campaign(w: World) -> None:
    """Exactly rounds 1..ROUNDS, each FINALIZED, created once, its reference published and as declared."""
    rounds = json.loads(Ledger(w, w.auditor).evaluate("ListRounds"))
    assert [r["round_id"] for r in rounds] == [0, *range(1, ROUNDS + 1)]
    fl = FLClient(Ledger(w, w.auditor))
    for rid in range(1, ROUNDS + 1):
        rnd = fl.get_round(rid)
        assert rnd.state == "FINALIZED"
        creates = [e for e in fl.get_history("round", rid) if e.function == "CreateRound"]
        assert len(creates) == 1
        assert sha256_hex(fl.get_reference(rid)) == rnd.hyper.reference_sha256
    assert len(fl.get_history("model", 0)) == 1  # one genesis


def test_campaign_runs_every_round_from_an_empty_ledger():
    w = fresh_world()
    seen = []
    results = driver(w, on_result=seen.append).run(ROUNDS)
    assert [r.round_id for r in results] == [1, 2] == [r.round_id for r in seen]
    assert all(r.new_model and r.accepted == sorted(w.hospitals) and r.submitted == sorted(w.hospitals)
               for r in results)
    check_campaign(w)
    assert driver(w).run(ROUNDS) == []  # a restart after the end adds nothing


def _submits_of_a_campaign() -> int:
    w = fresh_world()
    d = driver(w)
    d.run(ROUNDS)
    return d.fl.contract.submits


@pytest.mark.parametrize("when", ["before", "after"])
def test_killed_at_any_write_a_restart_finishes_the_campaign_once(when):
    writes = _submits_of_a_campaign()  # genesis, then per round CreateRound, PublishReference, CloseRound
    assert writes == 1 + 3 * ROUNDS
    for n in range(1, writes + 1):
        w = fresh_world()
        with pytest.raises(Killed):
            driver(w, kill_at=(n, when)).run(ROUNDS)
        driver(w).run(ROUNDS)
        check_campaign(w)


def test_a_round_left_without_its_reference_gets_it_recomputed():
    """Killed between CreateRound and PublishReference: the view says so, and the restart publishes the
    same bytes the dead run computed (the round's recorded seeds and root digest)."""
    w = fresh_world()
    with pytest.raises(Killed):
        driver(w, kill_at=(3, "before")).run(ROUNDS)  # 1 genesis, 2 CreateRound 1, 3 PublishReference 1
    fl = FLClient(Ledger(w, w.operator))
    view = read_view(fl, OperatorLedger.over(fl).reference_published)
    assert view.state == "OPEN" and view.reference_declared and not view.reference_published
    assert next_action(view, ROUNDS).kind == PUBLISH_REFERENCE
    d = driver(w)
    d.do(next_action(view, ROUNDS))
    assert sha256_hex(fl.get_reference(1)) == fl.get_round(1).hyper.reference_sha256


def test_other_root_data_cannot_publish_a_reference_and_says_so():
    w = fresh_world()
    with pytest.raises(Killed):
        driver(w, kill_at=(3, "before")).run(ROUNDS)
    d = driver(w)
    x, y = root_pool()
    d.maker = RoundMaker(d.maker.recipe, SPEC, (255 - x, y), 8)  # another root file
    with pytest.raises(CampaignError, match=r"round 1 is OPEN without its reference.*root data does not hold"):
        d.run(ROUNDS)


def test_a_round_closed_before_its_reference_gets_it_from_the_restarted_operator():
    """The operator died between CreateRound and PublishReference; an MPC node closed the round at its
    deadline with updates. The contract takes the declared reference until a node attests, so the
    restarted operator publishes it and the campaign finishes (before issue 11's fix: wedged)."""
    w = fresh_world()
    with pytest.raises(Killed):
        driver(w, kill_at=(3, "before")).run(ROUNDS)
    hospitals_submit(w)
    w.ok(w.operator, "CloseRound", "1")  # e.g. an MPC node at the deadline; the nodes wait for the reference
    results = driver(w).run(ROUNDS)
    assert [r.round_id for r in results][-1] == ROUNDS
    assert w.ok(w.auditor, "GetReference", "1")["sha256"] == w.ok(w.auditor, "GetRound", "1")[
        "hyperparameters"]["reference_sha256"]
    assert w.ok(w.auditor, "GetRound", "1")["state"] == "FINALIZED"


def test_an_open_round_closes_at_its_deadline_with_what_arrived():
    w = fresh_world()
    now = [2_000_000_000.0]
    d = driver(w, clock=lambda: now[0])
    d.sleep = lambda s: now.__setitem__(0, now[0] + 4000)  # nobody submits; time runs past the deadline
    lines: list[str] = []
    d.progress = lines.append
    [res] = d.run(1)
    rnd = FLClient(Ledger(w, w.auditor)).get_round(1)
    assert rnd.state == res.state == "FAILED" and rnd.submitted == () and not res.new_model
    assert any("closed (deadline passed with 0 update(s))" in line for line in lines)


def test_a_round_closed_by_an_mpc_node_counts_as_closed():
    """CloseRound answers 409 'round is CLOSED' when a node closed it at its deadline: not an error."""
    w = fresh_world()
    d = driver(w)
    d.run(0)  # genesis only
    assert w.ok(w.operator, "GetConsortium")["head"]["model_hash"] is not None
    d.do(next_action(d.view(), 1))  # create round 1 (+ reference)
    hospitals_submit(w)
    w.ok(w.mpc[2], "CloseRound", "1", timestamp=4_000_000_000.0)  # the node's clock: after the deadline
    mpc_nodes_finish(w, 1)
    op = d.ledger
    op.close_round(1)  # refused by the contract (409), and fine
    assert d.run(1)[0].state == "FINALIZED"


# ------------------------------------------------------------------ encrypted inference: the validation batch
def test_next_action_publishes_a_declared_validation_batch_after_the_reference():
    from fedchain.campaign.plan import PUBLISH_VALIDATION

    both = dict(reference_declared=True, validation_declared=True, inference_enabled=True)
    assert next_action(LedgerView(True, 1, "OPEN", **both), 2).kind == PUBLISH_REFERENCE
    view = LedgerView(True, 1, "OPEN", reference_published=True, **both)
    assert next_action(view, 2).kind == PUBLISH_VALIDATION
    view = LedgerView(True, 1, "CLOSED", reference_published=True, submitted=2, **both)
    assert next_action(view, 2).kind == PUBLISH_VALIDATION
    view = LedgerView(True, 1, "OPEN", reference_published=True, validation_published=True, **both)
    assert next_action(view, 2).kind == COLLECT
    stuck = next_action(LedgerView(True, 1, "OPEN", reference_declared=True, reference_published=True,
                                   inference_enabled=True), 2)
    assert stuck.kind == STUCK and "validation_sha256" in stuck.reason


def inference_driver(w: World, kill_at=None, pool=None, **kw) -> RoundDriver:
    """The operator with --inference-check: a 32-image validation batch (the policy's default size) per round,
    drawn from a 40-sample root set."""
    from fedchain.verification import VerificationPolicy

    rng = np.random.default_rng(1)
    pool = pool or (rng.integers(0, 255, size=(64, 28, 28), dtype=np.uint8), np.repeat(np.arange(2), 32))
    op = OperatorLedger.over(FLClient(Ledger(w, w.operator, kill_at)))
    maker = RoundMaker(RoundRecipe(train=TrainConfig(steps=2, batch_size=4), inference_check=True), SPEC, pool, 40,
                       policy_check=VerificationPolicy.from_json)
    settings = DriverSettings(deadline_s=3600, close_after=3, min_updates=1, round_timeout_s=1, poll_s=0.01)
    return RoundDriver(op, maker, settings, genesis=lambda: to_safetensors_bytes(build_model(SPEC, seed=0)),
                       sleep=lambda _s: hospitals_submit(w), **kw)


def check_validation(w: World) -> None:
    from fedchain.validation_batch import decode

    fl = FLClient(Ledger(w, w.auditor))
    seen = set()
    for rid in range(1, ROUNDS + 1):
        rnd = fl.get_round(rid)
        assert rnd.policy.inference_enabled is True
        data = fl.get_validation_batch(rid)  # hash-checked against validation_sha256
        images, labels = decode(data, 2, max_batch=32)
        assert len(labels) == 32 == rnd.hyper.validation_size
        assert np.bincount(labels).tolist() == [16, 16]
        seen.add(sha256_hex(data))
    assert len(seen) == ROUNDS  # a fresh batch every round


@pytest.mark.parametrize("when", ["before", "after"])
def test_inference_campaign_killed_at_any_write_publishes_every_batch_once(when):
    w = fresh_world()
    d = inference_driver(w)
    d.run(ROUNDS)
    writes = d.fl.contract.submits  # genesis, then per round CreateRound, references, batch, CloseRound
    assert writes == 1 + 4 * ROUNDS
    check_campaign(w)
    check_validation(w)
    for n in range(2, writes + 1, 2 if when == "after" else 1):
        w = fresh_world()
        with pytest.raises(Killed):
            inference_driver(w, kill_at=(n, when)).run(ROUNDS)
        inference_driver(w).run(ROUNDS)
        check_campaign(w)
        check_validation(w)


def test_other_root_data_cannot_publish_a_validation_batch_and_says_so():
    w = fresh_world()
    with pytest.raises(Killed):
        inference_driver(w, kill_at=(4, "before")).run(ROUNDS)  # genesis, CreateRound, reference, batch
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 255, size=(64, 28, 28), dtype=np.uint8), np.repeat(np.arange(2), 32)
    d = inference_driver(w, pool=(x, y))
    d.maker = RoundMaker(d.maker.recipe, SPEC, (x, y[::-1].copy()), 40)  # same pixels, other labels
    with pytest.raises(CampaignError, match=r"round 1 is OPEN without its validation batch.*fedchain validation "
                                            r"publish"):
        d.run(ROUNDS)


def _hand_made_round(round_id: int, hyper: dict) -> Round:
    """An OPEN round as the chaincode would return it, declaring `hyper`."""
    return Round.from_json({"round_id": round_id, "state": "OPEN", "base_model_hash": "0" * 64,
                            "base_round_id": round_id - 1, "model_spec": {"param_count": 1}, "hyperparameters": hyper,
                            "policy": {}, "deadline": 1.0, "min_updates": 1})


def test_a_round_made_by_hand_declares_and_redraws_its_batch():
    """round create --root-data with an inference policy: the batch comes from the round's recorded root set,
    and `fedchain validation publish --root-data` (declared_validation_batch) redraws the same bytes."""
    from fedchain.campaign.command import ArgumentProblem, RootData, validation_for_new_round
    from fedchain.campaign.validation import ValidationMismatch, declared_validation_batch
    from fedchain.reference import root_set
    from fedchain.validation_batch import decode

    rng = np.random.default_rng(2)
    pool = (rng.integers(0, 255, size=(64, 28, 28), dtype=np.uint8), np.repeat(np.arange(2), 32))
    root = RootData("root.npz", pool, 1, 2)
    chosen = root_set(*pool, 40, seed=3)
    hyper = {"seed": 3, "root_size": 40, "root_seed": 3, "root_sha256": chosen.sha256}
    assert validation_for_new_round(5, {"cosine_enabled": True}, hyper, root) == (hyper, None)
    declared, data = validation_for_new_round(5, {"inference_enabled": True, "inference_batch": 16}, hyper, root)
    assert data is not None and len(decode(data)[1]) == 16 == declared["validation_size"]
    assert declared["validation_sha256"] == sha256_hex(data)
    assert declared_validation_batch(_hand_made_round(5, declared), *pool) == data
    with pytest.raises(ValidationMismatch, match="root data does not hold"):
        declared_validation_batch(_hand_made_round(5, declared), pool[0][::-1].copy(), pool[1])
    with pytest.raises(ArgumentProblem, match="needs at least 64 root samples"):
        validation_for_new_round(5, {"inference_enabled": True, "inference_batch": 64}, hyper, root)
