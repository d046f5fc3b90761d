"""Verification + aggregation in one-process MPyC mode (t = 0: a share row IS the secret).

Agreement with plaintext.evaluate, precision, the wrap-around attack, and the consistency test.
"""

from __future__ import annotations

import numpy as np
import pytest
from fedchain.sharing import encode, field_modulus
from fedchain_mpc import plaintext
from fedchain_mpc.aggregate import ModelApplyError, apply_delta, canonical_bytes, flatten
from fedchain_mpc.policy import PolicyError, VerificationPolicy
from fedchain_mpc.verify import MPCResult, degree_ok, verify_and_aggregate
from mpyc.runtime import mpc

P = field_modulus()


def run_mpc(hi: np.ndarray, lo: np.ndarray, n_samples: list[int], policy: VerificationPolicy,
            reference: np.ndarray | None, seed: str) -> MPCResult:
    async def main() -> MPCResult:
        await mpc.start()
        try:
            return await verify_and_aggregate(hi, lo, n_samples, policy, reference, seed)
        finally:
            await mpc.shutdown()

    return mpc.run(main())


def encode_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    enc = [encode(row) for row in x]
    return np.stack([e.hi for e in enc]), np.stack([e.lo for e in enc])


def make_round(rng: np.random.Generator, n: int, d: int, poisoned: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    mu = np.full(d, 0.6 / np.sqrt(d))
    x = mu + rng.normal(0, 0.8 / np.sqrt(d), (n, d))
    kinds = ["honest"] * n
    for i in rng.choice(n, poisoned, replace=False):
        kind = str(rng.choice(["sign_flip", "scaled", "shifted", "wrap"]))
        kinds[i] = kind
        if kind == "sign_flip":
            x[i] = -x[i]
        elif kind == "scaled":
            x[i] *= rng.uniform(2.5, 6)
        elif kind == "shifted":
            u = rng.normal(0, 1, d)
            x[i] += rng.uniform(1.2, 1.8) * u / np.linalg.norm(u)
        else:  # a few huge coordinates: far outside the norm bound but encodable
            x[i, rng.choice(d, 3, replace=False)] = rng.uniform(-30000, 30000, 3)
    return x, mu + rng.normal(0, 0.2 / np.sqrt(d), d), kinds


def _bits(verdicts: list[tuple[bool, str]]) -> list[bool]:
    return [a for a, _ in verdicts]


def _scaled(policy: VerificationPolicy, s: float) -> VerificationPolicy:
    """The policy with every threshold moved by a relative s (to detect borderline trials)."""
    d = policy.__dict__.copy()
    d["norm_bound"] *= 1 + s
    d["cosine_min"] = min(1.0, max(-1.0, d["cosine_min"] * (1 - s) - s))
    d["outlier_factor"] = round((d["outlier_factor"] * (1 + 4 * s)) * 16) / 16
    return VerificationPolicy(**d)


@pytest.mark.slow
def test_accept_bits_equal_plaintext_over_100_random_trials() -> None:
    rng = np.random.default_rng(2026)
    compared = borderline = 0
    rejected_total = 0
    for trial in range(100):
        n = int(rng.integers(4, 13))
        d = int(rng.integers(40, 400))
        x, ref, kinds = make_round(rng, n, d, int(rng.integers(0, max(1, n // 3) + 1)))
        policy = VerificationPolicy(norm_bound=2.0, pine_num_vectors=int(rng.choice([4, 16])),
                                    cosine_min=float(rng.choice([0.0, 0.1, -0.2])),
                                    cosine_enabled=bool(rng.random() < 0.8), krum_f=int(rng.integers(0, 3)),
                                    outlier_factor=float(rng.choice([1.5, 2.0, 3.0])),
                                    outlier_rule=str(rng.choice(["auto", "multi_krum", "mean_distance"])))
        ns = [int(v) for v in rng.integers(1, 1000, n)]
        seed = f"trial-{trial}"
        pt, _ = plaintext.evaluate(x, ns, policy, ref, seed)
        # a trial whose verdicts change under a 1e-3 relative threshold shift is borderline:
        # fixed-point rounding may legitimately decide it either way (documented tolerance)
        if any(_bits(plaintext.evaluate(x, ns, _scaled(policy, s), ref, seed)[0]) != _bits(pt)
               for s in (-1e-3, 1e-3)):
            borderline += 1
            continue
        res = run_mpc(*encode_rows(x), ns, policy, ref, seed)
        assert res.verdicts == pt, (trial, kinds, res.verdicts, pt)
        compared += 1
        rejected_total += sum(not a for a in _bits(pt))
    assert compared >= 90, (compared, borderline)
    assert rejected_total >= 30  # the trials really exercise rejections


def test_precision_of_aggregate_at_default_settings() -> None:
    rng = np.random.default_rng(5)
    x, ref, _ = make_round(rng, 10, 20_000, 0)
    ns = [int(v) for v in rng.integers(10, 5000, 10)]
    res = run_mpc(*encode_rows(x), ns, VerificationPolicy(), ref, "p")
    assert all(_bits(res.verdicts))
    expected = np.average(x, axis=0, weights=ns)
    err = float(np.max(np.abs(res.aggregate - expected)))
    assert err <= 1e-5, err
    assert res.total_weight == sum(ns)


def test_sample_cap_bounds_weights() -> None:
    rng = np.random.default_rng(6)
    x, ref, _ = make_round(rng, 4, 200, 0)
    policy = VerificationPolicy(sample_cap=100, outlier_enabled=False)
    res = run_mpc(*encode_rows(x), [10, 50, 10_000, 100], policy, ref, "cap")
    assert res.total_weight == 10 + 50 + 100 + 100
    assert np.max(np.abs(res.aggregate - np.average(x, axis=0, weights=[10, 50, 100, 100]))) <= 1e-5


def _wrapping_update(d: int, target_norm2: float) -> np.ndarray:
    """Field elements v, w with v^2 + w^2 ≡ target (scale 2^32) mod p: squares wrap to a small sum."""
    s = round(target_norm2 * 2 ** 32)
    rng = np.random.default_rng(9)
    while True:
        v = int(rng.integers(1 << 40, 1 << 62)) * 7919 % P
        a = (s - v * v) % P
        w = pow(a, (P + 1) // 4, P)  # p ≡ 3 (mod 4)
        if w * w % P == a:
            break
    x = np.zeros(d, dtype=object)
    x[0], x[1] = v, w
    assert (v * v + w * w) % P == s  # a naive Σx² mod p check would see a legal norm
    return x


def test_crafted_wraparound_update_is_rejected() -> None:
    rng = np.random.default_rng(8)
    d = 500
    x, ref, _ = make_round(rng, 6, d, 0)
    hi, lo = encode_rows(x)
    bad = _wrapping_update(d, 1.0)
    hi[2] = (bad >> 64).astype(np.uint64)
    lo[2] = (bad & ((1 << 64) - 1)).astype(np.uint64)
    for seed in ("w1", "w2", "w3"):
        res = run_mpc(hi, lo, [100] * 6, VerificationPolicy(norm_bound=2.0), ref, seed)
        assert res.verdicts[2] == (False, "norm")
        assert all(_bits(res.verdicts[:2] + res.verdicts[3:]))
        honest = np.delete(x, 2, axis=0)
        assert np.max(np.abs(res.aggregate - honest.mean(axis=0))) <= 1e-5


def test_no_accepted_update_gives_zero_delta() -> None:
    x = np.full((3, 50), 5.0)  # norm ~35 > 2
    res = run_mpc(*encode_rows(x), [1, 1, 1], VerificationPolicy(norm_bound=2.0), np.ones(50), "z")
    assert [r for _, r in res.verdicts] == ["norm"] * 3
    assert res.total_weight == 0 and not np.any(res.aggregate)


def test_degree_check() -> None:
    rng = np.random.default_rng(1)
    for t, m in ((1, 3), (2, 5), (1, 4)):
        coeffs = [rng.integers(0, 1 << 60, 20).astype(object) for _ in range(t + 1)]
        pts = np.array([sum(c * (j + 1) ** e for e, c in enumerate(coeffs)) % P for j in range(m)], dtype=object)
        assert degree_ok(pts, t, P).all()
        pts[m - 1, 3] = (pts[m - 1, 3] + 1) % P
        ok = degree_ok(pts, t, P)
        assert not ok[3] and ok.sum() == 19


def test_policy_validation_and_json() -> None:
    p = VerificationPolicy(norm_bound=3.0, cosine_min=0.25)
    assert VerificationPolicy.from_json(p.to_json()) == p
    for bad in ({"norm_bound": 100.0}, {"cosine_min": 1.5}, {"outlier_factor": 1.03}, {"pine_num_vectors": 0}):
        with pytest.raises(PolicyError):
            VerificationPolicy(**bad)  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="unknown"):
        VerificationPolicy.from_json('{"norm": 1}')
    with pytest.raises(PolicyError, match="overflows"):
        VerificationPolicy(norm_bound=20.0, pine_c=4.0).check_scale(50_000)


def test_apply_delta_canonical() -> None:
    base = {"b": np.ones((2, 2), np.float32), "a": np.zeros(3, np.float32)}
    delta = np.arange(7, dtype=np.float64) / 10
    data, digest = apply_delta(canonical_bytes(base), delta)
    again, digest2 = apply_delta(canonical_bytes(dict(reversed(list(base.items())))), delta)
    assert data == again and digest == digest2
    from safetensors.numpy import load

    out = load(data)
    assert sorted(out) == ["a", "b"] and out["a"].dtype == np.float32
    assert np.allclose(flatten(out), flatten(base) + delta)
    with pytest.raises(ModelApplyError):
        apply_delta(canonical_bytes(base), np.zeros(6))


def test_structured_wraparound_update_is_rejected() -> None:
    """x = (M, -M, 0, ...) with 2M^2 ≡ a legal norm^2: <x, v> = M (v_0 - v_1) vanishes whenever
    v_0 = v_1, which a ±1 check vector allows with probability 1/2; the wide vectors do not."""
    d = 300
    rng = np.random.default_rng(12)
    x, ref, _ = make_round(rng, 5, d, 0)
    hi, lo = encode_rows(x)
    s = round(1.0 * 2 ** 32)
    while True:
        a = s * pow(2, -1, P) % P
        m_ = pow(a, (P + 1) // 4, P)
        if m_ * m_ % P == a and m_ > 2 ** 70:
            break
        s += 1
    bad = np.zeros(d, dtype=object)
    bad[0], bad[1] = m_, P - m_
    assert (2 * m_ * m_) % P == s  # Σx² mod p looks like ||x|| = 1
    hi[4] = (bad >> 64).astype(np.uint64)
    lo[4] = (bad & ((1 << 64) - 1)).astype(np.uint64)
    for seed in ("s1", "s2", "s3", "s4"):
        res = run_mpc(hi, lo, [1] * 5, VerificationPolicy(norm_bound=2.0, pine_num_vectors=8), ref, seed)
        assert res.verdicts[4] == (False, "norm") and all(_bits(res.verdicts[:4]))
