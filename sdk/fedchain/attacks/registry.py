"""Attack implementations and the `ATTACKS` registry (evaluation only; see package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np


@dataclass
class AttackContext:
    """What a (colluding) attacker knows in a round."""

    honest_updates: list[np.ndarray]  # honest updates of this round (omniscient attacks only)
    n_clients: int  # total participants this round
    n_malicious: int
    rng: np.random.Generator
    n_classes: int = 0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attack:
    name: str
    level: str  # "data" (poison the training set) or "update" (rewrite the update)
    description: str
    apply_data: Callable[[np.ndarray, np.ndarray, AttackContext], tuple[np.ndarray, np.ndarray]] | None = None
    apply_update: Callable[[np.ndarray, AttackContext], np.ndarray] | None = None
    omniscient: bool = False  # needs the honest updates of the round


def _label_flip(images: np.ndarray, labels: np.ndarray, ctx: AttackContext) -> tuple[np.ndarray, np.ndarray]:
    """y → C−1−y (Tolpegin et al. 2020 style all-class flip)."""
    c = ctx.n_classes or int(labels.max()) + 1
    return images, (c - 1 - np.asarray(labels)).astype(labels.dtype)


def _sign_flip(u: np.ndarray, ctx: AttackContext) -> np.ndarray:
    """−k·Δ: push the model against the descent direction."""
    return (-float(ctx.params.get("factor", 1.0)) * u).astype(np.float32)


def _scaling(u: np.ndarray, ctx: AttackContext) -> np.ndarray:
    """k·Δ (model-replacement boosting, Bagdasaryan et al. 2020); default k = number of clients."""
    return (float(ctx.params.get("factor", ctx.n_clients)) * u).astype(np.float32)


def _gaussian(u: np.ndarray, ctx: AttackContext) -> np.ndarray:
    """Pure noise N(0, σ²I) in place of the update; σ set so its norm is `factor`× (default 20) the update's norm."""
    sigma = ctx.params.get("sigma")
    if sigma is None:
        sigma = float(ctx.params.get("factor", 20.0)) * float(np.linalg.norm(u)) / np.sqrt(u.size)
    return ctx.rng.normal(0.0, float(sigma), u.shape).astype(np.float32)


def _honest_stack(ctx: AttackContext, u: np.ndarray) -> np.ndarray:
    return np.stack(ctx.honest_updates).astype(np.float64) if ctx.honest_updates else u[None].astype(np.float64)


def _alie(u: np.ndarray, ctx: AttackContext) -> np.ndarray:
    """A Little Is Enough (Baruch et al. 2019): μ − z·σ per coordinate, z from n and m."""
    h = _honest_stack(ctx, u)
    n, m = ctx.n_clients, ctx.n_malicious
    z = ctx.params.get("z")
    if z is None:
        s = n // 2 + 1 - m
        z = NormalDist().inv_cdf(min(max((n - s) / n, 0.5 + 1e-6), 1 - 1e-6))
    return (h.mean(0) - float(z) * h.std(0)).astype(np.float32)


def _ipm(u: np.ndarray, ctx: AttackContext) -> np.ndarray:
    """Inner Product Manipulation (Xie et al. 2019): −ε·mean(honest)."""
    h = _honest_stack(ctx, u)
    return (-float(ctx.params.get("epsilon", 0.5)) * h.mean(0)).astype(np.float32)


def _min_max(u: np.ndarray, ctx: AttackContext) -> np.ndarray:
    """Min-Max (Shejwalkar & Houmansadr 2021): μ + γ·p with the largest γ whose max distance to
    any honest update stays ≤ the max pairwise honest distance; p = −std (the paper's choice)."""
    h = _honest_stack(ctx, u)
    mu = h.mean(0)
    kind = ctx.params.get("perturbation", "std")
    p = -h.std(0) if kind == "std" else -mu / (np.linalg.norm(mu) + 1e-12)
    sq = (h * h).sum(1)
    gram = h @ h.T
    max_pair = float(np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * gram, 0).max()))

    def ok(g: float) -> bool:
        return float(np.linalg.norm(h - (mu + g * p), axis=1).max()) <= max_pair

    lo, hi = 0.0, float(ctx.params.get("gamma_init", 10.0))
    while ok(hi) and hi < 1e6:  # grow until infeasible
        lo, hi = hi, hi * 2
    for _ in range(int(ctx.params.get("iters", 30))):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return (mu + lo * p).astype(np.float32)


ATTACKS: dict[str, Attack] = {
    a.name: a
    for a in (
        Attack("label_flip", "data", "train on labels y → C−1−y", apply_data=_label_flip),
        Attack("sign_flip", "update", "send −Δ", apply_update=_sign_flip),
        Attack("scaling", "update", "send k·Δ (k = number of hospitals)", apply_update=_scaling),
        Attack("gaussian", "update", "send Gaussian noise (20× the update's norm)", apply_update=_gaussian),
        Attack("alie", "update", "A Little Is Enough: μ − z·σ of honest updates", apply_update=_alie,
               omniscient=True),
        Attack("ipm", "update", "Inner Product Manipulation: −ε·mean(honest)", apply_update=_ipm, omniscient=True),
        Attack("min_max", "update", "Min-Max: μ − γ·σ, γ max within honest spread", apply_update=_min_max,
               omniscient=True),
    )
}
ALIASES = {"gaussian_noise": "gaussian", "minmax": "min_max", "min-max": "min_max", "sign-flip": "sign_flip",
           "label-flip": "label_flip"}


def get_attack(name: str) -> Attack:
    key = ALIASES.get(name, name)
    if key not in ATTACKS:
        raise KeyError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    return ATTACKS[key]
