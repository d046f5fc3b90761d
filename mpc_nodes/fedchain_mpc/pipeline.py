"""What the MPC driver and the plaintext reference share, without MPyC: the enabled checks in order,
the round outcomes and the aggregate sanity rule."""

from __future__ import annotations

import numpy as np
from fedchain.verification import VerificationPolicy

from fedchain_mpc.checks import CHECKS, Check

OK, TOO_FEW, OUT_OF_RANGE = "ok", "too_few_accepted", "aggregate_out_of_range"
OUTCOMES = (OK, TOO_FEW, OUT_OF_RANGE)
AGGREGATION_FIELDS = ("min_accepted", "sample_cap")  # the policy fields read after the checks


def active_checks(policy: VerificationPolicy) -> list[Check]:
    return [c for c in CHECKS if c.enabled(policy)]


def require_inference(policy: VerificationPolicy, inference: object | None) -> None:
    """A policy with the inference check needs its inputs; the node turns this into a failed round."""
    if getattr(policy, "inference_enabled", False) and inference is None:
        raise ValueError("policy enables the inference check but no inference inputs (model spec, base model, "
                         "validation batch) were given")


def sanity_bound(policy: VerificationPolicy) -> float:
    """The largest ||aggregate|| a weighted mean of accepted updates can have (plus rounding slack):
    every accepted update met ||x|| <= value_bound (range check) and, if set, norm_bound."""
    b = policy.value_bound
    if policy.norm_enabled and policy.norm_bound > 0:
        b = min(b, policy.norm_bound)
    return b * (1 + 1e-3) + 1e-3


def aggregate_is_sane(agg: np.ndarray, policy: VerificationPolicy) -> bool:
    """Defence in depth after opening: finite and no larger than any accepted update could be."""
    if not np.all(np.isfinite(agg)):
        return False
    return float(np.linalg.norm(agg)) <= sanity_bound(policy)
