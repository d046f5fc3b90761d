"""PublishReference / GetReference: the FLTrust reference update the MPC nodes compare against."""

from __future__ import annotations

import base64
import hashlib

from cc_support import PARAM_COUNT, REFERENCE, b64, closed_world, open_world


def test_reference_round_trip_and_refusals():
    w = open_world(publish_reference=False)
    op = w.operator
    assert w.refused(op, "GetReference", "1", status=404, contains="no reference published")
    w.refused(op, "PublishReference", "1", b64(REFERENCE[:-4] + b"\0\0\0\1"), status=400,
              contains="does not match the round's reference_sha256")
    w.refused(op, "PublishReference", "1", "not base64!", status=400)
    out = w.ok(op, "PublishReference", "1", b64(REFERENCE))
    assert out == {"round_id": 1, "sha256": hashlib.sha256(REFERENCE).hexdigest(), "size": 4 * PARAM_COUNT}
    got = w.ok(w.hospitals["hospital1"], "GetReference", "1")
    assert base64.b64decode(got["reference_b64"]) == REFERENCE
    w.refused(op, "PublishReference", "1", b64(REFERENCE), status=409, contains="already published")


def test_reference_needs_a_round_that_declared_it_and_is_not_attested_yet():
    w = closed_world()  # closed_world publishes its reference while OPEN
    w.refused(w.operator, "PublishReference", "1", b64(REFERENCE), status=409, contains="already published")
    w2 = open_world(publish_reference=False)
    w2.refused(w2.operator, "PublishReference", "7", b64(REFERENCE), status=404, contains="no round 7")


def test_reference_may_follow_the_close_until_a_node_attests():
    """An operator restarted after an MPC node closed the round at its deadline can still publish the
    declared reference (its hash was fixed at CreateRound); once a node attested, it is too late."""
    w = open_world(publish_reference=False)
    w.submit_all_and_close(1)
    w.ok(w.operator, "PublishReference", "1", b64(REFERENCE))

    late = open_world(publish_reference=False)
    late.submit_all_and_close(1)
    late.attest_none_accepted(1, "no_reference")
    late.refused(late.operator, "PublishReference", "1", b64(REFERENCE), status=409, contains="attested")


def test_reference_must_be_a_float32_vector_of_the_model_size():
    w = open_world(publish_reference=False)
    # declare a reference of the wrong length: the hash matches, the size does not
    short = REFERENCE[:100]
    head = w.ok(w.operator, "GetConsortium")["head"]
    w.ok(w.operator, "CloseRound", "1")
    att = w.attestation(1, b"", [])
    att["model_hash"] = head["model_hash"]  # nobody submitted: the model stays the base
    att["outcome"] = "too_few_accepted"
    for node in w.mpc[:2]:
        w.ok(node, "AttestResult", att)
    from cc_support import SPEC

    w.ok(w.operator, "CreateRound", {"round_id": 2, "base_model_hash": head["model_hash"], "model_spec": SPEC,
                                     "hyperparameters": {"reference_sha256": hashlib.sha256(short).hexdigest()},
                                     "deadline": w.ledger.now + 3600, "min_updates": 1})
    w.refused(w.operator, "PublishReference", "2", b64(short), status=400, contains="float32 vector of 1000")
