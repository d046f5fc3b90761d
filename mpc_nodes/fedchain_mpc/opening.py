"""Open Σ_i w_i x_i (a d-vector of Shamir shares) with vectorized limb arithmetic instead of MPyC objects.

Why: `mpc.output` on a 100k secure array converts to Python-int object arrays, pickles them,
recombines with object dot products and converts back (about 60 ms CPU per node at d=100k,
most of the aggregate phase). The field of SecFxp(32, 16) has p = 2^80 - 65, so reduction mod p
is a fold of bits >= 80 times 65: a few int64 array passes on 32-bit limbs.

What is revealed is exactly what `mpc.output` reveals: the shares of the aggregate (reduced
mod p, so they are points of the polynomial Σ w_i f_i and carry nothing beyond it), sent by
parties 1..t+1 to every party; every party recombines the SAME t+1 points with integer Lagrange
coefficients, so all nodes get identical results. Results are bit-identical to the old path:
each value is the signed representative mod p converted to float64 (exactly when |v| < 2^53;
the rare larger values — only possible for a wrapped update that passed every check by chance —
go through Python ints like before).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

_M32 = np.int64(0xFFFFFFFF)
_M16 = np.int64(0xFFFF)
_EXP = 80  # p = 2^80 - c


def fold_constant(p: int) -> int | None:
    """c with p = 2^80 - c if small enough for the limb folds here (else None: use mpc.output)."""
    c = (1 << _EXP) - p
    return c if 0 < c < (1 << 15) else None


def weighted_sum_parts(hi: np.ndarray, lo: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(3, d) int64 parts s0 + s1·2^32 + s2·2^64 = Σ_i w_i x_i exactly (x = hi·2^64 + lo)."""
    n = lo.shape[0]
    w = np.asarray(weights, dtype=np.int64)
    if np.any(w < 0) or np.any(w >= 2 ** 20) or n >= 2 ** 11:
        raise ValueError("weights must be integers in [0, 2^20) and n < 2048 for exact sums")
    d = lo.shape[1]
    out = np.zeros((3, d), dtype=np.int64)  # each part < 2^(20+32+11) = 2^63
    tmp = np.empty(d, dtype=np.uint64)
    m32 = np.uint64(0xFFFFFFFF)
    for i in np.flatnonzero(w):  # row by row: no n×d temporaries (an int64 matmul is not BLAS either)
        wi = np.uint64(w[i])  # uint64 products are exact here and bit-identical to int64 ones
        np.bitwise_and(lo[i], m32, out=tmp)  # in place: fresh d-sized temporaries cost page faults
        tmp *= wi
        out[0] += tmp.view(np.int64)
        np.right_shift(lo[i], np.uint64(32), out=tmp)
        tmp *= wi
        out[1] += tmp.view(np.int64)
        np.multiply(hi[i], wi, out=tmp)
        out[2] += tmp.view(np.int64)
    return out


def _normalize(x: list[np.ndarray]) -> list[np.ndarray]:
    """Carry-propagate int64 limbs (base 2^32): limbs 0..k-2 in [0, 2^32), the top one signed."""
    out = []
    carry = np.zeros_like(x[0])
    for i, limb in enumerate(x):
        v = limb + carry
        if i == len(x) - 1:
            out.append(v)
        else:
            out.append(v & _M32)
            carry = v >> 32  # arithmetic shift = floor division for negatives
    return out


