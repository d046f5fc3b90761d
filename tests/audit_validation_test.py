"""The auditor checks PublishValidationBatch like PublishReference (operator, declared hash, once, OPEN or
CLOSED before any attestation, a canonical batch for the round's model) and reports an inference round
attested without a published batch; reason "inference" is an ordinary verdict."""

from __future__ import annotations

import base64
import datetime as dt

import numpy as np
from audit_rules_test import DEADLINE, GENESIS, PARAMS, REFERENCE, T0, Chain
from fedchain.audit.chain import ChainAudit
from fedchain.audit.fl import FLAuditor
from fedchain.sharing import sha256_hex as sha
from fedchain.validation_batch import encode

BATCH = encode((np.arange(8 * 28 * 28) % 251).astype(np.uint8).reshape(8, 28, 28), np.arange(8, dtype=np.int64) % 4)
SPEC = {"param_count": PARAMS, "in_channels": 1, "n_classes": 4}


def create(c: Chain, *, declared: bytes | None = BATCH, inference: bool = True, batch: int = 8) -> None:
    hyper = {"reference_sha256": sha(REFERENCE)}
    if declared is not None:
        hyper["validation_sha256"] = sha(declared)
    c.tx("operator", "CreateRound", {
        "round_id": 1, "base_model_hash": sha(GENESIS), "model_spec": SPEC, "hyperparameters": hyper,
        "policy": {"cosine_enabled": True, "inference_enabled": inference, "inference_batch": batch},
        "deadline": (T0 + dt.timedelta(seconds=DEADLINE)).timestamp(), "min_updates": 1})


def publish(c: Chain, data: bytes = BATCH, who: str = "operator") -> None:
    c.tx(who, "PublishValidationBatch", "1", base64.b64encode(data))


def finish(c: Chain, rejected: dict[str, str] | None = None) -> None:
    att = {"round_id": 1, "model_hash": sha(GENESIS), "accepted": ["h1"], "rejected": rejected or {},
           "report_hash": "ab" * 32}
    c.tx("mpc0", "AttestResult", att)
    c.tx("mpc1", "AttestResult", att)


def honest(rejected: dict[str, str] | None = None) -> Chain:
    c = Chain()
    c.setup()
    create(c)
    c.reference()
    publish(c)
    c.update("h1")
    c.update("h2")
    c.tx("operator", "CloseRound", "1")
    finish(c, rejected if rejected is not None else {"h2": "inference"})
    return c


def test_an_inference_round_with_its_batch_audits_clean_and_reports_it():
    c = honest()
    fl = FLAuditor().run(ChainAudit(transactions=c.records))
    assert fl.findings == []
    row = fl.summary()["rounds"][1]
    assert row["inference_enabled"] and row["validation_sha256"] == row["validation_published"] == sha(BATCH)
    assert row["rejected"] == {"h2": "inference"}


def test_validation_batch_rules():
    c = Chain()
    c.setup()
    create(c)
    c.reference()
    publish(c, encode(np.zeros((8, 28, 28), np.uint8), np.zeros(8, np.int64)))  # not the declared one
    publish(c)  # a second publication
    publish(c, who="h1")
    assert c.problems() == [
        f"validation batch published for round 1 hashes to "
        f"{sha(encode(np.zeros((8, 28, 28), np.uint8), np.zeros(8, np.int64)))}, not the round's declared "
        f"validation_sha256 {sha(BATCH)}",
        "validation batch of round 1 published twice",
        "PublishValidationBatch committed for a creator with role 'hospital' (allowed: ['operator'])",
        "validation batch of round 1 published twice",
    ]


def test_an_unusable_batch_and_an_undeclared_one_are_reported():
    junk = b"not a safetensors file"
    c = Chain()
    c.setup()
    create(c, declared=junk)
    publish(c, junk)
    [problem] = c.problems()
    assert problem.startswith("validation batch of round 1 is not usable: not a safetensors file")
    c = Chain()
    c.setup()
    create(c, batch=4)  # 8 images, the policy allows 4
    publish(c)
    assert c.problems() == ["validation batch of round 1 is not usable: the validation batch is 6472 bytes; a batch "
                            "of at most 4 images takes at most 3680"]
    c = Chain()
    c.setup()
    create(c, declared=None)
    assert c.problems() == ["round 1 enables the encrypted-inference check (policy inference_enabled) but declares "
                            "no hyperparameters.validation_sha256"]


def test_after_an_attestation_is_too_late_and_before_it_is_fine():
    c = Chain()
    c.setup()
    create(c)
    c.reference()
    c.update("h1")
    c.tx("operator", "CloseRound", "1")
    publish(c)  # CLOSED, nobody attested yet
    assert c.problems() == []
    finish(c)
    publish(c)
    assert c.problems()[-2:] == ["validation batch published for round 1 while FINALIZED after an attestation",
                                 "validation batch of round 1 published twice"]


def test_an_inference_round_attested_without_its_batch_is_reported_unless_nothing_was_judged():
    c = Chain()
    c.setup()
    create(c)
    c.reference()
    c.update("h1")
    c.tx("operator", "CloseRound", "1")
    finish(c)
    assert c.problems() == ["round 1 runs the encrypted-inference check (policy inference_enabled) and was attested, "
                            "but no validation batch was published for it: its inference verdicts had no audited batch"]
    c = Chain()
    c.setup()
    create(c)
    c.reference()
    c.update("h1")
    c.tx("operator", "CloseRound", "1")
    att = {"round_id": 1, "model_hash": sha(GENESIS), "accepted": [], "rejected": {"h1": "no_validation_batch"},
           "report_hash": "ab" * 32, "outcome": "too_few_accepted"}
    c.tx("mpc0", "AttestResult", att)
    c.tx("mpc1", "AttestResult", att)
    assert c.problems() == []


def test_an_inference_round_batch_of_another_size_is_reported():
    c = Chain()
    c.setup()
    create(c, batch=16)
    publish(c)
    assert c.problems() == ["validation batch of round 1 is not usable: it has 8 images, the round's "
                            "policy.inference_batch is 16"]
