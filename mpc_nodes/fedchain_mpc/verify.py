"""Verification + aggregation inside MPyC, as one async function (used by mpc_program and tests).

Cost structure (why it is fast): every product of a share vector with a share or public
vector is computed locally and exactly by `field.local_products` (float64 BLAS on 20-bit
limbs). Only n×n, n×k and n-length values ever enter MPyC: the Gram matrix (degree-2t local
products → MPyC `_reshare`, then `np_trunc`), wrap-check projections and the reference inner
product (linear, no resharing), then batched comparisons and small openings of each check's bit. The aggregate is a local linear map with public integer weights
(n_samples, capped, times the revealed accept bits) and one opening of a d-vector (opening.py:
vectorized limb arithmetic mod p = 2^80 - 65 instead of MPyC object arrays).

Types: SecFxp(32, 16) for the Gram/truncations; comparisons use SecInt(48) over the SAME
field (values as integers at scale 2^16), so sums of distances stay in range. Out-of-range
values (from malicious field elements) make MPyC comparisons pseudo-random under fresh masks:
a wrapped update passes each of the pine_num_vectors two-sided range tests only by chance, non-bits
are caught by the masked norm opening, and later checks count only for rows that passed it, so
garbage never reaches an honest verdict.

Security model: MPyC's (passive, honest majority t < m/2; malicious nodes are out of scope).
Revealed: per hospital one reason code ("inconsistent" is decided publicly from uniformly masked
combinations) and the aggregate. The bits behind the reason code are opened as soon as each check
is done (n_ok, then eligibility where n_ok, then the outlier bit where eligible): exactly what the
reason code reveals, and public bits make the later masks local and spare comparisons for rows
whose verdict is already decided.

Outlier rule cost: Multi-Krum needs the k + 1 smallest distances per row: for n <= KRUM_RANK_MAX_N
by ranking with all n(n-1)/2 pairwise comparisons per row in one batch (2 comparison stages),
beyond that by a per-row sorting network (fewer comparisons, ~log^2 n sequential stages); the
mean-distance rule only needs row sums. The median test for n <= RANK_MEDIAN_MAX_N compares every
score with every scaled score in one batch (s_i passes iff at least n - (n-1)//2 scaled scores are
>= 16 s_i), else the n scores are sorted. Rounds, not CPU, dominate the wall time of these stages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
from mpyc.runtime import mpc

from fedchain_mpc import field as ff
from fedchain_mpc import opening as op
from fedchain_mpc.policy import VerificationPolicy

CONSISTENCY_ROWS = 3  # 3 public combinations with coefficients < 2^16: cheating passes w.p. <= 2^-48
RANK_MEDIAN_MAX_N = 24
KRUM_RANK_MAX_N = 16  # above, a sorting network's fewer comparisons beat one wide batch
REASON_CODES = {0: "ok", 1: "norm", 2: "cosine", 3: "outlier"}


@dataclass
class MPCResult:
    verdicts: list[tuple[bool, str]]
    aggregate: np.ndarray  # float64 weighted average of accepted updates (zeros if none)
    total_weight: int
    phases: dict[str, float] = dc_field(default_factory=dict)
    phases_cpu: dict[str, float] = dc_field(default_factory=dict)


def degree_ok(points: np.ndarray, t: int, p: int) -> np.ndarray:
    """points: (m, r) field values at x = 1..m. True per column iff they lie on one polynomial
    of degree <= t (interpolate from the first t+1 points, compare the others)."""
    m = points.shape[0]
    ok = np.ones(points.shape[1], dtype=bool)
    base = list(range(1, t + 2))
    for j in range(t + 1, m):
        vec = _lagrange(base, j + 1, p)
        pred = sum(points[i] * vec[i] for i in range(t + 1)) % p
        ok &= pred == points[j] % p
    return ok


def _lagrange(xs: list[int], x: int, p: int) -> list[int]:
    out = []
    for xi in xs:
        num, den = 1, 1
        for xk in xs:
            if xk != xi:
                num = num * (x - xk) % p
                den = den * (xi - xk) % p
        out.append(num * pow(den, -1, p) % p)
    return out


async def _settle(stype, a):
    """Wait for a secure array's shares, so phase timings mean what they say (MPyC is lazy)."""
    return stype.array(await mpc.gather(a))


def _bits(bound: int) -> int:
    """Bit length for comparing values with |v| <= bound (MPyC's signed range 2^(l-1))."""
    return min(48, int(bound).bit_length() + 2)


def _lt0(a, bound: int):
    """1 where a < 0, for |a| <= bound (out-of-range inputs give a pseudo-random bit)."""
    return mpc.np_sgn(a, l=_bits(bound), LT=True)


