"""Exact local products of Shamir shares mod p with float64 BLAS.

Why: the Gram matrix of n share vectors of length d is the hot spot (object-array big-int
matmul costs ~40 ns per multiply-add). A field element < 2^80 is split into 4 limbs of 20
bits; a block of 8192 coordinates gives limb products < 2^40 summed 2^13 times < 2^53, so a
float64 matmul is exact. Blocks are accumulated in int64 (< 2^60 for d <= 2^20, flushed to
Python ints beyond), then limbs are recombined mod p on the small n×n result. Public rows
(reference, random ±1 vectors, consistency coefficients) have |entries| <= 2^16, so they
ride in the same matmul exactly. Nothing here is approximate.
"""

from __future__ import annotations

import hashlib

import numpy as np

LIMB_BITS = 20
N_LIMBS = 4
BLOCK = 8192
FLUSH_EVERY = 64  # blocks: 64 * 2^53 < 2^63
_MASK = np.uint64((1 << LIMB_BITS) - 1)


def limbs(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """(..., d) hi/lo uint64 → (4, ..., d) float64 limbs of 20 bits, little end first."""
    out = np.empty((N_LIMBS,) + lo.shape, dtype=np.float64)
    out[0] = lo & _MASK
    out[1] = (lo >> np.uint64(20)) & _MASK
    out[2] = (lo >> np.uint64(40)) & _MASK
    out[3] = (lo >> np.uint64(60)) | (hi << np.uint64(4))
    return out


def _recombine(acc: np.ndarray, n: int, q: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """acc (4n × (4n+q)) object → Gram (n×n) and public products (n×q), mod p."""
    g = np.zeros((n, n), dtype=object)
    pub = np.zeros((n, q), dtype=object)
    for a in range(N_LIMBS):
        rows = acc[a * n:(a + 1) * n]
        pub = pub + rows[:, 4 * n:] * (1 << (LIMB_BITS * a))
        for b in range(N_LIMBS):
            g = g + rows[:, b * n:(b + 1) * n] * (1 << (LIMB_BITS * (a + b)))
    return g % p, pub % p


def local_products(hi: np.ndarray, lo: np.ndarray, public: np.ndarray, p: int,
                   block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """X·X^T and X·public^T mod p for shares X (n×d as hi/lo) and public rows (q×d, |v| <= 2^16;
    float64 or an integer dtype: compact int rows avoid a q×d float64 copy at large d).

    Returns object arrays of Python ints in [0, p): (n×n) and (n×q).
    """
    n, d = lo.shape
    q = public.shape[0]
    if public.shape[1] != d:
        raise ValueError("public rows must have the shares' length")
    if public.size and (public.max() > 2 ** 16 or public.min() < -2 ** 16):
        raise ValueError("public rows must satisfy |v| <= 2^16 for exact float64 products")
    acc_obj = np.zeros((N_LIMBS * n, N_LIMBS * n + q), dtype=object)
    acc = np.zeros((N_LIMBS * n, N_LIMBS * n + q), dtype=np.int64)
    for k, start in enumerate(range(0, d, block)):
        stop = min(d, start + block)
        lx = limbs(hi[:, start:stop], lo[:, start:stop]).reshape(N_LIMBS * n, stop - start)
        acc[:, :N_LIMBS * n] += (lx @ lx.T).astype(np.int64)  # numpy uses BLAS syrk for a @ a.T
        pb = public[:, start:stop].astype(np.float64)  # int rows convert per block (cache-sized)
        acc[:, N_LIMBS * n:] += (lx @ pb.T).astype(np.int64)
        if (k + 1) % FLUSH_EVERY == 0:
            acc_obj += acc.astype(object)
            acc[:] = 0
    acc_obj += acc.astype(object)
    return _recombine(acc_obj, n, q, p)


def weighted_sum(hi: np.ndarray, lo: np.ndarray, weights: np.ndarray, p: int) -> np.ndarray:
    """Σ_i w_i x_i as Python ints congruent mod p (NOT reduced: the field array constructor
    reduces), for non-negative integer weights < 2^20 and n < 2^11 (int64 sums exact)."""
    n, d = lo.shape
    w = np.asarray(weights, dtype=np.int64)
    if np.any(w < 0) or np.any(w >= 2 ** 20) or n >= 2 ** 11:
        raise ValueError("weights must be integers in [0, 2^20) and n < 2048 for exact sums")
    mask32 = np.uint64(0xFFFFFFFF)
    s0 = w @ (lo & mask32).astype(np.int64)  # each < 2^(20+32+11) = 2^63
    s1 = w @ (lo >> np.uint64(32)).astype(np.int64)
    s2 = w @ hi.astype(np.int64)
    return s0.astype(object) + (s1.astype(object) << 32) + (s2.astype(object) << 64)


def _rng(seed: str, label: str) -> np.random.Generator:
    """A fast PRG (SFC64) keyed by SHA-256 of the seed. Statistical quality is what matters: the seed
    is opened only after every input is committed, so no hospital can adapt to the stream."""
    digest = hashlib.sha256(f"fedchain-mpc|{label}|{seed}".encode()).digest()
    return np.random.Generator(np.random.SFC64(int.from_bytes(digest, "big")))


PINE_SPREAD = 256


def pine_vectors(seed: str, k: int, d: int) -> np.ndarray:
    """k public random vectors with integer entries uniform in [-256, 255] (float64), from the seed.

    Why not ±1: an update like (M, -M, 0, ...) with a huge field element M has <x, v> = 0 for a
    ±1 vector with probability 1/2 per vector; with 512 possible entries a coordinate outside
    the honest range lands in the accepted window with probability about 1/512 per vector, and a
    half-integer coordinate makes <x, v> non-integral exactly when its entry is odd (probability
    1/2). 512 = 2^9 values: the generator draws them without rejection.
    Honest bound (Hoeffding): P(|<x, v>| > c * 256 * ||x||) <= 2 exp(-c^2 / 2).
    """
    return pine_vectors_int(seed, k, d).astype(np.float64)


def pine_vectors_int(seed: str, k: int, d: int) -> np.ndarray:
    """pine_vectors as int16 (same values): 4x less memory for the MPC program's public rows."""
    v = _rng(seed, "pine").integers(0, 2 * PINE_SPREAD, size=(k, d), dtype=np.int16)
    v -= PINE_SPREAD
    return v


def consistency_coefficients(seed: str, rows: int, d: int) -> np.ndarray:
    """Public random coefficients in [0, 2^16) for the share-consistency combination (int32)."""
    return _rng(seed, "rho").integers(0, 1 << 16, size=(rows, d), dtype=np.uint16).astype(np.int32)


def quantized_reference(reference: np.ndarray, f: int = 16) -> np.ndarray:
    """Unit-norm reference rounded to 2^-f (cosine is scale-invariant; keeps products in range).

    Returns integers R (float64 dtype) with |R| <= 2^f; the reference used is R / 2^f.
    """
    r = np.asarray(reference, dtype=np.float64)
    nr = float(np.linalg.norm(r))
    if not np.isfinite(nr) or nr == 0.0:
        raise ValueError("reference update must be finite and non-zero")
    return np.rint(r / nr * (1 << f))


def signed(v: np.ndarray | int, p: int) -> np.ndarray:
    """Field ints → signed representatives in (-p/2, p/2]."""
    v = np.asarray(v, dtype=object)
    return np.where(v > p // 2, v - p, v)
