"""Follow the ledger: take part in every round the operator creates (`fedchain hospital run`).

The event position is a FileCheckpoint in the state folder, so a restarted hospital resumes
after the last event it handled. On start it also looks at the current round (an OPEN round
created while it was down, before any checkpoint existed), and participation is idempotent
(ledger + persisted shares), so seeing a RoundCreated twice is harmless. A round that ends FAILED
or DISPUTED needs nothing from a hospital: the next RoundCreated builds on the last finalized model
(base_round_id), which is what the hospital fetches. A round the MPC nodes refuse our shares for
(closed meanwhile, deadline passed), a ledger refusal, data that does not fit the round's model, a
bad receipt or unreadable local state are logged (one line, no traceback) and the round is
skipped; the follower keeps following. A gateway outage is retried (the event is handled again
after reconnecting). A ledger that went backwards or forked (LedgerRollback) stops the follower:
it must not act on it. Shares are deleted when the follower sees a round end (RoundFinalized,
RoundFailed, RoundDisputed) and, on start, for every past round that is already over.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from fedchain.gateway import FileCheckpoint, GatewayError
from fedchain.gateway.errors import chaincode_refusal
from fedchain.gateway.qscc import chain_info
from fedchain.mpc_client import IntakeError
from fedchain.mpc_protocol import ReceiptError
from fedchain.records import OPEN, RoundId, parse_round_id

from .client import HospitalClient, RoundOutcome, RoundRefused
from .state import StateError

log = logging.getLogger(__name__)

# Failures that end this hospital's part in one round; the message says why and what to do.
ROUND_FAILURES = (RoundRefused, IntakeError, ReceiptError, StateError)
ROUND_END_EVENTS = {"RoundFinalized": "FINALIZED", "RoundFailed": "FAILED", "RoundDisputed": "DISPUTED"}


def ledger_refused(exc: GatewayError) -> bool:
    """The chaincode answered 'no' (a 4xx refusal): asking again will not change it, unlike an outage."""
    refusal = chaincode_refusal(exc)
    return refusal is not None and refusal.final


def _try(client: HospitalClient, round_id: RoundId, done: set[RoundId],
         on_outcome: Callable[[RoundOutcome], None] | None) -> None:
    """Take part in one round; an expected failure is one warning line and the round is skipped."""
    if round_id in done:
        return
    try:
        outcome = client.participate(round_id)
    except ROUND_FAILURES as exc:
        log.warning("%s: round %d: skipped: %s", client.participant_id, round_id, exc)
        done.add(round_id)
        return
    except GatewayError as exc:
        if not ledger_refused(exc):
            raise  # an outage: reconnect and handle the event again
        log.warning("%s: round %d: skipped, the ledger refused: %s", client.participant_id, round_id, exc)
        done.add(round_id)
        return
    done.add(round_id)
    if on_outcome is not None:
        on_outcome(outcome)


def _forget(client: HospitalClient, round_id: RoundId) -> None:
    """Delete an ended round's shares; a failure to do so now is retried on the next start."""
    try:
        client.forget_shares_if_over(round_id)
    except (GatewayError, StateError, OSError) as exc:
        log.warning("%s: round %d: shares not deleted yet (%s); retried on the next start", client.participant_id,
                    round_id, exc)


def follow(client: HospitalClient, *, rounds: int | None = None, stop: threading.Event | None = None,
           on_outcome: Callable[[RoundOutcome], None] | None = None, reconnect_s: float = 2.0) -> int:
    """Participate in rounds until `rounds` were handled (None = forever) or `stop` is set; returns the count."""
    stop = stop or threading.Event()
    done: set[RoundId] = set()
    handled = 0

    def outcome(o: RoundOutcome) -> None:
        nonlocal handled
        handled += 1
        if on_outcome is not None:
            on_outcome(o)

    cp = FileCheckpoint(client.state.checkpoint_path)
    client.check_ledger()
    network = client.gateway.network(client.net.channel)
    start_block = None if cp.block_number is not None else chain_info(network).height
    client.forget_finished_rounds()
    head = client.fl.head()
    if head.last_round_id:
        rnd = client.fl.get_round(head.last_round_id)
        if rnd.state == OPEN:
            _try(client, rnd.round_id, done, outcome)
    while not stop.is_set() and (rounds is None or handled < rounds):
        try:
            with network.chaincode_events(client.net.chaincode, start_block=start_block, checkpoint=cp) as events:
                stopper = threading.Thread(target=lambda: (stop.wait(), events.close()), daemon=True)
                stopper.start()
                for ev in events:
                    client.check_ledger()
                    if ev.event_name == "RoundCreated":
                        rid = parse_round_id(json.loads(ev.payload)["round_id"])
                        log.info("%s: round %d created", client.participant_id, rid)
                        _try(client, rid, done, outcome)
                    elif ev.event_name in ROUND_END_EVENTS:
                        info = json.loads(ev.payload)
                        if ev.event_name != "RoundFinalized":
                            # over without a model (too few accepted, or disputed): the next round builds on
                            # the last finalized model; keep following
                            log.info("%s: round %s ended %s (%s) without a new model", client.participant_id,
                                     info.get("round_id"), ROUND_END_EVENTS[ev.event_name],
                                     info.get("reason") or "-")
                        _forget(client, parse_round_id(info["round_id"]))
                    cp.checkpoint_event(ev)
                    if stop.is_set() or (rounds is not None and handled >= rounds):
                        break
                else:
                    if not stop.is_set():
                        raise GatewayError("event stream ended")
        except GatewayError as exc:
            if stop.is_set():
                break
            log.warning("%s: event stream interrupted (%s); reconnecting in %.0f s", client.participant_id, exc,
                        reconnect_s)
            time.sleep(reconnect_s)
        start_block = None
    return handled
