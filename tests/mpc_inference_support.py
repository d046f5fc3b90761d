"""Shared data of the inference-check tests (not collected): a small trained base model, planted
degraded candidates and the borderline rule (a verdict the truncation noise could flip)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from fedchain.models import ModelSpec, build_model, flatten, unflatten
from fedchain.verification import VerificationPolicy
from fedchain_mpc.checks import InferenceInputs
from fedchain_mpc.inference.plan import borderline as plan_borderline

TINY = ModelSpec(arch="cnn_pool", widths=(1,), hidden=0)  # 196 ReLUs per image: cheap trials
TOL = 48  # units of 2^-10: logits closer than this to a tie may flip under the MPC's random carries


@lru_cache(maxsize=4)
def trained(spec: ModelSpec = TINY, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(base vector, label-flipped model's vector, images, labels) trained on synthetic data."""
    from fedchain.data import synthesize
    from fedchain.training import train_local

    x, y = synthesize(600, n_classes=spec.n_classes, channels=spec.in_channels, seed=seed)
    y = y.reshape(-1)
    model = build_model(spec, seed=seed)
    unflatten(model, flatten(model) + train_local(model, x, y, epochs=3, batch_size=32, lr=0.05, seed=seed,
                                                  progress=False))
    flip = flatten(model) + train_local(model, x, (spec.n_classes - 1) - y, epochs=2, batch_size=32, lr=0.05,
                                        seed=seed + 1, progress=False)
    vx, vy = synthesize(64, n_classes=spec.n_classes, channels=spec.in_channels, seed=seed + 99)
    return flatten(model).astype(np.float32), flip.astype(np.float32), vx, vy.reshape(-1).astype(np.int64)


def planted(rng: np.random.Generator, base: np.ndarray, flip: np.ndarray, n: int) -> tuple[np.ndarray, list[str]]:
    """n updates: honest (tiny noise), label_flip, scaled and noised, mixed."""
    kinds = ["honest", "label_flip", "scaled", "noised"]
    ups, names = [], []
    for i in range(n):
        kind = kinds[i % 4]
        if kind == "honest":
            u = rng.normal(0, 0.003, base.size)
        elif kind == "label_flip":
            u = (flip - base) * rng.uniform(0.2, 1.2) + rng.normal(0, 0.003, base.size)
        elif kind == "scaled":
            u = (rng.choice([-1.0, -0.5, 0.3, 2.0, 3.0]) - 1.0) * base
        else:
            u = rng.normal(0, float(10 ** rng.uniform(-2, 0)), base.size)
        ups.append(u)
        names.append(kind)
    return np.stack(ups).astype(np.float64), names


def policy(rng: np.random.Generator, batch: int) -> VerificationPolicy:
    return VerificationPolicy(norm_enabled=False, cosine_enabled=False, outlier_enabled=False, min_accepted=1,
                              inference_enabled=True, inference_batch=batch,
                              inference_margin=float(rng.choice([0.0, 0.1, 0.25])),
                              inference_floor=float(rng.choice([0.0, 0.3, 0.5])))


def borderline(x: np.ndarray, inf: InferenceInputs, pol: VerificationPolicy) -> np.ndarray:
    """Rows whose verdict a logit perturbation of TOL units could change."""
    return plan_borderline(x, inf, pol, TOL)
