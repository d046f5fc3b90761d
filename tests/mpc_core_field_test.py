"""Exact limb products mod p against Python big-integer arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from fedchain.sharing import field_modulus
from fedchain_mpc import field as ff


def _random_shares(rng: np.random.Generator, n: int, d: int, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hi = rng.integers(0, 1 << 16, (n, d), dtype=np.uint64)
    lo = rng.integers(0, 1 << 64, (n, d), dtype=np.uint64)
    hi[0, :3] = p >> 64  # include the largest elements
    lo[0, :3] = (p - 1) & ((1 << 64) - 1)
    ints = ((hi.astype(object) << 64) | lo.astype(object)) % p
    return ints, ((ints >> 64).astype(np.uint64)), ((ints & ((1 << 64) - 1)).astype(np.uint64))


@pytest.mark.parametrize("d,block", [(50, 8192), (1000, 128), (300, 7)])
def test_local_products_exact(d: int, block: int) -> None:
    p = field_modulus()
    rng = np.random.default_rng(d)
    x, hi, lo = _random_shares(rng, 5, d, p)
    public = np.vstack([ff.pine_vectors("s", 3, d), ff.consistency_coefficients("s", 2, d),
                        rng.integers(-(1 << 16), (1 << 16) + 1, (1, d)).astype(np.float64)])
    g, pub = ff.local_products(hi, lo, public, p, block=block)
    assert np.array_equal(g, (x @ x.T) % p)
    assert np.array_equal(pub, (x @ public.astype(np.int64).astype(object).T) % p)


def test_local_products_flushes_int64_accumulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ff, "FLUSH_EVERY", 2)
    p = field_modulus()
    x, hi, lo = _random_shares(np.random.default_rng(7), 3, 100, p)
    g, _ = ff.local_products(hi, lo, np.zeros((1, 100)), p, block=9)
    assert np.array_equal(g, (x @ x.T) % p)


def test_weighted_sum_exact() -> None:
    p = field_modulus()
    x, hi, lo = _random_shares(np.random.default_rng(3), 6, 500, p)
    w = np.array([0, 1, 7, 1000, (1 << 20) - 1, 3])
    got = ff.weighted_sum(hi, lo, w, p)
    assert np.array_equal(got % p, (w.astype(object) @ x) % p)
    with pytest.raises(ValueError):
        ff.weighted_sum(hi, lo, np.array([1 << 20] * 6), p)


def test_public_randomness_is_deterministic_and_seed_bound() -> None:
    a = ff.pine_vectors("seed-1", 4, 100)
    assert np.array_equal(a, ff.pine_vectors("seed-1", 4, 100))
    assert not np.array_equal(a, ff.pine_vectors("seed-2", 4, 100))
    assert a.min() >= -256 and a.max() <= 256 and len(np.unique(a)) > 250
    r = ff.quantized_reference(np.array([3.0, 4.0]))
    assert list(r) == [round(0.6 * 65536), round(0.8 * 65536)]
    with pytest.raises(ValueError):
        ff.quantized_reference(np.zeros(3))
