"""The operator's public validation batch for the encrypted-inference check: drawn, declared, recomputed.

A round that enables the check (policy.inference_enabled) records in its hyperparameters everything
its batch depends on: the root set (root_size, root_seed, root_sha256, already there for the FLTrust
reference), validation_size and validation_seed, and the batch's SHA-256 (validation_sha256, which
CreateRound requires). So a restarted operator, `fedchain validation publish` and an auditor redraw
exactly the same bytes from the ledger and the consortium's root file, as for the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedchain.records import DEFAULT_INFERENCE_BATCH, Round, RoundId, parse_round_id
from fedchain.reference import ReferenceMismatch, RootSet, root_for_round
from fedchain.validation_batch import draw_validation_batch, encode, sha256_hex

__all__ = ["DEFAULT_INFERENCE_BATCH", "ValidationMismatch", "declared_validation_batch", "inference_batch_of",
           "plan_validation", "validation_seed"]


class ValidationMismatch(ReferenceMismatch):
    """The root data does not give the batch the round declared (or the round declares none)."""


def validation_seed(seed: int, round_id: RoundId | int) -> int:
    """A fresh batch every round (a fixed public batch is one an attacker could tune its update to)."""
    return int(seed) * 7 + parse_round_id(round_id) + 1_000_003


def inference_batch_of(policy: dict[str, Any]) -> int:
    value = policy.get("inference_batch", DEFAULT_INFERENCE_BATCH)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"policy.inference_batch must be a positive integer, got {value!r}")
    return value


def plan_validation(root: RootSet, size: int, seed: int) -> tuple[bytes, dict[str, Any]]:
    """(canonical batch bytes, the hyperparameters that declare it and let anyone redraw it)."""
    images, labels = draw_validation_batch(root.images, root.labels, size, seed=seed)
    data = encode(images, labels)
    return data, {"validation_size": int(size), "validation_seed": int(seed), "validation_sha256": sha256_hex(data)}


def declared_validation_batch(rnd: Round, images: np.ndarray, labels: np.ndarray) -> bytes:
    """The batch a round declared, redrawn from the root pool (images, labels) with the round's recorded root
    set, validation_size and validation_seed; ValidationMismatch if it declares none or the bytes differ."""
    hyper = rnd.hyper
    want = hyper.validation_sha256
    if not want:
        raise ValidationMismatch(f"round {rnd.round_id} declares no hyperparameters.validation_sha256")
    size, seed = hyper.validation_size, hyper.validation_seed
    if size is None or seed is None:
        raise ValidationMismatch(f"round {rnd.round_id} records no validation_size / validation_seed: its batch "
                                 "was not drawn by fedchain's recipe and cannot be redrawn here")
    try:
        root = root_for_round(hyper, images, labels)
    except ReferenceMismatch as exc:
        raise ValidationMismatch(str(exc)) from None
    data, _ = plan_validation(root, size, seed)
    got = sha256_hex(data)
    if got != want:
        raise ValidationMismatch(f"round {rnd.round_id} declares validation batch {want[:16]}…, this root data "
                                 f"gives {got[:16]}…")
    return data
