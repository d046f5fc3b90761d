"""The verification-policy flags of `fedchain demo` and `fedchain operator run`, defined once.

Each round's policy is built from these settings and the public reference update's norm
(fedchain.verification.presets.PolicySettings). Precedence: PolicySettings defaults, then `--policy`
(a JSON object of settings, inline, @file or a file path), then the flags given on the command line.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from fedchain.verification import PolicyError
from fedchain.verification.presets import DEFENSES, PolicySettings

P = PolicySettings()
# flag dest -> PolicySettings field
FLAG_FIELDS = {"defense": "defense", "norm_factor": "norm_factor", "norm_rel": "norm_rel_factor",
               "cosine_min": "cosine_min", "cosine_rel": "cosine_rel", "cosine_slack": "cosine_slack",
               "outlier_factor": "outlier_factor", "outlier_floor": "outlier_floor_factor",
               "min_accepted": "min_accepted"}
SETTING_NAMES = tuple(f.name for f in fields(PolicySettings))
# The encrypted-inference check's policy fields (VerificationPolicy) an operator may set in --policy together with
# --inference-check; copied into each round's policy as given (they do not depend on the reference)
INFERENCE_NAMES = tuple(n for n in ("inference_batch", "inference_margin", "inference_floor")
                        if n not in SETTING_NAMES)


def cosine_min_arg(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', not {value!r}") from None


def add_policy_args(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The policy flags, with PolicySettings' defaults in their help (argparse defaults stay None so
    that `--policy` can supply what the command line does not)."""
    pol = p.add_argument_group("verification policy (each round's policy is built from these and the public "
                               "reference update's norm; see docs/demo.md for the measurements behind the defaults)")
    pol.add_argument("--policy", default=None, metavar="JSON|@FILE",
                     help=f"policy settings as a JSON object, @file or file path: {', '.join(SETTING_NAMES)} "
                          "(cosine_min may be \"auto\"); flags given here override it")
    pol.add_argument("--defense", choices=list(DEFENSES), default=None,
                     help=f"mpc: the MPC nodes' checks; none: same pipeline, checks off (shows the damage) "
                          f"(default {P.defense})")
    pol.add_argument("--norm-factor", type=float, default=None, metavar="F",
                     help=f"absolute norm cap = factor x |reference|, in [0, 1000] (0 = no cap) (default {P.norm_factor})")
    pol.add_argument("--norm-rel", type=float, default=None, metavar="F",
                     help="reject |update| above this x the round's median |update| (FLAME-style), 0 (off) or in [1, 16] "
                          f"(default {P.norm_rel_factor})")
    pol.add_argument("--cosine-min", type=cosine_min_arg, default=None, metavar="C|auto",
                     help="absolute cosine floor vs. the reference, in [-1, 1] (-1 = off); 'auto' = per round from "
                          "the public root set: "
                          "clamp(a^2, 0.05, 0.2), a = agreement of updates trained on its two halves (recorded in "
                          f"the round's hyperparameters) (default {P.cosine_min})")
    pol.add_argument("--cosine-rel", type=float, default=None, metavar="F",
                     help="reject cos below this x the round's median cos minus --cosine-slack, in [0, 1] (0 = off) "
                          f"(default {P.cosine_rel})")
    pol.add_argument("--cosine-slack", type=float, default=None, metavar="S",
                     help="absolute slack of the relative cosine rule, in [0, 1] (keeps honest updates once training has "
                          f"converged and the reference carries little signal) (default {P.cosine_slack})")
    pol.add_argument("--outlier-factor", type=float, default=None, metavar="F",
                     help="Multi-Krum outlier check: reject scores above factor x median, 0 (off) or in [1, 64] (rounded to 1/16) "
                          f"(default {P.outlier_factor})")
    pol.add_argument("--outlier-floor", type=float, default=None, metavar="F",
                     help="scores of updates closer than this x |reference| always pass (nearly identical updates), in [0, 10] "
                          f"(default {P.outlier_floor_factor})")
    pol.add_argument("--min-accepted", type=int, default=None, metavar="N",
                     help="privacy floor, at least 1: no aggregate of fewer accepted updates (the round FAILS instead) "
                          f"(default {P.min_accepted})")
    pol.add_argument("--inference-check", action="store_true",
                     help="encrypted inference: the MPC nodes run every candidate model (base + update) on a public "
                          "validation batch drawn from the root set (policy.inference_batch images, published on "
                          "the ledger with each round) and reject one that loses too much accuracy, reason "
                          "'inference'; a new campaign then uses the MPC-friendly model (arch cnn_pool) by default "
                          "(default: off)")
    return pol


