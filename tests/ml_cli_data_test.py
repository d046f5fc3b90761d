"""`fedchain data` sub-commands: synth → info → split round trip, and a clear fetch error offline."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from fedchain.cli.main import main
from fedchain.data import load_npz


def test_synth_info_split(tmp_path, capsys):
    out = tmp_path / "d.npz"
    assert main(["data", "synth", "--out", str(out), "--n-train", "200", "--n-val", "20", "--n-test", "20",
                 "--classes", "3", "--channels", "3", "--seed", "4"]) == 0
    ds = load_npz(out)
    assert ds.channels == 3 and ds.n_classes == 3 and len(ds.train) == 200
    capsys.readouterr()
    assert main(["data", "info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["train"]["n"] == 200 and sum(info["train"]["class_counts"]) == 200
    assert main(["data", "split", str(out), "--hospitals", "4", "--alpha", "0.3", "--out", str(tmp_path / "h")]) == 0
    parts = [load_npz(tmp_path / "h" / f"hospital{i}.npz") for i in range(1, 5)]
    assert sum(len(p.train) for p in parts) == 200
    merged = np.sort(np.concatenate([p.train.images.reshape(len(p.train), -1)[:, 0] for p in parts]))
    assert np.array_equal(merged, np.sort(ds.train.images.reshape(200, -1)[:, 0]))


def test_info_bad_file(tmp_path, capsys):
    (tmp_path / "x.npz").write_bytes(b"junk")
    assert main(["data", "info", str(tmp_path / "x.npz")]) == 1
    assert "not a readable .npz" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("medmnist") is not None, reason="medmnist installed")
def test_fetch_without_extra_explains(tmp_path, capsys):
    assert main(["data", "fetch", "pathmnist", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "medmnist" in err and "--url" in err and "synth" in err


def test_fetch_refuses_plain_http(tmp_path, capsys):
    assert main(["data", "fetch", "x", "--out", str(tmp_path), "--url", "http://example.org/x.npz",
                 "--md5", "0" * 32]) == 1
    assert "non-HTTPS" in capsys.readouterr().err
