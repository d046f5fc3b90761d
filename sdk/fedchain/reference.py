"""FLTrust-style reference update from the consortium's small public root dataset.

The operator (and anyone auditing) trains the base model on the public root set with the
round's hyperparameters and a fixed seed; the resulting vector is the direction honest
updates are compared against (cosine) and its norm scales the norm bound. Its SHA-256 is
recorded on the ledger, so every MPC node and auditor can check they use the same vector.
Deterministic: same base, root set, hyperparameters and seed → identical bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .models import vector_hash
from .records import Hyperparameters, ModelSpecRecord, Round, RoundId, parse_round_id
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


# ------------------------------------------------------------------ the operator's public recipe
# Everything a reference depends on is recorded in the round's hyperparameters, so the operator after a
# restart, `fedchain reference publish` and any auditor recompute exactly the same bytes from the ledger
# and the consortium's root file.


@dataclass(frozen=True)
class RootSet:
    """The consortium's public root set as used for references: which samples, and their digest."""

    images: np.ndarray
    labels: np.ndarray
    seed: int  # root_dataset's selection seed
    sha256: str  # root_digest(images, labels): tells a different root file apart before any training

    @property
    def size(self) -> int:
        return len(self.labels)


def root_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 over the root samples' shape, pixels and labels (int64 LE)."""
    h = hashlib.sha256(repr(tuple(images.shape)).encode())
    h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(np.asarray(labels).reshape(-1), dtype="<i8").tobytes())
    return h.hexdigest()


def root_set(images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0) -> RootSet:
    """`root_dataset` (class-balanced, deterministic) plus its digest."""
    x, y = root_dataset(images, labels, n, seed=seed)
    return RootSet(x, y, seed, root_digest(x, y))


def load_root_pool(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The samples a root set is drawn from: the validation split of a MedMNIST npz (as in the demo)."""
    from .data import DatasetError, load_npz

    val = load_npz(path).val
    if len(val) == 0:
        raise DatasetError(f"{path}: the validation split is empty; the root set is drawn from it")
    return val.images, val.labels


def reference_seed(seed: int, round_id: RoundId | int) -> int:
    """The reference's training seed for a round (the rule the demo has always used)."""
    return int(seed) * 7 + parse_round_id(round_id)


def reference_hyperparameters(hp: TrainConfig, seed: int, root: RootSet, round_id: int) -> dict[str, Any]:
    """The public hyperparameters a round records so that its reference can be recomputed (without
    reference_sha256, which is added once the reference is computed)."""
    return json.loads(hp.to_json()) | {"seed": int(seed), "root_size": root.size, "root_seed": root.seed,
                                       "root_sha256": root.sha256, "reference_seed": reference_seed(seed, round_id)}


class ReferenceMismatch(ValueError):
    """The root set or the recomputed reference is not the one the round declared."""


def root_for_round(hyper: Hyperparameters, images: np.ndarray, labels: np.ndarray) -> RootSet:
    """The root set a round used, redrawn from the pool (images, labels) with the round's recorded size and
    seed; checked against its root_sha256 when the round has one (older rounds record only root_size)."""
    size = hyper.root_size
    if size is None:
        raise ReferenceMismatch("the round records no root_size: it was not made from a root set")
    seed = hyper.root_seed if hyper.root_seed is not None else (hyper.seed if hyper.seed is not None else 0)
    root = root_set(images, labels, size, seed=seed)
    want = hyper.root_sha256
    if want and want != root.sha256:
        raise ReferenceMismatch(f"this root data does not hold the round's root set (its {root.size} root samples "
                                f"hash to {root.sha256[:16]}…, the round recorded {want[:16]}…)")
    return root


def recompute_reference(round_id: RoundId, spec: ModelSpecRecord, hyper: Hyperparameters, base_model: bytes,
                        root: RootSet) -> Reference:
    """The reference a round declares (or will declare: the operator computes it before CreateRound),
    recomputed from its base model bytes, its model spec and hyperparameters and the root set: the same
    training as when it was created, so the same bytes."""
    from .hospital.client import model_spec_of, train_config_of
    from .models import load_model_bytes

    seed = hyper.reference_seed
    if seed is None:
        seed = reference_seed(hyper.seed if hyper.seed is not None else 0, round_id)
    return reference_update(load_model_bytes(base_model, model_spec_of(spec)), root.images, root.labels,
                            train_config_of(hyper), seed=seed)


def declared_reference(rnd: Round, base_model: bytes, images: np.ndarray, labels: np.ndarray) -> Reference:
    """The reference a round declared (reference_sha256), recomputed from the root pool; ReferenceMismatch
    if the round declares none, the root set differs, or the recomputed bytes hash differently."""
    want = rnd.hyper.reference_sha256
    if not want:
        raise ReferenceMismatch(f"round {rnd.round_id} declares no hyperparameters.reference_sha256")
    ref = recompute_reference(rnd.round_id, rnd.model_spec, rnd.hyper, base_model,
                              root_for_round(rnd.hyper, images, labels))
    if ref.sha256 != want:
        raise ReferenceMismatch(f"round {rnd.round_id} declares reference {want[:16]}…, but its base model, "
                                f"hyperparameters and this root data give {ref.sha256[:16]}… (other training "
                                "settings, or FEDCHAIN_TORCH_THREADS differing from the run that made it?)")
    return ref
