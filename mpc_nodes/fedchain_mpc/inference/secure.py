"""The inference check's MPC rule: the plan of plan.py with secret weights, for all hospitals at once.

Per layer (rows = hospitals still in the running, B images):
1. Affine map, LOCAL: this party's shares of W_i = W_base + Delta_i (the public base rounded to 2^-16
   is added to the shares) times the layer's input. First layer: public pixels x shares (degree t).
   Later layers: shares x shares, a degree-2t local product. Both are exact integer matmuls in
   float64 BLAS on 20-bit limbs (like field.local_products), accumulated per limb pair in int64.
2. 2x2 average pooling (cnn_pool: before the ReLU) on the limb sums, still local and exact.
3. One truncation opening for the whole layer (mpcops.trunc_batch: it also reduces degree 2t to t).
4. ReLU: ONE np_sgn batch (CMP_BITS) for every hospital, image and unit of the layer, then one
   multiplication batch v * (1 - [v < 0]).
Then logits: label's logit minus each other one, one np_sgn batch, a product of the C - 1 bits per
image, the count per hospital (local sum), and count - T compared in one batch of `rows` values.

Fail terms (opened by the driver only as zero / non-zero per row, mpcops.open_stage):
- [count < T];
- bit check: sum_j rho_j c_j (c_j - 1) over every comparison output c_j of the row (rho_j public,
  field-uniform, from the round's joint seed). MPyC's np_sgn(l) returns a bit exactly when its
  integer input lies in [-2^l, 2^l), otherwise -floor(a / 2^l), an integer that is not a bit; so a
  row passes only if every value it compared was in range, i.e. the MPC evaluated exactly the
  network of plan.py (docs/inference.md: soundness).
Nothing else is opened: the truncation and comparison openings are masked values.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from mpyc.runtime import mpc

from fedchain_mpc import field as ff
from fedchain_mpc import mpcops

from .plan import (
    A_FRAC,
    CMP_BITS,
    LOGIT_BITS,
    W_FRAC,
    Plan,
    base_correct,
    check_inputs,
    im2col,
    make_plan,
    pool_sum,
    quantize_images,
    quantize_weights,
    threshold_bits,
)

LIMB = ff.LIMB_BITS
N_LIMBS = ff.N_LIMBS
_MASK64 = (1 << 64) - 1


def to_limbs(values: np.ndarray) -> np.ndarray:
    """Object array of field ints in [0, p) -> float64 limbs (4, ...), 20 bits each."""
    v = np.asarray(values, dtype=object)
    lo = (v & _MASK64).astype(np.uint64)
    hi = (v >> 64).astype(np.uint64)
    return ff.limbs(hi, lo)


def combine(groups: np.ndarray, p: int) -> np.ndarray:
    """int64 limb-position sums (G, ...) (group g weighs 2^(20 g)) -> object field ints mod p."""
    out = groups[0].astype(object)
    for g in range(1, groups.shape[0]):
        out = out + (groups[g].astype(object) << (LIMB * g))
    return out % p


K_BLOCK = 2048  # 4 limb pairs x 2^40 x 2048 = 2^53: float64 sums stay exact per block


def limb_matmul(a: np.ndarray, b: np.ndarray, a_public: bool = False) -> np.ndarray:
    """Exact a @ b as limb-position sums (G, ..., M, N) int64.

    a: float64 limbs (4, ..., M, K) of field shares, or (a_public) an integer array (..., M, K) with
    |a| <= 2^9; b: float64 limbs (4, ..., K, N). Each limb product is < 2^40, and a block of K_BLOCK
    terms summed over <= 4 limb pairs stays below 2^53, so float64 is exact; blocks add in int64."""
    k = (a if a_public else a[0]).shape[-1]
    total = None
    for start in range(0, k, K_BLOCK):
        stop = min(k, start + K_BLOCK)
        if a_public:
            af = np.asarray(a[..., start:stop], dtype=np.float64)
            part = np.stack([np.rint(np.matmul(af, b[v][..., start:stop, :])).astype(np.int64)
                             for v in range(N_LIMBS)])
        else:
            g = None
            for u in range(N_LIMBS):
                for v in range(N_LIMBS):
                    prod = np.matmul(a[u][..., start:stop], b[v][..., start:stop, :])
                    if g is None:
                        g = np.zeros((2 * N_LIMBS - 1,) + prod.shape, dtype=np.float64)
                    g[u + v] += prod
            assert g is not None
            part = np.rint(g).astype(np.int64)
        total = part if total is None else total + part
    assert total is not None
    return total


class _Layers:
    """Per-layer public cost figures (seconds, CPU seconds, comparisons, truncations)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._t, self._c = time.perf_counter(), time.process_time()

    def lap(self, name: str, comparisons: int, truncations: int, bits: int) -> None:
        t, c = time.perf_counter(), time.process_time()
        self.rows.append({"layer": name, "seconds": t - self._t, "cpu_seconds": c - self._c,
                          "comparisons": comparisons, "truncations": truncations, "cmp_bits": bits})
        self._t, self._c = t, c


