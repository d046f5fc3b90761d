"""Non-IID client splits: per-class Dirichlet(α) proportions (Hsu et al. 2019, NIID-Bench)."""

from __future__ import annotations

import numpy as np


def dirichlet_split(labels: np.ndarray, n_clients: int, alpha: float, seed: int, min_size: int = 10,
                    max_tries: int = 100) -> list[np.ndarray]:
    """Partition sample indices among clients; each class is spread by Dirichlet(α).

    Small α gives skewed label mixes (α=0.1 nearly one class per client; α=100 ≈ IID).
    Redraws until every client holds ≥ `min_size` samples (the usual NIID-Bench rule),
    then, if still impossible, moves random samples from the largest shard, so no hospital
    ends up with an empty or useless shard. Every index appears exactly
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
    shards: list[list[int]] = []
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            p = rng.dirichlet(np.full(n_clients, alpha))
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
            for k, part in enumerate(np.split(idx, cuts)):
                parts[k].append(part)
        shards = [list(np.concatenate(s)) for s in parts]
        if min(len(s) for s in shards) >= min_size:
            break
    else:
        # Extreme skew (tiny α, few classes, many clients): top up the small shards with random
        # samples from the largest one, rather than loop forever or fail.
        for k in range(n_clients):
            while len(shards[k]) < min_size:
                donor = max(range(n_clients), key=lambda j: len(shards[j]))
                shards[k].append(shards[donor].pop(int(rng.integers(len(shards[donor])))))
    return [np.sort(np.asarray(s, dtype=np.int64)) for s in shards]


def iid_split(n: int, n_clients: int, seed: int) -> list[np.ndarray]:
    """Uniform random partition (the α → ∞ baseline)."""
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(p) for p in np.array_split(perm, n_clients)]