async def _random_array(secint, shape: tuple[int, ...]):
    """Secret uniformly random field elements (MPyC's PRSS), as a secure array of this shape."""
    fld = secint.field
    size = int(np.prod(shape))
    r = mpc._np_randoms(fld, size)
    if not isinstance(r, fld.array):
        r = await r
    return secint.array(fld.array(r.value.reshape(shape)))


def _sum_smallest(dist, count: int, cap: int):
    """Per row of dist (n×n, entries in about [0, cap]): the sum of its `count` smallest entries.

    Ranks by pairwise comparison in ONE batch (n·n(n-1)/2 comparisons) instead of a sorting
    network (~log^2 n sequential comparison stages): order by (value, column index), so ties
    count like a stable sort and the sum equals that of the sorted row's first `count` entries."""
    n = dist.shape[1]
    a, b = np.triu_indices(n, 1)
    before = _lt0(dist[:, b] - dist[:, a], cap)  # 1: column b precedes column a (strictly smaller)
    to_count = np.zeros((a.size, n), dtype=np.int64)  # rank_j = #columns preceding j
    to_count[np.arange(a.size), a] = 1
    to_count[np.arange(a.size), b] = -1
    rank = before @ to_count + np.arange(n)  # pair (a, b): +1 to rank_a if b precedes, else to rank_b
    chosen = _lt0(rank - count, n + 1)  # rank < count
    return mpc.np_sum(chosen * dist, axis=1)


