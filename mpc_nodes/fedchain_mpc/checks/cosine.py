"""Cosine against the FLTrust reference (the consortium's public root-set update, hash on the ledger).

Absolute: cos(x, ref) >= cosine_min. Relative (cosine_rel > 0): cos_i >= cosine_rel * median_j cos_j
- cosine_slack over the rows that passed so far (quantized, see fedchain.verification.policy).

MPC: x.r with the public unit reference rounded to 2^-16 is a local product. The absolute rule
compares (x.r)^2 with cosine_min^2 ||x||^2 and the sign of x.r (no division, no square root). The
relative rule needs cos_i itself: cos_i = (x_i.r / b) y_i with y_i ~ 1 / sqrt(N_i / b^2 + EPS) by
Newton's iteration y <- 1.5 y - (h y) y^2 (h = N' / 2) from y = 2^J, J counted by one batch of 6
comparisons per row (b = eligible_bound: every row here is below it), then COSINE_NEWTON_STEPS
steps of 2 openings each with mpcops.mul_trunc (no random bits,
no bit decomposition, unlike MPyC's division), then one batch of |rows|^2 comparisons. The
plaintext rule runs the same iteration, so both decide on the same number (up to 2^-15 rounding).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fedchain.verification import COSINE_NEWTON_STEPS, REL_DEN

from fedchain_mpc import field as ff

from .base import Check, PlainRound

START_LEVELS = 6  # the start 2^J covers N' down to 4^-6: with EPS, every N' (y <= 64)
EPS = 1.0 / 4096  # added to N / b^2: keeps y <= 64 (in the fixed-point range) even for a zero update


def cosine_plain(xr: np.ndarray, n2: np.ndarray, b: float) -> np.ndarray:
    """The MPC rule's cosine, in float64: (x.r / b) * y with y ~ 1 / sqrt(N / b^2 + EPS) by Newton's
    iteration y <- 1.5 y - (h y) y^2 (h = N' / 2) from y = 2^J, J = #{j <= 6: N' < 4^-j}, which is
    within a factor 2 of the answer, so COSINE_NEWTON_STEPS = 5 steps reach 2^-17."""
    h = n2 / (2 * b * b) + EPS / 2
    levels = sum((2 * h < 4.0 ** -j).astype(int) for j in range(1, START_LEVELS + 1))
    y = 2.0 ** levels  # within a factor 2 of 1 / sqrt(N')
    for _ in range(COSINE_NEWTON_STEPS):
        y = 1.5 * y - (h * y) * (y * y)
    return (xr / b) * y


class Cosine(Check):
    reason = "cosine"
    stage = 2
    fields = ("cosine_enabled", "cosine_min", "cosine_rel", "cosine_slack")

    def enabled(self, policy: Any) -> bool:
        return policy.cosine_enabled

    def public_rows(self, policy: Any, seed: str, d: int, reference: np.ndarray | None) -> np.ndarray:
        if reference is None:
            raise ValueError("policy enables the cosine check but no reference update was given")
        return ff.quantized_reference(reference).reshape(1, d)

    def plaintext(self, rnd: PlainRound, rows: np.ndarray) -> np.ndarray:
        pol = rnd.policy
        if rnd.reference is None:
            raise ValueError("policy enables the cosine check but no reference update was given")
        xr = rnd.x @ rnd.reference
        n2 = rnd.norm2()
        c2 = pol.cosine_min ** 2
        if pol.cosine_min >= 0:
            ok = (xr >= 0) & (xr * xr >= c2 * n2)
        elif pol.cosine_min > -1:
            ok = (xr >= 0) | (xr * xr <= c2 * n2)
        else:  # -1: no absolute floor
            ok = np.ones(rnd.n, dtype=bool)
        if pol.cosine_rel > 0 and rows.size:
            cos = cosine_plain(xr, n2, pol.eligible_bound())
            shifted = cos + round(REL_DEN * pol.cosine_slack * 2 ** 16) / (REL_DEN * 2.0 ** 16)
            med = np.sort(cos[rows])[(rows.size - 1) // 2]
            ok &= REL_DEN * shifted >= pol.cosine_rel_num * med
        return ok

    async def mpc(self, rnd: Any, rows: np.ndarray) -> list[Any]:
        from mpyc.runtime import mpc

        from fedchain_mpc import mpcops

        pol = rnd.policy
        one = rnd.one
        xr = await rnd.reference_product(self)  # x.r at scale 2^16
        n2 = await rnd.norm2()
        eb = pol.eligible_bound()  # these rows passed the range check and the norm cap
        vmax = int(round(eb ** 2 * one)) + 1
        big = vmax * one
        neg = mpcops.lt0(xr, max(vmax, 2 * int(eb * one) + 1))  # |x.r| <= ||x|| (|r| = 1)
        cq = int(round(pol.cosine_min ** 2 * one))
        terms: list[Any] = []
        if pol.cosine_min > -1:
            xr2 = await mpcops.mul_trunc(rnd.secint, xr, xr)
        if pol.cosine_min >= 0:
            terms += [neg, mpcops.lt0(xr2 * one - n2 * cq, big)]
        elif pol.cosine_min > -1:
            small = 1 - mpcops.lt0(n2 * cq - xr2 * one, big)
            terms.append(neg * (1 - small))
        if pol.cosine_rel > 0 and rows.size:
            si = rnd.secint
            full = np.full(rows.size, 1, dtype=object)
            t2 = 2 * mpc.threshold
            h, xb = await mpcops.trunc_batch(si, [  # N' / 2 (N' = N / b^2 + EPS <= 1 + EPS) and x.r / b
                await mpcops.local_product(si, n2[rows], full * round(one / (2 * eb ** 2))),
                await mpcops.local_product(si, xr[rows], full * round(one / eb))], mpc.threshold)
            h = h + round(EPS * one / 2)
            # start within a factor 2 of 1 / sqrt(N'): y0 = 2^J, J = #{j <= 6: N' < 4^-j} (nested bits, so
            # y0 = 1 + sum_j 2^(j-1) b_j is linear): one comparison batch instead of 9 more Newton steps
            thr = np.array([round(one * 4.0 ** -j) for j in range(1, START_LEVELS + 1)], dtype=object)
            below = mpcops.lt0(h.reshape(1, -1) * 2 - thr.reshape(-1, 1), 2 * one)  # (levels, rows)
            y = one + mpc.np_sum(below * np.array([one << (j - 1) for j in range(1, START_LEVELS + 1)],
                                                  dtype=object).reshape(-1, 1), axis=0)
            for _ in range(COSINE_NEWTON_STEPS):  # y <- 1.5 y - (h y) y^2: 2 openings per step
                hy, yy, y15 = await mpcops.trunc_batch(si, [
                    await mpcops.local_product(si, h, y), await mpcops.local_product(si, y, y),
                    await mpcops.local_product(si, y, full * (3 * one // 2))], t2)
                y = y15 - await mpcops.mul_trunc(si, hy, yy)
            cos_rows = await mpcops.mul_trunc(si, xb, y)  # scale 2^16, |cos| <~ 1
            pick = np.zeros((rows.size, rnd.n), dtype=np.int64)
            pick[np.arange(rows.size), rows] = 1
            cos = cos_rows @ pick
            off = round(REL_DEN * pol.cosine_slack * one)
            bound = 2 * one * max(REL_DEN, pol.cosine_rel_num) + off
            rel = await mpcops.count_median_test(cos, pol.cosine_rel_num, REL_DEN, bound, rows, rows, upper=True,
                                                 offset=off, value_bound=2 * one)
            terms.append((1 - rel) @ pick)
        return terms
