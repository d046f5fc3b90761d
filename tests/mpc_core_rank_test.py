"""checks.outlier.sum_smallest / within_factor_of_median and mpcops.count_median_test (one-batch rank
counting) equal numpy, ties included."""

from __future__ import annotations

import numpy as np
import pytest
from fedchain_mpc import mpcops
from fedchain_mpc.checks.base import median_rule_plain
from fedchain_mpc.checks.outlier import sum_smallest as _sum_smallest
from fedchain_mpc.checks.outlier import within_factor_of_median as _within_factor_of_median
from mpc_core_verify_test import run_in_mpc as _run
from mpyc.runtime import mpc


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
        return await mpc.output(await _within_factor_of_median(secint.array(s), factor, bound))

    got = np.array(_run(body), dtype=np.int64)
    med = np.sort(s)[(n - 1) // 2]
    assert np.array_equal(got, (16 * s <= factor * med).astype(np.int64))
    assert got[-1] == 1


@pytest.mark.parametrize("n,rule", [(17, "multi_krum"), (26, "multi_krum"), (30, "mean_distance")])
def test_larger_rounds_use_sorting_paths_and_agree_with_plaintext(n: int, rule: str) -> None:
    """n > KRUM_RANK_MAX_N (per-row sorting network), n > RANK_MEDIAN_MAX_N (sorted scores) and the
    relative norm and cosine medians by sorting (mpcops.SORT_MEDIAN_ABOVE)."""
    from fedchain.verification import VerificationPolicy
    from fedchain_mpc import plaintext
    from fedchain_mpc.checks.outlier import KRUM_RANK_MAX_N, RANK_MEDIAN_MAX_N
    from mpc_core_verify_test import _bits, borderline, encode_rows, make_round, run_mpc

    assert n > KRUM_RANK_MAX_N and (n > RANK_MEDIAN_MAX_N or n == 17)
    rng = np.random.default_rng(n)
    policy = VerificationPolicy(value_bound=8.0, norm_bound=2.0, norm_rel_factor=3.0, cosine_rel=0.5, outlier_factor=1.5,
                                outlier_rule=rule)
    for attempt in range(5):
        x, ref, _ = make_round(rng, n, 60, n // 4)
        ns = [int(v) for v in rng.integers(1, 1000, n)]
        seed = f"big-{n}-{attempt}"
        if borderline(x, ns, policy, ref, seed, rng):
            continue  # borderline under fixed-point rounding
        pt, _ = plaintext.evaluate(x, ns, policy, ref, seed)
        res = run_mpc(*encode_rows(x), ns, policy, ref, seed, joint=False)
        assert res.verdicts == pt
        assert sum(not a for a in _bits(pt)) >= 1
        return
    pytest.fail("no non-borderline round drawn")


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("n,q", [(3, 64), (6, 144), (9, 23), (12, 256), (30, 100), (41, 32)])
def test_count_median_test_matches_plaintext_on_a_row_subset(n: int, q: int, upper: bool) -> None:
    """The relative norm / cosine rules: REL_DEN v_i <= q med (or >=), median over a public subset."""
    rng = np.random.default_rng(n * 7 + q + upper)
    v = rng.integers(-40, 200, n) * 100
    v[: n // 3] = v[n // 3]  # ties
    cols = np.sort(rng.choice(n, max(2, n - 2), replace=False))
    secint = mpc.SecInt(48)
    bound = int(np.abs(v).max()) * max(64, q) + 1

    async def body():
        return await mpc.output(await mpcops.count_median_test(secint.array(v), q, 64, bound, cols, cols, upper))

    got = np.array(_run(body), dtype=np.int64)
    want = median_rule_plain(v.astype(np.float64), q, 64, cols, upper)[cols]
    assert np.array_equal(got, want.astype(np.int64))
