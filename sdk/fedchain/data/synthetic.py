"""Deterministic synthetic "medical-like" images in MedMNIST's npz format.

Why synthetic: the embedded demo and the tests must run offline, deterministically and
fast, yet the task has to be learnable-but-not-trivial so that poisoning visibly hurts
and a defense visibly helps. Each image is a noisy, smoothly textured "tissue" background
with a few "lesions" (Gaussian blobs or rings). The class sets the lesion *distribution*
(count, radius, elongation, contrast, ring-ness, and for RGB the stain tint); the
distributions of neighbouring classes overlap, so even a perfect classifier is below 100%.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .npz import save_npz

SIZE = 28
MAX_LESIONS = 6

# Per-class lesion prototype: (mean count, mean radius px, elongation, contrast, ring prob).
# Neighbouring rows differ in one or two features only, which creates the overlap.
_PROTOTYPES: tuple[tuple[float, float, float, float, float], ...] = (
    (1.0, 2.2, 1.0, 0.35, 0.0),   # 0 "normal": one faint small spot
    (1.0, 4.5, 1.0, 0.70, 0.0),   # 1 large round bright lesion
    (4.0, 2.0, 1.0, 0.60, 0.0),   # 2 many small bright spots
    (1.0, 4.0, 3.0, 0.65, 0.0),   # 3 elongated lesion
    (1.0, 4.5, 1.0, 0.70, 0.9),   # 4 ring-shaped lesion (like 1, hollow)
    (2.0, 3.2, 1.0, -0.60, 0.0),  # 5 dark (hypodense) lesions
    (3.0, 3.0, 1.8, 0.55, 0.4),   # 6 mixed elongated, partly hollow
    (5.0, 1.6, 1.0, -0.45, 0.0),  # 7 many tiny dark spots
)
MAX_CLASSES = len(_PROTOTYPES)

# RGB stain tints (H&E-like): background pink, lesions purple-ish with a class shift.
_BG_TINT = np.array([0.93, 0.72, 0.80])
_LESION_TINT = np.array([[0.45, 0.25, 0.65], [0.55, 0.20, 0.55], [0.40, 0.30, 0.70], [0.50, 0.28, 0.60]])


@dataclass(frozen=True)
class SyntheticSpec:
    """What `generate_synthetic` produced (also written into the npz as `synthetic_spec`)."""

    n_classes: int
    channels: int
    seed: int


def _tissue(rng: np.random.Generator, n: int) -> np.ndarray:
    """Smooth random texture in [0, 1]: a few random low-frequency waves plus pixel noise."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    img = np.full((n, SIZE, SIZE), 0.35, dtype=np.float32)
    for _ in range(4):
        fx, fy = rng.uniform(0.5, 4.0, (2, n, 1, 1)).astype(np.float32)
        phase = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
        amp = rng.uniform(0.02, 0.08, (n, 1, 1)).astype(np.float32)
        img += amp * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
    img += rng.normal(0, 0.08, img.shape).astype(np.float32)
    return img


def _lesions(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Signed lesion intensity maps (n, 28, 28) drawn from each label's prototype."""
    n = len(labels)
    proto = np.array(_PROTOTYPES, dtype=np.float32)[labels]  # (n, 5)
    count = np.clip(rng.poisson(proto[:, 0:1] * 0.8, (n, 1)) + 1, 1, MAX_LESIONS)
    present = np.arange(MAX_LESIONS)[None, :] < count  # (n, K)
    radius = proto[:, 1:2] * rng.lognormal(0.0, 0.25, (n, MAX_LESIONS))
    elong = np.maximum(1.0, proto[:, 2:3] * rng.lognormal(0.0, 0.2, (n, MAX_LESIONS)))
    contrast = proto[:, 3:4] * rng.uniform(0.7, 1.25, (n, MAX_LESIONS))
    ring = rng.random((n, MAX_LESIONS)) < proto[:, 4:5]
    cy, cx = rng.uniform(6, SIZE - 6, (2, n, MAX_LESIONS))
    angle = rng.uniform(0, np.pi, (n, MAX_LESIONS))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    dy = yy[None, None] - cy[..., None, None]
    dx = xx[None, None] - cx[..., None, None]
    c, s = np.cos(angle)[..., None, None], np.sin(angle)[..., None, None]
    u = (dx * c + dy * s) / elong[..., None, None]
    v = -dx * s + dy * c
    r = np.sqrt(u * u + v * v) / radius[..., None, None]
    blob = np.exp(-0.5 * r * r * 2.0)
    hollow = np.exp(-0.5 * ((r - 1.0) / 0.28) ** 2)
    shape = np.where(ring[..., None, None], hollow, blob)
    out = (shape * (contrast * present)[..., None, None]).sum(axis=1)
    return out.astype(np.float32)


def _render(rng: np.random.Generator, labels: np.ndarray, channels: int) -> np.ndarray:
    grey = _tissue(rng, len(labels))
    lesion = _lesions(rng, labels)
    if channels == 1:
        img = grey + lesion
        img = img + rng.normal(0, 0.04, img.shape).astype(np.float32)
        return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    # RGB: background tint modulated by texture; lesions absorb light in a class-tinted colour
    tint = _LESION_TINT[labels % len(_LESION_TINT)] + rng.normal(0, 0.06, (len(labels), 3))
    base = grey[..., None] * 0.6 + 0.4
    img = base * _BG_TINT[None, None, None, :]
    img = img - np.abs(lesion)[..., None] * (1.0 - tint[:, None, None, :]) * np.sign(
        lesion.sum(axis=(1, 2), keepdims=True))[..., None]
    img = img + rng.normal(0, 0.04, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def synthesize(n: int, *, n_classes: int, channels: int, seed: int, chunk: int = 512
               ) -> tuple[np.ndarray, np.ndarray]:
    """`n` images and N×1 int64 labels (balanced classes, shuffled), deterministic for `seed`."""
    if not 2 <= n_classes <= MAX_CLASSES:
        raise ValueError(f"n_classes must be in 2..{MAX_CLASSES}, got {n_classes}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    parts = [_render(rng, labels[i:i + chunk], channels) for i in range(0, n, chunk)]
    shape = (0, SIZE, SIZE) if channels == 1 else (0, SIZE, SIZE, 3)
    images = np.concatenate(parts) if parts else np.zeros(shape, np.uint8)
    return images, labels.reshape(-1, 1)


def generate_synthetic(path: str | Path, *, n_train: int = 6000, n_val: int = 1000, n_test: int = 2000,
                       channels: int = 1, n_classes: int = 4, seed: int = 0) -> Path:
    """Write a MedMNIST-format npz (train_/val_/test_ images and labels) and return its path.

    Splits use independent child seeds, so changing n_test never changes the training set.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for k, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        images, labels = synthesize(n, n_classes=n_classes, channels=channels, seed=seed * 1000 + k)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return save_npz(path, arrays)
