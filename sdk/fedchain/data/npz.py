"""MedMNIST `.npz` loader with strict validation (never unpickles)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """The file is not a usable MedMNIST-format dataset; the message says why."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8, N×28×28 or N×28×28×3
    labels: np.ndarray  # int64, N (flattened from MedMNIST's N×1)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    train: Split
    val: Split
    test: Split
    n_classes: int
    channels: int
    source: str

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def _check_split(name: str, images: np.ndarray, labels: np.ndarray, path: Path) -> Split:
    where = f"{path}: {name}"
    if images.dtype != np.uint8:
        raise DatasetError(f"{where}_images must be uint8, got {images.dtype}")
    if images.ndim == 3:
        if images.shape[1:] != (28, 28):
            raise DatasetError(f"{where}_images must be N×28×28 or N×28×28×3, got {images.shape}")
    elif images.ndim == 4:
        if images.shape[1:] != (28, 28, 3):
            raise DatasetError(f"{where}_images must be N×28×28 or N×28×28×3, got {images.shape}")
    else:
        raise DatasetError(f"{where}_images must be N×28×28 or N×28×28×3, got {images.shape}")
    if labels.ndim == 2 and labels.shape[1] != 1:
        raise DatasetError(f"{where}_labels must be N×1 (single-label task), got {labels.shape}")
    if labels.ndim not in (1, 2):
        raise DatasetError(f"{where}_labels must be N×1, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{where}_labels must be integers, got {labels.dtype}")
    labels = labels.reshape(-1).astype(np.int64)
    if len(labels) != len(images):
        raise DatasetError(f"{where}: {len(images)} images but {len(labels)} labels")
    if len(labels) and labels.min() < 0:
        raise DatasetError(f"{where}_labels contain negative values")
    return Split(images, labels)


def load_npz(path: str | Path, *, max_bytes: int = 2 << 30) -> Dataset:
    """Load and validate a MedMNIST npz: keys, shapes, dtypes, label range, consistent channels."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from exc
    with npz:
        missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in npz.files]
        if missing:
            raise DatasetError(f"{path}: missing keys {missing} (MedMNIST npz has train_/val_/test_ images+labels)")
        splits = {}
        total = 0
        for s in SPLITS:
            try:
                images, labels = npz[f"{s}_images"], npz[f"{s}_labels"]
            except ValueError as exc:  # object arrays need pickle: refused
                raise DatasetError(f"{path}: {s} arrays are not plain numeric arrays ({exc})") from exc
            total += images.nbytes
            if total > max_bytes:
                raise DatasetError(f"{path}: larger than {max_bytes} bytes")
            splits[s] = _check_split(s, images, labels, path)
    shapes = {sp.images.shape[1:] for sp in splits.values()}
    if len(shapes) != 1:
        raise DatasetError(f"{path}: splits disagree on image shape {sorted(shapes)}")
    channels = 1 if splits["train"].images.ndim == 3 else 3
    n_classes = int(max(int(sp.labels.max()) for sp in splits.values() if len(sp)) + 1)
    if n_classes < 2:
        raise DatasetError(f"{path}: need at least 2 classes")
    return Dataset(splits["train"], splits["val"], splits["test"], n_classes, channels, str(path))


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write a MedMNIST-format npz atomically (temp file, then rename): a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    tmp.replace(path)
    return path
