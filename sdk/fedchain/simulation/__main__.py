"""`python -m fedchain.simulation`: plaintext FL rounds, defense vs none, per-attack table."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..demo.report import TABLE_HEADER, table_row
from . import BaselinePolicy, FedAvg, PolicyStrategy, SimConfig, evaluate, run_simulation


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fedchain.simulation", description=__doc__)
    ap.add_argument("--hospitals", type=int, default=8)
    ap.add_argument("--malicious", type=int, default=2)
    ap.add_argument("--attack", default="scaling", help="attack name, or 'none'")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dataset", default=None, help="MedMNIST npz (default: synthetic)")
    ap.add_argument("--defense", choices=["policy", "none"], default="policy")
    ap.add_argument("--norm-factor", type=float, default=BaselinePolicy.norm_factor)
    ap.add_argument("--cosine-min", type=float, default=BaselinePolicy.cosine_min)
    ap.add_argument("--outlier-factor", type=float, default=BaselinePolicy.outlier_factor)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--report-json", default=None)
    a = ap.parse_args(argv)
    attack = None if a.attack in ("none", "") else a.attack
    cfg = SimConfig(hospitals=a.hospitals, malicious=a.malicious if attack else 0, attack=attack, rounds=a.rounds,
                    alpha=a.alpha, steps=a.steps, lr=a.lr, seed=a.seed, dataset=a.dataset)
    policy = BaselinePolicy(a.norm_factor, a.cosine_min, a.outlier_factor, max(a.malicious, 1))
    strategy = FedAvg() if a.defense == "none" else PolicyStrategy(evaluate, policy.as_dict())
    if not a.quiet:
        print(TABLE_HEADER)
    t = time.perf_counter()
    res = run_simulation(cfg, strategy, on_round=None if a.quiet else (lambda r: print(table_row(r), flush=True)))
    res.report["config"]["policy"] = policy.as_dict()
    d = res.report["detection"]
    print(f"attack={attack} defense={a.defense} final_accuracy={res.report['final_accuracy']:.4f} "
          f"tp={d['tp']} fp={d['fp']} fn={d['fn']} tn={d['tn']} seconds={time.perf_counter() - t:.1f}")
    if a.report_json:
        with open(a.report_json, "w") as fh:
            json.dump(res.report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
