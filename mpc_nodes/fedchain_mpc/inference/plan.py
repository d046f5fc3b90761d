"""The fixed-point plan of the secret forward pass, and its plaintext twin (numpy only, no torch).

Why a plan: the MPC nodes and the plaintext reference must evaluate the SAME integer network, and
the node must not build a torch model (start-up time, DESIGN §1). The spec (fedchain.models.ModelSpec
fields) is parsed here into layers and parameter offsets in canonical order (sorted state_dict names,
as models.flatten).

Scales (value v is held as the integer round(v * 2^s)):
- weights and biases: 2^16 (W_FRAC), exactly the hospitals' shares plus the base model rounded to 2^-16;
- pixels: 2^8 (X_FRAC): x = img / 127.5 - 1 rounded to 2^-8 (|X| <= 256), public;
- activations: 2^10 (A_FRAC) after every truncation; products of activations and weights are at
  2^(A_FRAC + 16) (2^(X_FRAC + 16) in the first layer) until truncated.
Truncation (one opening, mpcops.trunc_batch) happens once per layer, AFTER the 2x2 average pooling
(the pooling's sum is folded into the shift), so the rounding never sees the pre-pool values.
Comparisons (ReLU signs, logit differences, the final count) use MPyC's np_sgn(LT) with CMP_BITS:
its output is a bit iff the integer compared lies in [-2^CMP_BITS, 2^CMP_BITS) (256 in real units
at 2^-10), otherwise an integer that is not a bit; the MPC rule fails such a row (bit check), and so
does the twin ("out of range": fail-closed, docs/inference.md).

Twin rounding: trunc(V, k) = floor((V + 2^(k-1)) / 2^k); the MPC's truncation is that value up to
+-2 units of 2^-10 (a random carry), so the twin and the MPC agree on every decision except values
within a few units of 2^-10 of a threshold (a logit tie).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

W_FRAC = 16
X_FRAC = 8
A_FRAC = 10
CMP_BITS = 18  # MPyC l: bits decided correctly for |v| < 2^CMP_BITS (2^8 = 256 in real units)
LOGIT_BITS = CMP_BITS + 1  # logit differences: two in-range values
ARCHS = ("cnn", "cnn_pool")


@dataclass(frozen=True)
class Layer:
    """One affine layer with what follows it. kind: conv (3x3, padding 1) or linear."""

    kind: str
    weight: str  # parameter names in the canonical vector
    bias: str
    cin: int
    cout: int
    side: int  # input side (conv: square images side x side)
    relu: bool
    pool: bool  # 2x2 average pooling after the conv
    pool_first: bool  # pooling BEFORE the ReLU (cnn_pool)


@dataclass(frozen=True)
class Plan:
    layers: tuple[Layer, ...]
    layout: dict[str, tuple[int, tuple[int, ...]]]  # name -> (offset, shape)
    size: int  # parameter count
    in_channels: int
    n_classes: int

    def param(self, vec: np.ndarray, name: str) -> np.ndarray:
        """The named parameter of canonical vector(s) vec (..., size), shaped."""
        off, shape = self.layout[name]
        n = int(np.prod(shape))
        return vec[..., off:off + n].reshape(vec.shape[:-1] + shape)

    def relu_count(self) -> list[int]:
        """Comparisons per image per layer (ReLUs), in layer order."""
        out = []
        for ly in self.layers:
            if not ly.relu:
                out.append(0)
            elif ly.kind == "conv":
                side = ly.side // 2 if ly.pool and ly.pool_first else ly.side
                out.append(ly.cout * side * side)
            else:
                out.append(ly.cout)
        return out


def make_plan(spec: Any) -> Plan:
    """Layers and parameter layout of a ModelSpec (or anything with its fields), without torch."""
    arch = str(getattr(spec, "arch", "cnn"))
    if arch not in ARCHS:
        raise ValueError(f"the inference check supports archs {ARCHS}, not {arch!r}")
    cin, ncls = int(spec.in_channels), int(spec.n_classes)
    widths, hidden = tuple(int(w) for w in spec.widths), int(spec.hidden)
    shapes: dict[str, tuple[int, ...]] = {}
    layers: list[Layer] = []
    c, side = cin, 28
    for j, w in enumerate(widths):
        name = f"features.{3 * j}"
        shapes[name + ".weight"] = (w, c, 3, 3)
        shapes[name + ".bias"] = (w,)
        layers.append(Layer("conv", name + ".weight", name + ".bias", c, w, side, True, True, arch == "cnn_pool"))
        c, side = w, side // 2
    flat = c * side * side
    outs = [(hidden, True), (ncls, False)] if hidden else [(ncls, False)]
    prev = flat
    for k, (width, relu) in enumerate(outs):
        name = f"head.{1 + 2 * k}"
        shapes[name + ".weight"] = (width, prev)
        shapes[name + ".bias"] = (width,)
        layers.append(Layer("linear", name + ".weight", name + ".bias", prev, width, 0, relu, False, False))
        prev = width
    layout, off = {}, 0
    for name in sorted(shapes):
        layout[name] = (off, shapes[name])
        off += int(np.prod(shapes[name]))
    return Plan(tuple(layers), layout, off, cin, ncls)


def quantize_images(images: np.ndarray) -> np.ndarray:
    """uint8 (B, 28, 28[, 3]) -> int64 (B, C, 28, 28): round((img / 127.5 - 1) * 2^8), exact integers."""
    img = np.asarray(images)
    if img.dtype != np.uint8:
        raise ValueError(f"validation images must be uint8, got {img.dtype}")
    v = img.astype(np.int64) * 2 - 255  # (img - 127.5) * 2
    q = (v * (1 << (X_FRAC + 1)) + 255) // 510  # round(v * 2^8 / 255), half up
    return q[:, None] if q.ndim == 3 else np.ascontiguousarray(q.transpose(0, 3, 1, 2))


def im2col(x: np.ndarray) -> np.ndarray:
    """(..., C, S, S) -> (..., S*S, C*9) patches of a 3x3 convolution with padding 1 (torch weight order
    cin, ky, kx). Works on int64, float64 and object arrays (index gathering only)."""
    *lead, c, s, _ = x.shape
    pad = np.zeros((*lead, c, s + 2, s + 2), dtype=x.dtype)
    pad[..., 1:-1, 1:-1] = x
    cols = [pad[..., ky:ky + s, kx:kx + s] for ky in range(3) for kx in range(3)]  # each (..., C, S, S)
    st = np.stack(cols, axis=-3)  # (..., C, 9, S, S)
    st = st.reshape(*lead, c * 9, s * s)
    return np.swapaxes(st, -1, -2)


def pool_sum(x: np.ndarray) -> np.ndarray:
    """(..., C, S, S) -> (..., C, S/2, S/2): sums of 2x2 blocks (the average times 4; linear)."""
    *lead, c, s, _ = x.shape
    return x.reshape(*lead, c, s // 2, 2, s // 2, 2).sum(axis=(-3, -1))


def quantize_weights(vec: np.ndarray) -> np.ndarray:
    """Real parameters -> integers at 2^16 (round half to even, as fedchain.sharing.encode)."""
    return np.rint(np.asarray(vec, dtype=np.float64) * (1 << W_FRAC)).astype(np.int64)


def rtrunc(v: np.ndarray, k: int) -> np.ndarray:
    """floor((v + 2^(k-1)) / 2^k) on int64."""
    return (v + (1 << (k - 1))) >> k


def _exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer matmul through float64 BLAS, in blocks of 256 terms summed in int64: exact for
    |a| <= 2^20 (in-range activations, pooled: the clamp below) and |b| < 2^24 (2^44 x 2^8 < 2^53)."""
    k = a.shape[-1]
    out = None
    for start in range(0, k, 256):
        part = np.rint(np.matmul(a[..., start:start + 256].astype(np.float64),
                                 b[start:start + 256].astype(np.float64))).astype(np.int64)
        out = part if out is None else out + part
    assert out is not None
    return out


