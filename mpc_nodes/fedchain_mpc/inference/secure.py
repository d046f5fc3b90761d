"""The inference check's MPC rule (filled in below)."""

from __future__ import annotations

from typing import Any

import numpy as np


async def fail_terms(rnd: Any, rows: np.ndarray, inference: Any) -> list[Any]:
    raise NotImplementedError("secure inference is being built")
