"""A hospital's shares live only as long as their round (issue 12): deleted once the round is FINALIZED,
FAILED or DISPUTED (hashes and receipts kept), never while it is OPEN or CLOSED; the follower deletes
them when it sees a round end and, on start, for rounds already over; it survives rounds it could not
take part in and keeps following. Fast: a real HospitalClient over a fake ledger and event stream.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from fedchain.gateway import GatewayError
from fedchain.hospital import HospitalClient, HospitalState, RoundOutcome, RoundState, StateError, follow
from fedchain.hospital.client import DataMismatch
from fedchain.mpc_client import IntakeError
from fedchain.records import Head, Round

SHARES = [b"share-zero", b"share-one", b"share-two"]


# ----------------------------------------------------------------------------------- fakes
@dataclass
class Event:
    event_name: str
    payload: bytes
    block_number: int
    tx_id: str


class FakeFL:
    """The FL chaincode's round records as the hospital reads them."""

    def __init__(self) -> None:
        self.rounds: dict[int, Round] = {}
        self.down = False

    def set(self, round_id: int, state: str) -> None:
        self.rounds[round_id] = Round.from_json({
            "round_id": round_id, "state": state, "base_round_id": round_id - 1, "base_model_hash": "ab" * 32,
            "model_spec": {"param_count": 10}, "deadline": 2e9, "min_updates": 1})

    def get_round(self, round_id: int) -> Round:
        if self.down:
            raise GatewayError("evaluate failed: gateway unavailable (connection refused)")
        if round_id not in self.rounds:
            raise GatewayError(f"evaluate failed: ABORTED: chaincode response 404, no round {round_id}")
        return self.rounds[round_id]

    def head(self) -> Head:
        return Head.from_json({"last_round_id": max(self.rounds, default=0), "finalized_round_id": None,
                               "model_hash": None, "param_count": None})


class FakeEvents:
    """A chaincode event stream that plays its events, then stops the follower (`stop`)."""

    def __init__(self, events: list[Event], stop: threading.Event, before: Any = None) -> None:
        self.events = events
        self.stop = stop
        self.before = before  # called with each event before it is delivered (the ledger changing)

    def __enter__(self) -> FakeEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def close(self) -> None:
        pass

    def __iter__(self):
        for ev in self.events:
            if self.before is not None:
                self.before(ev)
            yield ev
        self.stop.set()


@dataclass
class FakeNet:
    directory: Path
    channel: str = "fedchain"
    chaincode: str = "fedchain"


def event(name: str, round_id: int, block: int) -> Event:
    return Event(name, json.dumps({"round_id": round_id}).encode(), block, f"tx{block}")


def persist(hs: HospitalState, round_id: int) -> RoundState:
    """A round this hospital prepared: three share files and its state (hashes, one receipt)."""
    hashes = hs.save_shares(round_id, SHARES)
    st = RoundState(round_id=round_id, participant_id="h1", base_model_hash="ab" * 32, share_hashes=hashes,
                    n_samples=10, dim=4, receipts=[{"node_index": 0, "sha256": hashes[0]}])
    hs.save(st)
    return st


@pytest.fixture
def client(tmp_path, monkeypatch) -> HospitalClient:
    images = np.zeros((8, 28, 28), dtype=np.uint8)
    labels = np.arange(8) % 4
    c = HospitalClient(FakeNet(tmp_path / "net"), identity=None, participant_id="h1", images=images,
                       labels=labels, state_dir=tmp_path / "state", progress=False)
    c._fl = FakeFL()
    monkeypatch.setattr(c, "check_ledger", lambda: None)
    follow_module = importlib.import_module("fedchain.hospital.follow")  # the package exports a function of that name
    monkeypatch.setattr(follow_module, "chain_info", lambda network: type("Info", (), {"height": 1}))
    return c


# ------------------------------------------------------------------------------------ state
def test_delete_shares_keeps_hashes_and_receipts(tmp_path):
    hs = HospitalState(tmp_path)
    st = persist(hs, 4)
    (hs.round_dir(4) / ".share_1.bin.crashed").write_bytes(b"half a share")  # a crash's temp file
    assert hs.rounds_with_shares() == [4]
    assert hs.delete_shares(4) is True
    assert sorted(p.name for p in hs.round_dir(4).iterdir()) == ["state.json"]
    kept = hs.load(4)
    assert kept.shares_deleted and kept.share_hashes == st.share_hashes and kept.receipts == st.receipts
    with pytest.raises(StateError, match="deleted when the round ended"):
        hs.load_shares(kept)
    assert hs.rounds_with_shares() == [] and hs.delete_shares(4) is False


def test_delete_shares_of_a_round_with_unreadable_state(tmp_path):
    hs = HospitalState(tmp_path)
    persist(hs, 5)
    (hs.round_dir(5) / "state.json").write_text("{torn")
    assert hs.delete_shares(5) is True and hs.share_files(5) == []


