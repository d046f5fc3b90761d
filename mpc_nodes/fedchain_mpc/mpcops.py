"""MPyC building blocks of the checks: comparisons, zone tests, counted medians, joint randomness.

Every function runs inside an MPyC session (between mpc.start() and mpc.shutdown()) and is called
by every party with its own shares. Secure integers are SecInt(48) over the field of
SecFxp(32, 16) (values at scale 2^16), so shares made by hospitals need no conversion.
"""

from __future__ import annotations

import math

import numpy as np
from fedchain.canonical import sha256_hex
from mpyc import asyncoro, thresha
from mpyc.runtime import mpc

MAX_CMP_BITS = 48


def bits_for(bound: int) -> int:
    """Bit length for comparing values with |v| <= bound (MPyC's signed range 2^(l-1))."""
    return min(MAX_CMP_BITS, int(bound).bit_length() + 2)


def lt0(a, bound: int):
    """1 where a < 0, for |a| <= bound (out-of-range inputs give a pseudo-random, often non-bit value)."""
    return mpc.np_sgn(a, l=bits_for(bound), LT=True)


async def random_array(secint, shape: tuple[int, ...]):
    """Secret uniformly random field elements (MPyC's PRSS), as a secure array of this shape."""
    fld = secint.field
    size = int(np.prod(shape))
    r = mpc._np_randoms(fld, size)
    if not isinstance(r, fld.array):
        r = await r
    return secint.array(fld.array(r.value.reshape(shape)))


async def _bounded_randoms(fld, size: int, bits: int) -> tuple[np.ndarray, int]:
    """Shares of random values that are sums of D independent uniforms in [0, 2^bits), and D.

    With PRSS every party misses the key of at least one summand, so the sum mod 2^bits is uniform
    to it; D = C(m, t) (PRSS) or t + 1 (without PRSS)."""
    d = (mpc.threshold + 1) if mpc.options.no_prss else math.comb(len(mpc.parties), mpc.threshold)
    r = mpc._np_randoms(fld, size, d << bits)  # MPyC: each summand < 2^(bitlen(bound // d) - 1) = 2^bits
    if not isinstance(r, fld.array):
        r = await r
    return r.value, d


async def zone_terms(secint, s, bits: int):
    """Per element of s (secure ints): a value that is 0 iff s lies in the zone, else nonzero.

    Honest zone: |s| < 2^(bits-1) always passes; s outside [-2^(bits+2), 2^(bits+2)) always fails,
    and so does every non-integral field element (a "fraction" mod p sits near a multiple of p/q,
    far outside). How: y = s + 2^(bits-1) and random r = r_mod + 2^bits r_div (r_mod a sum of D
    uniforms in [0, 2^bits), r_div of D uniforms in [0, 2^k)); open c = y + r; then
    t = floor(c / 2^bits) - r_div = floor((y + r_mod) / 2^bits) lies in {0..D} iff y + r_mod is in
    [0, (D+1) 2^bits), and prod_j (t - j) is zero exactly then. c hides y like MPyC's own
    comparison does (c mod 2^bits is uniform; the carry is hidden by r_div statistically, 2^-k).
    Cost: no random bits and no bitwise products, one opening and log2(D+1) multiplication rounds.
    """
    fld = secint.field
    k = mpc.options.sec_param
    size = int(np.prod(s.shape))
    if bits + k + 4 >= fld.modulus.bit_length():
        raise ValueError(f"zone of {bits} bits does not fit the field with security parameter {k}")
    r_mod, d = await _bounded_randoms(fld, size, bits)
    r_div, _ = await _bounded_randoms(fld, size, k)
    y = s.reshape(-1) + (1 << (bits - 1))
    c = await mpc.output(y + secint.array(fld.array(r_mod + (r_div << bits))))
    top = np.asarray([(int(v) % fld.modulus) >> bits for v in np.asarray(c).reshape(-1)], dtype=object)
    t = secint.array(fld.array(top)) - secint.array(fld.array(r_div))
    factors = [t - j for j in range(d + 1)]
    while len(factors) > 1:  # product tree: log2(D + 1) multiplication rounds
        nxt = [factors[i] * factors[i + 1] for i in range(0, len(factors) - 1, 2)]
        if len(factors) % 2:
            nxt.append(factors[-1])
        factors = nxt
    return factors[0].reshape(s.shape)


