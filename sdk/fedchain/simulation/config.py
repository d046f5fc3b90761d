"""The simulation's settings, apart from the code that runs it: importing them must not load torch.

The campaign defaults (hospitals, attack, rounds, data split, local training) are the demo's
(fedchain.demo.config.DemoConfig): the simulation is the demo's plaintext twin, so it starts from the same
settings and reports in the demo's record format. Only simulation-specific settings are defined here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fedchain.demo.config import DemoConfig

_DEMO = DemoConfig()


@dataclass
class SimConfig:
    hospitals: int = _DEMO.hospitals
    malicious: int = _DEMO.malicious
    attack: str | None = _DEMO.attack
    attack_params: dict[str, Any] = field(default_factory=dict)
    rounds: int = _DEMO.rounds
    alpha: float = _DEMO.alpha
    steps: int = _DEMO.steps
    batch_size: int = _DEMO.batch_size
    lr: float = _DEMO.lr
    momentum: float = _DEMO.momentum
    server_lr: float = 1.0
    root_size: int = _DEMO.root_size
    warmup_epochs: int = _DEMO.warmup_epochs  # operator pre-trains the initial model on the public root set
    seed: int = _DEMO.seed
    dataset: str | None = None  # MedMNIST npz path; None = synthetic
    n_classes: int = 4
    channels: int = 1
    n_train: int = _DEMO.n_train
    n_test: int = _DEMO.n_test
    widths: tuple[int, ...] = (8, 16)
    hidden: int = 32
    inference_check: bool = False  # hand the strategy each round's base model + validation batch
    inference_batch: int = 32  # drawn from the public root set (fedchain.validation_batch), seed = round

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d
