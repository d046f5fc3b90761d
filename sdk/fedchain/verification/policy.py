"""The round's verification policy: JSON on the ledger, read by every check of the pipeline.

Checks run in this order; the reason code of a rejected update is the first check it fails
(fedchain_mpc.checks has one module per check, with its plaintext and its MPC rule):

- inconsistent: the hospital's shares do not lie on one degree-t polynomial.
- range (validity): every element must be an honest fixed-point value. K = pine_num_vectors public
  random vectors v_k (entries uniform in [-256, 255]), drawn from randomness the MPC nodes generate
  jointly AFTER the round's inputs are sealed, and |<x, v_k>| <= pine_c * 256 * value_bound for
  every k, and ||x|| <= value_bound. A crafted field element (a "fraction" mod p such as
  B + 2^-1, or a value that wraps) makes <x, v_k> non-integral or huge with probability >= 1/2 per
  vector, so it passes with probability <= 2^-K (K >= 41: <= 2^-40). value_bound is the largest
  update the fixed-point arithmetic handles (not a robustness threshold).
- norm (robustness): ||x|| <= norm_bound (absolute cap; 0 = none; decided with the range check)
  and, if norm_rel_factor > 0, ||x_i|| <= norm_rel_factor * median ||x_j|| over the round's updates
  that passed so far (FLAME-style), unless ||x_i|| <= norm_floor.
- cosine: cos(x, reference) >= cosine_min (absolute; reference = FLTrust update of the public root
  set) and, if cosine_rel > 0, cos_i >= cosine_rel * median cos_j - cosine_slack over the same
  updates as the relative norm rule (decided together with it). The slack keeps honest updates
  when training has converged and the reference carries little signal (median cosine ~0.02).
  cos_i here is (x_i.r / b) y_i with y_i ~ 1 / sqrt(||x_i||^2 / b^2 + 2^-12) by Newton's iteration
  (b = norm_bound if set, else value_bound; checks/cosine.py): exact for ||x_i|| >= b/64, pulled
  towards 0 for smaller updates. Plaintext and MPC run the same iteration.
- outlier (Multi-Krum style): D_ij = ||x_i - x_j||^2 among updates that passed the checks above,
  distance to/from any other = cap = 4 b^2 (b = norm_bound if set, else value_bound), D_ii = 0; score_i = sum of the k + 1 smallest
  entries of row i (k = n - krum_f - 2 nearest others; "mean_distance": k = n - 1); reject if
  score_i > outlier_factor * lower-median(score) and score_i > (k + 1) * (outlier_floor^2 + 2^-14)
  (the 2^-14 absorbs fixed-point noise, so identical updates always pass).
- inference (last, off by default): the candidate model w_base + x (x = the update) runs on the
  round's public validation batch of B = inference_batch images inside MPC (fedchain_mpc.checks.
  inference, docs/inference.md) and counts its correct predictions c (label's logit strictly above
  every other logit, in the fixed-point plan of fedchain_mpc.inference). With b = the base model's
  correct count on the same batch (public: the same fixed-point plan with x = 0), it passes iff
      c >= T = ceil(max(inference_floor * B, b - inference_margin * B))
  (T is public and computed with a 1e-9 tolerance so that 0.25 * 32 = 8 exactly). Only the pass bit
  is revealed: no logits, counts or accuracies.
Accept = every enabled check passes. Then the privacy floor: the aggregate is opened only if at
least min_accepted updates were accepted (the aggregate of one update IS that update).

Relative factors are quantized so plaintext and MPC compare the same integers: the norm rule is
REL_DEN * N_i <= q * median(N) with N = ||x||^2 and q = round(norm_rel_factor^2 * REL_DEN); the
cosine rule is REL_DEN * s_i >= q * median(s) with s = cos * |cos| and q = round(cosine_rel^2 *
REL_DEN). Medians are lower medians (sorted[(n - 1) // 2]). Fixed-point rounding (2^-16) can flip a
decision only for values within ~1e-4 relative of a threshold.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from fedchain.canonical import canonical_text

REASONS = ("ok", "inconsistent", "range", "norm", "cosine", "outlier", "inference")
FACTOR_DEN = 16  # outlier_factor is a multiple of 1/16
REL_DEN = 64  # relative norm / cosine factors are compared as squares in multiples of 1/64
VALUE_LIMIT = 2.0 ** 15  # |values| the 32/16 fixed-point checks may handle (norms², distances)
MIN_SOUND_VECTORS = 41  # 2^-41 < 2^-40: a half-integer passes each range test with probability 1/2
MAX_VALUE_BOUND = 63.9  # 4 b^2 * 2 < 2^15: outlier distances stay in the fixed-point range
MAX_INFERENCE_BATCH = 256  # images per validation batch the MPC inference check accepts
MAX_RANGE_BITS = 44  # projections at scale 2^16 with |v| < 2^(l-1): l + 30 (MPyC's -K) + 4 < 80


class PolicyError(ValueError):
    """A policy that is malformed or outside what the MPC checks can evaluate exactly."""


@dataclass(frozen=True)
class VerificationPolicy:
    range_enabled: bool = True
    value_bound: float = MAX_VALUE_BOUND
    pine_num_vectors: int = 44
    pine_c: float = 8.0
    norm_enabled: bool = True
    norm_bound: float = 0.0
    norm_rel_factor: float = 0.0  # relative rules are off unless a policy asks (PolicySettings does)
    norm_floor: float = 0.0
    cosine_enabled: bool = True
    cosine_min: float = 0.0
    cosine_rel: float = 0.0
    cosine_slack: float = 0.05
    outlier_enabled: bool = True
    krum_f: int = 1
    outlier_factor: float = 3.0
    outlier_rule: str = "auto"
    krum_max_n: int = 32
    outlier_floor: float = 0.0
    min_accepted: int = 3
    sample_cap: int = 100_000
    inference_enabled: bool = False
    inference_batch: int = 32  # size of the validation batch the operator must publish
    inference_margin: float = 0.25  # accuracy (fraction of the batch) the candidate may lose vs the base
    inference_floor: float = 0.0  # absolute accuracy floor (fraction of the batch)

    def __post_init__(self) -> None:
        b = self.value_bound
        for name in ("range_enabled", "norm_enabled", "cosine_enabled", "outlier_enabled", "inference_enabled"):
            if not isinstance(getattr(self, name), bool):
                raise PolicyError(f"{name} must be true or false")
        if not (_number(b) and 0 < b <= MAX_VALUE_BOUND):
            raise PolicyError(f"value_bound must be in (0, {MAX_VALUE_BOUND}] for l=32, f=16")
        if not (isinstance(self.pine_num_vectors, int) and MIN_SOUND_VECTORS <= self.pine_num_vectors <= 256):
            raise PolicyError(f"pine_num_vectors must be an integer in {MIN_SOUND_VECTORS}..256 (fewer than "
                              f"{MIN_SOUND_VECTORS} lets a crafted update pass with probability above 2^-40)")
        if not (_number(self.pine_c) and 1.0 <= self.pine_c and self.range_bits() <= MAX_RANGE_BITS):
            raise PolicyError(f"pine_c must be >= 1 with pine_c * value_bound * 2^24 < 2^{MAX_RANGE_BITS - 1}")
        if not (_number(self.norm_bound) and 0 <= self.norm_bound <= b):
            raise PolicyError("norm_bound must be in [0, value_bound] (0: no absolute cap)")
        if not (_number(self.norm_rel_factor) and (self.norm_rel_factor == 0 or 1.0 <= self.norm_rel_factor <= 16)):
            raise PolicyError("norm_rel_factor must be 0 (off) or in [1, 16]")
        if not (_number(self.norm_floor) and 0 <= self.norm_floor <= b):
            raise PolicyError("norm_floor must be in [0, value_bound]")
        if not (_number(self.cosine_min) and -1.0 <= self.cosine_min <= 1.0):
            raise PolicyError("cosine_min must be in [-1, 1]")
        if not (_number(self.cosine_rel) and 0.0 <= self.cosine_rel <= 1.0):
            raise PolicyError("cosine_rel must be in [0, 1] (0: off)")
        if not (_number(self.cosine_slack) and 0.0 <= self.cosine_slack <= 1.0):
            raise PolicyError("cosine_slack must be in [0, 1]")
        if not (isinstance(self.krum_f, int) and self.krum_f >= 0):
            raise PolicyError("krum_f must be a non-negative integer")
        q = self.outlier_factor * FACTOR_DEN
        if not (_number(self.outlier_factor) and self.outlier_factor >= 1.0 and abs(q - round(q)) < 1e-9
                and q <= 1024):
            raise PolicyError("outlier_factor must be a multiple of 1/16 in [1, 64]")
        if self.outlier_rule not in ("auto", "multi_krum", "mean_distance"):
            raise PolicyError("outlier_rule must be auto, multi_krum or mean_distance")
        if not (isinstance(self.krum_max_n, int) and self.krum_max_n >= 3):
            raise PolicyError("krum_max_n must be an integer >= 3")
        if not (_number(self.outlier_floor) and 0 <= self.outlier_floor <= b):
            raise PolicyError("outlier_floor must be in [0, value_bound]")
        if not (isinstance(self.min_accepted, int) and 1 <= self.min_accepted <= 10_000):
            raise PolicyError("min_accepted must be an integer >= 1")
        if not (isinstance(self.sample_cap, int) and 1 <= self.sample_cap <= 1 << 20):
            raise PolicyError("sample_cap must be an integer in 1..2^20")
        if not (isinstance(self.inference_batch, int) and not isinstance(self.inference_batch, bool)
                and 1 <= self.inference_batch <= MAX_INFERENCE_BATCH):
            raise PolicyError(f"inference_batch must be an integer in 1..{MAX_INFERENCE_BATCH}")
        if not (_number(self.inference_margin) and 0.0 <= self.inference_margin <= 1.0):
            raise PolicyError("inference_margin must be in [0, 1] (a fraction of the batch)")
        if not (_number(self.inference_floor) and 0.0 <= self.inference_floor <= 1.0):
            raise PolicyError("inference_floor must be in [0, 1] (a fraction of the batch)")
        if self.inference_enabled and not self.range_enabled:
            raise PolicyError("inference_enabled needs range_enabled: the inference check's openings are "
                              "safe only for updates the range check validated")

    # ---------------------------------------------------------------- derived integers
    @property
    def factor_num(self) -> int:
        return round(self.outlier_factor * FACTOR_DEN)

    @property
    def norm_rel_num(self) -> int:
        """q of the relative norm rule REL_DEN * N_i <= q * median(N)."""
        return round(self.norm_rel_factor ** 2 * REL_DEN)

    @property
    def cosine_rel_num(self) -> int:
        """q of the relative cosine rule REL_DEN * c_i + slack >= q * median(c)."""
        return round(self.cosine_rel * REL_DEN)

    def range_limit(self) -> float:
        """|<x, v_k>| below this (real units) always passes the range check; honest updates stay below
        pine_c * 256 * value_bound <= this except with probability 2 exp(-pine_c^2 / 2)."""
        return 2.0 ** (self.range_bits() - 1) / 2 ** 16

    def range_bits(self) -> int:
        """l with 2^(l-1) >= pine_c * 256 * value_bound at scale 2^16 (the MPC zone test's width)."""
        return int(math.ceil(math.log2(self.pine_c * 256 * self.value_bound * 2 ** 16))) + 1

    def inference_threshold(self, base_correct: int, batch: int | None = None) -> int:
        """T of the inference rule: pass iff correct >= T = ceil(max(floor B, base_correct - margin B))."""
        b = self.inference_batch if batch is None else int(batch)
        return int(math.ceil(max(self.inference_floor * b, base_correct - self.inference_margin * b) - 1e-9))

    def krum_k(self, n: int) -> int:
        """How many nearest others enter a score (n - 1 = all: no per-row selection needed)."""
        rule = self.outlier_rule
        if rule == "auto":
            rule = "multi_krum" if n <= self.krum_max_n else "mean_distance"
        if rule == "mean_distance":
            return n - 1
        return min(n - 1, max(1, n - self.krum_f - 2))

    def outlier_active(self, n: int) -> bool:
        return self.outlier_enabled and n >= 3

    def eligible_bound(self) -> float:
        """The largest ||x|| an update can have once it passed the norm stage (bounds comparisons)."""
        if self.norm_enabled and self.norm_bound > 0:
            return self.norm_bound
        return self.value_bound

    def distance_cap(self) -> float:
        """cap = 4 eligible_bound^2 >= any ||x_i - x_j||^2 among eligible updates."""
        return 4 * self.eligible_bound() ** 2

    def check_scale(self, n: int) -> None:
        """Scores must stay inside the comparison range (48-bit integers at scale 2^16)."""
        cap = self.distance_cap() * 2 ** 16
        k1 = self.krum_k(n) + 1
        if k1 * cap * max(FACTOR_DEN, self.factor_num) >= 2.0 ** 46:
            raise PolicyError(f"n={n} with value_bound={self.value_bound} overflows the outlier scores")

    # ------------------------------------------------------------------------ JSON
    def to_json(self) -> str:
        """Canonical JSON (fedchain.canonical): the policy goes on the ledger with the round."""
        return canonical_text(asdict(self))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, text: str | bytes | dict[str, Any]) -> VerificationPolicy:
        try:
            d = json.loads(text) if isinstance(text, str | bytes) else dict(text)
        except (ValueError, TypeError) as exc:
            raise PolicyError(f"policy is not a JSON object: {exc}") from None
        if not isinstance(d, dict):
            raise PolicyError("policy must be a JSON object")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise PolicyError(f"unknown policy fields: {sorted(unknown)}")
        return cls(**d)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