def _within_factor_of_median(s, factor_num: int, bound: int, rows: np.ndarray | None = None):
    """1 where 16·s_i <= factor_num · (lower median of s), for |16 s|, |factor_num s| <= bound;
    only for i in rows (default all).

    With r = (n-1)//2 the median is the sorted s_(r); s_(r) >= v iff at least n - r entries are
    >= v. So count j with factor_num·s_j < 16·s_i (one batch of n^2 comparisons) and test that
    count <= r: the median is never formed, saving a selection and a comparison stage."""
    n = s.shape[0]
    si = s if rows is None else s[rows]
    below = _lt0(factor_num * s.reshape(1, n) - 16 * si.reshape(-1, 1), bound)  # [i, j]
    return _lt0(mpc.np_sum(below, axis=1) - ((n - 1) // 2 + 1), n + 1)


class _Clock:
    """Wall and CPU seconds per phase (CPU time is the load-independent figure)."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._t = time.perf_counter()
        self._c = time.process_time()

    def lap(self, name: str) -> None:
        now, cnow = time.perf_counter(), time.process_time()
        self.phases[name] = self.phases.get(name, 0.0) + now - self._t
        self.cpu[name] = self.cpu.get(name, 0.0) + cnow - self._c
        self._t, self._c = now, cnow


async def verify_and_aggregate(hi: np.ndarray, lo: np.ndarray, n_samples: list[int],
                               policy: VerificationPolicy, reference: np.ndarray | None,
                               seed: str) -> MPCResult:
    """Run the round's checks and the aggregation; every party calls this with its share rows.

    hi/lo: (n, d) uint64 share rows (this party's shares; the secrets themselves with one party).
    Must be called between mpc.start() and mpc.shutdown().
    """
    clock = _Clock()
    secfxp = mpc.SecFxp(32, 16)
    fld = secfxp.field
    p = fld.modulus
    secint = mpc.SecInt(48, p=p)
    n, d = lo.shape
    t, m = mpc.threshold, len(mpc.parties)
    policy.check_scale(n)
    one = 1 << 16

    # public rows: [reference?] + consistency coefficients + wide wrap-check vectors
    c0 = 1 if policy.cosine_enabled else 0
    public = np.empty((c0 + CONSISTENCY_ROWS + policy.pine_num_vectors, d), dtype=np.int32)  # |v| <= 2^16
    if policy.cosine_enabled:
        if reference is None:
            raise ValueError("policy enables the cosine check but no reference update was given")
        public[0] = ff.quantized_reference(reference)
    public[c0:c0 + CONSISTENCY_ROWS] = ff.consistency_coefficients(seed, CONSISTENCY_ROWS, d)
    public[c0 + CONSISTENCY_ROWS:] = ff.pine_vectors_int(seed, policy.pine_num_vectors, d)
    g_loc, p_loc = ff.local_products(hi, lo, public, p)
    clock.lap("local_products")

    # 1. share consistency: open z + mask (z = public combination of the shares) from every party
    z = p_loc[:, c0:c0 + CONSISTENCY_ROWS].reshape(-1)
    mask = mpc._np_randoms(fld, z.size)
    if not isinstance(mask, fld.array):
        mask = await mask
    y = [int(v) for v in (z + mask.value) % p]
    got = await mpc.transfer(y)
    cons = degree_ok(np.array(got, dtype=object), t, p).reshape(n, CONSISTENCY_ROWS).all(axis=1)
    cons_i = cons.astype(np.int64)
    clock.lap("consistency")

    # 2. norm + PINE-style wrap check (comparison bit lengths sized to honest ranges, see module doc).
    # Independent work is launched before anything is awaited (MPyC runs it concurrently), so the
    # Gram and x·r truncations, and the norm and cosine comparisons, share communication rounds.
    gram = secfxp.array(fld.array(g_loc), integral=False)
    if t > 0:
        gram = mpc._reshare(gram)
    eye = np.eye(n, dtype=np.int64)
    krum = policy.outlier_active(n) and policy.krum_k(n) + 1 < n
    wide = policy.outlier_active(n) and policy.wide_row_sums(n)
    g32 = g = None
    g_fut = mpc.np_trunc(gram) if not wide else gram  # scale 2^32 → 2^16 (or diagonal only, below)
    if policy.cosine_enabled:
        xr = mpc.np_trunc(secfxp.array(fld.array(p_loc[:, 0]), integral=False))
        xr2 = xr * xr
    if not wide:  # distances at scale 2^16: truncate the whole Gram matrix once
        g = secint.array(await mpc.gather(g_fut))
        norm2 = mpc.np_sum(g * eye, axis=1)
    else:  # only the diagonal is truncated; distances stay at scale 2^32 (n^2 truncations saved)
        g32 = secint.array(await mpc.gather(g_fut))
        diag = mpc.np_sum(g32 * eye, axis=1)
        norm2 = secint.array(await mpc.gather(mpc.np_trunc(secfxp.array(await mpc.gather(diag), integral=False))))
    proj = secint.array(fld.array(p_loc[:, c0 + CONSISTENCY_ROWS:]))
    lim_x = int(round(policy.pine_c * policy.norm_bound * one))  # honest |<x, unit vector>| bound
    lim = lim_x * ff.PINE_SPREAD
    b2 = int(round(policy.norm_bound ** 2 * one))
    norm_big = int(round((policy.pine_c * policy.norm_bound) ** 2 * one))
    raw = mpc.np_hstack((_lt0(mpc.np_hstack((proj + lim, lim - proj)), 2 * lim),
                         _lt0(b2 - norm2, norm_big).reshape(n, 1)))
    # Each check's outcome is opened as soon as it is known: the reason codes reveal exactly these
    # bits anyway (reason = first failing check), and public bits turn later masks into local
    # multiplications and skip comparisons for rows whose verdict is already decided.
    # norm: v_i = Σ_j ρ_j b_j (b_j - 1) + ρ'_j b_j with secret random ρ, ρ' is 0 iff every
    # comparison bit b_j is a true bit (MPyC returns non-bits for inputs far outside their range,
    # i.e. a wrapped update) and no test failed; otherwise uniformly random. Rows with n_ok = 1
    # therefore have true bits in every later check.
    # cosine, in the SAME opening: w_i = Σ_j σ_j b_j (b_j - 1) + σ'_j b_j + τ_i (1 - c_ok_i) with
    # fresh secret σ, σ', τ: uniformly random (independent of v and c_ok) where n_ok = 0, and
    # 0 iff c_ok = 1 where n_ok = 1. So exactly n_ok and, where n_ok, c_ok are revealed.
    rho = await _random_array(secint, (4,) + raw.shape)
    bad = raw * (raw - 1)
    v = mpc.np_sum(rho[0] * bad + rho[1] * raw, axis=1) * cons_i  # inconsistent rows: open 0

    # 3. cosine with the (unit, quantized) reference: x·r >= 0 and (x·r)^2 >= cmin^2 ||x||^2
    if policy.cosine_enabled:
        tau = await _random_array(secint, (n,))
        xr_i = secint.array(await mpc.gather(xr))
        xr2_i = secint.array(await mpc.gather(xr2))
        cq = int(round(policy.cosine_min ** 2 * one))
        pos = 1 - _lt0(xr_i, lim_x)
        big = norm_big * one
        if policy.cosine_min >= 0:
            c_ok = pos * (1 - _lt0(xr2_i * one - norm2 * cq, big))
        else:
            small = 1 - _lt0(norm2 * cq - xr2_i * one, big)
            c_ok = pos + small - pos * small
        w = (mpc.np_sum(rho[2] * bad + rho[3] * raw, axis=1) + tau * (1 - c_ok)) * cons_i
        opened = [int(x) == 0 for x in await mpc.output(mpc.np_hstack((v, w)))]
        n_ok = cons & np.array(opened[:n], dtype=bool)
        elig = n_ok & np.array(opened[n:], dtype=bool)
    else:
        n_ok = cons & np.array([int(x) == 0 for x in await mpc.output(v)], dtype=bool)
        elig = n_ok
    clock.lap("norm")
    clock.lap("cosine")  # opened together with the norm bits; the key stays for the output format

    # 4. Multi-Krum-style outlier score among eligible updates (public mask: local multiplications)
    o_ok = np.ones(n, dtype=bool)
    rows = np.flatnonzero(elig)
    if policy.outlier_active(n) and rows.size:
        cap = int(round(4 * policy.norm_bound ** 2 * one))
        both = np.outer(elig, elig).astype(np.int64)
        kk = policy.krum_k(n)
        if not wide:
            dist = norm2.reshape(n, 1) + norm2.reshape(1, n) - 2 * g
            dist = (dist * both + cap * (1 - both)) * (1 - eye)
            if krum and n <= KRUM_RANK_MAX_N:  # one round of pairwise comparisons per eligible row
                # an ineligible row is (cap, .., 0, .., cap): its sum is kk·cap, public
                pick = np.zeros((rows.size, n), dtype=np.int64)
                pick[np.arange(rows.size), rows] = 1
                score = _sum_smallest(dist[rows], kk + 1, cap) @ pick + kk * cap * (1 - elig.astype(np.int64))
            elif krum:  # Multi-Krum: the k + 1 smallest per row (self distance 0 included)
                small_t = mpc.SecInt(_bits(cap), p=p)  # cheaper comparisons in the sorting network
                srt = mpc.np_sort(small_t.array(await mpc.gather(dist)), axis=1)
                score = secint.array(await mpc.gather(mpc.np_sum(srt[:, :kk + 1], axis=1)))
            else:
                score = mpc.np_sum(dist, axis=1)
        else:  # mean-distance rule: row sums at scale 2^32, then n truncations
            cap32 = cap << 16
            dist = diag.reshape(n, 1) + diag.reshape(1, n) - 2 * g32
            dist = (dist * both + cap32 * (1 - both)) * (1 - eye)
            rowsum = secfxp.array(await mpc.gather(mpc.np_sum(dist, axis=1)), integral=False)
            score = secint.array(await mpc.gather(mpc.np_trunc(rowsum)))
        bound_o = (kk + 1) * cap * max(16, policy.factor_num)
        if n <= RANK_MEDIAN_MAX_N:  # compare every score with every scaled score: no median needed
            ok_rows = _within_factor_of_median(score, policy.factor_num, bound_o, rows)
        else:
            score_t = mpc.SecInt(_bits((kk + 1) * cap), p=p)
            ranked = mpc.np_sort(score_t.array(await mpc.gather(score)))
            med = secint.array(await mpc.gather(ranked[(n - 1) // 2:(n - 1) // 2 + 1]))  # shape (1,)
            ok_rows = 1 - _lt0(med * policy.factor_num - score[rows] * 16, bound_o)
        o_ok[rows] = [int(x) == 1 for x in await mpc.output(ok_rows)]
    clock.lap("outlier")

    verdicts = []
    for i in range(n):
        if not cons[i]:
            verdicts.append((False, "inconsistent"))
        elif not n_ok[i]:
            verdicts.append((False, "norm"))
        elif not elig[i]:
            verdicts.append((False, "cosine"))
        elif not o_ok[i]:
            verdicts.append((False, "outlier"))
        else:
            verdicts.append((True, "ok"))
    clock.lap("reveal")

    # 5. aggregation: public integer weights → local linear map, one opening
    w = np.array([min(int(s), policy.sample_cap) if ok else 0 for s, (ok, _) in zip(n_samples, verdicts, strict=True)],
                 dtype=np.int64)
    total = int(w.sum())
    fold = op.fold_constant(p)
    if total > 0 and fold is not None:  # vectorized opening (see opening.py), same values revealed
        mine = op.share_bytes(op.weighted_sum_parts(hi, lo, w), fold)
        shares = await mpc.transfer(mine, senders=list(range(t + 1)))  # points 1..t+1
        agg = op.recombine(shares, d, p, fold) / (float(one) * total)
    elif total > 0:
        s_loc = ff.weighted_sum(hi, lo, w, p)
        opened = await mpc.output(secint.array(fld.array(s_loc)))  # signed ints
        vals = np.asarray(opened, dtype=object)
        agg = vals.astype(np.float64) / (float(one) * total)
    else:
        agg = np.zeros(d, dtype=np.float64)
    clock.lap("aggregate")
    del t, m
    return MPCResult(verdicts=verdicts, aggregate=agg, total_weight=total, phases=clock.phases,
                     phases_cpu=clock.cpu)
