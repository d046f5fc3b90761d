"""The operator's round policy must be valid for every reference norm (regression: bounds in
(16, 63.9) were invalid about half the time, pine_c * rounded bound = 128.00000000000003 > 128; hit
by the digits dataset). Now the fixed-point limits live in VerificationPolicy alone."""

from __future__ import annotations

import numpy as np
from fedchain.verification import VerificationPolicy
from fedchain.verification.presets import PolicySettings


def test_policy_valid_for_any_reference_norm():
    norms = np.concatenate([np.random.default_rng(0).uniform(0.001, 30.0, 3000), [16 / 3, 6.000001, 21.3, 21.31]])
    settings = [PolicySettings(), PolicySettings(defense="none"), PolicySettings(norm_factor=0.0),
                PolicySettings(norm_factor=1000.0, outlier_floor_factor=10.0)]
    for r in norms:
        for s in settings:
            p = s.round_policy(float(r))
            assert VerificationPolicy.from_json(p.to_json()) == p
            assert p.norm_bound <= p.value_bound
