"""Cosine against the FLTrust reference (the consortium's public root-set update, hash on the ledger).

Absolute: cos(x, ref) >= cosine_min. Relative (cosine_rel > 0): cos_i >= cosine_rel * median_j cos_j
- cosine_slack over the rows that passed so far (quantized, see fedchain.verification.policy).

MPC: x.r with the public unit reference rounded to 2^-16 is a local product. The absolute rule
compares (x.r)^2 with cosine_min^2 ||x||^2 and the sign of x.r (no division, no square root). The
relative rule needs cos_i itself: cos_i = (x_i.r / b) y_i with y_i ~ 1 / sqrt(N_i / b^2 + EPS) by
Newton's iteration y <- 1.5 y - (h y) y^2 (h = N' / 2) from y0 = 2^(J / GRID), J counted by one batch
of START_LEVELS comparisons per row (b = eligible_bound: every row here is below it; the comparisons
read ||x||^2 directly, so they do not wait for h), then NEWTON_STEPS steps of 2 openings each with
mpcops.mul_trunc (no random bits, no bit decomposition, unlike MPyC's division), then one batch of
|rows|^2 comparisons whose count becomes a fail term (mpcops.count_median_fail). The plaintext rule
runs the same iteration from the same start, so both decide on the same number (up to 2^-15
rounding).

Rounds: y0 within a factor 2^(1/4) of 1/sqrt(N') (relative error e0 > -0.16) makes 3 Newton steps
reach |e| < 6e-6 (e <- -1.5 e^2 - 0.5 e^3), below the fixed-point resolution 2^-16 = 1.5e-5 of the
result; the former start within a factor 2 needed 5 steps (1e-6). More comparisons in the one start
batch (23 instead of 6 per row, the same rounds) buy 4 fewer sequential openings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fedchain.verification import REL_DEN

from fedchain_mpc import field as ff

from .base import Check, PlainRound

GRID = 4  # start levels per factor 2 of y: y0 = 2^(J / GRID)
EPS = 1.0 / 4096  # added to N / b^2: keeps y <= 64 (in the fixed-point range) even for a zero update
START_LEVELS = 6 * GRID - 1  # thresholds 2^(-k / (GRID / 2)) > EPS on N': y0 <= 2^(23/4) < 64
NEWTON_STEPS = 3  # from within a factor 2^(1/4): 6e-6 relative (see the module docstring)


def start_value(levels: np.ndarray) -> np.ndarray:
    """y0 = 2^(J / GRID) rounded to the fixed-point grid 2^-16 (MPC and plaintext use these values)."""
    return np.round(2.0 ** (np.asarray(levels) / GRID) * 2 ** 16) / 2 ** 16


def level_thresholds() -> np.ndarray:
    """N' thresholds of the start levels: J = #{k: N' < 2^(-2k / GRID)} (all above EPS)."""
    return 2.0 ** (-2.0 * np.arange(1, START_LEVELS + 1) / GRID)


def cosine_plain(xr: np.ndarray, n2: np.ndarray, b: float) -> np.ndarray:
    """The MPC rule's cosine, in float64: (x.r / b) * y with y ~ 1 / sqrt(N / b^2 + EPS) by Newton's
    iteration y <- 1.5 y - (h y) y^2 (h = N' / 2) from y0 = 2^(J / GRID), J = #{k: N' < 2^(-2k / GRID)},
    which is within a factor 2^(1/4) of the answer, so NEWTON_STEPS = 3 steps reach 6e-6."""
    h = n2 / (2 * b * b) + EPS / 2
    levels = sum((2 * h < t).astype(int) for t in level_thresholds())
    y = start_value(levels)
    for _ in range(NEWTON_STEPS):
        y = 1.5 * y - (h * y) * (y * y)
    return (xr / b) * y


class Cosine(Check):
    reason = "cosine"
    stage = 2
    fields = ("cosine_enabled", "cosine_min", "cosine_rel", "cosine_slack")
    switch = "cosine_enabled"

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
            # start levels from ||x||^2 directly (N' < T iff N < (T - EPS) b^2): the comparisons start now,
            # concurrently with the truncation that makes h; y0 = Y_0 + sum_k b_k (Y_k - Y_(k-1)) is linear
            # in the nested bits b_k
            thr = np.array([round((t - EPS) * eb ** 2 * one) for t in level_thresholds()], dtype=object)
            below = mpcops.lt0(n2[rows].reshape(1, -1) - thr.reshape(-1, 1), vmax)  # (levels, rows)
            ys = [round(v * one) for v in start_value(np.arange(START_LEVELS + 1))]
            steps = np.array([ys[k] - ys[k - 1] for k in range(1, START_LEVELS + 1)], dtype=object).reshape(-1, 1)
            h, xb = await mpcops.trunc_batch(si, [  # N' / 2 (N' = N / b^2 + EPS <= 1 + EPS) and x.r / b
                await mpcops.local_product(si, n2[rows], full * round(one / (2 * eb ** 2))),
                await mpcops.local_product(si, xr[rows], full * round(one / eb))], mpc.threshold)
            h = h + round(EPS * one / 2)
            y = ys[0] + mpc.np_sum(below * steps, axis=0)
            for _ in range(NEWTON_STEPS):  # y <- 1.5 y - (h y) y^2: 2 openings per step
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
            fail = await mpcops.count_median_fail(cos, pol.cosine_rel_num, REL_DEN, bound, rows, rows, upper=True,
                                                  offset=off, value_bound=2 * one, as_product=True)
            terms.append(fail.map(lambda f: f @ pick))
        return terms
