"""The operator's round loop, for `fedchain operator run` and `fedchain demo` alike.

Each step reads the ledger (plan.read_view), picks the next action (plan.next_action) and does it:
publish the genesis model, create a round on the last finalized model with its FLTrust reference (and,
with the encrypted-inference check, its validation batch), publish a reference or batch a killed run
left unpublished, collect updates until enough arrived or the
deadline passed and close, wait for the MPC nodes' verdict. Nothing is remembered between steps
except timings, so a restarted operator carries on from the ledger.

Who takes part is the caller's business: real hospitals follow the ledger on their own machines
(`fedchain hospital run`); the demo passes `participate`, which trains and delivers its simulated
hospitals while the round is OPEN, after which the round is closed at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fedchain.records import OPEN, TERMINAL_STATES, Round, RoundId

from .ledger import OperatorLedger, RoundDisputed, outcome_note
from .plan import (
    AWAIT,
    COLLECT,
    CREATE,
    DONE,
    GENESIS,
    PUBLISH_REFERENCE,
    PUBLISH_VALIDATION,
    STUCK,
    Action,
    LedgerView,
    next_action,
    read_view,
)
from .recipe import RoundMaker


class CampaignError(RuntimeError):
    """The campaign cannot go on without the operator's decision; the message says what and why."""


@dataclass(frozen=True)
class DriverSettings:
    deadline_s: float = 600.0  # each round's deadline, from its creation
    close_after: int = 3  # close a round as soon as this many updates are on the ledger
    min_updates: int = 2  # recorded as the round's min_updates (fewer accepted: the model stays the base)
    round_timeout_s: float = 300.0  # from close until the round is final and its model published
    poll_s: float = 1.0


@dataclass
class RoundResult:
    """How a round ended, as the ledger says."""

    round_id: RoundId
    state: str  # FINALIZED, FAILED or DISPUTED
    record: Round
    model: bytes  # the model the round ends with: the new one, or its base when there is none
    model_hash: str
    new_model: bool
    submitted: list[str]
    accepted: list[str]
    rejected: dict[str, str]
    timings_s: dict[str, float] = field(default_factory=dict)
    note: str | None = None  # why there is no new model
    cosine_min: dict[str, Any] = field(default_factory=dict)  # the threshold used, when this process made it


def settle_last_round(ledger: OperatorLedger, out: Callable[[str], None], timeout_s: float) -> None:
    """The demo's start on a reused network: a round left OPEN is closed at once (its hospitals are
    gone), then waited for, so the demo's own rounds can start."""
    fl = ledger.fl
    last = fl.head().last_round_id
    if not last:
        return
    rnd = fl.get_round(last)
    if rnd.over:
        return
    out(f"round {last} was left {rnd.state}: closing it and waiting for the MPC nodes")
    if rnd.state == OPEN:
        ledger.close_round(last)
    try:
        rnd, model = ledger.wait_published(last, timeout_s)
        if model is None:  # FAILED: no model; the next round builds on the last finalized model
            out(f"warning: {outcome_note(rnd)}")
    except RoundDisputed as exc:  # also ends a round; the next one builds on the last finalized model
        out(f"warning: {exc}")