def _policy_file(value: str) -> dict[str, Any]:
    """@file or an existing file path: its text; anything else is inline JSON."""
    text = value.strip()
    path = Path(text[1:]) if text.startswith("@") else Path(text)
    if text.startswith("@") or (not text.startswith(("{", "[")) and (path.is_file() or "/" in text)):
        try:
            text = path.read_text()
        except OSError as exc:
            raise PolicyError(f"--policy: cannot read {path} ({exc.strerror or exc})") from None
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise PolicyError(f"--policy is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise PolicyError("--policy must be a JSON object of policy settings")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        name = FLAG_FIELDS.get(name, name)
        if name in INFERENCE_NAMES:
            continue  # inference_settings() reads these
        if name not in SETTING_NAMES:
            raise PolicyError(f"--policy: unknown setting {key!r}; known: {', '.join(SETTING_NAMES + INFERENCE_NAMES)}")
        out[name] = value
    return out


def inference_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The inference_* fields of --policy (checked now, as the round policy will check them: a bad value must
    stop the command before anything starts); they need --inference-check."""
    if not getattr(args, "policy", None):
        return {}
    text = args.policy.strip()
    path = Path(text[1:]) if text.startswith("@") else Path(text)
    raw = json.loads(path.read_text() if (text.startswith("@") or (not text.startswith(("{", "[")) and
                                                                  (path.is_file() or "/" in text))) else text)
    chosen = {str(k).replace("-", "_"): v for k, v in raw.items() if str(k).replace("-", "_") in INFERENCE_NAMES}
    if chosen and not getattr(args, "inference_check", False):
        raise PolicyError(f"--policy: {', '.join(sorted(chosen))} set(s) the encrypted-inference check, which "
                          "needs --inference-check")
    if chosen:
        from fedchain.verification import VerificationPolicy

        try:
            VerificationPolicy(inference_enabled=True, **chosen)
        except TypeError as exc:
            raise PolicyError(f"--policy: {exc}") from None
        except PolicyError as exc:
            raise PolicyError(f"--policy: {exc}") from None
    return chosen


def policy_from_args(args: argparse.Namespace) -> tuple[PolicySettings, bool]:
    """(validated settings, cosine_min is 'auto'); raises PolicyError with a one-line message."""
    chosen: dict[str, Any] = _policy_file(args.policy) if getattr(args, "policy", None) else {}
    flagged: dict[str, str] = {}  # setting -> "--flag value" as typed, to name it in an error
    for dest, name in FLAG_FIELDS.items():
        value = getattr(args, dest, None)
        if value is not None:
            chosen[name] = value
            flagged[name] = f"--{dest.replace('_', '-')} {value}"
    if getattr(args, "inference_check", False) and chosen.get("defense") == "none":
        raise PolicyError("--inference-check needs --defense mpc: the check runs among the MPC nodes' checks, "
                          "which --defense none turns off")
    inference_settings(args)  # PolicyError now rather than at the first round
    auto = chosen.get("cosine_min") == "auto"
    if auto:
        chosen["cosine_min"] = 0.0
    try:
        return PolicySettings(**chosen), auto
    except TypeError as exc:  # a wrong type in the file
        raise PolicyError(f"--policy: {exc}") from None
    except PolicyError as exc:
        fallback = "--policy" if getattr(args, "policy", None) else "policy"
        raise PolicyError(f"{_source_of(str(exc), flagged, fallback)}: {exc}") from None


def _source_of(message: str, flagged: dict[str, str], fallback: str) -> str:
    """Which input a PolicySettings message is about: the flag that set the setting it names, else --policy
    (the defaults are valid, so a bad value came from a flag or from the file)."""
    for name in sorted(flagged, key=len, reverse=True):  # norm_rel_factor before norm_factor
        if message.startswith(name):
            return flagged[name]
    return fallback


def add_training_args(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The round's training hyperparameters and the operator's public data settings (TrainConfig's defaults)."""
    from fedchain.train_config import TrainConfig

    t = TrainConfig()
    g = p.add_argument_group("training (recorded in each round's hyperparameters; hospitals train with them)")
    g.add_argument("--steps", type=int, default=t.steps, help="local SGD steps per round (default %(default)s)")
    g.add_argument("--batch-size", type=int, default=t.batch_size, help="(default %(default)s)")
    g.add_argument("--lr", type=float, default=t.lr, help="(default %(default)s)")
    g.add_argument("--momentum", type=float, default=t.momentum, help="(default %(default)s)")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of the genesis model, the root-set draw, the reference and the hospitals' training "
                        "(default %(default)s)")
    g.add_argument("--root-size", type=int, default=200, metavar="N",
                   help="root set: N class-balanced samples of the root file's validation split (default %(default)s)")
    g.add_argument("--warmup-epochs", type=int, default=5,
                   help="epochs the genesis model is pre-trained on the root set (default %(default)s)")
    return g
