"""scikit-learn's handwritten digits as a real (non-synthetic) dataset in MedMNIST's npz format.

`sklearn.datasets.load_digits` ships inside the scikit-learn package (no download): 1,797 grey
8×8 images, values 0..16, 10 classes (~180 each). They are upscaled to 28×28 by bilinear
interpolation (pixel-centre aligned, as PIL/torch `align_corners=False`) and scaled to 0..255
uint8, then split per class (stratified) into train/val/test, deterministically from the seed.

scikit-learn is an optional dependency (the `real` extra): imported only when called.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .npz import save_npz

SIZE = 28
DIGITS_MAX = 16.0  # load_digits pixel values are 0..16


class MissingDependency(ImportError):
    """scikit-learn is not installed; the message says how to get it."""


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights: out = W @ x resamples a 1-D signal bilinearly with pixel centres aligned
    (src = (dst + 0.5) · n_in / n_out − 0.5, clamped to the edge pixels). Rows sum to 1."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    w = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(w, (rows, lo), 1.0 - frac)
    np.add.at(w, (rows, hi), frac)
    return w


def upscale_bilinear(images: np.ndarray, size: int = SIZE) -> np.ndarray:
    """N×h×w float images → N×size×size float64 (separable bilinear interpolation)."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3:
        raise ValueError(f"expected N×h×w images, got shape {images.shape}")
    wy = _bilinear_matrix(images.shape[1], size)
    wx = _bilinear_matrix(images.shape[2], size)
    return np.einsum("yi,nij,xj->nyx", wy, images, wx, optimize=True)


def to_uint8(images: np.ndarray, vmax: float = DIGITS_MAX) -> np.ndarray:
    """Values 0..vmax → 0..255 uint8 (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(images, dtype=np.float64) * (255.0 / vmax)), 0, 255).astype(np.uint8)


def stratified_split(labels: np.ndarray, fractions: tuple[float, float, float], seed: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays (train, val, test): within each class, a seeded permutation cut by `fractions`
    (val and test rounded per class, train gets the rest). Disjoint, covering, each split shuffled."""
    labels = np.asarray(labels).reshape(-1)
    f_train, f_val, f_test = fractions
    if min(fractions) < 0 or abs(f_train + f_val + f_test - 1.0) > 1e-9:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val, n_test = round(len(idx) * f_val), round(len(idx) * f_test)
        n_train = len(idx) - n_val - n_test
        for part, chunk in zip(parts, np.split(idx, [n_train, n_train + n_val]), strict=True):
            part.append(chunk)
    return tuple(rng.permutation(np.concatenate(p)).astype(np.int64) for p in parts)  # type: ignore[return-value]


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """(N×8×8 float images 0..16, N int64 labels) from scikit-learn's bundled copy."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise MissingDependency("scikit-learn is not installed: pip install scikit-learn (the 'real' extra)") from exc
    d = load_digits()
    return np.asarray(d.images, dtype=np.float64), np.asarray(d.target, dtype=np.int64)


def digits_arrays(*, seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
                  ) -> dict[str, np.ndarray]:
    """The npz's arrays: {train,val,test}_images (uint8 N×28×28) and _labels (int64 N×1)."""
    images, labels = load_digits_images()
    big = to_uint8(upscale_bilinear(images))
    arrays: dict[str, np.ndarray] = {}
    for split, idx in zip(("train", "val", "test"), stratified_split(labels, fractions, seed), strict=True):
        arrays[f"{split}_images"] = big[idx]
        arrays[f"{split}_labels"] = labels[idx].reshape(-1, 1)
    return arrays


def generate_digits(path: str | Path, *, seed: int = 0,
                    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> Path:
    """Write the digits npz (MedMNIST format, loadable with fedchain.data.load_npz) and return its path."""
    return save_npz(path, digits_arrays(seed=seed, fractions=fractions))
