"""Data: synthetic generator format/determinism, strict loader errors, Dirichlet split properties."""

from __future__ import annotations

import numpy as np
import pytest
from fedchain.data import DatasetError, dirichlet_split, generate_synthetic, load_npz, synthesize
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def grey(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("d") / "g.npz", n_train=300, n_val=60, n_test=90,
                              channels=1, n_classes=4, seed=3)


def test_medmnist_format_grey(grey):
    with np.load(grey, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels"))
        assert z["train_images"].shape == (300, 28, 28) and z["train_images"].dtype == np.uint8
        assert z["train_labels"].shape == (300, 1) and np.issubdtype(z["train_labels"].dtype, np.integer)
        assert z["test_images"].shape == (90, 28, 28)
    ds = load_npz(grey)
    assert ds.n_classes == 4 and ds.channels == 1
    assert np.bincount(ds.train.labels).tolist() == [75, 75, 75, 75]


def test_rgb_format(tmp_path):
    ds = load_npz(generate_synthetic(tmp_path / "c.npz", n_train=40, n_val=8, n_test=8, channels=3, n_classes=8))
    assert ds.train.images.shape == (40, 28, 28, 3) and ds.channels == 3 and ds.n_classes == 8


def test_deterministic_and_seed_dependent():
    a, la = synthesize(50, n_classes=5, channels=1, seed=1)
    b, lb = synthesize(50, n_classes=5, channels=1, seed=1)
    c, _ = synthesize(50, n_classes=5, channels=1, seed=2)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)


def test_classes_differ_but_overlap():
    """Class means differ (learnable), yet within-class spread is large (not trivial)."""
    x, y = synthesize(800, n_classes=4, channels=1, seed=0)
    y = y.reshape(-1)
    feats = np.stack([x.reshape(len(x), -1).mean(1), x.reshape(len(x), -1).max(1)], 1).astype(float)
    means = np.stack([feats[y == c].mean(0) for c in range(4)])
    stds = np.stack([feats[y == c].std(0) for c in range(4)])
    assert np.ptp(means[:, 0]) > 1.0  # brightness differs across classes
    assert stds[:, 0].mean() > 0.2 * np.ptp(means[:, 0])  # but distributions overlap


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_classes"):
        synthesize(10, n_classes=9, channels=1, seed=0)
    with pytest.raises(ValueError, match="channels"):
        synthesize(10, n_classes=3, channels=2, seed=0)


def _write(path, **over):
    arrays = {f"{s}_{k}": v for s in ("train", "val", "test") for k, v in
              (("images", np.zeros((4, 28, 28), np.uint8)), ("labels", np.array([[0], [1], [0], [1]])))}
    arrays.update(over)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("over, msg", [
    ({"val_labels": None}, "missing keys"),
    ({"train_images": np.zeros((4, 28, 28), np.float32)}, "uint8"),
    ({"train_images": np.zeros((4, 32, 32), np.uint8)}, "N×28×28"),
    ({"train_labels": np.array([[0], [1], [0]])}, "4 images but 3 labels"),
    ({"train_labels": np.zeros((4, 2), np.int64)}, "N×1"),
    ({"train_labels": np.array([[0.5], [1], [0], [1]])}, "integers"),
    ({"test_labels": np.array([[0], [-1], [0], [1]])}, "negative"),
    ({"test_images": np.zeros((4, 28, 28, 3), np.uint8)}, "disagree"),
    ({"train_labels": np.array([[0], [None], [0], [1]], dtype=object)}, "not plain numeric"),
])
def test_loader_rejects_with_clear_error(tmp_path, over, msg):
    with pytest.raises(DatasetError, match=msg):
        load_npz(_write(tmp_path / "x.npz", **over))


def test_loader_not_npz(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a readable"):
        load_npz(tmp_path / "x.npz")
    with pytest.raises(DatasetError, match="no such file"):
        load_npz(tmp_path / "missing.npz")


@settings(max_examples=40, deadline=None)
@given(n_clients=st.integers(1, 12), alpha=st.sampled_from([0.05, 0.3, 1.0, 100.0]), seed=st.integers(0, 10**6),
       n_classes=st.integers(2, 8))
def test_dirichlet_partition_properties(n_clients, alpha, seed, n_classes):
    labels = np.random.default_rng(seed).integers(0, n_classes, 600)
    shards = dirichlet_split(labels, n_clients, alpha, seed, min_size=5)
    allidx = np.concatenate(shards)
    assert len(shards) == n_clients
    assert np.array_equal(np.sort(allidx), np.arange(600))  # a partition: every sample exactly once
    assert min(len(s) for s in shards) >= 5
    again = dirichlet_split(labels, n_clients, alpha, seed, min_size=5)
    assert all(np.array_equal(a, b) for a, b in zip(shards, again, strict=True))


def test_dirichlet_alpha_controls_skew():
    labels = np.repeat(np.arange(4), 500)

    def skew(alpha):
        shards = dirichlet_split(labels, 8, alpha, seed=1, min_size=5)
        return np.mean([np.bincount(labels[s], minlength=4).max() / len(s) for s in shards])

    assert skew(0.1) > 0.8 > 0.4 > skew(100.0)


def test_dirichlet_impossible():
    with pytest.raises(ValueError, match="cannot give"):
        dirichlet_split(np.zeros(10, int), 5, 1.0, 0, min_size=3)
