"""An operator's verification settings → each round's VerificationPolicy, from public data only.

The demo, the plaintext simulation and bench/tune_policy.py build round policies here, so no
caller hard-codes the fixed-point limits (they live in VerificationPolicy). The only per-round input
is the norm of the FLTrust reference update (public: computed from the consortium's root set and
published on the ledger), which scales the absolute norm cap and the outlier floor.

Defaults, chosen by bench/tune_policy.py on 12-round campaigns (synthetic and the real digits
images, seeds 0-2, no attack and label flip; docs/demo.md): relative rules only. An update's norm
within 4x the round's median (FLAME-style; honest stragglers reach 5-9x once training converges on
real data, label flippers 6-45x), its cosine with the reference at least 0.5x the round's median
minus 0.06 (the slack keeps honest updates once the median cosine falls to ~0.02), and Multi-Krum
at 8x the median score. On the converged digits data this still rejects 4-8 % of honest updates
(the stragglers are outliers by norm and by Multi-Krum alike; docs/demo.md). No absolute cosine floor and no absolute norm cap by default: the
reference's norm shrinks as the model converges, and a cap of 5x it rejected honest hospitals on the
digits data; both stay available (norm_factor, cosine_min).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .policy import MAX_VALUE_BOUND, PolicyError, VerificationPolicy

DEFENSES = ("mpc", "none")


@dataclass(frozen=True)
class PolicySettings:
    defense: str = "mpc"  # mpc: the checks; none: plain FedAvg through the same pipeline (checks off)
    norm_factor: float = 0.0  # absolute cap ||Δ|| <= norm_factor * ||Δ_ref|| (0: no absolute cap)
    norm_rel_factor: float = 4.0  # ||Δ_i|| <= factor * median ||Δ_j|| (0: off)
    cosine_min: float = -1.0  # cos(Δ, Δ_ref) >= this (absolute; -1: off)
    cosine_rel: float = 0.5  # cos_i >= cosine_rel * median cos_j - cosine_slack (0: off)
    cosine_slack: float = 0.06
    outlier_factor: float = 8.0  # Multi-Krum score <= factor * median (0: outlier check off)
    outlier_floor_factor: float = 0.1  # scores of updates closer than this * ||Δ_ref|| always pass
    krum_f: int = 2
    min_accepted: int = 3  # privacy floor: no aggregate of fewer accepted updates

    def __post_init__(self) -> None:
        if self.defense not in DEFENSES:
            raise PolicyError(f"defense must be one of {', '.join(DEFENSES)}, not {self.defense!r}")
        if not 0 <= self.norm_factor <= 1000:
            raise PolicyError("norm_factor must be in [0, 1000] (0: no absolute cap)")
        if self.outlier_factor and not 1 <= self.outlier_factor <= 64:
            raise PolicyError("outlier_factor must be 0 (off) or in [1, 64]")
        if not 0 <= self.outlier_floor_factor <= 10:
            raise PolicyError("outlier_floor_factor must be in [0, 10]")
        # the remaining fields are validated by VerificationPolicy itself
        self.round_policy(1.0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def round_policy(self, reference_norm: float) -> VerificationPolicy:
        """This round's policy, given ||Δ_ref|| (public)."""
        if self.defense == "none":
            return VerificationPolicy(range_enabled=False, norm_enabled=False, cosine_enabled=False,
                                      outlier_enabled=False, min_accepted=self.min_accepted)
        r = max(float(reference_norm), 1e-6)
        cap = min(MAX_VALUE_BOUND, self.norm_factor * r) if self.norm_factor > 0 else 0.0
        return VerificationPolicy(
            norm_enabled=bool(cap > 0 or self.norm_rel_factor > 0), norm_bound=round(cap, 6),
            norm_rel_factor=self.norm_rel_factor,
            cosine_min=self.cosine_min, cosine_rel=self.cosine_rel, cosine_slack=self.cosine_slack,
            outlier_enabled=self.outlier_factor > 0,
            outlier_factor=round(max(self.outlier_factor, 1.0) * 16) / 16,
            outlier_floor=round(min(MAX_VALUE_BOUND, self.outlier_floor_factor * r), 6),
            krum_f=self.krum_f, min_accepted=self.min_accepted)