async def _trunc(secint: Any, obj: np.ndarray, shift: int, degree: int) -> Any:
    """round(v / 2^shift) (up to the truncation's random carry) as a degree-t secure array."""
    fld = secint.field
    centred = fld.array((obj - (1 << (shift - 1))) % fld.modulus)  # mean error 0 (trunc_batch adds ~0.5 unit)
    (out,) = await mpcops.trunc_batch(secint, [centred], degree, f=shift)
    return out


def _bitcheck_rho(seed: str, size: int, p: int) -> np.ndarray:
    """Public field-uniform coefficients for the bit check (from the joint seed: unpredictable)."""
    r = ff._rng(seed, "inference-bits")
    hi = r.integers(0, 1 << 62, size=size, dtype=np.int64).astype(object)
    lo = r.integers(0, 1 << 62, size=size, dtype=np.int64).astype(object)
    return ((hi << 62) + lo) % p


async def forward(rnd: Any, rows: np.ndarray, plan: Plan, inference: Any) -> tuple[Any, list[Any], _Layers]:
    """Secret logits (rows, B, classes) at 2^A_FRAC, the comparison outputs (each (rows, ...)), costs."""
    secint, p = rnd.secint, rnd.p
    t2 = 2 * mpc.threshold
    nr = rows.size
    xq = quantize_images(inference.images)  # (B, C, 28, 28) public ints
    b = xq.shape[0]
    wb = quantize_weights(inference.base).astype(object)
    shares = (rnd.hi[rows].astype(object) << 64) + rnd.lo[rows].astype(object)  # (nr, d) field ints
    w_all = (shares + wb) % p  # shares of W_i = W_base + Delta_i (a public constant added to a sharing)
    clock = _Layers()
    cmp_out: list[Any] = []
    act: Any = None  # secure activations (nr, B, ...) at scale 2^s
    s = 0
    for k, ly in enumerate(plan.layers):
        w = plan.param(w_all, ly.weight).reshape(nr, ly.cout, -1)  # (nr, cout, fan_in)
        bias = plan.param(w_all, ly.bias)  # (nr, cout)
        wl = np.swapaxes(to_limbs(w), -1, -2)  # (4, nr, fan_in, cout)
        if k == 0:
            pat = im2col(xq)  # (B, S*S, cin*9), public |x| <= 256
            groups = np.stack([limb_matmul(pat.reshape(-1, pat.shape[-1]), wl[:, i], a_public=True)
                               for i in range(nr)], axis=1)  # (4, nr, B*S*S, cout)
            s = 8
            degree = mpc.threshold
        else:
            vals = np.asarray((await mpc.gather(act)).value, dtype=object)
            al = to_limbs(vals)  # (4, nr, B, ...)
            if ly.kind == "conv":
                al = im2col(al)  # (4, nr, B, S*S, cin*9)
            al = al.reshape(N_LIMBS, nr, -1, al.shape[-1] if ly.kind == "conv" else ly.cin)
            groups = np.stack([limb_matmul(al[:, i], wl[:, i]) for i in range(nr)], axis=1)
            degree = t2
        zs = s + W_FRAC
        if ly.kind == "conv":
            side = ly.side
            g = groups.reshape(groups.shape[0], nr, b, side * side, ly.cout)
            g = np.swapaxes(g, -1, -2).reshape(groups.shape[0], nr, b, ly.cout, side, side)
            if ly.pool and ly.pool_first:
                g, zs = pool_sum(g), zs + 2
        else:
            g = groups.reshape(groups.shape[0], nr, b, ly.cout)
        z = combine(g, p)
        bias_term = (bias * (1 << (zs - W_FRAC))) % p  # bias at 2^16 -> 2^zs (pool: 4 x bias)
        z = z + (bias_term.reshape(nr, 1, ly.cout, 1, 1) if ly.kind == "conv" else bias_term.reshape(nr, 1, ly.cout))
        v = await _trunc(secint, z % p, zs - A_FRAC, degree)  # scale 2^A_FRAC
        ncmp = 0
        if ly.relu:
            neg = await sgn_chunked(v, CMP_BITS)
            cmp_out.append(neg)
            v = v - v * neg
            ncmp = int(np.prod(v.shape))
        s = A_FRAC
        if ly.kind == "conv" and ly.pool and not ly.pool_first:
            v = _pool_secure(v)
            s = A_FRAC + 2
        act = v
        await mpc.gather(v)  # settle this layer's work, so the per-layer figures are its own
        clock.lap(f"{ly.kind}{k}", ncmp, int(np.prod(z.shape)), CMP_BITS if ly.relu else 0)
    return act, cmp_out, clock


