"""Demo building blocks without a network: policies, the attacker coalition, CLI surface."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from fedchain.demo.adversary import Coalition
from fedchain.hospital.client import model_spec_of, train_config_of, training_seed
from fedchain.records import Round
from fedchain.verification import PolicyError, VerificationPolicy
from fedchain.verification.presets import PolicySettings


@pytest.mark.parametrize("ref_norm", [0.01, 0.5, 3.0, 40.0])
def test_policies_are_valid_for_the_mpc_nodes(ref_norm):
    s = PolicySettings()
    mpc = VerificationPolicy.from_json(s.round_policy(ref_norm).to_json())
    assert mpc.cosine_enabled and mpc.norm_bound == pytest.approx(min(s.norm_factor * ref_norm, 63.9), rel=1e-5)
    assert mpc.range_enabled and mpc.pine_num_vectors >= 41 and mpc.min_accepted == 3
    none = PolicySettings(defense="none").round_policy(ref_norm)
    assert not (none.range_enabled or none.norm_enabled or none.cosine_enabled or none.outlier_enabled)
    with pytest.raises(PolicyError, match="defense"):
        PolicySettings(defense="krum")


def test_coalition_uses_only_its_members_updates():
    rng = np.random.default_rng(0)
    benign = {"h3": rng.normal(size=50).astype(np.float32), "h4": rng.normal(size=50).astype(np.float32)}
    ipm = Coalition("ipm", ["h3", "h4"], n_clients=4, n_classes=4, seed=0).craft(benign)
    want = -0.5 * (benign["h3"] + benign["h4"]) / 2
    assert set(ipm) == {"h3", "h4"}
    np.testing.assert_allclose(ipm["h3"], want, rtol=1e-5)
    scaled = Coalition("scaling", ["h3", "h4"], n_clients=4, n_classes=4, seed=0).craft(benign)
    np.testing.assert_allclose(scaled["h4"], 4 * benign["h4"], rtol=1e-6)


def test_label_flip_poisons_data_only():
    c = Coalition("label_flip", ["h4"], n_clients=4, n_classes=4, seed=0)
    x = np.zeros((4, 28, 28), np.uint8)
    _, y = c.poison_data(x, np.array([0, 1, 2, 3]))
    assert list(y) == [3, 2, 1, 0] and not c.rewrites_updates


def test_round_description_helpers():
    rnd = Round.from_json({
        "round_id": 3, "state": "OPEN", "base_model_hash": "11" * 32, "base_round_id": 2, "deadline": 0.0,
        "min_updates": 1,
        "model_spec": {"arch": "cnn", "in_channels": 1, "n_classes": 4, "widths": [8, 16], "hidden": 32,
                       "param_count": 26500},
        "hyperparameters": {"steps": 5, "batch_size": 16, "lr": 0.1, "momentum": 0.5, "seed": 9,
                            "reference_sha256": "00" * 32}})
    assert model_spec_of(rnd).widths == (8, 16)
    hp = train_config_of(rnd)
    assert (hp.steps, hp.batch_size, hp.lr, hp.momentum) == (5, 16, 0.1, 0.5)
    assert training_seed(rnd, "h1") == training_seed(rnd, "h1") != training_seed(rnd, "h2")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedchain.cli.main", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_help_lists_the_options():
    demo = _cli("demo", "--help")
    assert demo.returncode == 0
    for opt in ("--rounds", "--hospitals", "--malicious", "--attack", "--dataset", "--defense", "--seed",
                "--network", "--report-json"):
        assert opt in demo.stdout
    hosp = _cli("hospital", "run", "--help")
    assert hosp.returncode == 0
    for opt in ("--wallet", "--data", "--network", "--rounds"):
        assert opt in hosp.stdout


def test_hospital_run_without_network_is_a_clear_error(tmp_path):
    res = _cli("hospital", "run", "--wallet", "h1", "--data", str(tmp_path / "x.npz"), "--network",
               str(tmp_path / "nonet"))
    assert res.returncode == 1
    assert "no network.json" in res.stderr and "Traceback" not in res.stderr


def test_root_split_is_balanced_disjoint_and_deterministic():
    from fedchain.reference import split_root

    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 3, 0])
    a, b = split_root(labels)
    assert set(a).isdisjoint(b) and sorted([*a, *b]) == list(range(len(labels)))
    for c in range(4):  # each class split as evenly as possible
        assert abs(int((labels[a] == c).sum()) - int((labels[b] == c).sum())) <= 1
    a2, b2 = split_root(labels.copy())
    assert list(a) == list(a2) and list(b) == list(b2)


def test_auto_cosine_min_follows_the_public_alignment():
    from fedchain.demo.rounds import auto_cosine_min

    assert auto_cosine_min(0.4, 0.05, 0.2) == pytest.approx(0.16)
    assert auto_cosine_min(0.1, 0.05, 0.2) == 0.05  # floor: late rounds
    assert auto_cosine_min(0.9, 0.05, 0.2) == 0.2  # ceiling
    assert auto_cosine_min(-0.4, 0.05, 0.2) == 0.05  # halves disagree: no signal, the floor
    assert PolicySettings(cosine_min=auto_cosine_min(0.44, 0.05, 0.2)).round_policy(1.0).cosine_min == 0.1936


def test_root_split_alignment_is_reproducible():
    from fedchain.models import ModelSpec, build_model
    from fedchain.reference import root_split_alignment
    from fedchain.training import TrainConfig

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(40, 28, 28), dtype=np.uint8)
    y = np.repeat(np.arange(4), 10)
    spec = ModelSpec(in_channels=1, n_classes=4)
    hp = TrainConfig(steps=3, batch_size=8, lr=0.05, momentum=0.9)
    one = root_split_alignment(build_model(spec, seed=0), x, y, hp, seed=5)
    two = root_split_alignment(build_model(spec, seed=0), x, y, hp, seed=5)
    assert one == two and -1.0 <= one.split_cosine <= 1.0 and one.sha256_a != one.sha256_b


def test_cli_cosine_min_accepts_auto_or_a_number(tmp_path):
    res = _cli("demo", "--cosine-min", "often", "--network", str(tmp_path / "n"))
    assert res.returncode == 2 and "number or 'auto'" in res.stderr
