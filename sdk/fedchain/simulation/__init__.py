"""Plaintext federated-learning simulation with pluggable aggregation strategies.

Same data, models, training and attacks as the real system, minus ledger and MPC: used to
tune demo defaults and policy thresholds and to compare "policy" against "fedavg". The verdicts
come from the MPC nodes' plaintext reference (fedchain_mpc.plaintext), plugged in by the CLI layer.
"""

from typing import Any

from .config import SimConfig
from .strategy import FedAvg, PolicyStrategy, Strategy, Verdict, normalize_verdicts, weighted_average

__all__ = [
    "FedAvg", "PolicyStrategy", "SimConfig", "SimResult", "Strategy", "Verdict", "normalize_verdicts",
    "run_simulation", "weighted_average",
]


def __getattr__(name: str) -> Any:
    """run_simulation and SimResult on first use: the round loop loads torch, the settings do not."""
    if name in ("SimResult", "run_simulation"):
        from . import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
