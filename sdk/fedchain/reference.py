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


def split_root(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic class-balanced halves of the root set (index arrays A, B): within each class,
    alternate samples go to A and B. Public and seed-free, so anyone can recompute the split."""
    labels = np.asarray(labels).reshape(-1)
    a: list[int] = []
    b: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        a += idx[0::2].tolist()
        b += idx[1::2].tolist()
    return np.sort(np.array(a, dtype=np.int64)), np.sort(np.array(b, dtype=np.int64))


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
    return float(np.dot(u.astype(np.float64), v.astype(np.float64)) / (nu * nv)) if nu > 0 and nv > 0 else 0.0


@dataclass(frozen=True)
class Alignment:
    """Public estimate of how well independent honest training agrees with the reference this round."""

    split_cosine: float  # cos(Δ_A, Δ_B): references trained on the two root halves from the same base
    sha256_a: str
    sha256_b: str


def root_split_alignment(base: nn.Module, root_images: np.ndarray, root_labels: np.ndarray, hp: TrainConfig,
                         seed: int = 0) -> Alignment:
    """Train the base model on each half of the root set (same hyperparameters and seed as the reference)
    and return the cosine between the two updates. Early on (a model far from any optimum) independent
    data agree strongly; near convergence the updates are mostly noise and agree weakly — the same drift
    honest hospitals' cosines with the reference show, so a cosine threshold proportional to this value
    follows them instead of being fixed. Deterministic: anyone can recompute it from public data."""
    ia, ib = split_root(root_labels)
    va = train_steps(base, root_images[ia], root_labels[ia], hp, seed=seed, progress=False, desc="root-A")
    vb = train_steps(base, root_images[ib], root_labels[ib], hp, seed=seed, progress=False, desc="root-B")
    return Alignment(cosine(va, vb), vector_hash(va), vector_hash(vb))
