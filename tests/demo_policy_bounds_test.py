"""The demo's policy must be valid for every reference norm (regression: bounds in (16, 63.9) failed
about half the time, pine_c * rounded bound = 128.00000000000003 > 128; hit by the digits dataset)."""

from __future__ import annotations

import numpy as np
from fedchain.demo.operator import build_policy
from fedchain.verification import VerificationPolicy


def test_policy_valid_for_any_reference_norm():
    norms = np.concatenate([np.random.default_rng(0).uniform(0.001, 30.0, 3000), [16 / 3, 6.000001, 21.3, 21.31]])
    for r in norms:
        for defense in ("mpc", "none"):
            p = build_policy(defense, float(r))
            VerificationPolicy.from_json(p)
            assert p["pine_c"] * p["norm_bound"] <= 128.0
    assert build_policy("mpc", 1.0)["pine_c"] == 8.0  # small bounds keep the full slack
