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
from fedchain.sharing import from_ints, split  # noqa: E402
from fedchain_mpc import plaintext  # noqa: E402
from fedchain_mpc.verify import verify_and_aggregate  # noqa: E402
from mpc_core_verify_test import _bits, borderline, craft, make_round, random_policy  # noqa: E402


async def main() -> None:
    await mpc.start()
    trials = int(os.environ.get("FC_TRIALS", "100"))
    compared = skipped = mismatches = rejected = crafted = 0
    max_err = 0.0
    for trial in range(trials):
        rng = np.random.default_rng(10_000 + trial)
        n, d = int(rng.integers(4, 13)), int(rng.integers(40, 300))
        x, ref, kinds = make_round(rng, n, d, int(rng.integers(0, max(1, n // 3) + 1)))
        hi, lo, real = craft(x, kinds, rng)  # 'half' / 'wrap' rows are crafted field elements
        policy = random_policy(rng)
        ns = [int(v) for v in rng.integers(1, 1000, n)]
        secrets = (hi.astype(object) << 64) + lo.astype(object)
        rows = [split(from_ints(row), 1, 3, rng=rng)[mpc.pid] for row in secrets]
        hi_s, lo_s = np.stack([r.hi for r in rows]), np.stack([r.lo for r in rows])
        res = await verify_and_aggregate(hi_s, lo_s, ns, policy, ref, f"t{trial}")
        if borderline(real, ns, policy, ref, res.seed, rng):
            skipped += 1
            continue
        pt, agg, outcome = plaintext.evaluate_round(real, ns, policy, ref, res.seed)
        compared += 1
        mismatches += (res.verdicts != pt) or (res.outcome != outcome)
        rejected += sum(not a for a in _bits(pt))
        crafted += sum(k in ("half", "wrap") for k in kinds)
        if outcome == "ok":
            max_err = max(max_err, float(np.max(np.abs(res.aggregate - agg))))
    await mpc.shutdown()
    if mpc.pid == 0:
        Path(os.environ["FC_OUT"]).write_text(json.dumps({"compared": compared, "borderline": skipped, "crafted": crafted,
                                                          "mismatches": mismatches, "rejected": rejected,
                                                          "max_abs_error": max_err}))


if __name__ == "__main__":
    from fedchain_mpc.safe_wire import harden

    harden()  # every party: no pickle on the wire
    mpc.run(main())
