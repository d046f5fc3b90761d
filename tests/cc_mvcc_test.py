"""Key design under concurrency, on the in-memory ledger's MVCC validation (Fabric's rules).

Simulating many proposals against one snapshot and committing them in one block is exactly
what happens when clients submit in parallel: any two that write what the other read fail.
"""

from __future__ import annotations

import json

from cc_support import NEW_MODEL, closed_world, open_world


def test_twenty_hospitals_in_one_block_all_valid():
    w = open_world(n_hospitals=20)
    sims = [w.ledger.simulate(ident, "SubmitUpdate", json.dumps(w.update(1, name)))
            for name, ident in w.hospitals.items()]
    assert all(s.ok for s in sims), [s.response.message for s in sims if not s.ok]
    # each wrote exactly its own key, nothing shared
    written = [k for s in sims for k in s.writes]
    assert len(written) == len(set(written)) == 20
    assert w.ledger.commit(sims) == ["VALID"] * 20
    assert len(w.ok(w.auditor, "GetUpdates", "1")) == 20
    rnd = w.ok(w.operator, "CloseRound", "1")
    assert len(rnd["submitted"]) == 20


def test_submission_racing_close_fails_mvcc_not_silently():
    w = open_world()
    close = w.ledger.simulate(w.operator, "CloseRound", "1")
    late = w.ledger.simulate(w.hospitals["hospital1"], "SubmitUpdate", json.dumps(w.update(1, "hospital1")))
    assert close.ok and late.ok
    assert w.ledger.commit([close, late]) == ["VALID", "MVCC_READ_CONFLICT"]
    assert w.ok(w.auditor, "GetUpdates", "1") == []

    w2 = open_world()
    early = w2.ledger.simulate(w2.hospitals["hospital1"], "SubmitUpdate", json.dumps(w2.update(1, "hospital1")))
    close2 = w2.ledger.simulate(w2.operator, "CloseRound", "1")
    # the close's range read missed the update: phantom read, the close must be retried
    assert w2.ledger.commit([early, close2]) == ["VALID", "PHANTOM_READ_CONFLICT"]
    assert w2.ok(w2.operator, "CloseRound", "1")["submitted"] == ["hospital1"]


def test_parallel_attestations_conflict_and_retry_finalizes():
    w = closed_world()
    att = json.dumps(w.attestation(1, NEW_MODEL, sorted(w.hospitals)))
    sims = [w.ledger.simulate(node, "AttestResult", att) for node in w.mpc]
    codes = w.ledger.commit(sims)
    assert codes[0] == "VALID" and set(codes[1:]) == {"MVCC_READ_CONFLICT"}
    assert w.ok(w.auditor, "GetRound", "1")["state"] == "CLOSED"
    retry = w.ledger.simulate(w.mpc[1], "AttestResult", att)  # what the MPC node's client does
    assert w.ledger.commit([retry]) == ["VALID"]
    assert w.ok(w.auditor, "GetRound", "1")["state"] == "FINALIZED"
