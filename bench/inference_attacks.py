"""Attack table of the inference check in the plaintext simulation: the demo's policy with the check
on vs off (docs/inference.md).

The simulation with SimConfig.inference_check (= `python -m fedchain.simulation --inference-check`)
hands each round's base model and a validation batch drawn from the public root set
(fedchain.validation_batch.draw_validation_batch, seed = round) to the verdict function,
fedchain_mpc.plaintext.evaluate: the same rules the MPC nodes run (the check's fixed-point twin). Detection = poisoned updates rejected / poisoned updates sent; honest
rejections are counted too.

Usage: python bench/inference_attacks.py [--seeds 0,1,2] [--attacks scaling,...] [--margin 0.25]
                                         [--dataset PATH] [--rounds 6] [--json PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from typing import Any

ATTACKS = ("scaling", "sign_flip", "label_flip", "gaussian", "alie", "ipm", "min_max")


def run_one(attack: str, seed: int, inference: bool, margin: float, batch: int, dataset: str | None,
            rounds: int = 6) -> dict[str, Any]:
    """One simulation: the demo's round policy, with or without the inference check."""
    from fedchain.cli.simulate import plaintext_verdicts
    from fedchain.simulation import PolicyStrategy, SimConfig, run_simulation
    from fedchain.verification.presets import PolicySettings

    cfg = SimConfig(attack=attack, seed=seed, dataset=dataset, rounds=rounds, inference_check=inference,
                    inference_batch=batch)
    settings = PolicySettings(krum_f=max(cfg.malicious, 1))

    def round_policy(ref_norm: float) -> Any:
        pol = settings.round_policy(ref_norm)
        if not inference:
            return pol
        return dataclasses.replace(pol, inference_enabled=True, inference_batch=batch, inference_margin=margin)

    t = time.perf_counter()
    res = run_simulation(cfg, PolicyStrategy(plaintext_verdicts, round_policy))
    bad = set(res.records[0].malicious)
    tp = sum(h in bad for r in res.records for h in r.rejected)
    fp = sum(h not in bad for r in res.records for h in r.rejected)
    by_inf = sum(1 for r in res.records for h, why in r.rejected.items() if why == "inference" and h in bad)
    return {"attack": attack, "seed": seed, "inference": inference, "final_accuracy": res.report["final_accuracy"],
            "poisoned_rejected": tp, "poisoned_sent": len(bad) * len(res.records),
            "poisoned_rejected_by_inference": by_inf, "honest_rejected": fp,
            "honest_sent": (cfg.hospitals - len(bad)) * len(res.records),
            "reasons": [r.rejected for r in res.records], "seconds": time.perf_counter() - t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--margin", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rows = []
    for attack in a.attacks.split(","):
        for inference in (False, True):
            runs = [run_one(attack, int(s), inference, a.margin, a.batch, a.dataset, a.rounds) for s in a.seeds.split(",")]
            rows += runs
            det = sum(r["poisoned_rejected"] for r in runs) / max(1, sum(r["poisoned_sent"] for r in runs))
            fp = sum(r["honest_rejected"] for r in runs) / max(1, sum(r["honest_sent"] for r in runs))
            by_inf = sum(r["poisoned_rejected_by_inference"] for r in runs)
            accs = [round(r["final_accuracy"], 4) for r in runs]
            print(f"| {attack} | {'on' if inference else 'off'} | {det:.0%} | {by_inf} | {fp:.1%} | "
                  f"{statistics.mean(accs):.4f} {accs} |", flush=True)
            if a.json:
                with open(a.json, "w") as fh:
                    json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
