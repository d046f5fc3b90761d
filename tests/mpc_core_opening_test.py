"""opening.py: vectorized reduction/recombination equals exact Python-int arithmetic mod p."""

from __future__ import annotations

import numpy as np
import pytest
from fedchain_mpc import opening as op
from mpyc.runtime import mpc

P = mpc.SecFxp(32, 16).field.modulus
C = op.fold_constant(P)


def _shares(secrets: np.ndarray, t: int, m: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    n, d = secrets.shape
    coefs = [np.array([[int(rng.integers(0, 2 ** 62)) * int(rng.integers(0, 2 ** 18)) % P for _ in range(d)]
                       for _ in range(n)], dtype=object) for _ in range(t)]
    out = []
    for j in range(m):
        x = secrets.copy()
        for k in range(t):
            x = x + coefs[k] * (j + 1) ** (k + 1)
        x = x % P
        out.append(((x >> 64).astype(np.uint64), (x & (2 ** 64 - 1)).astype(np.uint64)))
    return out


def test_field_has_fold_form() -> None:
    assert C == 65 and P == 2 ** 80 - 65


@pytest.mark.parametrize("t,kind", [(1, "small"), (2, "small"), (1, "huge"), (2, "huge")])
def test_recombine_matches_python_ints(t: int, kind: str) -> None:
    rng = np.random.default_rng(t * 7 + len(kind))
    n, d = 6, 400
    a = rng.integers(-2 ** 31, 2 ** 31, size=(n, d)).astype(object)
    if kind == "huge":  # wrapped values: exercise the Python-int fallback and large folds
        a[:, :40] = [[int(rng.integers(0, 2 ** 62)) * int(rng.integers(0, 2 ** 18)) * (1 if rng.random() < .5 else -1)
                      for _ in range(40)] for _ in range(n)]
    secrets = a % P
    shares = _shares(secrets, t, 2 * t + 1, rng)
    w = rng.integers(0, 2 ** 20, n)
    w[0] = 0
    parts = [op.share_bytes(op.weighted_sum_parts(hi, lo, w), C) for hi, lo in shares[:t + 1]]
    for (hi, lo), data in zip(shares, parts, strict=False):  # each share is reduced mod p
        x = hi.astype(object) * 2 ** 64 + lo.astype(object)
        got = np.frombuffer(data[:8 * d], "<u8").astype(object) + (np.frombuffer(data[8 * d:], "<u2").astype(object) << 64)
        assert np.array_equal(got, (w.astype(object) @ x) % P)
    exact = [int(v) % P for v in w.astype(object) @ secrets]
    expected = np.array([float(v - P if v > P // 2 else v) for v in exact])
    assert np.array_equal(op.recombine(parts, d, P, C), expected)


def test_malformed_share_rejected() -> None:
    with pytest.raises(ValueError):
        op.recombine([b"\0" * 10, b"\0" * 9], 1, P, C)


def test_lagrange_integers() -> None:
    assert op.lagrange_at_zero(1) == [2, -1]
    assert op.lagrange_at_zero(2) == [3, -3, 1]
