"""Apply the revealed aggregate delta to the base model; canonical safetensors bytes + SHA-256.

Canonical = safetensors.numpy with sorted keys, float32 tensors, no metadata (the same rule as
fedchain.models), so every node produces identical bytes and hence the same hash to attest.
The flat delta follows the sorted-key order, each tensor flattened in C order.
"""

from __future__ import annotations

import numpy as np
from fedchain.canonical import sha256_hex
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save


class ModelApplyError(ValueError):
    """Base model and delta do not fit together."""


def flatten(tensors: dict[str, np.ndarray]) -> np.ndarray:
    """Sorted-key, C-order concatenation as float64 (the vector hospitals share)."""
    return np.concatenate([np.asarray(tensors[k], dtype=np.float64).reshape(-1) for k in sorted(tensors)])


def canonical_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    return st_save({k: np.ascontiguousarray(tensors[k], dtype=np.float32) for k in sorted(tensors)})


def apply_delta(base_bytes: bytes, delta: np.ndarray) -> tuple[bytes, str]:
    """New model = base + delta (float64 sum rounded once to float32). Returns (bytes, sha256 hex)."""
    base = st_load(base_bytes)
    total = sum(int(np.asarray(v).size) for v in base.values())
    delta = np.asarray(delta, dtype=np.float64)
    if delta.shape != (total,):
        raise ModelApplyError(f"delta has shape {delta.shape}, the base model has {total} parameters")
    if not np.all(np.isfinite(delta)):
        raise ModelApplyError("delta contains NaN or infinity")
    out, off = {}, 0
    for k in sorted(base):
        v = np.asarray(base[k])
        out[k] = (v.astype(np.float64) + delta[off:off + v.size].reshape(v.shape)).astype(np.float32)
        off += v.size
    data = canonical_bytes(out)
    return data, sha256_hex(data)


def delta_sha256(delta: np.ndarray) -> str:
    """Hash of the revealed aggregate (float64 little-endian): identical on every node."""
    return sha256_hex(np.asarray(delta, dtype="<f8").tobytes())
