"""Plaintext accuracy of MPC-friendly model variants vs the demo's "cnn" (docs/inference.md).

FedAvg without attacks (the plaintext simulation: 8 hospitals, Dirichlet alpha 1, warm-up on the
root set, 6 rounds of 100 local steps), synthetic data and the real scikit-learn digits, seeds 0-2.
Usage: python bench/inference_variants.py [--digits PATH] [--json PATH] [--seeds 0,1,2] [--only PREFIXES]
(A quadratic activation, 0.125 x^2 + 0.5 x + 0.25 instead of the ReLU, diverged with the demo's
learning rate 0.05 and momentum 0.9 on synthetic data: not an option without changing the recipe.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

VARIANTS: list[tuple[str, tuple[int, ...], int]] = [
    ("cnn", (8, 16), 32), ("cnn_pool", (8, 16), 32), ("cnn_pool", (4, 8), 16)]


def run_one(arch: str, widths: tuple[int, ...], hidden: int, seed: int, dataset: str | None,
            lr: float = 0.05) -> float:
    """Final test accuracy of one FedAvg run with this architecture."""
    import fedchain.simulation.loop as loop
    from fedchain.models import ModelSpec
    from fedchain.simulation import FedAvg, SimConfig
    def spec(**kw: Any) -> ModelSpec:
        return ModelSpec(arch=arch, **kw)

    orig = loop.ModelSpec
    loop.ModelSpec = spec  # type: ignore[assignment]  # the loop builds the spec itself
    try:
        cfg = SimConfig(malicious=0, attack=None, seed=seed, dataset=dataset, widths=widths, hidden=hidden, lr=lr)
        res = loop.run_simulation(cfg, FedAvg())
    finally:
        loop.ModelSpec = orig  # type: ignore[assignment]
    return float(res.report["final_accuracy"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--digits", default=None, help="digits npz (fedchain data digits --out PATH)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--json", default=None)
    ap.add_argument("--lr", type=float, default=0.05, help="local SGD learning rate (the simulation's default 0.05 "
                    "diverged on digits with cnn, seed 0)")
    ap.add_argument("--only", default=None, help="comma-separated variant keys' prefixes, e.g. digits/cnn_pool")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    out: dict[str, Any] = {}
    for name, ds in (("synthetic", None), ("digits", a.digits)):
        if name == "digits" and not ds:
            continue
        for arch, widths, hidden in VARIANTS:
            key = f"{name}/{arch}{list(widths)}h{hidden}"
            if a.only and not any(key.startswith(o) for o in a.only.split(",")):
                continue
            t = time.perf_counter()
            accs = [run_one(arch, widths, hidden, s, ds, a.lr) for s in seeds]
            out[key] = {"accuracy": accs, "mean": statistics.mean(accs), "seconds": time.perf_counter() - t}
            print(key, [round(v, 4) for v in accs], round(statistics.mean(accs), 4), flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
