"""The demo's settings, apart from the code that runs it: `fedchain demo --help` shows these defaults,
and building it must not load torch.

These are the campaign defaults for the demo and for its plaintext twin, the simulation
(fedchain.simulation.config.SimConfig takes its shared defaults from here). The arrow goes one way,
simulation -> demo: the demo is what users run and the report format (demo.report) is the demo's, while
the simulation is the lighter copy used to tune those defaults and compare defenses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fedchain.verification.presets import PolicySettings


@dataclass
class DemoConfig:
    rounds: int = 6
    hospitals: int = 8
    malicious: int = 2
    attack: str | None = "scaling"
    attack_params: dict[str, Any] = field(default_factory=dict)
    defense: str = "mpc"
    dataset: str | None = None  # MedMNIST npz; None = synthetic (cached in D/data)
    seed: int = 0
    alpha: float = 1.0  # Dirichlet non-IID concentration
    steps: int = 100
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    root_size: int = 200
    warmup_epochs: int = 5  # operator pre-trains the initial model on the public root set
    n_train: int = 6000
    n_test: int = 2000
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
