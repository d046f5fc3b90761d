"""A round's training hyperparameters, apart from the training code: command lines show their defaults,
and building a --help must not load torch. `fedchain.training.TrainConfig` is this class."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from fedchain.canonical import canonical_text


@dataclass(frozen=True)
class TrainConfig:
    """Round hyperparameters (stored with the round): a fixed number of local SGD steps, so
    update norms are comparable across hospitals of different sizes and with the reference."""

    steps: int = 100
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9

    def __post_init__(self) -> None:
        if not (1 <= self.steps <= 100_000 and 1 <= self.batch_size <= 4096):
            raise ValueError("steps must be in 1..100000 and batch_size in 1..4096")
        if not (0 < self.lr <= 10 and 0 <= self.momentum < 1):
            raise ValueError("lr must be in (0, 10] and momentum in [0, 1)")

    def to_json(self) -> str:
        """Canonical JSON (fedchain.canonical): the round stores it and its bytes are hashed."""
        return canonical_text(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes | dict[str, Any]) -> TrainConfig:
        d = json.loads(text) if isinstance(text, str | bytes) else dict(text)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown training hyperparameters {sorted(unknown)}")
        return cls(**{k: type(getattr(cls, k))(v) for k, v in d.items()})
