"""Norm (robustness): an absolute cap ||x|| <= norm_bound (0 = none) and a FLAME-style rule relative
to the round's own valid updates: ||x_i||^2 <= (norm_rel_factor)^2 * median_j ||x_j||^2 (quantized:
REL_DEN * N_i <= q * median(N)), passed anyway if ||x_i|| <= norm_floor.

Inputs are valid rows only (the range stage is public by now), so N <= value_bound^2 and every
comparison is in range. The relative rule costs |rows|^2 comparisons of n values (one batch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fedchain.verification import REL_DEN

from .base import Check, PlainRound, median_rule_plain


class Norm(Check):
    reason = "norm"
    stage = 2
    fields = ("norm_enabled", "norm_bound", "norm_rel_factor", "norm_floor")

    def enabled(self, policy: Any) -> bool:
        return policy.norm_enabled and (policy.norm_bound > 0 or policy.norm_rel_factor > 0)

    def plaintext(self, rnd: PlainRound, rows: np.ndarray) -> np.ndarray:
        pol = rnd.policy
        n2 = rnd.norm2()
        ok = np.ones(rnd.n, dtype=bool)
        if pol.norm_bound > 0:
            ok &= n2 <= pol.norm_bound ** 2
        if pol.norm_rel_factor > 0 and rows.size:
            rel = median_rule_plain(n2, pol.norm_rel_num, REL_DEN, rows, upper=False)
            ok &= rel | (n2 <= pol.norm_floor ** 2)
        return ok

    async def mpc(self, rnd: Any, rows: np.ndarray) -> list[Any]:

        from fedchain_mpc import mpcops

        pol = rnd.policy
        n2 = await rnd.norm2()
        vmax = int(round(pol.value_bound ** 2 * rnd.one))
        terms = []
        if pol.norm_bound > 0:
            terms.append(mpcops.lt0(int(round(pol.norm_bound ** 2 * rnd.one)) - n2, vmax))  # fail bit
        if pol.norm_rel_factor > 0 and rows.size:
            bound = vmax * max(REL_DEN, pol.norm_rel_num)
            rel = mpcops.count_median_test(n2, pol.norm_rel_num, REL_DEN, bound, rows, rows, upper=False)
            full = _scatter(rnd, rel, rows, fill=1)
            if pol.norm_floor > 0:
                above = mpcops.lt0(int(round(pol.norm_floor ** 2 * rnd.one)) - n2, vmax)  # 1: above the floor
                terms.append((1 - full) * above)
            else:
                terms.append(1 - full)
        return terms


def _scatter(rnd: Any, vals: Any, rows: np.ndarray, fill: int) -> Any:
    """A secure (n,) array with vals at rows and the public `fill` elsewhere (a public linear map)."""
    pick = np.zeros((rows.size, rnd.n), dtype=np.int64)
    pick[np.arange(rows.size), rows] = 1
    rest = np.full(rnd.n, fill, dtype=np.int64)
    rest[rows] = 0
    return vals @ pick + rest
