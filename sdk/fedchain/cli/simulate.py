"""`python -m fedchain.simulation`: plaintext FL rounds, defense vs none, per-attack table.

The command behind `python -m fedchain.simulation` (fedchain/simulation/__main__.py only delegates here). It
plugs the MPC nodes' plaintext reference (fedchain_mpc.plaintext, the same registered checks the nodes run) into
the simulation, with the round policies the demo's operator builds (fedchain.verification.PolicySettings).
It lives in the CLI layer because that is the only part of `fedchain` that may import `fedchain_mpc`
(DESIGN.md §1, tests/import_rules_test.py); the simulation itself takes the verdict function as a parameter
(fedchain.simulation.strategy.PolicyStrategy). Not a `fedchain` sub-command: its command line is the module's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import secrets
import sys
import time
from typing import Any

import numpy as np

from fedchain.campaign.command import ArgumentProblem
from fedchain.demo.checks import check_attack, check_numbers, check_training
from fedchain.demo.report import TABLE_HEADER, table_row
from fedchain.simulation import FedAvg, PolicyStrategy, SimConfig, run_simulation
from fedchain.verification import PolicyError, VerificationPolicy
from fedchain.verification.presets import PolicySettings


def plaintext_verdicts(updates: list[np.ndarray], n_samples: list[int], policy: Any,
                       reference: np.ndarray | None, validation: dict[str, Any] | None = None
                       ) -> list[tuple[bool, str]]:
    """The nodes' rules in plaintext, with fresh public randomness (as the joint seed would be);
    `validation` (spec, base, images, labels) feeds the inference check's fixed-point twin."""
    from fedchain_mpc import plaintext  # the CLI layer: the only place fedchain may import the node package
    from fedchain_mpc.checks import InferenceInputs

    inference = None if validation is None else InferenceInputs(**validation)
    verdicts, _ = plaintext.evaluate(np.stack(updates), n_samples, policy, reference, secrets.token_hex(16),
                                     inference=inference)
    return verdicts


def main(argv: list[str] | None = None) -> int:
    d = PolicySettings()
    ap = argparse.ArgumentParser(prog="python -m fedchain.simulation", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--hospitals", type=int, default=8)
    ap.add_argument("--malicious", type=int, default=2)
    ap.add_argument("--attack", default="scaling", help="attack name, or 'none'")
    ap.add_argument("--rounds", type=int, default=SimConfig.rounds)
    ap.add_argument("--alpha", type=float, default=SimConfig.alpha)
    ap.add_argument("--steps", type=int, default=SimConfig.steps, help="local SGD steps per round")
    ap.add_argument("--batch-size", type=int, default=SimConfig.batch_size)
    ap.add_argument("--lr", type=float, default=SimConfig.lr)
    ap.add_argument("--momentum", type=float, default=SimConfig.momentum)
    ap.add_argument("--warmup-epochs", type=int, default=SimConfig.warmup_epochs,
                    help="pre-train the initial model on the public root set")
    ap.add_argument("--attack-param", action="append", default=[], metavar="K=V",
                    help="attack parameter, e.g. factor=20 or epsilon=0.5 (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dataset", default=None, help="MedMNIST npz (default: synthetic)")
    ap.add_argument("--defense", choices=["mpc", "none"], default="mpc")
    ap.add_argument("--norm-factor", type=float, default=d.norm_factor)
    ap.add_argument("--norm-rel", type=float, default=d.norm_rel_factor)
    ap.add_argument("--cosine-min", type=float, default=d.cosine_min)
    ap.add_argument("--cosine-rel", type=float, default=d.cosine_rel)
    ap.add_argument("--outlier-factor", type=float, default=d.outlier_factor)
    ap.add_argument("--inference-check", action="store_true",
                    help="add the encrypted-inference check (its plaintext twin; docs/inference.md)")
    ap.add_argument("--inference-batch", type=int, default=SimConfig.inference_batch,
                    help="validation batch per round, drawn from the root set")
    ap.add_argument("--inference-margin", type=float, default=0.25,
                    help="accuracy (fraction of the batch) a candidate may lose against the base model")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--report-json", default=None)
    a = ap.parse_args(argv)
    if a.attack == "":
        a.attack = "none"
    try:  # the demo's argument rules (ranges, TrainConfig, the attack's declared parameters): one line, exit 2
        check_numbers(a)
        check_training(a, a.batch_size, a.momentum)
        attack, attack_params = check_attack(a)
    except ArgumentProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        settings = PolicySettings(defense=a.defense, norm_factor=a.norm_factor, norm_rel_factor=a.norm_rel,
                                  cosine_min=a.cosine_min, cosine_rel=a.cosine_rel, outlier_factor=a.outlier_factor,
                                  krum_f=max(a.malicious, 1))
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.inference_check and a.defense == "none":
        print("error: --inference-check needs --defense mpc (the check runs after the range check)", file=sys.stderr)
        return 2
    round_policy = settings.round_policy
    if a.inference_check:
        try:
            VerificationPolicy(inference_enabled=True, inference_batch=a.inference_batch,
                               inference_margin=a.inference_margin)
        except PolicyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

        def round_policy(reference_norm: float) -> VerificationPolicy:
            return dataclasses.replace(settings.round_policy(reference_norm), inference_enabled=True,
                                       inference_batch=a.inference_batch, inference_margin=a.inference_margin)
    cfg = SimConfig(hospitals=a.hospitals, malicious=a.malicious if attack else 0, attack=attack, rounds=a.rounds,
                    alpha=a.alpha, steps=a.steps, batch_size=a.batch_size, lr=a.lr, momentum=a.momentum,
                    warmup_epochs=a.warmup_epochs, seed=a.seed, dataset=a.dataset,
                    attack_params=attack_params,
                    inference_check=a.inference_check, inference_batch=a.inference_batch)
    strategy = FedAvg() if a.defense == "none" else PolicyStrategy(plaintext_verdicts, round_policy)
    if not a.quiet:
        print(TABLE_HEADER)
    t = time.perf_counter()
    res = run_simulation(cfg, strategy, on_round=None if a.quiet else (lambda r: print(table_row(r), flush=True)))
    res.report["config"]["policy_settings"] = settings.as_dict()
    det = res.report["detection"]
    print(f"attack={attack} defense={a.defense} final_accuracy={res.report['final_accuracy']:.4f} "
          f"tp={det['tp']} fp={det['fp']} fn={det['fn']} tn={det['tn']} seconds={time.perf_counter() - t:.1f}")
    if a.report_json:
        with open(a.report_json, "w") as fh:
            json.dump(res.report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
