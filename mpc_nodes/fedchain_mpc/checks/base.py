"""What a check is: a reason code, the policy fields it reads, a stage, a plaintext rule and an MPC rule.

The MPC driver (fedchain_mpc.verify) and the plaintext reference (fedchain_mpc.plaintext) run the
same registered list (checks/__init__.py). Checks of one stage are decided together: their MPC
rules return "fail terms" (secure arrays that are zero in a row iff the row passes) and the driver
opens only the index of the first failing check per row (mpcops.open_stage). A stage sees only the
rows that passed every earlier stage (public by then), so its medians and masks are over those.

MPC rules import MPyC (and mpcops) inside `mpc()`, so the plaintext reference runs without MPyC,
which parses sys.argv when imported.

Adding a check = one module here with a Check subclass + one line in checks/__init__.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fedchain.verification import VerificationPolicy


@dataclass
class PlainRound:
    """The round in plain float64 (the reference semantics; used by tests and simulations)."""

    x: np.ndarray  # (n, d) updates, real values (a crafted field element decodes to a huge value)
    policy: VerificationPolicy
    seed: str  # the public randomness the MPC run used (MPCResult.seed)
    reference: np.ndarray | None = None  # quantized unit reference (field.quantized_reference / 2^16)
    consistent: np.ndarray | None = None
    inference: Any = None  # checks.inference.InferenceInputs (model spec, base model, validation batch)
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.x.shape[0]

    def norm2(self) -> np.ndarray:
        if "norm2" not in self._cache:
            self._cache["norm2"] = np.einsum("ij,ij->i", self.x, self.x)
        return self._cache["norm2"]

    def gram(self) -> np.ndarray:
        if "gram" not in self._cache:
            self._cache["gram"] = self.x @ self.x.T
        return self._cache["gram"]


class Check:
    """One verification rule. Subclasses set the class attributes and implement the rules."""

    reason: str = ""
    stage: int = 0
    fields: tuple[str, ...] = ()
    switch: str | None = None  # the policy field that turns the check on (None: always on)

    def enabled(self, policy: VerificationPolicy) -> bool:
        """On when the policy's `switch` field is true (a policy without the field: off)."""
        return self.switch is None or bool(getattr(policy, self.switch, False))

    def public_rows(self, policy: VerificationPolicy, seed: str, d: int,
                    reference: np.ndarray | None) -> np.ndarray | None:
        """Public integer rows (|v| <= 2^16) whose products with the shares this check needs."""
        return None

    def plaintext(self, rnd: PlainRound, rows: np.ndarray) -> np.ndarray:
        """Pass bits (n,) for the rows in `rows` (the others are ignored)."""
        raise NotImplementedError

    async def mpc(self, rnd: Any, rows: np.ndarray) -> list[Any] | np.ndarray:
        """Fail terms (secure arrays, zero in a row iff it passes), or public pass bits (n,)."""
        raise NotImplementedError

    def prepare(self, rnd: Any, rows: np.ndarray, decided: int) -> None:
        """Called by the MPC driver after each earlier stage `decided` with the rows still eligible: a check
        may START work there (MPyC placeholders, no await) that is safe for those rows, so its openings
        run concurrently with the stages in between instead of on the critical path. Default: nothing."""


def median_rule_plain(values: np.ndarray, scale_num: int, den: int, cols: np.ndarray, upper: bool) -> np.ndarray:
    """Plaintext twin of mpcops.count_median_test (for all rows): den v_i <= scale_num median(v[cols])
    (or >=, upper=True), lower median."""
    med = np.sort(values[cols])[(cols.size - 1) // 2]
    return den * values >= scale_num * med if upper else den * values <= scale_num * med
