"""Choose verification defaults from recorded rounds (a dev tool; not run by `make bench`).

1. record: plaintext FL campaigns (fedchain.simulation, the demo's data/model/training/attacks)
   aggregated under the default PolicySettings; every round's updates, sample counts, reference
   update and malicious set are saved to DIR/<dataset>-s<seed>-<attack>.npz.
2. sweep: every candidate setting is evaluated on every recorded round with the MPC nodes'
   plaintext reference (fedchain_mpc.plaintext: the same checks); prints the honest rejection rate
   (overall, and in late rounds), the poisoned detection rate per attack and the reasons.

The sweep holds each campaign's trajectory fixed (the model the default settings produced), which
is what it measures: per-round decisions on real updates, cheaply, for many settings. The chosen
defaults are then confirmed with real `fedchain demo` runs (bench/measure_detection.py).

    python bench/tune_policy.py record --out DIR --datasets synthetic,digits.npz --seeds 0,1,2 \
        --attacks none,label_flip --rounds 12
    python bench/tune_policy.py sweep --out DIR
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from fedchain.cli.simulate import plaintext_verdicts
from fedchain.simulation import PolicyStrategy, SimConfig, run_simulation
from fedchain.verification.presets import PolicySettings
from fedchain_mpc import plaintext


class Recorder(PolicyStrategy):
    """PolicyStrategy that keeps every round's inputs."""

    def __init__(self, settings: PolicySettings) -> None:
        super().__init__(plaintext_verdicts, settings.round_policy)
        self.rounds: list[dict[str, np.ndarray]] = []

    def aggregate(self, updates, n_samples, *, reference=None):  # type: ignore[override]
        self.rounds.append({"updates": np.stack(updates).astype(np.float32), "n_samples": np.array(n_samples),
                            "reference": np.asarray(reference, dtype=np.float32)})
        return super().aggregate(updates, n_samples, reference=reference)


def record(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for ds, seed, attack in itertools.product(args.datasets.split(","), args.seeds.split(","), args.attacks.split(",")):
        name = f"{Path(ds).stem}-s{seed}-{attack}.npz"
        if (out / name).exists():
            continue
        t = time.perf_counter()
        att = None if attack == "none" else attack
        cfg = SimConfig(rounds=args.rounds, seed=int(seed), attack=att, malicious=2 if att else 0,
                        dataset=None if ds == "synthetic" else ds)
        rec = Recorder(PolicySettings())
        res = run_simulation(cfg, rec)
        bad = np.array([h in set(res.records[0].malicious) for h in res.hospitals])
        acc = np.array([r.accuracy for r in res.records])
        np.savez_compressed(out / name, malicious=bad, accuracy=acc,
                            **{f"{k}_{i}": v for i, r in enumerate(rec.rounds) for k, v in r.items()})
        print(f"{name}: {len(rec.rounds)} rounds, final accuracy {acc[-1]:.3f}, {time.perf_counter() - t:.0f} s",
              flush=True)
    return 0


def load(path: Path) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    z = np.load(path)
    n = sum(1 for k in z.files if k.startswith("updates_"))
    return z["malicious"], [{k: z[f"{k}_{i}"] for k in ("updates", "n_samples", "reference")} for i in range(n)]


GRID = {
    "cosine_min": [-1.0],
    "norm_factor": [0.0, 5.0, 10.0],
    "norm_rel_factor": [4.0, 6.0, 10.0],
    "cosine_rel": [0.5, 0.7],
    "cosine_slack": [0.06, 0.1],
    "outlier_factor": [0.0, 8.0],
}


def sweep(args: argparse.Namespace) -> int:
    files = sorted(Path(args.out).glob("*.npz"))
    data = {f.stem: load(f) for f in files}
    rows = []
    for combo in itertools.product(*GRID.values()):
        s = PolicySettings(**dict(zip(GRID, combo, strict=True)))
        honest = Counter()
        late = Counter()
        poisoned: dict[str, Counter] = {}
        for stem, (bad, rounds) in data.items():
            attack = stem.rsplit("-", 1)[1]
            for r, rd in enumerate(rounds):
                pol = s.round_policy(float(np.linalg.norm(rd["reference"])))
                v, _ = plaintext.evaluate(rd["updates"].astype(np.float64), [int(x) for x in rd["n_samples"]], pol,
                                          rd["reference"].astype(np.float64), secrets.token_hex(8))
                for i, (ok, why) in enumerate(v):
                    if bad[i]:
                        poisoned.setdefault(attack, Counter())["n"] += 1
                        poisoned[attack]["caught"] += not ok
                    else:
                        honest["n"] += 1
                        honest["rej"] += not ok
                        honest[f"why:{why}"] += not ok
                        if r >= len(rounds) // 2:
                            late["n"] += 1
                            late["rej"] += not ok
        rows.append({"settings": dict(zip(GRID, combo, strict=True)),
                     "honest_rejected": honest["rej"] / max(1, honest["n"]),
                     "honest_rejected_late": late["rej"] / max(1, late["n"]),
                     "honest_reasons": {k[4:]: v for k, v in honest.items() if k.startswith("why:") and v},
                     "poisoned_caught": {a: c["caught"] / max(1, c["n"]) for a, c in poisoned.items()}})
    # first the settings that keep honest rejections at or below 5 %, best detection first
    rows.sort(key=lambda r: (r["honest_rejected"] > 0.05, -min(r["poisoned_caught"].values() or [1.0]),
                             r["honest_rejected"]))
    for r in rows[:args.top]:
        print(json.dumps(r))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--out", required=True)
    r.add_argument("--datasets", default="synthetic")
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--attacks", default="none,label_flip")
    r.add_argument("--rounds", type=int, default=12)
    s = sub.add_parser("sweep")
    s.add_argument("--out", required=True)
    s.add_argument("--top", type=int, default=25)
    s.add_argument("--json")
    args = ap.parse_args(argv)
    return record(args) if args.cmd == "record" else sweep(args)


if __name__ == "__main__":
    sys.exit(main())
