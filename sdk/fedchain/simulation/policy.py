"""Stand-in plaintext verification policy with the shape of a verdict function.

Used in tests and for quick tuning without `fedchain_mpc` (which `fedchain` must not import).
The reference semantics are `fedchain_mpc.plaintext.evaluate` (the MPC program matches it bit
for bit); its outlier rule differs in detail (distances only among updates that passed the
norm and cosine checks), so the demo defaults were measured with that one — see the ML report. Checks, first failing reason wins (fixed order as in the MPC program):
  norm    ‖Δ‖ > norm_factor · ‖Δ_ref‖            (scaling, noise; bound is public via the reference)
  cosine  cos(Δ, Δ_ref) < cosine_min              (sign flip, IPM, noise; FLTrust direction check)
  cosine_rel  cos(Δ, Δ_ref) < cosine_rel_min · median_i cos(Δ_i, Δ_ref)   (optional; label flip
          under non-IID data, where absolute cosines of honest hospitals are small)
  outlier Multi-Krum score > outlier_factor · median score, where score_i = Σ of squared
          distances to its n − f − 2 nearest neighbours (Blanchard et al. 2017)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .strategy import Verdict


@dataclass(frozen=True, kw_only=True)
class BaselinePolicy:
    norm_factor: float = 2.0
    cosine_min: float = 0.05
    outlier_factor: float = 4.0  # 0 disables the outlier check
    cosine_rel_min: float = 0.0  # 0 disables the relative cosine check
    assumed_byzantine: int = 2

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_any(cls, p: Any) -> BaselinePolicy:
        if isinstance(p, BaselinePolicy):
            return p
        return cls(**{k: v for k, v in dict(p).items() if k in cls.__dataclass_fields__})


def krum_scores(updates: np.ndarray, f: int) -> np.ndarray:
    """Sum of squared distances to the n − f − 2 nearest other updates (at least 1), from the Gram matrix."""
    n = len(updates)
    g = updates @ updates.T
    sq = np.diag(g)
    d = np.maximum(sq[:, None] + sq[None, :] - 2 * g, 0.0)
    k = max(1, min(n - 1, n - f - 2))
    d_sorted = np.sort(d + np.diag(np.full(n, np.inf)), axis=1)[:, :k]
    return d_sorted.sum(1)


def evaluate(updates: list[np.ndarray], n_samples: list[int], policy: Any, reference: np.ndarray | None
             ) -> list[Verdict]:
    p = BaselinePolicy.from_any(policy)
    u = np.stack(updates).astype(np.float64)
    n = len(u)
    norms = np.linalg.norm(u, axis=1)
    reasons: list[str | None] = [None] * n
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float64)
        rn = float(np.linalg.norm(ref))
        cos = (u @ ref) / np.maximum(norms * rn, 1e-30)
        for i in range(n):
            if norms[i] > p.norm_factor * rn:
                reasons[i] = "norm"
            elif cos[i] < p.cosine_min:
                reasons[i] = "cosine"
        med_cos = float(np.median(cos))
        if p.cosine_rel_min > 0 and med_cos > 0:
            for i in range(n):
                if reasons[i] is None and cos[i] < p.cosine_rel_min * med_cos:
                    reasons[i] = "cosine"
    if p.outlier_factor > 0 and n >= 3:
        scores = krum_scores(u, p.assumed_byzantine)
        med = float(np.median(scores))
        for i in range(n):
            if reasons[i] is None and scores[i] > p.outlier_factor * med:
                reasons[i] = "outlier"
    return [Verdict(r is None, r or "ok") for r in reasons]
