"""PublishValidationBatch / GetValidationBatch: the public batch the encrypted-inference check runs on,
published like the FLTrust reference (operator, declared hash, once, OPEN or CLOSED before attestation)."""

from __future__ import annotations

import base64
import hashlib

import numpy as np
from cc_support import REFERENCE, SPEC, World, b64, make_world, validation_batch
from fedchain.validation_batch import decode, encode
from safetensors.numpy import save

BATCH = validation_batch()
IMAGES, LABELS = decode(BATCH)
BATCH_SHA = hashlib.sha256(BATCH).hexdigest()
POLICY = {"inference_enabled": True, "inference_batch": 8, "norm_bound": 10.0}


def _create(w: World, round_id: int = 1, *, policy: dict | None = None, hyper: dict | None = None,
            status: int | None = None, contains: str = "") -> dict | str:
    head = w.ok(w.operator, "GetConsortium")["head"]
    body = {"round_id": round_id, "base_model_hash": head["model_hash"], "model_spec": SPEC,
            "hyperparameters": {"reference_sha256": hashlib.sha256(REFERENCE).hexdigest(),
                                "validation_sha256": BATCH_SHA} if hyper is None else hyper,
            "policy": POLICY if policy is None else policy, "deadline": w.ledger.now + 3600, "min_updates": 1}
    if status is not None:
        return w.refused(w.operator, "CreateRound", body, status=status, contains=contains)
    return w.ok(w.operator, "CreateRound", body)


def test_validation_batch_round_trip_and_refusals():
    w = make_world()
    _create(w)
    op = w.operator
    assert w.refused(op, "GetValidationBatch", "1", status=404, contains="no validation batch published")
    other = encode(IMAGES, (LABELS + 1) % 4)
    w.refused(op, "PublishValidationBatch", "1", b64(other), status=400,
              contains="does not match the round's validation_sha256")
    w.refused(op, "PublishValidationBatch", "1", "not base64!", status=400)
    w.refused(w.hospitals["hospital1"], "PublishValidationBatch", "1", b64(BATCH), status=403)
    out = w.ok(op, "PublishValidationBatch", "1", b64(BATCH))
    assert out == {"round_id": 1, "sha256": BATCH_SHA, "size": len(BATCH), "batch": 8}
    got = w.ok(w.hospitals["hospital1"], "GetValidationBatch", "1")
    assert base64.b64decode(got["validation_b64"]) == BATCH and got["sha256"] == BATCH_SHA
    w.refused(op, "PublishValidationBatch", "1", b64(BATCH), status=409, contains="already published")


def test_create_round_needs_a_declared_batch_when_inference_is_on():
    w = make_world()
    _create(w, hyper={"reference_sha256": hashlib.sha256(REFERENCE).hexdigest()}, status=400,
            contains="declares no validation batch")
    _create(w, hyper={"validation_sha256": "ABC"}, status=400, contains="lowercase hex SHA-256")
    _create(w, policy={"inference_enabled": "yes"}, status=400, contains="inference_enabled must be true or false")
    _create(w, policy={"inference_enabled": True, "inference_batch": 0}, status=400,
            contains="inference_batch must be an integer")
    # off: no batch needed (the default policy of cc_support has no inference fields)
    _create(w, policy={"norm_bound": 10.0}, hyper={})


def test_batch_may_follow_the_close_until_a_node_attests():
    w = make_world()
    _create(w)
    w.submit_all_and_close(1)
    w.ok(w.operator, "PublishValidationBatch", "1", b64(BATCH))

    late = make_world()
    _create(late)
    late.submit_all_and_close(1)
    late.attest_none_accepted(1, "no_validation_batch")
    late.refused(late.operator, "PublishValidationBatch", "1", b64(BATCH), status=409, contains="attested")
    late.refused(late.operator, "PublishValidationBatch", "7", b64(BATCH), status=404, contains="no round 7")


def test_batch_layout_and_size_are_checked():
    def declared(data: bytes, policy: dict | None = None) -> World:
        w = make_world()
        _create(w, policy=policy, hyper={"validation_sha256": hashlib.sha256(data).hexdigest()})
        return w

    big = encode(np.zeros((9, 28, 28), np.uint8), np.zeros(9, np.int64))
    w = declared(big)  # 9 images, the policy allows 8: refused by size before decoding... or by the header
    w.refused(w.operator, "PublishValidationBatch", "1", b64(big), status=400)
    extra = save({"images": IMAGES, "labels": LABELS, "logits": LABELS})
    w = declared(extra)
    w.refused(w.operator, "PublishValidationBatch", "1", b64(extra), status=400, contains="exactly the tensors")
    f32 = save({"images": IMAGES.astype(np.float32)[:2], "labels": LABELS[:2]})
    w = declared(f32)
    w.refused(w.operator, "PublishValidationBatch", "1", b64(f32), status=400, contains="dtype U8")
    meta = save({"images": IMAGES, "labels": LABELS}, metadata={"note": "x"})
    w = declared(meta)
    w.refused(w.operator, "PublishValidationBatch", "1", b64(meta), status=400, contains="no metadata")
    junk = b"\x10" + b"\0" * 7 + b"{}" * 8 + b"x" * 100
    w = declared(junk)
    w.refused(w.operator, "PublishValidationBatch", "1", b64(junk), status=400)
    # a round that never enabled the check but declared a batch may still publish it (default batch bound 32)
    w = declared(BATCH, policy={"norm_bound": 10.0})
    assert w.ok(w.operator, "PublishValidationBatch", "1", b64(BATCH))["batch"] == 8


def test_an_inference_round_takes_exactly_its_batch_size():
    small = encode(IMAGES[:4], LABELS[:4])
    w = make_world()
    _create(w, hyper={"validation_sha256": hashlib.sha256(small).hexdigest()})  # POLICY: inference_batch 8
    w.refused(w.operator, "PublishValidationBatch", "1", b64(small), status=400,
              contains="validation batch has 4 images; the round's policy.inference_batch is 8")
