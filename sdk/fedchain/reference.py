"""FLTrust-style reference update from the consortium's small public root dataset.

The operator (and anyone auditing) trains the base model on the public root set with the
round's hyperparameters and a fixed seed; the resulting vector is the direction honest
updates are compared against (cosine) and its norm scales the norm bound. Its SHA-256 is
recorded on the ledger, so every MPC node and auditor can check they use the same vector.
Deterministic: same base, root set, hyperparameters and seed → identical bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from .models import vector_hash
from .training import TrainConfig, train_steps


@dataclass(frozen=True)
class Reference:
    vector: np.ndarray  # float32, canonical order
    sha256: str
    n_samples: int


def root_dataset(images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced public root subset of `n` samples (FLTrust uses ~100), deterministic for `seed`."""
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    take: list[int] = []
    k = 0
    while len(take) < n and any(k < len(p) for p in per):
        take += [int(p[k]) for p in per if k < len(p)][: n - len(take)]
        k += 1
    idx = np.sort(np.array(take, dtype=np.int64))
    return images[idx], labels[idx]


def reference_update(base: nn.Module, root_images: np.ndarray, root_labels: np.ndarray, hp: TrainConfig,
                     seed: int = 0, progress: bool = False) -> Reference:
    """Train `base` (unchanged) on the root set with the round's hyperparameters; Δ_ref and its SHA-256."""
    vec = train_steps(base, root_images, root_labels, hp, seed=seed, progress=progress, desc="reference")
    return Reference(vec, vector_hash(vec), len(root_labels))
