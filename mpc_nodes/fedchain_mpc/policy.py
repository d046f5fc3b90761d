"""The round's verification policy: JSON on the ledger, thresholds for the MPC checks.

Semantics (shared by `plaintext.evaluate` and the MPC program; reason = first failing check
in the order inconsistent > norm > cosine > outlier):
- norm: PINE-style wrap-around check |<x, v_k>| <= pine_c * 256 * norm_bound for pine_num_vectors
  public random vectors v_k with integer entries uniform in [-256, 256] (field.pine_vectors),
  and ||x||^2 <= norm_bound^2. An honest update fails a vector with probability
  <= 2 exp(-pine_c^2 / 2) (Hoeffding; 2.5e-14 at pine_c = 8); an update with a coordinate
  outside the honest range passes a vector with probability <= 1/513.
- cosine: cos(x, reference) >= cosine_min (reference from the root dataset; skipped if disabled).
- outlier (Multi-Krum style): D_ij = ||x_i - x_j||^2 among eligible updates (passed the
  checks above), distance to/from an ineligible one = cap = 4 norm_bound^2, D_ii = 0;
  score_i = sum of the k + 1 smallest entries of row i (k = n - krum_f - 2 nearest others);
  reject if score_i > outlier_factor * lower-median(score). outlier_factor is a multiple of 1/16.
  outlier_rule "multi_krum" uses that k; "mean_distance" uses k = n - 1 (sum over all others: no
  per-row sorting, O(n log^2 n) instead of O(n^2 log^2 n) secure comparisons); "auto" (default)
  is multi_krum for n <= krum_max_n, else mean_distance (n is public).
Accept = all enabled checks pass. Fixed-point rounding (resolution 2^-16) can flip a decision
only for values within ~1e-4 relative of a threshold; tests plant margins larger than that.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

REASONS = ("ok", "norm", "cosine", "outlier", "inconsistent")
FACTOR_DEN = 16
VALUE_LIMIT = 2.0 ** 15  # |values| the 32/16 fixed-point checks may handle (norms², products)


class PolicyError(ValueError):
    """A policy that is malformed or outside what the MPC checks can evaluate exactly."""


@dataclass(frozen=True)
class VerificationPolicy:
    norm_bound: float = 10.0
    pine_num_vectors: int = 16
    pine_c: float = 8.0
    cosine_enabled: bool = True
    cosine_min: float = 0.0
    outlier_enabled: bool = True
    krum_f: int = 1
    outlier_factor: float = 3.0
    outlier_rule: str = "auto"
    krum_max_n: int = 32
    sample_cap: int = 100_000

    def __post_init__(self) -> None:
        b = self.norm_bound
        if not (isinstance(b, int | float) and 0 < b and 4 * b * b * 2 < VALUE_LIMIT):
            raise PolicyError(f"norm_bound must be in (0, {math.sqrt(VALUE_LIMIT / 8):.1f}) for l=32, f=16")
        if not (isinstance(self.pine_num_vectors, int) and 1 <= self.pine_num_vectors <= 256):
            raise PolicyError("pine_num_vectors must be an integer in 1..256")
        if not (1.0 <= self.pine_c and self.pine_c * b <= 128):
            raise PolicyError("pine_c must be >= 1 with pine_c * norm_bound <= 128 "
                              "((x·r)^2 and ||x||^2 must stay below 2^15 at l=32, f=16)")
        if not -1.0 <= self.cosine_min <= 1.0:
            raise PolicyError("cosine_min must be in [-1, 1]")
        if not (isinstance(self.krum_f, int) and self.krum_f >= 0):
            raise PolicyError("krum_f must be a non-negative integer")
        q = self.outlier_factor * FACTOR_DEN
        if not (self.outlier_factor >= 1.0 and abs(q - round(q)) < 1e-9 and q <= 1024):
            raise PolicyError("outlier_factor must be a multiple of 1/16 in [1, 64]")
        if self.outlier_rule not in ("auto", "multi_krum", "mean_distance"):
            raise PolicyError("outlier_rule must be auto, multi_krum or mean_distance")
        if not (isinstance(self.krum_max_n, int) and self.krum_max_n >= 3):
            raise PolicyError("krum_max_n must be an integer >= 3")
        if not (isinstance(self.sample_cap, int) and 1 <= self.sample_cap <= 1 << 20):
            raise PolicyError("sample_cap must be an integer in 1..2^20")

    @property
    def factor_num(self) -> int:
        return round(self.outlier_factor * FACTOR_DEN)

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

    def check_scale(self, n: int) -> None:
        """Scores must stay inside the comparison range (48-bit integers at scale 2^16)."""
        cap = 4 * self.norm_bound ** 2 * 2 ** 16
        k1 = self.krum_k(n) + 1
        if k1 * cap * max(FACTOR_DEN, self.factor_num) >= 2.0 ** 46:
            raise PolicyError(f"n={n} with norm_bound={self.norm_bound} overflows the outlier scores")

    def wide_row_sums(self, n: int) -> bool:
        """Mean-distance rule: can row sums stay at scale 2^32 (saving n^2 truncations)?
        Their truncation needs |value| < 2^47 (SecFxp(32, 16)); keep a factor 2 margin."""
        return self.krum_k(n) + 1 == n and n * 4 * self.norm_bound ** 2 * 2.0 ** 32 < 2.0 ** 46

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes | dict[str, Any]) -> VerificationPolicy:
        d = json.loads(text) if isinstance(text, str | bytes) else dict(text)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise PolicyError(f"unknown policy fields: {sorted(unknown)}")
        return cls(**d)
