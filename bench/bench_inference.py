"""`make bench` entry: the encrypted-inference check, 8 hospitals x batch 32, three party processes.

Usage: python bench/bench_inference.py [--json out.json] [--quick]
Runs the MPC-friendly arch (cnn_pool, widths (8, 16), hidden 32) at full size, and the demo's arch
(cnn) on 4 of the 32 images: the check's cost is linear in the images (one comparison batch per
layer), so 8x that figure is the full batch's (printed as an extrapolation, marked as such).
Target (issue 10): <= 60 s added to a round for 8 x 32 on the 2-core machine; reported, not enforced.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fedchain_mpc import bench_inference

TARGET_S = 60.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true", help="batch 8 instead of 32, cnn_pool only")
    args = ap.parse_args(argv)
    runs = [("cnn_pool", 8 if args.quick else 32, 1)] + ([] if args.quick else [("cnn", 4, 8)])
    results, ok = [], True
    for arch, batch, scale in runs:
        r = bench_inference.run(8, batch, arch)
        print(bench_inference.table(r), flush=True)
        wall, cpu = r["inference_stage_s"] * scale, r["inference_stage_cpu_s_max_party"] * scale
        note = "" if scale == 1 else f" (extrapolated x{scale} from batch {batch})"
        print(f"target <= {TARGET_S:.0f} s for 8 x 32; measured 8 x {batch * scale}: {arch} {wall:.1f} s wall, "
              f"{cpu:.1f} CPU s on the busiest party{note}\n", flush=True)
        r["full_batch_estimate"] = {"wall_s": wall, "cpu_s_max_party": cpu, "extrapolated_from_batch": batch}
        r["target_s"] = TARGET_S
        ok &= r["verdicts_equal_plaintext"] and r["nodes_agree"]
        results.append(r)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
