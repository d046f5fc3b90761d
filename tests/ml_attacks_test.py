"""Attacks (evaluation only): each one changes the update or data as its paper says."""

from __future__ import annotations

import numpy as np
import pytest
from fedchain.attacks import ATTACKS, AttackContext, get_attack


def ctx(honest, n=8, m=2, **params):
    return AttackContext(honest, n, m, np.random.default_rng(0), n_classes=4, params=params)


@pytest.fixture
def honest():
    rng = np.random.default_rng(1)
    common = rng.normal(0, 1, 500)
    return [(common + rng.normal(0, 0.5, 500)).astype(np.float32) for _ in range(6)]


def test_registry():
    assert set(ATTACKS) == {"label_flip", "sign_flip", "scaling", "gaussian", "alie", "ipm", "min_max"}
    assert get_attack("gaussian_noise") is ATTACKS["gaussian"] and get_attack("min-max") is ATTACKS["min_max"]
    with pytest.raises(KeyError, match="unknown attack"):
        get_attack("backdoor")
    for a in ATTACKS.values():
        assert (a.apply_data is not None) == (a.level == "data")
        assert (a.apply_update is not None) == (a.level == "update")


def test_label_flip():
    x = np.zeros((4, 28, 28), np.uint8)
    y = np.array([0, 1, 2, 3])
    x2, y2 = ATTACKS["label_flip"].apply_data(x, y, ctx([]))
    assert x2 is x and y2.tolist() == [3, 2, 1, 0]


def test_sign_flip_and_scaling(honest):
    u = honest[0]
    assert np.allclose(ATTACKS["sign_flip"].apply_update(u, ctx(honest)), -u)
    assert np.allclose(ATTACKS["scaling"].apply_update(u, ctx(honest)), 8 * u)  # default k = n clients
    assert np.allclose(ATTACKS["scaling"].apply_update(u, ctx(honest, factor=3)), 3 * u)


def test_gaussian_is_noise_of_larger_norm(honest):
    u = honest[0]
    g = ATTACKS["gaussian"].apply_update(u, ctx(honest))
    assert g.shape == u.shape and g.dtype == np.float32
    assert 18 < np.linalg.norm(g) / np.linalg.norm(u) < 22
    assert abs(np.dot(g, u)) / (np.linalg.norm(g) * np.linalg.norm(u)) < 0.2


def test_alie_stays_within_coordinate_spread(honest):
    h = np.stack(honest).astype(np.float64)
    a = ATTACKS["alie"].apply_update(honest[0], ctx(honest)).astype(np.float64)
    z = (h.mean(0) - a) / h.std(0)
    assert np.allclose(z, z[0], atol=1e-3) and 0 < z[0] < 1.5  # μ − z·σ with the paper's small z


def test_ipm_points_against_mean(honest):
    mu = np.stack(honest).mean(0)
    a = ATTACKS["ipm"].apply_update(honest[0], ctx(honest, epsilon=0.5))
    assert np.allclose(a, -0.5 * mu, atol=1e-5) and float(np.dot(a, mu)) < 0


def test_min_max_maximal_within_honest_spread(honest):
    h = np.stack(honest).astype(np.float64)
    a = ATTACKS["min_max"].apply_update(honest[0], ctx(honest)).astype(np.float64)
    max_pair = max(np.linalg.norm(x - y) for x in h for y in h)
    far = np.linalg.norm(h - a, axis=1).max()
    assert far <= max_pair + 1e-3 and far > 0.95 * max_pair  # pushed right to the boundary
    assert np.linalg.norm(a - h.mean(0)) > 0.1
