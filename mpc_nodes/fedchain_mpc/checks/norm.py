"""Norm (robustness), two rules with reason code "norm":

- NormCap (stage 1, opened with the range check): ||x|| <= norm_bound, an absolute cap (0 = none).
  Deciding it early bounds every later value by the cap, so later comparisons are shorter.
- Norm (stage 2): FLAME-style, relative to the round's own updates that passed so far:
  ||x_i||^2 <= norm_rel_factor^2 * median_j ||x_j||^2 (quantized: REL_DEN * N_i <= q * median(N)),
  passed anyway if ||x_i|| <= norm_floor. |rows|^2 comparisons of n values in one batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fedchain.verification import REL_DEN

from .base import Check, PlainRound, median_rule_plain


class NormCap(Check):
    reason = "norm"
    stage = 1
    fields = ("norm_enabled", "norm_bound")

    def enabled(self, policy: Any) -> bool:
        return policy.norm_enabled and policy.norm_bound > 0

    def plaintext(self, rnd: PlainRound, rows: np.ndarray) -> np.ndarray:
        return rnd.norm2() <= rnd.policy.norm_bound ** 2

    async def mpc(self, rnd: Any, rows: np.ndarray) -> list[Any]:
        from fedchain_mpc import mpcops

        pol = rnd.policy
        vmax = int(round(pol.value_bound ** 2 * rnd.one))  # rows that fail the range check may hold garbage:
        cap = int(round(pol.norm_bound ** 2 * rnd.one))  # their bit may be a non-bit, they fail anyway
        return [mpcops.lt0(cap - await rnd.norm2(), 2 * vmax)]  # 1: above the cap


class Norm(Check):
    reason = "norm"
    stage = 2
    fields = ("norm_enabled", "norm_rel_factor", "norm_floor")

    def enabled(self, policy: Any) -> bool:
        return policy.norm_enabled and policy.norm_rel_factor > 0

    def plaintext(self, rnd: PlainRound, rows: np.ndarray) -> np.ndarray:
        pol = rnd.policy
        n2 = rnd.norm2()
        if not rows.size:
            return np.ones(rnd.n, dtype=bool)
        rel = median_rule_plain(n2, pol.norm_rel_num, REL_DEN, rows, upper=False)
        return rel | (n2 <= pol.norm_floor ** 2)

    async def mpc(self, rnd: Any, rows: np.ndarray) -> list[Any]:
        from fedchain_mpc import mpcops

        pol = rnd.policy
        if not rows.size:
            return []
        n2 = await rnd.norm2()
        vmax = int(round(pol.eligible_bound() ** 2 * rnd.one)) + 1  # rows passed the cap and range
        bound = vmax * max(REL_DEN, pol.norm_rel_num)
        also = []
        if pol.norm_floor > 0:  # passes below the floor: one more factor of the same product tree
            above = mpcops.lt0(int(round(pol.norm_floor ** 2 * rnd.one)) - n2, vmax)  # 1: above the floor
            also.append(above[rows])
        rel_fail = await mpcops.count_median_fail(n2, pol.norm_rel_num, REL_DEN, bound, rows, rows, upper=False,
                                                  value_bound=vmax, also=also, as_product=True)
        pick = np.zeros((rows.size, rnd.n), dtype=np.int64)
        pick[np.arange(rows.size), rows] = 1
        fail = rel_fail.map(lambda f: f @ pick)  # 0 outside rows (their verdict is already decided)
        return [fail]
