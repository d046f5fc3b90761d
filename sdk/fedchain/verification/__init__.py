"""The consortium's verification policy: shared by operators (SDK) and MPC nodes.

It lives in the SDK so that operators, the demo and auditors can build and validate policies
without importing the MPC node package (DESIGN §1); the checks that read it are in
`fedchain_mpc.checks`.
"""

from .policy import (
    FACTOR_DEN,
    REASONS,
    REL_DEN,
    VALUE_LIMIT,
    PolicyError,
    VerificationPolicy,
)

__all__ = ["FACTOR_DEN", "REASONS", "REL_DEN", "VALUE_LIMIT", "PolicyError", "VerificationPolicy"]
