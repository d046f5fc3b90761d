"""What the operator does next, decided from the ledger alone.

The round driver keeps no state of its own between steps: it reads a `LedgerView` (head pointer, the
last round's state, whether its FLTrust reference and its validation batch are declared and published,
how many updates it has), asks `next_action` what to do, does it, and reads the ledger again. So an operator killed at
any point and restarted continues where the ledger is, and never creates a round twice: a round id
is always head.last_round_id + 1, and the contract refuses a second round while one is OPEN or CLOSED.

`--rounds N` is a round id: the campaign is over when round N has ended (rounds already on the ledger
count; a restart adds none). A round beyond N is not the campaign's and is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedchain.records import CLOSED, OPEN, TERMINAL_STATES, RoundId

GENESIS = "genesis"  # publish the genesis model
CREATE = "create"  # CreateRound (+ its reference)
PUBLISH_REFERENCE = "publish_reference"  # OPEN or CLOSED (unattested) but its declared reference is not on the ledger
PUBLISH_VALIDATION = "publish_validation"  # the same for its declared validation batch (encrypted inference)
COLLECT = "collect"  # OPEN with its reference: wait for updates or the deadline, then close
AWAIT = "await"  # CLOSED: wait for the MPC nodes (FINALIZED, FAILED or DISPUTED)
DONE = "done"  # round N (or a later one) has ended
STUCK = "stuck"  # the MPC nodes cannot finish the round without the operator's help; `reason` says why


@dataclass(frozen=True)
class LedgerView:
    """The part of the ledger the operator's next step depends on."""

    has_model: bool  # a genesis (or later) model is published
    last_round_id: int = 0
    state: str | None = None  # the last round's state (None: no round yet)
    reference_declared: bool = False  # hyperparameters.reference_sha256 is set
    reference_published: bool = False  # GetReference finds it
    cosine_enabled: bool = True  # the round's policy checks cosine similarity (needs the reference)
    submitted: int = 0  # updates the last round was closed with (0 while OPEN)
    validation_declared: bool = False  # hyperparameters.validation_sha256 is set
    validation_published: bool = False  # GetValidationBatch finds it
    inference_enabled: bool = False  # the round's policy runs the encrypted-inference check (needs the batch)


@dataclass(frozen=True)
class Action:
    kind: str
    round_id: RoundId
    reason: str = ""


def next_action(view: LedgerView, last_round: int) -> Action:
    """The operator's next step towards 'round `last_round` has ended'."""
    if not view.has_model:
        return Action(GENESIS, RoundId(0))
    rid = view.last_round_id
    if rid > last_round:
        return Action(DONE, rid, f"the ledger is at round {rid}, past round {last_round}")
    if rid == 0 or view.state in TERMINAL_STATES:
        if rid >= last_round:
            return Action(DONE, rid, f"round {rid} has ended ({view.state})" if rid else "no rounds asked for")
        return Action(CREATE, RoundId(rid + 1))
    if view.state in (OPEN, CLOSED) and view.validation_declared and not view.validation_published:
        # like the reference: the contract takes the declared batch until a node attests; the nodes wait for it
        if not (view.reference_declared and not view.reference_published):
            return Action(PUBLISH_VALIDATION, rid)
    if view.state == OPEN:
        if view.reference_declared and not view.reference_published:
            return Action(PUBLISH_REFERENCE, rid)
        if view.inference_enabled and not view.validation_declared:
            return Action(STUCK, rid, f"round {rid} runs the encrypted-inference check but declares no "
                                      "hyperparameters.validation_sha256: the MPC nodes cannot verify its updates. "
                                      f"Close it (`fedchain round close {rid}`) before any update arrives")
        if view.cosine_enabled and not view.reference_declared:
            return Action(STUCK, rid, f"round {rid} checks cosine similarity but declares no "
                                      "hyperparameters.reference_sha256: the MPC nodes cannot verify its updates. "
                                      f"Close it (`fedchain round close {rid}`) before any update arrives, then "
                                      "create rounds with `fedchain operator run` or `fedchain round create "
                                      "--root-data F`")
        return Action(COLLECT, rid)
    if view.state == CLOSED:
        if view.cosine_enabled and view.reference_declared and not view.reference_published:
            # closed (an MPC node at the deadline) before an earlier run published it: the contract takes
            # the declared reference until a node attests, and the nodes wait for it
            return Action(PUBLISH_REFERENCE, rid)
        # cosine on but no reference declared: the nodes reject every update (no_reference), the round FAILS
        return Action(AWAIT, rid)
    return Action(STUCK, rid, f"round {rid} is in an unknown state {view.state!r}")


def read_view(fl: Any, reference_published: Any, validation_published: Any = None) -> LedgerView:
    """Read a LedgerView through an FLClient; `reference_published(round_id)` answers GetReference's question,
    `validation_published(round_id)` GetValidationBatch's (None: never asked, the round declares none)."""
    head = fl.head()
    if head.model_hash is None:
        return LedgerView(has_model=False)
    rid = head.last_round_id
    if rid == 0:
        return LedgerView(has_model=True)
    rnd = fl.get_round(rid)
    state = rnd.state
    declared = bool(rnd.hyper.reference_sha256)
    published = declared and state in (OPEN, CLOSED) and reference_published(rid)
    v_declared = bool(rnd.hyper.validation_sha256)
    v_published = (v_declared and state in (OPEN, CLOSED) and validation_published is not None
                   and validation_published(rid))
    return LedgerView(True, rid, state, declared, published, rnd.policy.cosine_enabled, len(rnd.submitted or ()),
                      v_declared, bool(v_published), rnd.policy.inference_enabled)
