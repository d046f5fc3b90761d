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
