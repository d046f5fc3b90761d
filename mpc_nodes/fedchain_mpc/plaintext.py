"""Reference semantics of the verification policy in plain float64 (see policy.py).

The MPC program must produce the same accept bits (tested over random trials). It uses the
same public randomness (seed) and the same quantized unit reference, so the only differences
are fixed-point rounding (2^-16) of inputs and intermediate values.
"""

from __future__ import annotations

import numpy as np

from fedchain_mpc import field as ff
from fedchain_mpc.policy import VerificationPolicy


def evaluate(updates: np.ndarray, n_samples: list[int], policy: VerificationPolicy,
             reference: np.ndarray | None, seed: str,
             consistent: np.ndarray | None = None) -> tuple[list[tuple[bool, str]], np.ndarray]:
    """Verdicts [(accept, reason)] and the weighted average of accepted updates (float64)."""
    x = np.asarray(updates, dtype=np.float64)
    n, d = x.shape
    cons = np.ones(n, dtype=bool) if consistent is None else np.asarray(consistent, dtype=bool)
    b = policy.norm_bound
    v = ff.pine_vectors(seed, policy.pine_num_vectors, d)
    proj = x @ v.T
    norm2 = np.einsum("ij,ij->i", x, x)
    n_ok = cons & np.all(np.abs(proj) <= policy.pine_c * b * ff.PINE_SPREAD, axis=1) & (norm2 <= b * b)
    if policy.cosine_enabled:
        if reference is None:
            raise ValueError("policy enables the cosine check but no reference update was given")
        r = ff.quantized_reference(reference) / 2.0 ** 16
        xr = x @ r
        c2 = policy.cosine_min ** 2
        if policy.cosine_min >= 0:
            c_ok = (xr >= 0) & (xr * xr >= c2 * norm2)
        else:
            c_ok = (xr >= 0) | (xr * xr <= c2 * norm2)
    else:
        c_ok = np.ones(n, dtype=bool)
    elig = n_ok & c_ok
    o_ok = np.ones(n, dtype=bool)
    if policy.outlier_active(n):
        cap = 4 * b * b
        sq = norm2[:, None] + norm2[None, :] - 2 * (x @ x.T)
        dist = np.where(np.outer(elig, elig), sq, cap)
        np.fill_diagonal(dist, 0.0)
        k = policy.krum_k(n)
        score = np.sort(dist, axis=1)[:, :k + 1].sum(axis=1)
        med = np.sort(score)[(n - 1) // 2]
        o_ok = score * 16 <= med * policy.factor_num
    verdicts: list[tuple[bool, str]] = []
    for i in range(n):
        if not cons[i]:
            verdicts.append((False, "inconsistent"))
        elif not n_ok[i]:
            verdicts.append((False, "norm"))
        elif not c_ok[i]:
            verdicts.append((False, "cosine"))
        elif not o_ok[i]:
            verdicts.append((False, "outlier"))
        else:
            verdicts.append((True, "ok"))
    w = np.array([min(int(s), policy.sample_cap) if ok else 0 for s, (ok, _) in zip(n_samples, verdicts, strict=True)],
                 dtype=np.float64)
    agg = (w @ x) / w.sum() if w.sum() > 0 else np.zeros(d)
    return verdicts, agg