# ------------------------------------------------------------------------------ client
@pytest.mark.parametrize("state", ["FINALIZED", "FAILED", "DISPUTED"])
def test_shares_go_once_the_round_is_over(client, state):
    persist(client.state, 1)
    for still_running in ("OPEN", "CLOSED"):
        client.fl.set(1, still_running)
        assert client.forget_finished_rounds() == []
        assert len(client.state.share_files(1)) == 3  # a resend may still be needed
    client.fl.set(1, state)
    assert client.forget_finished_rounds() == [1]
    assert client.state.share_files(1) == [] and client.state.load(1).shares_deleted


def test_shares_stay_when_the_ledger_cannot_tell(client, caplog):
    persist(client.state, 1)
    persist(client.state, 2)
    client.fl.set(1, "FINALIZED")  # round 2: not on this ledger
    client.fl.down = True
    with caplog.at_level(logging.WARNING):
        assert client.forget_finished_rounds() == []
    assert "shares stay for now" in caplog.text
    client.fl.down = False
    assert client.forget_finished_rounds() == [1]
    assert len(client.state.share_files(2)) == 3


# ------------------------------------------------------------------------------ follower
def test_follower_cleans_up_survives_refusals_and_keeps_following(client, monkeypatch, caplog):
    """Start: round 1 is over (its shares go), round 2 is CLOSED (they stay). Events: round 3 is refused
    by a node, round 4's data does not fit, round 5 is taken part in; round 2 and 3 end and their
    shares go; round 5 is still OPEN and keeps its shares. No traceback anywhere."""
    fl = client.fl
    for rid, state in ((1, "FINALIZED"), (2, "CLOSED")):
        persist(client.state, rid)
        fl.set(rid, state)
    taken: list[int] = []

    def participate(round_id: int) -> RoundOutcome:
        taken.append(round_id)
        if round_id == 3:
            persist(client.state, 3)  # prepared, then the node refused: the round closed meanwhile
            raise IntakeError(0, grpc.StatusCode.FAILED_PRECONDITION,
                              "round 3 is CLOSED; shares are accepted only while it is OPEN")
        if round_id == 4:
            raise DataMismatch("round 4: the model has 4 classes (labels 0..3); 8 of this hospital's labels ...")
        persist(client.state, round_id)
        return RoundOutcome(round_id, "submitted", [], 10)

    monkeypatch.setattr(client, "participate", participate)
    stop = threading.Event()
    script = [event("RoundCreated", 3, 10), event("RoundCreated", 4, 11), event("RoundCreated", 5, 12),
              event("RoundFailed", 3, 13), event("RoundFinalized", 2, 14)]
    ends = {"RoundCreated": "OPEN", "RoundFailed": "FAILED", "RoundFinalized": "FINALIZED"}

    def ledger_moves(ev: Event) -> None:
        if ev.event_name in ends:
            fl.set(json.loads(ev.payload)["round_id"], ends[ev.event_name])

    class Gateway:
        def network(self, name: str) -> Any:
            return self

        def chaincode_events(self, *a: Any, **k: Any) -> FakeEvents:
            return FakeEvents(script, stop, ledger_moves)

    client._gateway = Gateway()
    outcomes: list[RoundOutcome] = []
    with caplog.at_level(logging.INFO):
        follow(client, stop=stop, on_outcome=outcomes.append, reconnect_s=0)
    assert taken == [3, 4, 5] and [o.round_id for o in outcomes] == [5]
    assert client.state.rounds_with_shares() == [5]
    assert all(client.state.load(r).shares_deleted for r in (1, 2, 3))
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(": ", 2)[1] for r in warnings] == ["round 3", "round 4"]
    assert "skipped: MPC node 0: FAILED_PRECONDITION: round 3 is CLOSED" in warnings[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)


def test_follower_retries_an_outage_and_skips_a_ledger_refusal(client, monkeypatch):
    calls: list[int] = []

    def participate(round_id: int) -> RoundOutcome:
        calls.append(round_id)
        if round_id == 7 and calls.count(7) == 1:
            raise GatewayError("endorse failed: gateway unavailable (connection refused)")
        if round_id == 8:
            raise GatewayError("endorse failed: ABORTED: chaincode response 409, round 8 is CLOSED")
        return RoundOutcome(round_id, "submitted", [], 10)

    monkeypatch.setattr(client, "participate", participate)
    stop = threading.Event()
    scripts = [[event("RoundCreated", 7, 3)], [event("RoundCreated", 7, 3), event("RoundCreated", 8, 4)]]

    class Gateway:
        def network(self, name: str) -> Any:
            return self

        def chaincode_events(self, *a: Any, **k: Any) -> FakeEvents:
            return FakeEvents(scripts.pop(0), stop if not scripts else threading.Event())

    client._gateway = Gateway()
    outcomes: list[RoundOutcome] = []
    follow(client, stop=stop, on_outcome=outcomes.append, reconnect_s=0)
    assert calls == [7, 7, 8]  # the outage: the event came again after reconnecting; the refusal: once
    assert [o.round_id for o in outcomes] == [7]
