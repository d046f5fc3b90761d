"""Verification + aggregation in one-process MPyC mode (t = 0: a share row IS the secret).

Agreement with the plaintext pipeline (including crafted field elements), precision, soundness
against half-integers and wrap-around, relative thresholds on identical updates, the privacy floor
and the aggregate sanity check.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
import pytest
from fedchain.sharing import encode, field_modulus
from fedchain.verification import PolicyError, VerificationPolicy
from fedchain_mpc import field as ff
from fedchain_mpc import plaintext
from fedchain_mpc.aggregate import ModelApplyError, apply_delta, canonical_bytes, flatten
from fedchain_mpc.verify import MPCResult, degree_ok, verify_and_aggregate
from mpyc.runtime import mpc

T = TypeVar("T")
P = field_modulus()
HALF = (P + 1) // 2  # 2^-1 mod p


def run_in_mpc(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine between mpc.start() and mpc.shutdown() (one party: these tests run in-process)."""
    async def main() -> T:
        await mpc.start()
        try:
            return await coro_fn()
        finally:
            await mpc.shutdown()

    return mpc.run(main())


def run_mpc(hi: np.ndarray, lo: np.ndarray, n_samples: list[int], policy: VerificationPolicy,
            reference: np.ndarray | None, context: str, joint: bool = True) -> MPCResult:
    return run_in_mpc(lambda: verify_and_aggregate(hi, lo, n_samples, policy, reference, context,
                                                   joint_randomness=joint))


def encode_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    enc = [encode(row) for row in x]
    return np.stack([e.hi for e in enc]), np.stack([e.lo for e in enc])