CMP_CHUNK = 1 << 16  # values per np_sgn call: MPyC holds ~(l + 1) big ints per value (3.3 GB at 400k)


async def sgn_chunked(v: Any, bits: int) -> Any:
    """np_sgn(v, l=bits, LT=True) in chunks of CMP_CHUNK values, each awaited before the next: the
    same comparisons and openings, peak memory bounded (a few rounds more)."""
    flat = v.reshape(-1)
    if flat.size <= CMP_CHUNK:
        return mpc.np_sgn(v, l=bits, LT=True)
    parts = []
    for start in range(0, flat.size, CMP_CHUNK):
        part = mpc.np_sgn(flat[start:start + CMP_CHUNK], l=bits, LT=True)
        await mpc.gather(part)
        parts.append(part)
    return mpc.np_concatenate(parts).reshape(v.shape)


def _pool_secure(v: Any) -> Any:
    """2x2 sum pooling of a secure array (local)."""
    *lead, c, s, _ = v.shape
    r = v.reshape(tuple(lead) + (c, s // 2, 2, s // 2, 2))
    return mpc.np_sum(mpc.np_sum(r, axis=-1), axis=-2)


async def fail_terms(rnd: Any, rows: np.ndarray, inference: Any) -> list[Any]:
    """[count < T, bit check], each a secure (n,) array, zero outside `rows` (see module doc)."""
    pol = rnd.policy
    plan = make_plan(inference.spec)
    labels = np.asarray(inference.labels, dtype=np.int64).reshape(-1)
    check_inputs(plan, inference.base, inference.images, labels, pol.inference_batch)
    b, ncls = labels.size, plan.n_classes
    thr = pol.inference_threshold(base_correct(plan, inference.base, quantize_images(inference.images), labels), b)
    logits, cmps, clock = await forward(rnd, rows, plan, inference)  # (nr, B, C)
    nr = rows.size
    # d_k = logit[label] - logit[k] - 1 for k != label (local: labels are public); correct iff all d_k >= 0
    lv = np.asarray((await mpc.gather(logits)).value, dtype=object).reshape(nr, b, ncls)
    others = np.array([[k for k in range(ncls) if k != lab] for lab in labels], dtype=np.int64)  # (B, C-1)
    own = lv[:, np.arange(b), labels][:, :, None]
    oth = lv[:, np.arange(b)[:, None], others]
    diff = rnd.secint.array(rnd.field.array((own - oth - 1) % rnd.p))
    neg = mpc.np_sgn(diff, l=LOGIT_BITS, LT=True)  # 1: not strictly above
    cmps.append(neg)
    good = 1 - neg
    correct = good[:, :, 0]
    for k in range(1, ncls - 1):
        correct = correct * good[:, :, k]
    count = mpc.np_sum(correct, axis=1)  # (nr,)
    below = mpc.np_sgn(count - thr, l=threshold_bits(b), LT=True)  # 1: count < T
    cmps.append(below)
    await mpc.gather(below)
    clock.lap("argmax+threshold", nr * b * (ncls - 1) + nr, 0, LOGIT_BITS)
    bits = await _bit_check(rnd, cmps, nr)
    clock.lap("bit_check", 0, 0, 0)
    pick = np.zeros((nr, rnd.n), dtype=np.int64)
    pick[np.arange(nr), rows] = 1
    rnd.stats["inference"] = {"layers": clock.rows, "threshold_public": thr, "batch": b, "rows": int(nr),
                              "comparisons": int(sum(r["comparisons"] for r in clock.rows))}
    return [below @ pick, bits @ pick]


async def _bit_check(rnd: Any, cmps: list[Any], nr: int) -> Any:
    """Per row sum_j rho_j c_j (c_j - 1): zero iff every comparison output c_j of the row is a bit
    (except with probability 1/p over the public field-uniform rho, fixed after the inputs)."""
    fld, p = rnd.field, rnd.p
    flat = [await mpc.gather(c.reshape(nr, -1)) for c in cmps]
    vals = np.concatenate([np.asarray(f.value, dtype=object) for f in flat], axis=1)  # (nr, K) shares
    rho = _bitcheck_rho(rnd.seed, vals.shape[1], p)
    local = (vals * ((vals - 1) * rho % p) % p).sum(axis=1) % p  # degree-2t shares of the sums
    reduced = await mpc._reshare(fld.array(local))
    return rnd.secint.array(reduced if isinstance(reduced, fld.array) else fld.array(reduced))
