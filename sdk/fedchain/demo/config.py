"""The demo's settings, apart from the code that runs it: `fedchain demo --help` shows these defaults,
and building it must not load torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fedchain.simulation.config import SimConfig
from fedchain.verification.presets import PolicySettings

_SIM = SimConfig()  # the plaintext simulation's settings: the demo runs the same, for real


@dataclass
class DemoConfig:
    rounds: int = _SIM.rounds
    hospitals: int = _SIM.hospitals
    malicious: int = _SIM.malicious
    attack: str | None = _SIM.attack
    attack_params: dict[str, Any] = field(default_factory=dict)
    defense: str = "mpc"
    dataset: str | None = None  # MedMNIST npz; None = synthetic (cached in D/data)
    seed: int = 0
    alpha: float = _SIM.alpha  # Dirichlet non-IID concentration
    steps: int = _SIM.steps
    batch_size: int = _SIM.batch_size
    lr: float = _SIM.lr
    momentum: float = _SIM.momentum
    root_size: int = _SIM.root_size
    warmup_epochs: int = _SIM.warmup_epochs
    n_train: int = _SIM.n_train
    n_test: int = _SIM.n_test
    # the operator's verification settings (fedchain.verification.presets): each round's policy is
    # built from them and the public reference update's norm
    policy: PolicySettings = field(default_factory=PolicySettings)
    # "auto" = the absolute cosine floor per round from the public root set (auto_cosine_min), or None
    # for policy.cosine_min (the relative rule does the work since 2026-11-30)
    cosine_min_auto: bool = False
    auto_cosine_lo: float = 0.05
    auto_cosine_hi: float = 0.20
    # the encrypted-inference check (--inference-check): policy.inference_enabled, a validation batch per round
    # from the root set, and the MPC-friendly model variant (arch cnn_pool) when this fedchain has it
    inference_check: bool = False
    inference: dict[str, Any] = field(default_factory=dict)  # inference_batch/_margin/_floor from --policy
    min_updates: int = 2
    deadline_s: float = 600.0
    round_timeout_s: float = 300.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