def forward_int(plan: Plan, w_int: np.ndarray, xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The twin: logits (B, classes) at 2^A_FRAC of one model (int parameters at 2^16) on quantized
    images xq (B, C, 28, 28); and a flag per image, True if some compared value left [-2^CMP_BITS,
    2^CMP_BITS) (the MPC fails such a row)."""
    b = xq.shape[0]
    bad = np.zeros(b, dtype=bool)
    lim = 1 << CMP_BITS
    a, s = xq, X_FRAC  # activations and their scale exponent
    for ly in plan.layers:
        w = plan.param(w_int, ly.weight)
        bias = plan.param(w_int, ly.bias)
        if ly.kind == "conv":
            pat = im2col(a)  # (B, S*S, cin*9)
            z = _exact_matmul(pat, w.reshape(ly.cout, -1).T) + (bias << s)  # (B, S*S, cout), scale s + 16
            z = np.swapaxes(z, 1, 2).reshape(b, ly.cout, ly.side, ly.side)
        else:
            z = _exact_matmul(a.reshape(b, -1), w.T) + (bias << s)
        zs = s + W_FRAC
        if ly.kind == "conv" and ly.pool and ly.pool_first:
            z, zs = pool_sum(z), zs + 2
        v = rtrunc(z, zs - A_FRAC)
        if ly.relu:
            bad |= np.any((v < -lim) | (v >= lim), axis=tuple(range(1, v.ndim)))
            v = np.clip(v, -lim, lim - 1)  # keeps later products exact; the row has failed anyway
            v = np.maximum(v, 0)
        s = A_FRAC
        if ly.kind == "conv" and ly.pool and not ly.pool_first:
            v, s = pool_sum(v), A_FRAC + 2
        a = v
    return a, bad


def correct_int(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: label's logit strictly above every other (bool), and out-of-range logit differences."""
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    own = logits[np.arange(lab.size), lab][:, None]
    diff = own - logits  # 0 at the label itself
    others = np.ones_like(diff, dtype=bool)
    others[np.arange(lab.size), lab] = False
    lim = 1 << LOGIT_BITS
    bad = np.any(others & ((diff - 1 < -lim) | (diff - 1 >= lim)), axis=1)
    ok = np.all(~others | (diff > 0), axis=1)
    return ok, bad


def base_correct(plan: Plan, base: np.ndarray, xq: np.ndarray, labels: np.ndarray) -> int:
    """The base model's correct count on the batch in the fixed-point plan (public, deterministic)."""
    logits, _ = forward_int(plan, quantize_weights(base), xq)
    ok, _ = correct_int(logits, labels)
    return int(ok.sum())


def check_inputs(plan: Plan, base: np.ndarray, images: np.ndarray, labels: np.ndarray, batch: int) -> None:
    """Shapes and values the check relies on (ValueError otherwise)."""
    if np.asarray(base).shape != (plan.size,):
        raise ValueError(f"base model has {np.asarray(base).shape} parameters, the spec needs ({plan.size},)")
    if not np.all(np.isfinite(np.asarray(base, dtype=np.float64))) or np.max(np.abs(base)) >= 2 ** 6:
        raise ValueError("base model parameters must be finite with |w| < 64")
    img = np.asarray(images)
    want = (28, 28) if plan.in_channels == 1 else (28, 28, 3)
    if img.ndim != 1 + len(want) or tuple(img.shape[1:]) != want:
        raise ValueError(f"validation images must have shape (B, {', '.join(map(str, want))}), got {img.shape}")
    lab = np.asarray(labels).reshape(-1)
    if lab.shape[0] != img.shape[0] or img.shape[0] != batch:
        raise ValueError(f"validation batch has {img.shape[0]} images and {lab.shape[0]} labels; policy wants {batch}")
    if lab.size and (lab.min() < 0 or lab.max() >= plan.n_classes):
        raise ValueError("validation labels out of the model's class range")


def plain_pass(x: np.ndarray, inference: Any, policy: Any) -> np.ndarray:
    """Pass bits (n,) of the inference rule for updates x (n, d, real values) in the fixed-point plan."""
    plan = make_plan(inference.spec)
    labels = np.asarray(inference.labels, dtype=np.int64).reshape(-1)
    check_inputs(plan, inference.base, inference.images, labels, policy.inference_batch)
    xq = quantize_images(inference.images)
    thr = policy.inference_threshold(base_correct(plan, inference.base, xq, labels), labels.size)
    wb = quantize_weights(inference.base)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != plan.size:
        raise ValueError(f"updates of shape {x.shape} do not fit a model with {plan.size} parameters")
    out = np.zeros(x.shape[0], dtype=bool)
    for i in range(x.shape[0]):
        if not np.all(np.isfinite(x[i])) or np.max(np.abs(x[i]), initial=0.0) > 2 ** 7:
            continue  # cannot have passed the range check; fail closed
        logits, bad = forward_int(plan, wb + quantize_weights(x[i]), xq)
        ok, bad2 = correct_int(logits, labels)
        out[i] = not (bad.any() or bad2.any()) and int(ok.sum()) >= thr
    return out


def threshold_bits(batch: int) -> int:
    """l for comparing count - T with count in [0, B] and T in [0, B + 1]."""
    return int(math.ceil(math.log2(batch + 2))) + 1


TIE_UNITS = 48  # units of 2^-A_FRAC: the MPC's logits stay within this of the twin's (measured <= 16)


def borderline(x: np.ndarray, inference: Any, policy: Any, tol: int = TIE_UNITS) -> np.ndarray:
    """Rows (n,) whose twin verdict a logit perturbation of `tol` units could flip: there the MPC's
    random truncation carries may decide differently (a near-tie at the threshold). Tests and the
    benchmark compare verdicts on the other rows and report how many were borderline."""
    plan = make_plan(inference.spec)
    labels = np.asarray(inference.labels, dtype=np.int64).reshape(-1)
    xq = quantize_images(inference.images)
    thr = policy.inference_threshold(base_correct(plan, inference.base, xq, labels), labels.size)
    wb = quantize_weights(inference.base)
    out = np.zeros(len(x), dtype=bool)
    for i, u in enumerate(np.asarray(x, dtype=np.float64)):
        if not np.all(np.isfinite(u)) or np.max(np.abs(u), initial=0.0) > 2 ** 7:
            continue
        logits, _ = forward_int(plan, wb + quantize_weights(u), xq)
        own = logits[np.arange(labels.size), labels][:, None]
        gap = np.where(np.arange(logits.shape[1])[None] == labels[:, None], np.iinfo(np.int64).max, own - logits)
        margin = gap.min(axis=1)
        out[i] = (int((margin > tol).sum()) >= thr) != (int((margin > -tol).sum()) >= thr)
    return out
