"""One MPyC party running many random verification trials in one session (used by
mpc_core_trials_test.py; not collected by pytest). Every party derives the same trial data and
the same Shamir shares from the trial seed and keeps its own share row.

Env: FC_TRIALS (count), FC_OUT (party 0 writes a JSON summary there).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from mpyc.runtime import mpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fedchain.sharing import encode, split  # noqa: E402
from fedchain_mpc import plaintext  # noqa: E402
from fedchain_mpc.policy import VerificationPolicy  # noqa: E402
from fedchain_mpc.verify import verify_and_aggregate  # noqa: E402
from mpc_core_verify_test import _bits, _scaled, make_round  # noqa: E402


async def main() -> None:
    await mpc.start()
    trials = int(os.environ.get("FC_TRIALS", "100"))
    compared = borderline = mismatches = rejected = 0
    max_err = 0.0
    for trial in range(trials):
        rng = np.random.default_rng(10_000 + trial)
        n, d = int(rng.integers(4, 13)), int(rng.integers(40, 300))
        x, ref, _ = make_round(rng, n, d, int(rng.integers(0, max(1, n // 3) + 1)))
        policy = VerificationPolicy(norm_bound=2.0, pine_num_vectors=int(rng.choice([4, 16])),
                                    cosine_min=float(rng.choice([0.0, 0.1, -0.2])), krum_f=int(rng.integers(0, 3)),
                                    outlier_factor=float(rng.choice([1.5, 2.0, 3.0])),
                                    outlier_rule=str(rng.choice(["multi_krum", "mean_distance"])))
        ns = [int(v) for v in rng.integers(1, 1000, n)]
        rows = [split(encode(row), 1, 3, rng=rng)[mpc.pid] for row in x]
        hi, lo = np.stack([r.hi for r in rows]), np.stack([r.lo for r in rows])
        seed = f"t{trial}"
        res = await verify_and_aggregate(hi, lo, ns, policy, ref, seed)
        pt, agg = plaintext.evaluate(x, ns, policy, ref, seed)
        if any(_bits(plaintext.evaluate(x, ns, _scaled(policy, s), ref, seed)[0]) != _bits(pt) for s in (-1e-3, 1e-3)):
            borderline += 1
            continue
        compared += 1
        mismatches += res.verdicts != pt
        rejected += sum(not a for a in _bits(pt))
        max_err = max(max_err, float(np.max(np.abs(res.aggregate - agg))))
    await mpc.shutdown()
    if mpc.pid == 0:
        Path(os.environ["FC_OUT"]).write_text(json.dumps({"compared": compared, "borderline": borderline,
                                                          "mismatches": mismatches, "rejected": rejected,
                                                          "max_abs_error": max_err}))


if __name__ == "__main__":
    mpc.run(main())
