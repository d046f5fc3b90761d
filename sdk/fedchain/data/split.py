"""Non-IID client splits: per-class Dirichlet(α) proportions (Hsu et al. 2019, NIID-Bench)."""

from __future__ import annotations

import numpy as np


def dirichlet_split(labels: np.ndarray, n_clients: int, alpha: float, seed: int, min_size: int = 10,
                    max_tries: int = 1000) -> list[np.ndarray]:
    """Partition sample indices among clients; each class is spread by Dirichlet(α).

    Small α gives skewed label mixes (α=0.1 nearly one class per client; α=100 ≈ IID).
    Redraws until every client holds ≥ `min_size` samples (the usual NIID-Bench rule),
    so no hospital ends up with an empty or useless shard. Every index appears exactly
    once; the result is deterministic for `seed`; index arrays are sorted.
    """
    labels = np.asarray(labels).reshape(-1)
    n = len(labels)
    if n_clients < 1:
        raise ValueError("n_clients must be >= 1")
    if alpha <= 0:
        raise ValueError("alpha must be > 0")
    if n_clients * min_size > n:
        raise ValueError(f"cannot give {n_clients} clients {min_size} samples each out of {n}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(max_tries):
        shards: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            p = rng.dirichlet(np.full(n_clients, alpha))
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
            for k, part in enumerate(np.split(idx, cuts)):
                shards[k].append(part)
        out = [np.sort(np.concatenate(s)) for s in shards]
        if min(len(s) for s in out) >= min_size:
            return out
    raise ValueError(f"no Dirichlet({alpha}) split with >= {min_size} samples per client after {max_tries} tries;"
                     " lower min_size or raise alpha")


def iid_split(n: int, n_clients: int, seed: int) -> list[np.ndarray]:
    """Uniform random partition (the α → ∞ baseline)."""
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(p) for p in np.array_split(perm, n_clients)]
