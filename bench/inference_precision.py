"""Precision of the inference check's secret forward pass against float32 torch (docs/inference.md).

One MPyC party (t = 0, so the run needs no other process) runs fedchain_mpc.inference.secure.forward
on the benchmark's round and opens the logits HERE, for measurement only (the check never does).
Prints the max |logit error| of MPC vs torch, the fixed-point twin vs torch and MPC vs twin, over
the candidates whose values stay in the comparison range (the others fail the check: excluded).
Usage: python bench/inference_precision.py [ARCH] [HOSPITALS] [BATCH]   (default cnn_pool 3 32)
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main() -> None:
    arch = sys.argv[1] if len(sys.argv) > 1 else "cnn_pool"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    b = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    sys.argv = sys.argv[:1]  # MPyC parses the command line: one party
    import torch
    from fedchain.models import build_model, unflatten
    from fedchain.sharing import encode
    from fedchain.training import to_tensor
    from fedchain_mpc import bench_inference as bi
    from fedchain_mpc.checks import CHECKS, InferenceInputs
    from fedchain_mpc.inference import secure
    from fedchain_mpc.inference.plan import (
        A_FRAC,
        correct_int,
        forward_int,
        make_plan,
        quantize_images,
        quantize_weights,
    )
    from fedchain_mpc.verify import MPCRound
    from mpyc.runtime import mpc

    rnd = bi.make_round(n, b, arch, 0, degraded=min(n, 3))
    inf = InferenceInputs(rnd["spec"], rnd["base"], rnd["images"], rnd["labels"])
    x = rnd["updates"]
    pol = bi.bench_policy(b)
    enc = [encode(r) for r in x]
    hi, lo = np.stack([e.hi for e in enc]), np.stack([e.lo for e in enc])

    async def go() -> np.ndarray:
        await mpc.start()
        r = MPCRound(hi, lo, pol, [c for c in CHECKS if c.enabled(pol)], "seed", None, inf)
        lg, _, _ = await secure.forward(r, np.arange(n), make_plan(rnd["spec"]), inf)
        out = np.array(await mpc.output(lg), dtype=np.float64)
        await mpc.shutdown()
        return out

    mpc_logits = mpc.run(go())
    plan, xq = make_plan(rnd["spec"]), quantize_images(inf.images)
    e_mt = e_tt = e_m_torch = mx = 0.0
    agree = compared = 0
    excluded = []
    for i in range(n):
        twin, bad = forward_int(plan, quantize_weights(rnd["base"]) + quantize_weights(x[i]), xq)
        if bad.any() or correct_int(twin, inf.labels)[1].any():  # left the comparison range: the MPC
            excluded.append(rnd["kinds"][i])  # fails that row (bit check); its values are not comparable
            continue
        compared += 1
        model = unflatten(build_model(rnd["spec"]), (rnd["base"] + x[i]).astype(np.float32))
        with torch.no_grad():
            ref = model(to_tensor(inf.images)).numpy()
        e_mt = max(e_mt, float(np.abs(mpc_logits[i] - twin).max()) / 2 ** A_FRAC)
        e_tt = max(e_tt, float(np.abs(twin / 2 ** A_FRAC - ref).max()))
        e_m_torch = max(e_m_torch, float(np.abs(mpc_logits[i] / 2 ** A_FRAC - ref).max()))
        mx = max(mx, float(np.abs(ref).max()))
        agree += int((mpc_logits[i].argmax(1) == ref.argmax(1)).sum())
    print(json.dumps({"arch": arch, "n": n, "batch": b, "max_abs_mpc_vs_twin": e_mt, "max_abs_twin_vs_torch": e_tt,
                      "max_abs_mpc_vs_torch": e_m_torch, "max_abs_logit": mx, "argmax_agree": f"{agree}/{compared * b}",
                      "excluded_out_of_range": excluded}))


if __name__ == "__main__":
    main()
