"""`fedchain data digits`: scikit-learn's real handwritten digits in the MedMNIST npz format."""

from __future__ import annotations

import builtins
import subprocess
import sys

import numpy as np
import pytest
from fedchain.cli.main import main
from fedchain.data import load_npz
from fedchain.data.digits import _bilinear_matrix, digits_arrays, stratified_split, upscale_bilinear

pytest.importorskip("sklearn")


def _rows(split) -> set[bytes]:
    return {img.tobytes() for img in split.images}


def test_npz_loads_with_right_shapes_and_classes(tmp_path, capsys):
    out = tmp_path / "digits.npz"
    assert main(["data", "digits", "--out", str(out), "--seed", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    ds = load_npz(out)
    assert ds.n_classes == 10 and ds.channels == 1
    sizes = {s: len(ds.split(s)) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797
    assert sizes["val"] in range(170, 190) and sizes["test"] in range(350, 370)
    with np.load(out, allow_pickle=False) as raw:
        for s in ("train", "val", "test"):
            assert raw[f"{s}_images"].dtype == np.uint8 and raw[f"{s}_images"].shape[1:] == (28, 28)
            assert raw[f"{s}_labels"].shape == (sizes[s], 1) and np.issubdtype(raw[f"{s}_labels"].dtype, np.integer)
    for s in ("train", "val", "test"):
        counts = np.bincount(ds.split(s).labels, minlength=10)
        assert len(counts) == 10 and counts.min() > 0
        # stratified: every class has (about) the split's share of its ~180 images
        assert counts.max() - counts.min() <= {"train": 8, "val": 2, "test": 3}[s]
    imgs = ds.train.images
    assert imgs.max() == 255 and imgs.min() == 0  # 0..16 scaled to the full byte range


def test_splits_disjoint_covering_and_deterministic():
    labels = np.repeat(np.arange(10), 180)
    tr, va, te = stratified_split(labels, (0.7, 0.1, 0.2), seed=1)
    allidx = np.concatenate([tr, va, te])
    assert len(allidx) == len(labels) and len(np.unique(allidx)) == len(labels)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), stratified_split(labels, (0.7, 0.1, 0.2), seed=1),
                                                    strict=True))
    assert not np.array_equal(va, stratified_split(labels, (0.7, 0.1, 0.2), seed=2)[1])
    with pytest.raises(ValueError):
        stratified_split(labels, (0.8, 0.1, 0.2), seed=0)

    a, b, c = digits_arrays(seed=5), digits_arrays(seed=5), digits_arrays(seed=6)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test_labels"], c["test_labels"])
    assert sum(len(a[f"{s}_labels"]) for s in ("train", "val", "test")) == 1797


def test_split_images_disjoint(tmp_path):
    out = tmp_path / "d.npz"
    assert main(["data", "digits", "--out", str(out)]) == 0
    ds = load_npz(out)
    tr, va, te = _rows(ds.train), _rows(ds.val), _rows(ds.test)
    # load_digits has no exact duplicate 8x8 images, so distinct indices give distinct 28x28 images
    assert len(tr) == len(ds.train) and not (tr & va) and not (tr & te) and not (va & te)


def test_bilinear_upscale():
    w = _bilinear_matrix(8, 28)
    assert w.shape == (28, 8) and np.allclose(w.sum(axis=1), 1.0) and (w >= 0).all()
    const = upscale_bilinear(np.full((2, 8, 8), 7.0))
    assert const.shape == (2, 28, 28) and np.allclose(const, 7.0)
    ramp = upscale_bilinear(np.tile(np.arange(8.0), (1, 8, 1)))
    row = ramp[0, 0]
    assert np.all(np.diff(row) >= 0) and row[0] == 0 and row[-1] == 7  # monotone, edges clamped
    assert np.allclose(ramp[0], ramp[0, :1])  # constant along the other axis


def test_cli_fractions_and_errors(tmp_path, capsys):
    out = tmp_path / "d.npz"
    assert main(["data", "digits", "--out", str(out), "--val-frac", "0.15", "--test-frac", "0.15"]) == 0
    assert len(load_npz(out).val) in range(265, 275)
    assert main(["data", "digits", "--out", str(out), "--val-frac", "0.6", "--test-frac", "0.6"]) == 2
    assert "fractions" in capsys.readouterr().err


def test_missing_sklearn_is_a_clear_error(tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    assert main(["data", "digits", "--out", str(tmp_path / "d.npz")]) == 2
    err = capsys.readouterr().err
    assert "pip install scikit-learn (the 'real' extra)" in err and "Traceback" not in err


def test_console_script_accepts_out(tmp_path):
    """`--out` on the real command line: mpyc (imported by the CLI) parses sys.argv at import and used to
    exit on it (ambiguous prefix of its --output-file/--output-windows)."""
    out = tmp_path / "d.npz"
    r = subprocess.run([sys.executable, "-m", "fedchain.cli.main", "data", "digits", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert load_npz(out).n_classes == 10