class RoundDriver:
    """Drives rounds until a given round id has ended. `progress` gets chatty lines (None: quiet),
    `out` warnings; `on_result` gets every round this driver saw end."""

    def __init__(self, ledger: OperatorLedger, maker: RoundMaker, settings: DriverSettings, *,
                 genesis: Callable[[], bytes] | None = None,
                 participate: Callable[[int], dict[str, float]] | None = None,
                 on_result: Callable[[RoundResult], None] | None = None,
                 out: Callable[[str], None] = print, progress: Callable[[str], None] | None = None,
                 stop_on_dispute: bool = False, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.ledger = ledger
        self.fl = ledger.fl
        self.maker = maker
        self.settings = settings
        self.genesis = genesis
        self.participate = participate
        self.on_result = on_result
        self.out = out
        self.progress = progress or (lambda _msg: None)
        self.stop_on_dispute = stop_on_dispute
        self.clock = clock
        self.sleep = sleep
        self._timings: dict[int, dict[str, float]] = {}
        self._started: dict[int, float] = {}
        self._cosine: dict[int, dict[str, Any]] = {}
        self._last: tuple[str, int] | None = None
        self._repeats = 0
        self._pending: set[int] = set()  # rounds this driver worked on whose end it has not reported yet

    # ---------------------------------------------------------------- the loop
    def view(self) -> LedgerView:
        self.ledger.check_ledger()
        return read_view(self.fl, self.ledger.reference_published, self.ledger.validation_published)

    def run(self, last_round: int) -> list[RoundResult]:
        """Steps until round `last_round` has ended; the rounds this driver worked on, in order, once ended."""
        results: list[RoundResult] = []
        while True:
            view = self.view()
            if view.last_round_id in self._pending and view.state in TERMINAL_STATES:
                # it ended between two steps (fast MPC nodes): still this driver's round to report
                results.append(self._await(view.last_round_id))
                continue
            action = next_action(view, last_round)
            if action.kind == DONE:
                return results
            result = self.do(action)
            if result is not None:
                results.append(result)

    def do(self, action: Action) -> RoundResult | None:
        self._guard(action)
        if action.kind in (CREATE, PUBLISH_REFERENCE, PUBLISH_VALIDATION, COLLECT, AWAIT):
            self._pending.add(action.round_id)
        if action.kind == GENESIS:
            self._genesis()
        elif action.kind == CREATE:
            self._create(action.round_id)
        elif action.kind == PUBLISH_REFERENCE:
            self._publish_reference(action.round_id)
        elif action.kind == PUBLISH_VALIDATION:
            self._publish_validation(action.round_id)
        elif action.kind == COLLECT:
            self._collect(action.round_id)
            return self._await(action.round_id)
        elif action.kind == AWAIT:
            return self._await(action.round_id)
        elif action.kind == STUCK:
            raise CampaignError(action.reason)
        return None

    def _guard(self, action: Action) -> None:
        """A write that 'succeeded' but left the ledger as it was would loop forever: stop instead."""
        key = (action.kind, action.round_id)
        self._repeats = self._repeats + 1 if key == self._last else 0
        self._last = key
        if action.kind in (GENESIS, CREATE, PUBLISH_REFERENCE, PUBLISH_VALIDATION) and self._repeats >= 3:
            raise CampaignError(f"{action.kind} of round {action.round_id} did not change the ledger after "
                                f"{self._repeats} attempts")

    def _phase(self, rid: int, name: str, seconds: float) -> None:
        self._started.setdefault(rid, time.perf_counter() - seconds)
        t = self._timings.setdefault(rid, {})
        t[name] = t.get(name, 0.0) + seconds

    # ---------------------------------------------------------------- actions
    def _genesis(self) -> None:
        if self.genesis is None:
            raise CampaignError("the ledger has no genesis model and this operator has none to publish")
        model = self.genesis()
        if self.ledger.ensure_genesis(self.maker.spec_json, model):
            from fedchain.models import model_hash

            self.progress(f"genesis model published: {model_hash(model)[:16]}… "
                          f"({self.maker.spec_json['param_count']} parameters)")

    def _base_model(self, base_round: RoundId | None, want_hash: str | None) -> bytes:
        if base_round is None or want_hash is None:
            raise CampaignError("the ledger has no finalized model to build on")
        rec = self.fl.get_model(base_round)  # bytes checked against the recorded SHA-256
        if rec.sha256 != want_hash:
            raise CampaignError(f"the ledger's model of round {base_round} is {rec.sha256}, expected {want_hash}")
        return rec.model

    def _create(self, rid: RoundId) -> None:
        head = self.fl.head()
        base = self._base_model(head.finalized_round_id, head.model_hash)
        assert head.model_hash is not None  # _base_model refused a head without one
        t0 = time.perf_counter()
        planned = self.maker.plan(rid, base)
        self._phase(rid, "train", time.perf_counter() - t0)
        self._cosine[rid] = planned.cosine_min
        t0 = time.perf_counter()
        try:
            rnd = self.ledger.create_round(rid, head.model_hash, self.maker.spec_json, planned.hyperparameters,
                                           planned.policy, self.settings.deadline_s, self.settings.min_updates,
                                           now=self.clock())
        except Exception:
            if self.fl.head().last_round_id >= rid:  # an earlier run's CreateRound landed meanwhile
                self.out(f"warning: round {rid} was created meanwhile (by an earlier run?): continuing with it")
                return
            raise
        self.progress(f"round {rid}: created on round {head.finalized_round_id}'s model "
                      f"{head.model_hash[:12]}…, deadline {_clock(rnd.deadline or 0.0)}; closes at "
                      f"{self.settings.close_after} update(s) or the deadline")
        sha = self.ledger.publish_reference(rid, planned.reference.vector)
        self.progress(f"round {rid}: reference {sha[:12]}… published")
        if planned.validation is not None:
            vsha = self.ledger.publish_validation_batch(rid, planned.validation)
            self.progress(f"round {rid}: validation batch {vsha[:12]}… published "
                          f"({planned.hyperparameters.get('validation_size')} images, encrypted-inference check)")
        self._phase(rid, "ledger", time.perf_counter() - t0)

    def _publish_reference(self, rid: RoundId) -> None:
        """A round created by an earlier run that died before PublishReference: recompute, check, publish."""
        from fedchain.reference import ReferenceMismatch

        rnd = self.fl.get_round(rid)
        t0 = time.perf_counter()
        try:
            ref = self.maker.reproduce(rnd, self._base_model(rnd.base_round_id, rnd.base_model_hash))
        except ReferenceMismatch as exc:
            raise CampaignError(f"round {rid} is {rnd.state} without its reference, and this operator cannot "
                                f"recompute it: "
                                f"{exc}. Publish it with `fedchain reference publish --round {rid} --root-data F` "
                                f"and the root file it was made with, or close it (`fedchain round close {rid}`)"
                                ) from None
        self._phase(rid, "train", time.perf_counter() - t0)
        want = ref.sha256
        t0 = time.perf_counter()
        self.ledger.publish_reference(rid, ref.vector)
        self._phase(rid, "ledger", time.perf_counter() - t0)
        self.progress(f"round {rid}: reference {want[:12]}… published (the round was created by an earlier run)")

    def _publish_validation(self, rid: RoundId) -> None:
        """A round created by an earlier run that died before PublishValidationBatch: redraw, check, publish."""
        from .validation import ValidationMismatch

        rnd = self.fl.get_round(rid)
        try:
            data = self.maker.reproduce_validation(rnd)
        except ValidationMismatch as exc:
            raise CampaignError(f"round {rid} is {rnd.state} without its validation batch, and this operator "
                                f"cannot redraw it: {exc}. Publish it with `fedchain validation publish --round {rid} "
                                f"--root-data F` and the root file it was made with, or close it "
                                f"(`fedchain round close {rid}`)") from None
        t0 = time.perf_counter()
        sha = self.ledger.publish_validation_batch(rid, data)
        self._phase(rid, "ledger", time.perf_counter() - t0)
        self.progress(f"round {rid}: validation batch {sha[:12]}… published (the round was created by an earlier run)")

    def _collect(self, rid: RoundId) -> None:
        self._started.setdefault(rid, time.perf_counter())
        if self.participate is not None:
            for k, v in self.participate(rid).items():
                self._phase(rid, k, v)
            reason = "every hospital took part"
        else:
            reason = self._wait_for_updates(rid)
            if reason is None:
                return  # closed by an MPC node at its deadline: waited for next
        t0 = time.perf_counter()
        self.ledger.close_round(rid)
        self._phase(rid, "ledger", time.perf_counter() - t0)
        self.progress(f"round {rid}: closed ({reason}); waiting for the MPC nodes")

    def _wait_for_updates(self, rid: RoundId) -> str | None:
        """Until close_after updates are on the ledger or the deadline passed (the reason), or None if the
        round is no longer OPEN."""
        want = self.settings.close_after
        seen = -1
        while True:
            self.ledger.check_ledger()
            rnd = self.fl.get_round(rid)
            if rnd.state != OPEN:
                closer = rnd.stamp.participant if rnd.stamp is not None else None
                self.progress(f"round {rid}: {rnd.state} (closed at its deadline by {closer or 'someone else'})")
                return None
            n = len(self.fl.get_updates(rid))
            left = float(rnd.deadline or 0.0) - self.clock()
            if n != seen:
                self.progress(f"round {rid}: {n}/{want} update(s), deadline in {max(0.0, left):.0f} s")
                seen = n
            if n >= want:
                return f"{n} update(s)"
            if left <= 0:
                return f"deadline passed with {n} update(s)"
            self.sleep(min(self.settings.poll_s, max(left, 0.05)))

    def _await(self, rid: RoundId) -> RoundResult:
        self._pending.discard(rid)
        self._started.setdefault(rid, time.perf_counter())
        t0 = time.perf_counter()
        note = None
        try:
            rnd, model = self.ledger.wait_published(rid, self.settings.round_timeout_s)
        except RoundDisputed as exc:
            if self.stop_on_dispute:
                raise
            rnd, model, note = exc.round, None, str(exc)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}: are the MPC nodes running? A restart keeps waiting for it") from None
        self._phase(rid, "mpc", time.perf_counter() - t0)
        timings = dict(self._timings.pop(rid, {}))
        timings["total"] = time.perf_counter() - self._started.pop(rid)
        cosine = self._cosine.pop(rid, {})
        submitted = list(rnd.submitted or ())
        if model is None:
            agreed = rnd.agreed
            base = self._base_model(rnd.base_round_id, rnd.base_model_hash)
            result = RoundResult(rid, rnd.state, rnd, base, rnd.base_model_hash or "", False, submitted,
                                 list(agreed.accepted if agreed else ()), dict(agreed.rejected if agreed else {}),
                                 timings, note or outcome_note(rnd), cosine)
        else:
            fin = rnd.finalized
            if fin is None:
                raise CampaignError(f"round {rid} is {rnd.state} with a published model but no finalized result")
            if model.sha256 != fin.model_hash:
                raise CampaignError(f"round {rid}: published model {model.sha256} is not the finalized "
                                    f"{fin.model_hash}")
            result = RoundResult(rid, rnd.state, rnd, model.model, fin.model_hash, True, submitted,
                                 list(fin.accepted), dict(fin.rejected), timings, None, cosine)
        if self.on_result is not None:
            self.on_result(result)
        return result


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%SZ", time.gmtime(float(ts)))
