"""Datasets: MedMNIST npz loading, a deterministic synthetic generator, non-IID splits, fetch."""

from .fetch import FetchError, catalogue_entry, fetch
from .npz import Dataset, DatasetError, Split, load_npz
from .split import dirichlet_split, iid_split
from .synthetic import MAX_CLASSES, generate_synthetic, synthesize

__all__ = [
    "MAX_CLASSES", "Dataset", "DatasetError", "FetchError", "Split", "catalogue_entry", "dirichlet_split",
    "fetch", "generate_synthetic", "iid_split", "load_npz", "synthesize",
]
