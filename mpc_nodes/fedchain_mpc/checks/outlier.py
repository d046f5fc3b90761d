"""Outlier score (Multi-Krum style) among the updates that passed every earlier check.

D_ij = ||x_i - x_j||^2 from the Gram matrix (no extra pass over the shares); a row of an update
that is no longer eligible is (cap, .., 0, .., cap), cap = policy.distance_cap(), so it counts like a far
point and its score is public. score_i = sum of the k + 1 smallest entries of row i (self distance
0 included; k = n - krum_f - 2 for multi_krum, n - 1 for mean_distance). Pass iff
16 score_i <= factor_num * lower-median(score) or score_i <= floor_score (k + 1 times outlier_floor^2
plus 4 units of 2^-16): identical updates (score 0) always pass, nearly identical ones pass under the
floor.

Cost: for n <= KRUM_RANK_MAX_N the k + 1 smallest per row by ranking with all pairwise comparisons
in one batch (2 comparison stages; the first one, with the Gram truncation, is started during the
norm/cosine stage for the range-validated rows by Outlier.prepare and adjusted to the final rows
with public masks), beyond that a per-row sorting network; the mean-distance rule
needs only row sums. The median test for n <= RANK_MEDIAN_MAX_N compares every score with every
scaled score in one batch and turns the count into a fail term by a product polynomial
(mpcops.count_median_fail, with the floor bit as one more factor), else the n scores are sorted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fedchain.verification import FACTOR_DEN

from .base import Check, PlainRound

RANK_MEDIAN_MAX_N = 24
KRUM_RANK_MAX_N = 16  # above, a sorting network's fewer comparisons beat one wide batch


def sum_smallest(dist: Any, count: int, cap: int) -> Any:
    """Per row of dist (rows × n, entries in about [0, cap]): the sum of its `count` smallest entries.

    Ranks by pairwise comparison in ONE batch instead of a sorting network: order by (value, column
    index), so ties count like a stable sort and the sum equals that of the sorted row's first
    `count` entries."""
    from mpyc.runtime import mpc

    from fedchain_mpc import mpcops

    n = dist.shape[1]
    a, b = np.triu_indices(n, 1)
    before = mpcops.lt0(dist[:, b] - dist[:, a], cap)  # 1: column b precedes column a (strictly smaller)
    to_count = np.zeros((a.size, n), dtype=np.int64)  # rank_j = #columns preceding j
    to_count[np.arange(a.size), a] = 1
    to_count[np.arange(a.size), b] = -1
    rank = before @ to_count + np.arange(n)
    chosen = mpcops.lt0(rank - count, n + 1)  # rank < count
    return mpc.np_sum(chosen * dist, axis=1)


async def within_factor_of_median(s: Any, factor_num: int, bound: int, rows: np.ndarray | None = None) -> Any:
    """1 where 16·s_i <= factor_num · (lower median of all n scores), for i in rows (default all)."""
    from fedchain_mpc import mpcops

    n = s.shape[0]
    rows = np.arange(n) if rows is None else rows
    return await mpcops.count_median_test(s, factor_num, FACTOR_DEN, bound, rows, np.arange(n), upper=False)


RESOLUTION_SLACK = 4 * 2.0 ** -16  # per distance: truncation noise of N_i + N_j - 2 G_ij at scale 2^16


def floor_score(policy: Any, k: int) -> float:
    """Scores at or below this always pass: (k + 1) (outlier_floor^2 + resolution slack). Without the
    slack, identical updates (true score 0) would fail on fixed-point noise against a median of 0."""
    return (k + 1) * (policy.outlier_floor ** 2 + RESOLUTION_SLACK)


def _distances(rnd: Any, gram: Any, elig: np.ndarray, cap: int) -> Any:
    """D_ij = N_i + N_j - 2 G_ij between eligible rows, cap to or from any other, 0 on the diagonal."""
    n = rnd.n
    norm2 = rnd.norm2_start()
    both = np.outer(elig, elig).astype(np.int64)
    dist = norm2.reshape(n, 1) + norm2.reshape(1, n) - 2 * gram
    return (dist * both + cap * (1 - both)) * (1 - np.eye(n, dtype=np.int64))


class Outlier(Check):
    reason = "outlier"
    stage = 3
    fields = ("outlier_enabled", "krum_f", "outlier_factor", "outlier_rule", "krum_max_n", "outlier_floor")
    switch = "outlier_enabled"

    def plaintext(self, rnd: PlainRound, rows: np.ndarray) -> np.ndarray:
        pol = rnd.policy
        n = rnd.n
        if not pol.outlier_active(n):
            return np.ones(n, dtype=bool)
        elig = np.zeros(n, dtype=bool)
        elig[rows] = True
        n2 = rnd.norm2()
        sq = n2[:, None] + n2[None, :] - 2 * rnd.gram()
        dist = np.where(np.outer(elig, elig), sq, pol.distance_cap())
        np.fill_diagonal(dist, 0.0)
        k = pol.krum_k(n)
        score = np.sort(dist, axis=1)[:, :k + 1].sum(axis=1)
        med = np.sort(score)[(n - 1) // 2]
        return (score * FACTOR_DEN <= med * pol.factor_num) | (score <= floor_score(pol, k))

    def prepare(self, rnd: Any, rows: np.ndarray, decided: int) -> None:
        """After the range stage (rows validated: in range), start the Gram truncation and the pairwise rank
        comparisons of the Multi-Krum rule for those rows. They run during the norm/cosine stage; when that
        stage has removed rows, mpc() turns the comparisons into the ones over the final rows with public
        masks: a removed row's distances become cap, and an eligible pair's distance is at most cap
        (||x_i - x_j|| <= 2b, the range/norm bound), so [cap < D] = 0 and [D < cap] = 1, except for a
        distance within the truncation noise (a few 2^-16 units) of cap, where the order of two values
        that differ by that noise may flip: the score then differs by at most that noise, which the
        rule has anyway (every distance carries it). Openings: truncations and comparisons of
        range-validated rows' values only (each hidden by its mask like those of mpc())."""
        from fedchain_mpc import mpcops

        pol = rnd.policy
        n = rnd.n
        if (decided < 1 or not pol.range_enabled or "outlier" in rnd.prepared or not rows.size
                or not pol.outlier_active(n) or not (pol.krum_k(n) + 1 < n and n <= KRUM_RANK_MAX_N)):
            return
        cap = int(round(pol.distance_cap() * rnd.one))
        elig = np.zeros(n, dtype=bool)
        elig[rows] = True
        dist = _distances(rnd, rnd.gram_start(rows), elig, cap)
        mine = dist[rows]
        a, b = np.triu_indices(n, 1)
        before = mpcops.lt0(mine[:, b] - mine[:, a], cap)  # 1: column b precedes column a
        rnd.prepared["outlier"] = (rows, dist, before)

    def _prepared_score(self, rnd: Any, rows: np.ndarray, cap: int, kk: int) -> Any:
        """Multi-Krum scores (n,) from the prepared comparisons, for the final eligible rows ⊆ prepared rows."""
        from mpyc.runtime import mpc

        from fedchain_mpc import mpcops

        n = rnd.n
        rows1, dist1, before1 = rnd.prepared["outlier"]
        pos = {int(i): k for k, i in enumerate(rows1)}
        sel = np.array([pos[int(i)] for i in rows], dtype=np.int64)
        elig1 = np.zeros(n, dtype=bool)
        elig1[rows1] = True
        elig = np.zeros(n, dtype=bool)
        elig[rows] = True
        dropped = elig1 & ~elig  # their distances become cap
        a, b = np.triu_indices(n, 1)
        keep = (~(dropped[a] | dropped[b])).astype(np.int64)  # same distances as prepared
        # a dropped, b eligible: [D_b < cap] = 1; b dropped, a eligible: [cap < D_a] = 0; both cap: 0
        to_one = (dropped[a] & elig[b]).astype(np.int64)
        before = before1[sel] * keep + to_one
        to_count = np.zeros((a.size, n), dtype=np.int64)  # rank_j = #columns preceding j (as sum_smallest)
        to_count[np.arange(a.size), a] = 1
        to_count[np.arange(a.size), b] = -1
        rank = before @ to_count + np.arange(n)
        chosen = mpcops.lt0(rank - (kk + 1), n + 1)  # rank < count
        drop = dropped.astype(np.int64)
        mine = dist1[rows] * (1 - drop) + cap * drop
        pick = np.zeros((rows.size, n), dtype=np.int64)
        pick[np.arange(rows.size), rows] = 1
        return mpc.np_sum(chosen * mine, axis=1) @ pick + kk * cap * (1 - elig.astype(np.int64))

    async def mpc(self, rnd: Any, rows: np.ndarray) -> list[Any]:
        from mpyc.runtime import mpc

        from fedchain_mpc import mpcops

        pol = rnd.policy
        n = rnd.n
        if not pol.outlier_active(n) or not rows.size:
            return []
        one = rnd.one
        secint = rnd.secint
        eye = np.eye(n, dtype=np.int64)
        elig = np.zeros(n, dtype=bool)
        elig[rows] = True
        cap = int(round(pol.distance_cap() * one))
        both = np.outer(elig, elig).astype(np.int64)
        kk = pol.krum_k(n)
        krum = kk + 1 < n
        prepared = krum and n <= KRUM_RANK_MAX_N and "outlier" in rnd.prepared
        if prepared:  # comparisons started during the previous stage (prepare)
            score = self._prepared_score(rnd, rows, cap, kk)
        else:
            g = await rnd.gram(rows)  # only eligible rows' cross terms are ever truncated (opened masked)
            norm2 = await rnd.norm2()
            dist = norm2.reshape(n, 1) + norm2.reshape(1, n) - 2 * g
            dist = (dist * both + cap * (1 - both)) * (1 - eye)
        if prepared:
            pass
        elif krum and n <= KRUM_RANK_MAX_N:  # an ineligible row's sum is kk·cap, public
            pick = np.zeros((rows.size, n), dtype=np.int64)
            pick[np.arange(rows.size), rows] = 1
            score = sum_smallest(dist[rows], kk + 1, cap) @ pick + kk * cap * (1 - elig.astype(np.int64))
        elif krum:
            small_t = mpc.SecInt(mpcops.bits_for(cap), p=rnd.p)  # cheaper comparisons in the sorting network
            srt = mpc.np_sort(small_t.array(await mpc.gather(dist)), axis=1)
            score = secint.array(await mpc.gather(mpc.np_sum(srt[:, :kk + 1], axis=1)))
        else:  # mean-distance rule: row sums, no per-row selection
            score = mpc.np_sum(dist, axis=1)
        bound_o = (kk + 1) * cap * max(FACTOR_DEN, pol.factor_num)
        pick = np.zeros((rows.size, n), dtype=np.int64)
        pick[np.arange(rows.size), rows] = 1
        floor = int(round(floor_score(pol, kk) * one))
        above = mpcops.lt0(floor - score, (kk + 1) * cap)  # 1 where score > floor (concurrent with the median)
        if n <= RANK_MEDIAN_MAX_N:  # fail term: the median rule's count polynomial times "above the floor"
            fail = (await mpcops.count_median_fail(score, pol.factor_num, FACTOR_DEN, bound_o, rows, np.arange(n),
                                                   upper=False, also=[above[rows]], as_product=True)
                    ).map(lambda f: f @ pick)
        else:
            score_t = mpc.SecInt(mpcops.bits_for((kk + 1) * cap), p=rnd.p)
            ranked = mpc.np_sort(score_t.array(await mpc.gather(score)))
            med = secint.array(await mpc.gather(ranked[(n - 1) // 2:(n - 1) // 2 + 1]))
            ok = 1 - mpcops.lt0(med * pol.factor_num - score[rows] * FACTOR_DEN, bound_o)
            fail = ((1 - ok) @ pick) * above
        return [fail]