def field_rows(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    return (hi.astype(object) << 64) + lo.astype(object)


def set_field_row(hi: np.ndarray, lo: np.ndarray, i: int, row: np.ndarray) -> None:
    row = np.asarray(row, dtype=object) % P
    hi[i] = np.array([int(v) >> 64 for v in row], dtype=np.uint64)
    lo[i] = np.array([int(v) & ((1 << 64) - 1) for v in row], dtype=np.uint64)


def half_integer_row(lo_row: np.ndarray, hi_row: np.ndarray, coords: list[int]) -> np.ndarray:
    """The honest encoded row with B + 2^-1 mod p at `coords`: squares and most products stay small."""
    row = field_rows(hi_row[None], lo_row[None])[0].copy()
    for c in coords:
        row[c] = (row[c] + HALF) % P
    return row


def make_round(rng: np.random.Generator, n: int, d: int, poisoned: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    mu = np.full(d, 0.6 / np.sqrt(d))
    x = mu + rng.normal(0, 0.8 / np.sqrt(d), (n, d))
    kinds = ["honest"] * n
    for i in rng.choice(n, poisoned, replace=False):
        kind = str(rng.choice(["sign_flip", "scaled", "shifted", "huge", "half", "wrap"]))
        kinds[i] = kind
        if kind == "sign_flip":
            x[i] = -x[i]
        elif kind == "scaled":
            x[i] *= rng.uniform(2.5, 6)
        elif kind == "shifted":
            u = rng.normal(0, 1, d)
            x[i] += rng.uniform(1.2, 1.8) * u / np.linalg.norm(u)
        elif kind == "huge":  # a few huge coordinates: far outside every bound but encodable
            x[i, rng.choice(d, 3, replace=False)] = rng.uniform(-30000, 30000, 3)
    return x, mu + rng.normal(0, 0.2 / np.sqrt(d), d), kinds


def craft(x: np.ndarray, kinds: list[str], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode the round; 'half' and 'wrap' rows become crafted field elements. Returns hi, lo and the
    real values every row stands for (crafted elements decode to huge values)."""
    hi, lo = encode_rows(x)
    d = x.shape[1]
    for i, kind in enumerate(kinds):
        if kind == "half":
            coords = [int(c) for c in rng.choice(d, int(rng.integers(1, 5)), replace=False)]
            set_field_row(hi, lo, i, half_integer_row(lo[i], hi[i], coords))
        elif kind == "wrap":
            set_field_row(hi, lo, i, _wrapping_update(d, 1.0, int(rng.integers(1 << 30))))
    return hi, lo, plaintext.decode_field_rows(field_rows(hi, lo))


def _bits(verdicts: list[tuple[bool, str]]) -> list[bool]:
    return [a for a, _ in verdicts]


def random_policy(rng: np.random.Generator) -> VerificationPolicy:
    return VerificationPolicy(
        value_bound=8.0, norm_bound=float(rng.choice([0.0, 2.0])),
        norm_rel_factor=float(rng.choice([0.0, 1.5, 2.0, 3.0])), norm_floor=float(rng.choice([0.0, 0.5])),
        cosine_min=float(rng.choice([0.0, 0.1, -0.2])), cosine_rel=float(rng.choice([0.0, 0.3, 0.6])),
        cosine_enabled=bool(rng.random() < 0.8), krum_f=int(rng.integers(0, 3)),
        outlier_factor=float(rng.choice([1.5, 2.0, 3.0])), outlier_floor=float(rng.choice([0.0, 0.3])),
        outlier_rule=str(rng.choice(["auto", "multi_krum", "mean_distance"])),
        min_accepted=int(rng.integers(1, 4)))


def borderline(x: np.ndarray, ns: list[int], policy: VerificationPolicy, ref: np.ndarray, seed: str,
               rng: np.random.Generator) -> bool:
    """True if the plaintext verdicts move under 1e-3 threshold shifts or 1e-4 relative noise on the
    updates: fixed-point rounding (2^-16) may then legitimately decide either way (documented)."""
    base = plaintext.evaluate_round(x, ns, policy, ref, seed)
    key = (base[0], base[2])
    for s in (-1e-3, 1e-3):
        d = dataclasses.asdict(policy)
        if d["norm_bound"]:
            d["norm_bound"] = min(d["value_bound"], d["norm_bound"] * (1 + s))
        d["norm_floor"] *= 1 + s
        d["outlier_floor"] *= 1 + s
        d["cosine_min"] = min(1.0, max(-1.0, d["cosine_min"] * (1 - s) - s))
        d["outlier_factor"] = round((d["outlier_factor"] * (1 + 4 * s)) * 16) / 16
        got = plaintext.evaluate_round(x, ns, VerificationPolicy(**d), ref, seed)
        if (got[0], got[2]) != key:
            return True
    finite = np.abs(x) < 1e6
    for _ in range(3):
        noise = rng.normal(0, 1, x.shape) * (1e-4 * np.linalg.norm(np.where(finite, x, 0), axis=1,
                                                                     keepdims=True) / np.sqrt(x.shape[1]))
        got = plaintext.evaluate_round(np.where(finite, x + noise, x), ns, policy, ref, seed)
        if (got[0], got[2]) != key:
            return True
    return False


@pytest.mark.slow
def test_verdicts_equal_plaintext_over_100_random_trials_with_crafted_elements() -> None:
    rng = np.random.default_rng(2026)
    compared = skipped = rejected_total = crafted = 0
    for trial in range(100):
        n = int(rng.integers(4, 13))
        d = int(rng.integers(40, 400))
        x, ref, kinds = make_round(rng, n, d, int(rng.integers(0, max(1, n // 3) + 1)))
        hi, lo, real = craft(x, kinds, rng)
        policy = random_policy(rng)
        ns = [int(v) for v in rng.integers(1, 1000, n)]
        res = run_mpc(hi, lo, ns, policy, ref, f"trial-{trial}")
        if borderline(real, ns, policy, ref, res.seed, rng):
            skipped += 1
            continue
        pt, agg, outcome = plaintext.evaluate_round(real, ns, policy, ref, res.seed)
        assert res.verdicts == pt, (trial, kinds, res.verdicts, pt)
        assert res.outcome == outcome, (trial, res.outcome, outcome)
        if outcome == "ok":
            assert np.max(np.abs(res.aggregate - agg)) <= 1e-5
        compared += 1
        rejected_total += sum(not a for a in _bits(pt))
        crafted += sum(k in ("half", "wrap") for k in kinds)
        for i, k in enumerate(kinds):
            if k in ("half", "wrap", "huge"):
                assert res.verdicts[i] == (False, "range"), (trial, k, res.verdicts[i])
    assert compared >= 85, (compared, skipped)
    assert rejected_total >= 30 and crafted >= 10  # the trials really exercise rejections and crafted rows


def test_precision_of_aggregate_at_default_settings() -> None:
    rng = np.random.default_rng(5)
    x, ref, _ = make_round(rng, 10, 20_000, 0)
    ns = [int(v) for v in rng.integers(10, 5000, 10)]
    res = run_mpc(*encode_rows(x), ns, VerificationPolicy(), ref, "p")
    assert all(_bits(res.verdicts)) and res.outcome == "ok"
    expected = np.average(x, axis=0, weights=ns)
    err = float(np.max(np.abs(res.aggregate - expected)))
    assert err <= 1e-5, err
    assert res.total_weight == sum(ns)


def test_seed_is_joint_randomness_not_the_ledger_context() -> None:
    """The same inputs and ledger context give a different, unpredictable seed every run."""
    rng = np.random.default_rng(3)
    x, ref, _ = make_round(rng, 4, 64, 0)
    hi, lo = encode_rows(x)
    seeds = {run_mpc(hi, lo, [1] * 4, VerificationPolicy(), ref, "same-context").seed for _ in range(3)}
    assert len(seeds) == 3 and "same-context" not in seeds
    assert run_mpc(hi, lo, [1] * 4, VerificationPolicy(), ref, "fixed", joint=False).seed == "fixed"


def test_sample_cap_bounds_weights() -> None:
    rng = np.random.default_rng(6)
    x, ref, _ = make_round(rng, 4, 200, 0)
    policy = VerificationPolicy(sample_cap=100, outlier_enabled=False, norm_rel_factor=0.0)
    res = run_mpc(*encode_rows(x), [10, 50, 10_000, 100], policy, ref, "cap")
    assert res.total_weight == 10 + 50 + 100 + 100
    assert np.max(np.abs(res.aggregate - np.average(x, axis=0, weights=[10, 50, 100, 100]))) <= 1e-5


def _wrapping_update(d: int, target_norm2: float, salt: int = 9) -> np.ndarray:
    """Field elements v, w with v^2 + w^2 ≡ target (scale 2^32) mod p: squares wrap to a small sum."""
    s = round(target_norm2 * 2 ** 32)
    rng = np.random.default_rng(salt)
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
    set_field_row(hi, lo, 2, _wrapping_update(d, 1.0))
    for ctx in ("w1", "w2", "w3"):
        res = run_mpc(hi, lo, [100] * 6, VerificationPolicy(norm_bound=2.0), ref, ctx)
        assert res.verdicts[2] == (False, "range")
        assert all(_bits(res.verdicts[:2] + res.verdicts[3:]))
        honest = np.delete(x, 2, axis=0)
        assert np.max(np.abs(res.aggregate - honest.mean(axis=0))) <= 1e-5


def test_structured_wraparound_update_is_rejected() -> None:
    """x = (M, -M, 0, ...) with 2M^2 ≡ a legal norm^2: <x, v> = M (v_0 - v_1) vanishes only when
    v_0 = v_1 (probability 1/512 per vector)."""
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
    set_field_row(hi, lo, 4, bad)
    for ctx in ("s1", "s2", "s3"):
        res = run_mpc(hi, lo, [1] * 5, VerificationPolicy(norm_bound=2.0), ref, ctx)
        assert res.verdicts[4] == (False, "range") and all(_bits(res.verdicts[:4]))


def _predicted_even(context: str, coords: list[int], k: int, d: int) -> bool:
    """What a grinding attacker computes: do the k vectors derived from a PREDICTABLE seed have an
    even sum on its half-integer coordinates (then <x, v> stays integral and small)?"""
    v = ff.pine_vectors_int(context, k, d)[:, coords].astype(np.int64)
    return bool(np.all(v.sum(axis=1) % 2 == 0))


@pytest.mark.slow
def test_half_integer_attack_with_grinding_attacker_is_rejected() -> None:
    """The attack that corrupted a published model: the last submitter re-rolls its inputs until the
    public vectors (then derived from the ledger) all have even sums on its half-integers. With
    16 vectors it needs ~2^16 tries; here it may try 2^20. Against the joint seed and >= 41 vectors
    the crafted update is rejected every time, and honest updates are untouched."""
    rng = np.random.default_rng(21)
    d, coords = 16, [1, 3, 9, 11]  # four halves: the 1/4s of the squares add up to an integer
    x, ref, _ = make_round(rng, 5, d, 0)
    hi, lo = encode_rows(x)
    found = None
    for attempt in range(1 << 20):  # what re-rolling share randomness / n_samples buys it
        ctx = hashlib.sha256(f"round-7|attacker-inputs-{attempt}".encode()).hexdigest()
        if _predicted_even(ctx, coords, 16, d):
            found = ctx
            break
    assert found is not None  # the old, predictable scheme was grindable: 16 even sums found
    set_field_row(hi, lo, 0, half_integer_row(lo[0], hi[0], coords))
    square = sum(int(v) ** 2 for v in field_rows(hi[:1], lo[:1])[0]) % P
    assert square < 2 ** 40  # its squares really are small integers: a plain norm check passes it
    for _ in range(20):
        res = run_mpc(hi, lo, [101, 100, 100, 100, 100], VerificationPolicy(), ref, found)
        assert res.verdicts[0] == (False, "range"), res.verdicts
        assert all(_bits(res.verdicts[1:])) and res.outcome == "ok"
        assert np.max(np.abs(res.aggregate)) < 10  # never ±10^15


def test_half_integers_are_caught_by_about_half_of_the_vectors() -> None:
    """Per vector the catch probability is ~1/2 (the parity of the vector's sum on the crafted
    coordinates), which is why the policy insists on >= 41 vectors: 2^-41 < 2^-40."""
    d, coords = 4096, [5, 77, 901]
    v = ff.pine_vectors_int("any", 2000, d)[:, coords].astype(np.int64)
    odd = float(np.mean(v.sum(axis=1) % 2 == 1))
    assert 0.46 < odd < 0.54
    with pytest.raises(PolicyError, match="41"):
        VerificationPolicy(pine_num_vectors=40)


@pytest.mark.parametrize("copies", [3, 4])
def test_identical_honest_updates_are_accepted(copies: int) -> None:
    """Converged training or duplicated data: identical updates (Multi-Krum scores 0, medians equal)
    must pass every relative rule."""
    rng = np.random.default_rng(copies)
    d = 200
    one = 0.5 * rng.normal(0, 1, d) / np.sqrt(d)
    x = np.tile(one, (copies, 1))
    policy = VerificationPolicy(norm_bound=2.0, norm_rel_factor=1.5, cosine_min=0.1, cosine_rel=0.9,
                                outlier_factor=1.5, min_accepted=3)
    res = run_mpc(*encode_rows(x), [10] * copies, policy, one + rng.normal(0, 0.01, d), "same")
    assert res.verdicts == [(True, "ok")] * copies and res.outcome == "ok"
    assert np.max(np.abs(res.aggregate - one)) <= 1e-5


def test_nearly_identical_updates_pass_under_the_outlier_floor() -> None:
    rng = np.random.default_rng(4)
    d = 200
    one = 0.5 * rng.normal(0, 1, d) / np.sqrt(d)
    x = np.tile(one, (5, 1))
    x[3:] += rng.normal(0, 0.003, (2, d))  # two hospitals differ a little; the median score is 0
    strict = VerificationPolicy(outlier_factor=1.5, norm_rel_factor=0.0, cosine_enabled=False)
    res = run_mpc(*encode_rows(x), [10] * 5, strict, None, "near")
    assert [r for _, r in res.verdicts] == ["ok"] * 3 + ["outlier"] * 2  # the old Multi-Krum behaviour
    floored = dataclasses.replace(strict, outlier_floor=0.1)
    res = run_mpc(*encode_rows(x), [10] * 5, floored, None, "near")
    assert all(_bits(res.verdicts))


def test_privacy_floor_does_not_open_an_aggregate_of_too_few() -> None:
    rng = np.random.default_rng(7)
    x, ref, _ = make_round(rng, 5, 100, 0)
    x[2:] *= 20  # three rejected for their norm: two accepted < min_accepted 3
    res = run_mpc(*encode_rows(x), [1] * 5, VerificationPolicy(norm_bound=2.0, min_accepted=3), ref, "few")
    assert [r for _, r in res.verdicts] == ["ok", "ok", "norm", "norm", "norm"]
    assert res.outcome == "too_few_accepted" and res.total_weight == 0 and not np.any(res.aggregate)
    res = run_mpc(*encode_rows(x), [1] * 5, VerificationPolicy(norm_bound=2.0, min_accepted=2), ref, "few")
    assert res.outcome == "ok" and np.max(np.abs(res.aggregate - x[:2].mean(axis=0))) <= 1e-5


def test_aggregate_sanity_check_refuses_an_out_of_range_aggregate() -> None:
    """With the range check switched off a half-integer reaches the aggregate (about p/2 / weight):
    the nodes refuse to publish it (outcome aggregate_out_of_range)."""
    rng = np.random.default_rng(11)
    x, ref, _ = make_round(rng, 4, 64, 0)
    hi, lo = encode_rows(x)
    set_field_row(hi, lo, 0, half_integer_row(lo[0], hi[0], [5]))
    off = VerificationPolicy(range_enabled=False, norm_enabled=False, cosine_enabled=False,
                             outlier_enabled=False)
    res = run_mpc(hi, lo, [3, 2, 2, 2], off, ref, "insane")
    assert all(_bits(res.verdicts)) and res.outcome == "aggregate_out_of_range"
    assert np.max(np.abs(res.aggregate)) > 1e10  # what would have been published
    res = run_mpc(hi, lo, [3, 2, 2, 2], dataclasses.replace(off, range_enabled=True), ref, "sane")
    assert res.verdicts[0] == (False, "range") and res.outcome == "ok"


def test_every_check_can_be_switched_off() -> None:
    rng = np.random.default_rng(13)
    x, ref, _ = make_round(rng, 5, 80, 0)
    x[0] = -x[0] * 5  # fails norm, cosine and outlier
    off = VerificationPolicy(range_enabled=False, norm_enabled=False, cosine_enabled=False,
                             outlier_enabled=False)
    res = run_mpc(*encode_rows(x), [1] * 5, off, None, "off")
    assert all(_bits(res.verdicts)) and res.outcome == "ok"
    assert np.max(np.abs(res.aggregate - x.mean(axis=0))) <= 1e-5


def test_no_accepted_update_opens_nothing() -> None:
    x = np.full((3, 50), 5.0)  # norm ~35 > 2
    res = run_mpc(*encode_rows(x), [1, 1, 1], VerificationPolicy(norm_bound=2.0), np.ones(50), "z")
    assert [r for _, r in res.verdicts] == ["norm"] * 3
    assert res.total_weight == 0 and not np.any(res.aggregate) and res.outcome == "too_few_accepted"


def test_degree_check() -> None:
    rng = np.random.default_rng(1)
    for t, m in ((1, 3), (2, 5), (1, 4)):
        coeffs = [rng.integers(0, 1 << 60, 20).astype(object) for _ in range(t + 1)]
        pts = np.array([sum(c * (j + 1) ** e for e, c in enumerate(coeffs)) % P for j in range(m)], dtype=object)
        assert degree_ok(pts, t, P).all()
        pts[m - 1, 3] = (pts[m - 1, 3] + 1) % P
        ok = degree_ok(pts, t, P)
        assert not ok[3] and ok.sum() == 19


def test_every_policy_field_belongs_to_a_check_or_the_aggregation() -> None:
    """A check declares the fields it reads; a new field nobody reads (or a typo) shows up here."""
    from fedchain_mpc.checks import CHECKS
    from fedchain_mpc.pipeline import AGGREGATION_FIELDS

    declared = {f for c in CHECKS for f in c.fields} | set(AGGREGATION_FIELDS)
    assert declared == set(VerificationPolicy.__dataclass_fields__)


def test_policy_validation_and_json() -> None:
    p = VerificationPolicy(norm_bound=3.0, cosine_min=0.25, cosine_rel=0.4)
    assert VerificationPolicy.from_json(p.to_json()) == p
    for bad in ({"value_bound": 100.0}, {"cosine_min": 1.5}, {"outlier_factor": 1.03}, {"pine_num_vectors": 0},
                {"norm_bound": 70.0}, {"norm_rel_factor": 0.5}, {"cosine_rel": 1.5}, {"min_accepted": 0},
                {"range_enabled": "yes"}):
        with pytest.raises(PolicyError):
            VerificationPolicy(**bad)  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="unknown"):
        VerificationPolicy.from_json('{"norm": 1}')
    with pytest.raises(PolicyError, match="overflows"):
        VerificationPolicy(value_bound=20.0, pine_c=4.0).check_scale(50_000)


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


def test_no_cross_term_with_a_crafted_row_is_ever_truncated(monkeypatch) -> None:
    """A truncation opening hides only in-range values: x_i.x_j with a crafted x_j = (M, 0, ...) is
    M x_i[0] mod p, which a node colluding with x_j's sender could read off the masked opening. Only
    each row's own terms and the eligible rows' Gram may ever be truncated."""
    from fedchain_mpc import mpcops

    seen: list[int] = []
    real = mpcops.trunc_batch

    async def spy(secint, parts, degree, f=16, bits=46):
        for part in parts:
            seen.extend(int(v) % P for v in np.asarray(part.value).reshape(-1))
        return await real(secint, parts, degree, f, bits)

    monkeypatch.setattr(mpcops, "trunc_batch", spy)
    rng = np.random.default_rng(31)
    x, ref, _ = make_round(rng, 5, 64, 0)
    hi, lo = encode_rows(x)
    m_big = (P // 3) | 1
    bad = np.zeros(64, dtype=object)
    bad[0] = m_big
    set_field_row(hi, lo, 4, bad)
    policy = VerificationPolicy(norm_rel_factor=2.0, cosine_rel=0.5, outlier_factor=2.0, min_accepted=2)
    res = run_mpc(hi, lo, [1] * 5, policy, ref, "cross")
    assert res.verdicts[4] == (False, "range") and all(_bits(res.verdicts[:4]))
    honest = field_rows(hi[:4], lo[:4])
    cross = {int(m_big * v) % P for v in honest[:, 0]}
    assert seen and not cross & set(seen)
    gram = {int(sum(a * b for a, b in zip(honest[i], honest[j], strict=True))) % P for i in range(4) for j in range(4)}
    assert gram <= set(seen)  # the eligible rows' Gram was truncated (the outlier check ran)