async def trunc_shares(secint, shares, degree: int, f: int = 16, bits: int = 46):
    """Shares (a field array: this party's share of each value, of polynomial degree t or 2t) of
    values v at scale 2^(2f) → a fresh degree-t secure array of v / 2^f, with ONE opening.

    The shares are masked with r = r_mod + 2^f r_div (r_mod a sum of D uniforms in [0, 2^f), so
    (v + r) mod 2^f is uniform; r_div hides the rest statistically, 2^-k) and opened with threshold
    `degree`, which also reduces a degree-2t sharing (re-randomized first by a pseudorandom sharing of
    zero, see _rerandomize): floor(c / 2^f) - r_div shares
    floor((v + r_mod) / 2^f) = v / 2^f + e, e in [0, D], re-centred by D // 2. So the result is
    v / 2^f within about D/2 + 1 units of 2^-f (MPyC's reshare + np_trunc: 1 unit, but a resharing
    round and f random bits per value). Requires |v| < 2^(bits-1): an out-of-range v is NOT hidden
    by the mask, so only values of validated rows (or of one row's own data) may be truncated."""
    (out,) = await trunc_batch(secint, [shares], degree, f, bits)
    return out


async def trunc_batch(secint, parts: list, degree: int, f: int = 16, bits: int = 46) -> list:
    """trunc_shares of several field arrays in one opening (threshold `degree`: 2t if any part holds
    products of two sharings). Returns one secure array per part, same shapes."""
    fld = secint.field
    k = mpc.options.sec_param
    flat = [np.asarray(p.value, dtype=object).reshape(-1) for p in parts]
    sizes = [v.size for v in flat]
    size = sum(sizes)
    r_mod, d = await _bounded_randoms(fld, size, f)
    if (d + 2) << (bits + k) >= fld.modulus:
        raise ValueError(f"{bits}-bit values do not fit the field with security parameter {k}")
    r_div, _ = await _bounded_randoms(fld, size, bits - f + k)
    masked = fld.array(np.concatenate(flat)) + fld.array(r_mod + (r_div << f)) + (1 << (bits - 1))
    if degree > mpc.threshold:  # products of two sharings: hide the product polynomial (below)
        masked, degree = await _rerandomize(fld, masked, size)
    c = await mpc.output(masked, threshold=degree)
    top = np.asarray([int(v) >> f for v in np.asarray(c.value).reshape(-1)], dtype=object)
    res = fld.array(top - (1 << (bits - 1 - f)) - d // 2) - fld.array(r_div)
    out, off = [], 0
    for part, n in zip(parts, sizes, strict=True):
        out.append(secint.array(fld.array(res.value[off:off + n].reshape(part.shape))))
        off += n
    return out


async def _rerandomize(fld, shares, size: int):
    """A degree-2t sharing made of local products reveals more than its value when opened: its other
    coefficients tie the factors to the opener's own shares (with small secrets a, b and t = 1, the
    x^2 coefficient alone pins down both). The mask r is bounded, so it cannot hide them. Add a
    pseudorandom degree-2t sharing of zero with field-uniform coefficients (MPyC's PRZS), so only the
    masked value is revealed; without PRSS, reshare to degree t instead."""
    if mpc.options.no_prss:
        return await mpc._reshare(shares), mpc.threshold
    zero = thresha.np_pseudorandom_share_0(fld, len(mpc.parties), mpc.pid, mpc.prfs(fld.order),
                                           mpc._prss_uci(), size)
    return shares + zero, 2 * mpc.threshold


async def local_product(secint, a, b):
    """This party's share of a * b, NOT reduced: a field array of degree 2t (t if b is public ints)."""
    av = await mpc.gather(a)
    if hasattr(b, "share"):
        return av * await mpc.gather(b)
    return av * secint.field.array(np.asarray(b, dtype=object) % secint.field.modulus)


async def mul_trunc(secint, a, b, f: int = 16, bits: int = 46):
    """a * b / 2^f for secure ints at scale 2^f (b secure, or a public integer array), with ONE opening
    (the opening of trunc_shares also does the degree reduction). |a b| < 2^(bits-1) at scale 2^(2f)."""
    degree = 2 * mpc.threshold if hasattr(b, "share") else mpc.threshold
    return await trunc_shares(secint, await local_product(secint, a, b), degree, f, bits)


async def open_stage(secint, checks_terms: list[list], n: int, rows: np.ndarray) -> list[np.ndarray]:
    """Open one stage's verdicts: for each check j, the rows that passed checks 0..j of the stage.

    checks_terms[j]: secure arrays of shape (n, ...) that are all zero in row i iff row i passes
    check j (and nonzero if it fails or an input was out of range), or Products of (n,) factors. Opens, per row in `rows` and per
    check j, z_j = sum over checks j' <= j of (fresh secret random) * terms_j': zero iff every check
    up to j passes, else uniformly random. So only the index of the first failing check (the reason
    code) is revealed.

    One communication round: the products rho * term stay local (a degree-2t sharing), are
    re-randomized with a pseudorandom degree-2t sharing of zero (_rerandomize) and opened with
    threshold 2t. The opened polynomial is then uniform among those with constant term z_j, so the
    opening reveals z_j and nothing else, exactly like reducing the degree first and opening a fresh
    degree-t sharing (what this did before, at one more round).
    """
    if not checks_terms:
        return []
    if not rows.size:  # nothing left to decide (public): no opening
        return [np.zeros(n, dtype=bool) for _ in checks_terms]
    fld = secint.field
    p = fld.modulus
    def select(t):
        if isinstance(t, Product):
            return Product([mpc.np_reshape(f, (n, -1))[rows] for f in t.factors])
        return mpc.np_reshape(t, (n, -1))[rows]

    flat = [[select(t) for t in terms] for terms in checks_terms]
    z: list[np.ndarray] = []
    for j in range(len(flat)):  # fresh randomness per z_j: z_j must not tell whether z_{j-1}'s checks passed
        acc = np.zeros(rows.size, dtype=object)
        for terms in flat[:j + 1]:
            for term in terms:
                shape = term.factors[0].shape if isinstance(term, Product) else term.shape
                rho = await random_array(secint, shape)
                if isinstance(term, Product):  # rho is one more factor; the last product stays local
                    left, right = _reduce_to_two([rho, *term.factors])
                    prod = await local_product(secint, left, right)
                else:
                    prod = await local_product(secint, rho, term)  # degree 2t, not reduced
                acc = (acc + np.sum(np.asarray(prod.value, dtype=object).reshape(rows.size, -1), axis=1)) % p
        z.append(acc)
    size = len(z) * rows.size
    shares = fld.array(np.concatenate(z) if size else np.zeros(0, dtype=object))
    shares, degree = await _rerandomize(fld, shares, size)
    opened = await mpc.output(shares, threshold=degree)
    vals = np.array([int(v) == 0 for v in np.asarray(opened.value).reshape(-1)], dtype=bool)
    vals = vals.reshape(len(flat), rows.size)
    out = []
    for j in range(len(flat)):
        passed = np.zeros(n, dtype=bool)
        passed[rows] = vals[j]
        out.append(passed)
    return out


class Product:
    """A fail term given by its factors (secure arrays of one shape): zero iff some factor is zero.

    open_stage multiplies them itself with its random multiplier as one more factor and keeps the last
    multiplication local (degree 2t, opened with threshold 2t): one resharing round less than
    multiplying the factors out first. Same value opened, z_j = rho * (product of the factors)."""

    def __init__(self, factors: list) -> None:
        if not factors:
            raise ValueError("a product needs at least one factor")
        self.factors = list(factors)

    def map(self, fn) -> Product:
        return Product([fn(f) for f in self.factors])


def _reduce_to_two(factors: list) -> tuple:
    """Multiply pairwise (one resharing round per level) until two factors are left (k >= 2 factors:
    ceil(log2 k) - 1 rounds)."""
    while len(factors) > 2:
        nxt = [factors[i] * factors[i + 1] for i in range(0, len(factors) - 1, 2)]
        if len(factors) % 2:
            nxt.append(factors[-1])
        factors = nxt
    return factors[0], factors[1]


@asyncoro.mpc_coro
async def trunc_array(secint, shares, degree: int, f: int = 16, bits: int = 46):
    """trunc_shares as an MPyC coroutine: returns a placeholder at once, so the truncation's opening
    runs concurrently with whatever the caller starts next (MPyC's program counter keeps the parties'
    messages matched). Same opening, same values revealed as trunc_shares."""
    shape = np.asarray(shares.value).shape
    await mpc.returnType((secint.array, True, shape))
    (out,) = await trunc_batch(secint, [shares], degree, f, bits)
    return out.share


async def count_median_fail(values, scale_num: int, den: int, bound: int, rows: np.ndarray, cols: np.ndarray,
                            upper: bool, offset: int = 0, value_bound: int | None = None, also: list | None = None,
                            as_product: bool = False):
    """Fail terms (|rows|,) of count_median_test: zero iff the row passes, nonzero otherwise.

    Same rule and the same first comparison batch as count_median_test; instead of a second
    comparison of the count (an exact integer in 0..c) with r + 1 (about 5 rounds), the fail term is
    the product of (count - j) over the counts that pass: c - r factors (upper) or r + 1 (lower),
    ceil(log2(factors)) multiplication rounds. Each factor is at most c in magnitude, so the product
    (< c^c < p for c <= SORT_MEDIAN_ABOVE) is zero exactly when the row passes. `also`: secure arrays
    (|rows|,) multiplied into the same product tree (a row passes if any factor is zero), e.g. the
    bit "above the floor". The driver opens fail terms only as zero / nonzero (open_stage).
    as_product: return the factors (a Product) and let open_stage multiply them (one round less).
    """
    c = cols.size
    if c > SORT_MEDIAN_ABOVE:
        rel = await count_median_test(values, scale_num, den, bound, rows, cols, upper, offset, value_bound)
        factors = [1 - rel, *(also or [])]
    else:
        r = (c - 1) // 2
        vi = values[rows].reshape(-1, 1) * den + (offset if upper else -offset)
        vj = values[cols].reshape(1, c)
        if upper:  # pass iff #{j: scale_num v_j <= den v_i} >= r + 1
            cnt = mpc.np_sum(1 - lt0(vi - scale_num * vj, bound), axis=1)
            passing = range(r + 1, c + 1)
        else:  # pass iff #{j: scale_num v_j < den v_i - offset} <= r
            cnt = mpc.np_sum(lt0(scale_num * vj - vi, bound), axis=1)
            passing = range(r + 1)
        factors = [cnt - j for j in passing] + list(also or [])
    if as_product:
        return Product(factors)
    if len(factors) == 1:
        return factors[0]
    return mpc.np_prod(mpc.np_vstack([f.reshape(1, -1) for f in factors]), axis=0)


SORT_MEDIAN_ABOVE = 24  # more values: sort them (~c log^2 c comparisons) instead of c^2 pairwise counts


async def count_median_test(values, scale_num: int, den: int, bound: int, rows: np.ndarray, cols: np.ndarray,
                            upper: bool, offset: int = 0, value_bound: int | None = None):
    """Secret bits, for i in rows, of den * v_i <= scale_num * median(v[cols]) + offset (upper=False)
    or den * v_i + offset >= scale_num * median(v[cols]) (upper=True); median = lower median of v
    over cols (offset: a public integer at the values' scale times den).

    For c = len(cols) <= SORT_MEDIAN_ABOVE the median is never formed: with r = (c - 1) // 2 the
    lower median s_(r) satisfies scale_num * s_(r) >= den * v_i iff at least c - r entries do, and
    scale_num * s_(r) <= den * v_i iff at least r + 1 entries do: one batch of |rows| * c
    comparisons and one of |rows|. Above, the c values are sorted (MPyC's sorting network on the
    shortest integers that hold |v| <= value_bound) and the median compared with each row.
    |den v|, |scale_num v| <= bound.
    """
    c = cols.size
    r = (c - 1) // 2
    vi = values[rows].reshape(-1, 1) * den + (offset if upper else -offset)
    if c > SORT_MEDIAN_ABOVE:
        short = mpc.SecInt(bits_for(value_bound if value_bound is not None else bound), p=type(values).sectype.field.modulus)
        ranked = mpc.np_sort(short.array(await mpc.gather(values[cols])))
        med = type(values).sectype.array(await mpc.gather(ranked[r:r + 1])).reshape(1, 1)
        if upper:  # den v_i + offset >= scale_num med
            return (1 - lt0(vi - scale_num * med, bound)).reshape(-1)
        return (1 - lt0(scale_num * med - vi, bound)).reshape(-1)  # den v_i - offset <= scale_num med
    vj = values[cols].reshape(1, c)
    if upper:  # count j with scale_num v_j <= den v_i, i.e. not (den v_i < scale_num v_j)
        le = 1 - lt0(vi - scale_num * vj, bound)
        return 1 - lt0(mpc.np_sum(le, axis=1) - (r + 1), c + 1)
    below = lt0(scale_num * vj - vi, bound)  # scale_num v_j < den v_i - offset
    return lt0(mpc.np_sum(below, axis=1) - (r + 1), c + 1)  # count <= r


async def joint_seed(secint, context: str) -> str:
    """Public randomness fixed only now, after the inputs are sealed: the nodes open two random field
    elements they generated jointly (PRSS), so no hospital can predict or re-roll it."""
    fld = secint.field
    r = mpc._np_randoms(fld, 2)
    if not isinstance(r, fld.array):
        r = await r
    opened = await mpc.output(secint.array(r))
    material = "|".join([context, *(str(int(v)) for v in opened)])
    return sha256_hex(material.encode())
