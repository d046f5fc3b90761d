"""Validity: every element of an update is an honest fixed-point value (soundness against crafted
field elements), and ||x|| <= value_bound, the largest update the fixed-point checks handle.

A hospital may send any field element. Squares and inner products are computed mod p, so a
"fraction" such as B + 2^-1 mod p can have a small square, and a huge value can wrap. PINE-style
test: K public random vectors v_k (entries uniform in [-256, 255], from the seed the nodes open
jointly after the inputs are sealed: no hospital can predict or re-roll them) and the zone test of
mpcops.zone_terms on s_k = <x, v_k>: an honest s_k is an integer with |s_k| <= pine_c * 256 * ||x||
(Hoeffding: fails w.p. <= 2 exp(-pine_c^2 / 2)); if x has a non-integral element, s_k is non-integral
(hence ~p/q, far outside) for at least half of the values of one v-entry, so each vector catches
it w.p. >= 1/2 (its entry is odd), and K >= 41 vectors leave <= 2^-41. Integral elements too large for the zone
make s_k leave it w.p. about 511/512. Once every s_k is in the zone, x is a real vector of moderate
norm and ||x||^2 (computed mod p) is exact, so the norm cap below is sound.

Plaintext rule: every |s_k| < range_limit (the MPC zone always passes below it; it always fails
beyond 8 range_limit) and ||x|| <= value_bound.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedchain_mpc import field as ff

from .base import Check, PlainRound


class Range(Check):
    reason = "range"
    stage = 1
    fields = ("range_enabled", "value_bound", "pine_num_vectors", "pine_c")
    switch = "range_enabled"

    def public_rows(self, policy: Any, seed: str, d: int, reference: np.ndarray | None) -> np.ndarray:
        return ff.pine_vectors_int(seed, policy.pine_num_vectors, d)

    def plaintext(self, rnd: PlainRound, rows: np.ndarray) -> np.ndarray:
        pol = rnd.policy
        v = ff.pine_vectors(rnd.seed, pol.pine_num_vectors, rnd.x.shape[1])
        proj = rnd.x @ v.T
        return np.all(np.abs(proj) < pol.range_limit(), axis=1) & (rnd.norm2() <= pol.value_bound ** 2)

    async def mpc(self, rnd: Any, rows: np.ndarray) -> list[Any]:

        from fedchain_mpc import mpcops

        pol = rnd.policy
        proj = rnd.secint.array(rnd.field.array(rnd.products(self)))
        cap = int(round(pol.value_bound ** 2 * rnd.one))
        # started first: the comparison (an MPyC coroutine) runs while the zone test below opens and multiplies
        over = mpcops.lt0(cap - await rnd.norm2(), 2 * cap)  # 1 (or a non-bit, if x is garbage): too big
        zone = await mpcops.zone_terms(rnd.secint, proj, pol.range_bits())
        return [zone, over]