def _reduce(x: list[np.ndarray], c: int) -> list[np.ndarray]:
    """Value mod p (p = 2^80 - c) as 3 normalized limbs (x0, x1 < 2^32, x2 < 2^16).

    x: 4 normalized limbs with |value| < 2^110. Folds V = low80 + 2^80·h → low80 + c·h."""
    x0, x1, x2, x3 = x
    for _ in range(6):
        h = (x2 >> 16) + (x3 << 16)  # value >> 80 (signed, |h| < 2^31)
        if not np.any(h):
            break
        x0, x1, x2, x3 = _normalize([x0 + h * c, x1, x2 & _M16, np.zeros_like(x3)])
    else:
        raise AssertionError("mod-p fold did not converge")
    # now 0 <= V < 2^80; subtract p once where V >= p, i.e. where V + c >= 2^80
    y0, y1, y2 = _normalize([x0 + c, x1, x2])
    ge = (y2 >> 16) != 0
    return [np.where(ge, y0, x0), np.where(ge, y1, x1), np.where(ge, y2 & _M16, x2)]


def share_bytes(parts: np.ndarray, c: int) -> bytes:
    """This party's share of the sum, reduced mod p, as 10 bytes per element (lo64 LE, hi16 LE)."""
    s0, s1, s2 = parts
    x = _normalize([s0, s1, s2, np.zeros_like(s0)])
    x0, x1, x2 = _reduce(x, c)
    lo = (x0.astype(np.uint64) | (x1.astype(np.uint64) << np.uint64(32))).astype("<u8")
    return lo.tobytes() + x2.astype("<u2").tobytes()


def _parse(data: bytes, d: int) -> list[np.ndarray]:
    if not isinstance(data, bytes) or len(data) != 10 * d:
        raise ValueError("peer sent a malformed aggregate share")
    lo = np.frombuffer(data, dtype="<u8", count=d)
    hi = np.frombuffer(data, dtype="<u2", count=d, offset=8 * d).astype(np.int64)
    return [(lo & np.uint64(0xFFFFFFFF)).astype(np.int64), (lo >> np.uint64(32)).astype(np.int64), hi]


def lagrange_at_zero(t: int) -> list[int]:
    """Integer Lagrange coefficients for points 1..t+1 evaluated at 0."""
    xs = range(1, t + 2)
    out = []
    for xi in xs:
        v = Fraction(1)
        for xk in xs:
            if xk != xi:
                v *= Fraction(xk, xk - xi)
        if v.denominator != 1:
            raise AssertionError("Lagrange coefficient at 0 for points 1..t+1 is not an integer")
        out.append(int(v))
    return out


def recombine(shares: list[bytes], d: int, p: int, c: int) -> np.ndarray:
    """Signed representatives (as float64, like float(int)) of Σ λ_k share_k mod p, points 1..t+1."""
    lam = lagrange_at_zero(len(shares) - 1)
    acc = [np.zeros(d, dtype=np.int64) for _ in range(3)]
    for coef, data in zip(lam, shares, strict=True):
        for i, limb in enumerate(_parse(data, d)):
            acc[i] += coef * limb
    x = _normalize([acc[0], acc[1], acc[2], np.zeros(d, dtype=np.int64)])
    x0, x1, x2 = _reduce(x, c)
    half = p >> 1
    h0, h1, h2 = half & 0xFFFFFFFF, (half >> 32) & 0xFFFFFFFF, half >> 64
    neg = (x2 > h2) | ((x2 == h2) & ((x1 > h1) | ((x1 == h1) & (x0 > h0))))
    # magnitude: V for V <= p/2, p - V otherwise (both < 2^79)
    p0, p1, p2 = p & 0xFFFFFFFF, (p >> 32) & 0xFFFFFFFF, p >> 64
    m0, m1, m2 = _normalize([np.where(neg, p0 - x0, x0), np.where(neg, p1 - x1, x1), np.where(neg, p2 - x2, x2)])
    small = (m2 == 0) & (m1 < (1 << 21))  # magnitude < 2^53: int64 → float64 is exact
    mag = m0 + (m1 << 32)
    out = np.where(neg, -mag, mag).astype(np.float64)
    for i in np.flatnonzero(~small):  # only for values no honest update can produce
        v = int(m0[i]) + (int(m1[i]) << 32) + (int(m2[i]) << 64)
        out[i] = float(-v if neg[i] else v)
    return out
