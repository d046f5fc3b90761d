"""Plaintext federated-learning simulation with pluggable aggregation strategies.

Same data, models, training and attacks as the real system, minus ledger and MPC: used to
tune demo defaults and policy thresholds and to compare "policy" against "fedavg".
"""

from .policy import BaselinePolicy, evaluate, krum_scores
from .runner import SimConfig, SimResult, run_simulation
from .strategy import FedAvg, PolicyStrategy, Strategy, Verdict, normalize_verdicts, weighted_average

__all__ = [
    "BaselinePolicy", "FedAvg", "PolicyStrategy", "SimConfig", "SimResult", "Strategy", "Verdict", "evaluate",
    "krum_scores", "normalize_verdicts", "run_simulation", "weighted_average",
]
