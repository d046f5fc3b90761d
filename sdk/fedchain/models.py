"""Small CNNs for 28×28 images, described by a JSON spec stored with each round.

MPC-friendly choices: average pooling (no max-pool comparisons), few activations, no
batch-norm buffers (the model is exactly its parameter vector, so Δ = w_local − w_base
fully describes an update). Serialization is canonical safetensors (sorted keys, float32,
no metadata): identical weights give identical bytes and hence identical SHA-256 on every
node. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save
from torch import nn

from fedchain.canonical import canonical_text, sha256_hex
from fedchain.records import ModelSpecRecord

SPEC_FIELDS = ("arch", "in_channels", "n_classes", "widths", "hidden")  # what a ModelSpec is made of
ARCHS = ("cnn", "cnn_pool")  # cnn_pool: pooling BEFORE the ReLU, 4x fewer activations (MPC-friendly)


class ModelFormatError(ValueError):
    """Model bytes or a vector do not match the expected spec."""


@dataclass(frozen=True)
class ModelSpec:
    """Architecture description; `to_json()` is what the round stores on the ledger."""

    arch: str = "cnn"
    in_channels: int = 1
    n_classes: int = 4
    widths: tuple[int, ...] = (8, 16)
    hidden: int = 32

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; known: {ARCHS}")
        if self.in_channels not in (1, 3):
            raise ValueError("in_channels must be 1 or 3")
        if self.n_classes < 2:
            raise ValueError("n_classes must be >= 2")
        if not 1 <= len(self.widths) <= 2 or any(w < 1 or w > 256 for w in self.widths):
            raise ValueError("widths: one or two conv widths in 1..256 (28→14→7 with 2×2 average pooling)")
        if not 0 <= self.hidden <= 1024:
            raise ValueError("hidden must be in 0..1024 (0 = no hidden layer)")

    def to_json(self) -> str:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return canonical_text(d)

    @classmethod
    def from_json(cls, text: str | bytes | dict[str, Any]) -> ModelSpec:
        d = json.loads(text) if isinstance(text, str | bytes) else dict(text)
        unknown = set(d) - {"arch", "in_channels", "n_classes", "widths", "hidden"}
        if unknown:
            raise ValueError(f"unknown model spec fields {sorted(unknown)}")
        try:
            return cls(arch=str(d.get("arch", "cnn")), in_channels=int(d["in_channels"]),
                       n_classes=int(d["n_classes"]), widths=tuple(int(w) for w in d.get("widths", (8, 16))),
                       hidden=int(d.get("hidden", 32)))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad model spec: {exc}") from exc

    @classmethod
    def from_ledger(cls, spec: ModelSpecRecord) -> ModelSpec:
        """The ModelSpec of a round's (or a model's) model_spec on the ledger: its architecture fields only
        (the ledger's spec also carries param_count for the chaincode, and may carry more)."""
        return cls.from_json({k: v for k, v in spec.fields.items() if k in SPEC_FIELDS})


class SmallCNN(nn.Module):
    """[conv3×3 → ReLU → avgpool2]×len(widths) → (linear → ReLU) → linear ("cnn"), or with
    avgpool2 before the ReLU ("cnn_pool": the ReLU sees 4x fewer values, which is what secure
    inference pays for; same parameter names and shapes)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = spec.in_channels
        for w in spec.widths:
            if spec.arch == "cnn_pool":
                layers += [nn.Conv2d(c, w, 3, padding=1), nn.AvgPool2d(2), nn.ReLU()]
            else:
                layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        side = 28 // (2 ** len(spec.widths))
        flat = c * side * side
        if spec.hidden:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, spec.hidden), nn.ReLU(),
                                      nn.Linear(spec.hidden, spec.n_classes))
        else:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, spec.n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(spec: ModelSpec, seed: int = 0) -> nn.Module:
    """Model with deterministic initial weights for `seed` (global torch RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(spec)
    return model


def param_names(model: nn.Module) -> list[str]:
    """Canonical parameter order: sorted state_dict keys (what flatten and safetensors use)."""
    return sorted(model.state_dict().keys())


def param_count(spec: ModelSpec) -> int:
    return sum(p.numel() for p in SmallCNN(spec).parameters())


def flatten(model: nn.Module) -> np.ndarray:
    """All weights as one float32 vector in canonical (sorted-name) order."""
    sd = model.state_dict()
    return np.concatenate([sd[k].detach().cpu().reshape(-1).numpy().astype(np.float32)
                           for k in sorted(sd)])


def unflatten(model: nn.Module, vector: np.ndarray) -> nn.Module:
    """Load a canonical vector into `model` in place (and return it)."""
    vector = np.asarray(vector)
    sd = model.state_dict()
    total = sum(v.numel() for v in sd.values())
    if vector.ndim != 1 or vector.shape[0] != total:
        raise ModelFormatError(f"vector of shape {vector.shape} does not fit a model with {total} parameters")
    if not np.all(np.isfinite(vector)):
        raise ModelFormatError("vector contains NaN or infinity")
    new, off = {}, 0
    for k in sorted(sd):
        n = sd[k].numel()
        new[k] = torch.from_numpy(vector[off:off + n].astype(np.float32).reshape(sd[k].shape).copy())
        off += n
    model.load_state_dict(new)
    return model


def state_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}


def to_safetensors_bytes(state: dict[str, np.ndarray] | nn.Module) -> bytes:
    """Canonical bytes: sorted keys, little-endian float32, C-contiguous, no metadata."""
    if isinstance(state, nn.Module):
        state = state_arrays(state)
    arrays = {k: np.ascontiguousarray(np.asarray(state[k], dtype="<f4")) for k in sorted(state)}
    return st_save(arrays)


def from_safetensors_bytes(data: bytes, spec: ModelSpec | None = None) -> dict[str, np.ndarray]:
    """Parse safetensors (never pickle); with `spec`, check names, shapes, dtype and finiteness."""
    try:
        arrays = st_load(bytes(data))
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise ModelFormatError(f"not a safetensors file: {exc}") from exc
    if spec is not None:
        expected = {k: tuple(v.shape) for k, v in SmallCNN(spec).state_dict().items()}
        got = {k: tuple(v.shape) for k, v in arrays.items()}
        if got != expected:
            raise ModelFormatError(f"tensors do not match spec: expected {expected}, got {got}")
        for k, v in arrays.items():
            if v.dtype != np.float32:
                raise ModelFormatError(f"{k}: dtype {v.dtype}, expected float32")
            if not np.all(np.isfinite(v)):
                raise ModelFormatError(f"{k}: contains NaN or infinity")
    return arrays


def load_model_bytes(data: bytes, spec: ModelSpec) -> nn.Module:
    """Build the spec's model and load validated safetensors bytes into it."""
    arrays = from_safetensors_bytes(data, spec)
    model = SmallCNN(spec)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in arrays.items()})
    return model


def model_hash(data: bytes) -> str:
    return sha256_hex(data)


def vector_hash(vector: np.ndarray) -> str:
    """SHA-256 of a vector's canonical bytes (little-endian float32)."""
    return sha256_hex(np.ascontiguousarray(np.asarray(vector, dtype="<f4")).tobytes())
