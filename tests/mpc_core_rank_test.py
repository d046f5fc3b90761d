"""verify._sum_smallest / _within_factor_of_median (one-batch rank counting) equal numpy, ties included."""

from __future__ import annotations

import numpy as np
import pytest
from fedchain_mpc.verify import _sum_smallest, _within_factor_of_median
from mpyc.runtime import mpc


def _run(coro_fn):
    async def main():
        await mpc.start()
        try:
            return await coro_fn()
        finally:
            await mpc.shutdown()

    return mpc.run(main())


@pytest.mark.parametrize("n,count", [(3, 1), (4, 3), (7, 5), (10, 8), (12, 12), (16, 9)])
def test_sum_smallest_matches_sorted_rows(n: int, count: int) -> None:
    rng = np.random.default_rng(n * 31 + count)
    cap = 1 << 20
    dist = rng.integers(0, 6, (n, n)) * (cap // 8)  # few distinct values: many ties
    dist[:, 0] = dist[:, 1]
    dist[np.arange(n), np.arange(n)] = 0
    dist[0, 2] = -2  # truncation can make a distance slightly negative
    secint = mpc.SecInt(48)

    async def body():
        return await mpc.output(_sum_smallest(secint.array(dist), count, cap))

    got = np.array(_run(body), dtype=np.int64)
    assert np.array_equal(got, np.sort(dist, axis=1)[:, :count].sum(axis=1))


@pytest.mark.parametrize("n,factor", [(3, 16), (5, 24), (8, 16), (10, 24), (11, 40), (24, 17)])
def test_within_factor_matches_lower_median(n: int, factor: int) -> None:
    rng = np.random.default_rng(n + factor)
    s = rng.integers(0, 50, n) * 1000
    s[: n // 3] = s[n // 3]  # ties, including at the median
    s[-1] = int(np.sort(s)[(n - 1) // 2]) * factor // 16  # exactly on the threshold: accepted
    secint = mpc.SecInt(48)
    bound = int(s.max()) * max(16, factor) + 1

    async def body():
        return await mpc.output(_within_factor_of_median(secint.array(s), factor, bound))

    got = np.array(_run(body), dtype=np.int64)
    med = np.sort(s)[(n - 1) // 2]
    assert np.array_equal(got, (16 * s <= factor * med).astype(np.int64))
    assert got[-1] == 1


@pytest.mark.parametrize("n,rule", [(17, "multi_krum"), (26, "multi_krum"), (30, "mean_distance")])
def test_larger_rounds_use_sorting_paths_and_agree_with_plaintext(n: int, rule: str) -> None:
    """n > KRUM_RANK_MAX_N (per-row sorting network) and n > RANK_MEDIAN_MAX_N (sorted scores)."""
    from fedchain_mpc import plaintext
    from fedchain_mpc.policy import VerificationPolicy
    from fedchain_mpc.verify import KRUM_RANK_MAX_N, RANK_MEDIAN_MAX_N
    from mpc_core_verify_test import _bits, _scaled, encode_rows, make_round, run_mpc

    assert n > KRUM_RANK_MAX_N and (n > RANK_MEDIAN_MAX_N or n == 17)
    rng = np.random.default_rng(n)
    policy = VerificationPolicy(norm_bound=2.0, pine_num_vectors=4, outlier_factor=1.5, outlier_rule=rule)
    for attempt in range(5):
        x, ref, _ = make_round(rng, n, 60, n // 4)
        ns = [int(v) for v in rng.integers(1, 1000, n)]
        seed = f"big-{n}-{attempt}"
        pt, _ = plaintext.evaluate(x, ns, policy, ref, seed)
        if any(_bits(plaintext.evaluate(x, ns, _scaled(policy, s), ref, seed)[0]) != _bits(pt) for s in (-1e-3, 1e-3)):
            continue  # borderline under fixed-point rounding
        res = run_mpc(*encode_rows(x), ns, policy, ref, seed)
        assert res.verdicts == pt
        assert sum(not a for a in _bits(pt)) >= 1
        return
    pytest.fail("no non-borderline round drawn")
