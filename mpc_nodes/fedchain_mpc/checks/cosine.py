"""Cosine against the FLTrust reference (the consortium's public root-set update, hash on the ledger):
absolute cos(x, ref) >= cosine_min, and relative to the round's valid updates:
s_i >= (cosine_rel)^2 * median_j s_j with s = cos |cos| (quantized: REL_DEN * s_i >= q * median(s)).

MPC: x.ref with the public unit reference rounded to 2^-16 is a local product; the absolute rule
compares (x.r)^2 with cosine_min^2 ||x||^2 and the sign of x.r (no division, no square root); the
relative rule needs s_i = (x.r)|x.r| / (||x||^2 + 2^-16): |rows| secure divisions, then one batch of
|rows|^2 comparisons. Inputs are valid rows only, so every value is in range.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fedchain.verification import REL_DEN

from fedchain_mpc import field as ff

from .base import Check, PlainRound, median_rule_plain

EPS = 2.0 ** -16  # keeps the division defined for a zero update (its cosine is then 0)


class Cosine(Check):
    reason = "cosine"
    stage = 2
    fields = ("cosine_enabled", "cosine_min", "cosine_rel")

    def enabled(self, policy: Any) -> bool:
        return policy.cosine_enabled

    def public_rows(self, policy: Any, seed: str, d: int, reference: np.ndarray | None) -> np.ndarray:
        if reference is None:
            raise ValueError("policy enables the cosine check but no reference update was given")
        return ff.quantized_reference(reference).reshape(1, d)

    @staticmethod
    def signed_cos2(xr: np.ndarray, n2: np.ndarray) -> np.ndarray:
        return xr * np.abs(xr) / (n2 + EPS)

    def plaintext(self, rnd: PlainRound, rows: np.ndarray) -> np.ndarray:
        pol = rnd.policy
        if rnd.reference is None:
            raise ValueError("policy enables the cosine check but no reference update was given")
        xr = rnd.x @ rnd.reference
        n2 = rnd.norm2()
        c2 = pol.cosine_min ** 2
        if pol.cosine_min >= 0:
            ok = (xr >= 0) & (xr * xr >= c2 * n2)
        else:
            ok = (xr >= 0) | (xr * xr <= c2 * n2)
        if pol.cosine_rel > 0 and rows.size:
            s = self.signed_cos2(xr, n2)
            ok &= median_rule_plain(s, pol.cosine_rel_num, REL_DEN, rows, upper=True)
        return ok

    async def mpc(self, rnd: Any, rows: np.ndarray) -> list[Any]:
        from mpyc.runtime import mpc

        from fedchain_mpc import mpcops

        pol = rnd.policy
        one = rnd.one
        xr_fx = await rnd.reference_product(self)  # secfxp, x.r at scale 2^16
        xr = rnd.secint.array(await mpc.gather(xr_fx))
        xr2 = rnd.secint.array(await mpc.gather(xr_fx * xr_fx))
        n2 = await rnd.norm2()
        vmax = int(round(pol.value_bound ** 2 * one))
        big = vmax * one
        neg = mpcops.lt0(xr, max(vmax, 2 * int(pol.value_bound * one)))  # |x.r| <= ||x|| <= value_bound
        cq = int(round(pol.cosine_min ** 2 * one))
        terms: list[Any] = []
        if pol.cosine_min >= 0:
            terms += [neg, mpcops.lt0(xr2 * one - n2 * cq, big)]
        else:
            small = 1 - mpcops.lt0(n2 * cq - xr2 * one, big)
            terms.append(neg * (1 - small))
        if pol.cosine_rel > 0 and rows.size:
            sgn = 1 - 2 * neg[rows]
            num = rnd.secfxp.array(await mpc.gather(xr2[rows] * sgn), integral=False)
            den = rnd.secfxp.array(await mpc.gather(n2[rows] + 1), integral=False)
            s_rows = rnd.secint.array(await mpc.gather(num / den))
            s = _scatter_rows(rnd, s_rows, rows)
            bound = one * max(REL_DEN, pol.cosine_rel_num)
            rel = mpcops.count_median_test(s, pol.cosine_rel_num, REL_DEN, bound, rows, rows, upper=True)
            pick = np.zeros((rows.size, rnd.n), dtype=np.int64)
            pick[np.arange(rows.size), rows] = 1
            terms.append((1 - rel) @ pick)
        return terms


def _scatter_rows(rnd: Any, vals: Any, rows: np.ndarray) -> Any:
    pick = np.zeros((rows.size, rnd.n), dtype=np.int64)
    pick[np.arange(rows.size), rows] = 1
    return vals @ pick
