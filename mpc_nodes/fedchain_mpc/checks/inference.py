"""Encrypted inference (reason "inference", the LAST stage): the candidate model w_base + x_i runs on
the round's public validation batch inside MPC; it passes iff its number of correct predictions is
at least the public threshold T (VerificationPolicy.inference_threshold of the base model's count).

Only the pass bit leaves the MPC: no logits, counts or accuracies are opened, logged or written.
It must be the last stage: its truncation and comparison openings hide a value only if it lies in
the honest range, which the range and norm stages establish for the rows it sees (docs/inference.md
has the fixed-point plan, the costs and the soundness argument).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import Check, PlainRound


@dataclass(frozen=True)
class InferenceInputs:
    """What the inference check needs besides the shares; all public (hashes on the ledger)."""

    spec: Any  # the round's model spec: fedchain.models.ModelSpec, or anything with its fields
    base: np.ndarray  # float32 canonical parameter vector of the round's base model (models.flatten order)
    images: np.ndarray  # uint8 (B, 28, 28) or (B, 28, 28, 3): the validation batch as stored
    labels: np.ndarray  # int64 (B,)


def _need(inference: InferenceInputs | None) -> InferenceInputs:
    if inference is None:
        raise ValueError("policy enables the inference check but no inference inputs (model spec, base model, "
                         "validation batch) were given")
    return inference


def inference_plain(x: np.ndarray, inference: InferenceInputs, policy: Any) -> np.ndarray:
    """Pass bits (n,) of the inference rule for real-valued updates x (n, d), in the fixed-point plan
    the MPC runs (fedchain_mpc.inference): the plaintext twin used by tests and simulations."""
    from fedchain_mpc.inference import plain_pass

    return plain_pass(x, inference, policy)


class Inference(Check):
    reason = "inference"
    stage = 9  # after every other stage: rows here passed range and norm (their values are in range)
    fields = ("inference_enabled", "inference_batch", "inference_margin", "inference_floor")
    switch = "inference_enabled"

    def plaintext(self, rnd: PlainRound, rows: np.ndarray) -> np.ndarray:
        inf = _need(rnd.inference)
        out = np.ones(rnd.n, dtype=bool)
        if rows.size:
            out[rows] = inference_plain(rnd.x[rows], inf, rnd.policy)
        return out

    async def mpc(self, rnd: Any, rows: np.ndarray) -> list[Any]:
        from fedchain_mpc.inference.secure import fail_terms

        inf = _need(rnd.inference)
        if not rows.size:
            return []
        return await fail_terms(rnd, rows, inf)
