"""The verification pipeline's checks, in order (the reason code is the first failing one).

Add a check: write a module with a `Check` subclass (base.py says what it defines) and list an
instance here. The MPC driver (fedchain_mpc.verify) and the plaintext reference
(fedchain_mpc.plaintext) both run exactly this list.
"""

from .base import Check, PlainRound
from .consistency import Consistency, degree_ok
from .cosine import Cosine
from .inference import Inference, InferenceInputs, inference_plain
from .norm import Norm, NormCap
from .outlier import Outlier
from .range_check import Range

# Inference is last on purpose: its openings are safe only for rows the range/norm checks validated.
CHECKS: tuple[Check, ...] = (Consistency(), Range(), NormCap(), Norm(), Cosine(), Outlier(), Inference())

__all__ = ["CHECKS", "Check", "InferenceInputs", "PlainRound", "degree_ok", "inference_plain"]
