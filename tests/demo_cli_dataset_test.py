"""`fedchain demo --dataset` reports the data it used, and a reused network refuses data its model does not fit.

Issue 12: the report's config showed the synthetic sizes (n_train 6000) for a --dataset run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import find_free_port_base
from fedchain.data.npz import save_npz

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

FEDCHAIN = str(Path(sys.executable).with_name("fedchain"))


def _rgb_npz(path: Path) -> Path:
    """600/60/100 samples of 28x28x3 images, 5 classes: nothing like the synthetic defaults (6000, 1 channel, 4)."""
    rng = np.random.default_rng(3)
    arrays = {}
    for split, n in (("train", 600), ("val", 60), ("test", 100)):
        labels = np.arange(n) % 5
        images = rng.integers(0, 60, size=(n, 28, 28, 3), dtype=np.uint8)
        images[np.arange(n), 4 * labels, :, labels % 3] = 255  # a learnable stripe per class
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    return save_npz(path, arrays)


def test_report_names_the_dataset_and_a_reused_network_refuses_other_data(tmp_path):
    data = _rgb_npz(tmp_path / "rgb.npz")
    network = tmp_path / "net"
    base = ["demo", "--network", str(network), "--base-port", str(find_free_port_base()), "--hospitals", "3",
            "--attack", "none", "--rounds", "1", "--steps", "20", "--warmup-epochs", "1"]
    try:
        res = subprocess.run([FEDCHAIN, *base, "--dataset", str(data), "--keep-network", "--report-dir",
                              str(tmp_path / "rep"), "--report-json", str(tmp_path / "report.json")],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        config = json.loads((tmp_path / "report.json").read_text())["config"]
        assert config["data"] == {"source": "npz", "path": str(data.resolve()), "n_train": 600, "n_val": 60,
                                  "n_test": 100, "n_classes": 5, "channels": 3}
        assert (config["n_train"], config["n_test"], config["root_size"]) == (600, 100, 60)
        assert config["model_spec"]["in_channels"] == 3 and config["model_spec"]["n_classes"] == 5
        assert "| data | {'source': 'npz'" in (tmp_path / "rep" / "report.md").read_text()

        again = subprocess.run([FEDCHAIN, *base], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        err = again.stderr.strip().splitlines()
        assert again.returncode == 2, again.stderr[-3000:]
        assert "Traceback" not in again.stderr and again.stdout == ""
        assert err[-1].startswith("error: the network in ") and "3-channel images and 5 classes" in err[-1]
        assert "the synthetic data needs 1-channel images and 4 classes" in err[-1]
        assert [r["round"] for r in json.loads((tmp_path / "report.json").read_text())["rounds"]] == [1]
    finally:
        subprocess.run([FEDCHAIN, "network", "down", "--network", str(network)], capture_output=True, timeout=120)
