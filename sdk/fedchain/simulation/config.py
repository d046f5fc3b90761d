"""The simulation's settings, apart from the code that runs it: the demo's defaults come from here,
and importing them must not load torch (every `fedchain` command builds its --help from them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SimConfig:
    hospitals: int = 8
    malicious: int = 2
    attack: str | None = "scaling"
    attack_params: dict[str, Any] = field(default_factory=dict)
    rounds: int = 6
    alpha: float = 1.0
    steps: int = 100
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    server_lr: float = 1.0
    root_size: int = 200
    warmup_epochs: int = 5  # operator pre-trains the initial model on the public root set
    seed: int = 0
    dataset: str | None = None  # MedMNIST npz path; None = synthetic
    n_classes: int = 4
    channels: int = 1
    n_train: int = 6000
    n_test: int = 2000
    widths: tuple[int, ...] = (8, 16)
    hidden: int = 32
    inference_check: bool = False  # hand the strategy each round's base model + validation batch
    inference_batch: int = 32  # drawn from the public root set (fedchain.validation_batch), seed = round

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d
