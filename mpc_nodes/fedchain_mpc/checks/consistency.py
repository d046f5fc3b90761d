"""Share consistency: each hospital's m shares must lie on one polynomial of degree <= t.

MPC rule: every party opens z + mask, z = the public random combination (coefficients < 2^16 from
the joint seed) of its share row, mask a fresh random degree-t sharing (PRSS); the opened
points must lie on a degree-t polynomial. A hospital that cheats passes w.p. <= 2^-16 per row
(3 rows: 2^-48). Decided publicly; always on (it is the protocol's integrity, not a policy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedchain_mpc import field as ff

from .base import Check, PlainRound

ROWS = 3


def degree_ok(points: np.ndarray, t: int, p: int) -> np.ndarray:
    """points: (m, r) field values at x = 1..m. True per column iff they lie on one polynomial
    of degree <= t (interpolate from the first t+1 points, compare the others)."""
    m = points.shape[0]
    ok = np.ones(points.shape[1], dtype=bool)
    base = list(range(1, t + 2))
    for j in range(t + 1, m):
        vec = _lagrange(base, j + 1, p)
        pred = sum(points[i] * vec[i] for i in range(t + 1)) % p
        ok &= pred == points[j] % p
    return ok


def _lagrange(xs: list[int], x: int, p: int) -> list[int]:
    out = []
    for xi in xs:
        num, den = 1, 1
        for xk in xs:
            if xk != xi:
                num = num * (x - xk) % p
                den = den * (xi - xk) % p
        out.append(num * pow(den, -1, p) % p)
    return out


class Consistency(Check):
    reason = "inconsistent"
    stage = 0

    def public_rows(self, policy: Any, seed: str, d: int, reference: np.ndarray | None) -> np.ndarray:
        return ff.consistency_coefficients(seed, ROWS, d)

    def plaintext(self, rnd: PlainRound, rows: np.ndarray) -> np.ndarray:
        return np.ones(rnd.n, dtype=bool) if rnd.consistent is None else np.asarray(rnd.consistent, dtype=bool)

    async def mpc(self, rnd: Any, rows: np.ndarray) -> np.ndarray:
        from mpyc.runtime import mpc


        z = rnd.products(self).reshape(-1)
        fld = rnd.field
        mask = mpc._np_randoms(fld, z.size)
        if not isinstance(mask, fld.array):
            mask = await mask
        y = [int(v) for v in (z + mask.value) % rnd.p]
        got = await mpc.transfer(y)
        return degree_ok(np.array(got, dtype=object), rnd.t, rnd.p).reshape(rnd.n, ROWS).all(axis=1)
