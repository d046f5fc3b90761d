"""How the operator makes a round from public inputs only: hyperparameters, FLTrust reference, policy.

One recipe for `fedchain operator run` and `fedchain demo`. Every input of the reference (training
hyperparameters, seeds, root-set size and digest) goes into the round's hyperparameters, so the
reference can be recomputed from the ledger and the root file (fedchain.reference.recompute_reference:
a restarted operator, `fedchain reference publish`, an auditor).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fedchain.models import ModelSpec, load_model_bytes, param_count
from fedchain.records import Hyperparameters, ModelSpecRecord, Round, RoundId
from fedchain.reference import (
    Reference,
    declared_reference,
    recompute_reference,
    reference_hyperparameters,
    reference_seed,
    root_set,
    root_split_alignment,
)
from fedchain.training import TrainConfig
from fedchain.verification.presets import PolicySettings

from .validation import declared_validation_batch, inference_batch_of, plan_validation, validation_seed


def auto_cosine_min(split_cosine: float, lo: float, hi: float) -> float:
    """Per-round cosine threshold from the public root-split agreement a = cos(Δ_A, Δ_B): clamp(a², lo, hi).

    Why a²: if an update's cosine with the true direction is ρ, two independent ones agree ≈ ρ_1·ρ_2,
    so a ≈ ρ_half² tracks how much signal a round's training still carries. Measured in plaintext on the
    demo setup (8 hospitals, α = 1, 100 steps, seeds 0–2): round 1 a = 0.44–0.53 (→ 0.19–0.20) with honest
    cosines 0.31–0.58 (one very skewed hospital 0.14) and label flippers ≤ 0.16; later rounds a = 0.12–0.36
    (→ 0.05–0.13) with honest cosines down to 0.05–0.13. A linear k·a cannot do both: k ≥ 0.4 for round 1
    rejects honest updates in round 6 (a = 0.25, honest 0.075). The ceiling 0.20 matters with few local
    steps: at 30 steps / 4 hospitals a = 0.55–0.75, and a ceiling of 0.30 rejected 2 of 6 honest updates.
    """
    a = max(0.0, split_cosine)  # halves disagreeing: no signal to go by, the floor
    return round(float(min(hi, max(lo, a * a))), 4)


def spec_json(spec: ModelSpec) -> dict[str, Any]:
    """The model spec as stored with a round (param_count is what the contract checks)."""
    return json.loads(spec.to_json()) | {"param_count": param_count(spec)}


@dataclass(frozen=True)
class RoundRecipe:
    """The operator's choices that every round is made from."""

    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0  # hospitals' training seeds and the reference seeds derive from it
    policy: PolicySettings = field(default_factory=PolicySettings)
    cosine_min_auto: bool = False  # the absolute cosine floor per round from the root set (auto_cosine_min)
    auto_cosine_lo: float = 0.05
    auto_cosine_hi: float = 0.20
    inference_check: bool = False  # policy.inference_enabled + a public validation batch per round
    inference: dict[str, Any] = field(default_factory=dict)  # inference_batch/_margin/_floor for the round policy


@dataclass(frozen=True)
class PlannedRound:
    """What CreateRound, PublishReference and PublishValidationBatch need, before anything is written."""

    round_id: RoundId
    hyperparameters: dict[str, Any]
    policy: dict[str, Any]
    reference: Reference
    cosine_min: dict[str, Any]  # the threshold this round uses (+ root_split_cosine with auto): for reports
    validation: bytes | None = None  # the validation batch (fedchain.validation_batch bytes) with --inference-check


class RoundMaker:
    """Plans rounds on a base model: the reference from the root set, then the policy scaled by its norm.

    The root set is `root_size` class-balanced samples (seed = the recipe's) of the pool, the root file's
    validation split; the pool is kept so that a round made with other root settings can be recomputed.
    """

    def __init__(self, recipe: RoundRecipe, spec: ModelSpec, pool: tuple[np.ndarray, np.ndarray], root_size: int,
                 policy_check: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.recipe = recipe
        self.spec = spec
        self.spec_json = spec_json(spec)
        self.pool = pool
        self.root = root_set(pool[0], pool[1], root_size, seed=recipe.seed)
        self.policy_check = policy_check

    def plan(self, round_id: RoundId, base_model: bytes) -> PlannedRound:
        r = self.recipe
        hyper = reference_hyperparameters(r.train, r.seed, self.root, round_id)
        ref = recompute_reference(round_id, ModelSpecRecord.from_json(self.spec_json), Hyperparameters.from_json(hyper),
                                  base_model, self.root)
        cosine_min, public = self._cosine_min(base_model, round_id)
        policy = replace(r.policy, cosine_min=cosine_min).round_policy(float(np.linalg.norm(ref.vector))).to_dict()
        validation = None
        if r.inference_check:
            policy.update(r.inference)
            policy["inference_enabled"] = True
            validation, declared = plan_validation(self.root, inference_batch_of(policy),
                                                   validation_seed(r.seed, round_id))
            hyper = hyper | declared
        if self.policy_check is not None:
            self.policy_check(policy)
        hyper = hyper | {"reference_sha256": ref.sha256} | public
        shown = {"cosine_min": cosine_min} | {k: public[k] for k in ("root_split_cosine",) if k in public}
        return PlannedRound(round_id, hyper, policy, ref, shown, validation)

    def reproduce_validation(self, rnd: Round) -> bytes:
        """The validation batch a round declared, redrawn from this operator's root pool (a restart after
        CreateRound, before PublishValidationBatch); ValidationMismatch if the bytes are not the declared ones."""
        return declared_validation_batch(rnd, *self.pool)

    def reproduce(self, rnd: Round, base_model: bytes) -> Reference:
        """The reference a round declared, recomputed from this operator's root pool and the round's own
        hyperparameters (a restart after CreateRound, before PublishReference); ReferenceMismatch if the
        result is not the declared one."""
        return declared_reference(rnd, base_model, *self.pool)

    def _cosine_min(self, base_model: bytes, round_id: RoundId) -> tuple[float, dict[str, Any]]:
        """(this round's cosine_min, public hyperparameters that let anyone recompute it)."""
        r = self.recipe
        if not r.cosine_min_auto:
            return float(r.policy.cosine_min), {}
        seed = reference_seed(r.seed, round_id)
        al = root_split_alignment(load_model_bytes(base_model, self.spec), self.root.images, self.root.labels,
                                  r.train, seed=seed)
        value = auto_cosine_min(al.split_cosine, r.auto_cosine_lo, r.auto_cosine_hi)
        return value, {"cosine_min_rule": f"clamp(a^2, {r.auto_cosine_lo:g}, {r.auto_cosine_hi:g}), "
                                          "a = cos(root half A update, root half B update)",
                       "root_split_cosine": round(al.split_cosine, 6), "root_split_sha256": [al.sha256_a, al.sha256_b],
                       "reference_seed": seed, "cosine_min": value}
