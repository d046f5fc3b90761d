"""Every `fedchain demo` argument checked before any network is started or reused.

A mistyped value used to surface minutes later, after the network had started, as a traceback or an
IndexError (issue 12). Here each flag gets its range, the attack its declared parameters, the dataset
is loaded and its splits sized against the hospitals, and the output paths are checked; a problem is
an ArgumentProblem with one line that names the flag (the CLI prints it and exits 2).
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedchain.campaign.command import ArgumentProblem

MAX_ROUNDS = 1000  # one demo; the chaincode allows more, a typo like 6000 would run for hours
MAX_HOSPITALS = 100  # the largest N the MPC nodes are measured with (README, benchmarks)
MAX_WARMUP_EPOCHS = 1000
MAX_SEED = 2**31 - 1  # numpy and torch seeds; the synthetic generator multiplies it by 1000
PORTS_PER_NETWORK = 30  # an embedded network uses base_port .. base_port + 29


@dataclass(frozen=True)
class DatasetSummary:
    """What the report says about the data a demo trained on (issue 12: the real sizes, not the defaults)."""

    source: str  # "npz" or "synthetic"
    path: str
    n_train: int
    n_val: int
    n_test: int
    n_classes: int
    channels: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarize(data: Any, source: str) -> DatasetSummary:
    """The summary of a loaded fedchain.data.Dataset."""
    return DatasetSummary(source, str(Path(data.source).resolve()), len(data.train), len(data.val), len(data.test),
                          int(data.n_classes), int(data.channels))


def _int_range(flag: str, value: int, low: int, high: int, why: str = "") -> None:
    if not low <= value <= high:
        raise ArgumentProblem(f"{flag} must be in {low}..{high}, not {value}" + (f" ({why})" if why else ""))


def check_numbers(args: argparse.Namespace) -> None:
    """Counts, seed and data split: the plain ranges, each named by its flag (the demo and the simulation)."""
    _int_range("--rounds", args.rounds, 1, MAX_ROUNDS)
    _int_range("--hospitals", args.hospitals, 2, MAX_HOSPITALS,
               f"the checks compare updates with each other; {MAX_HOSPITALS} is the largest measured")
    _int_range("--malicious", args.malicious, 0, args.hospitals, "the last K of the --hospitals")
    _int_range("--seed", args.seed, 0, MAX_SEED)
    _int_range("--warmup-epochs", args.warmup_epochs, 0, MAX_WARMUP_EPOCHS)
    if not (math.isfinite(args.alpha) and args.alpha > 0):
        raise ArgumentProblem(f"--alpha must be a positive number (Dirichlet concentration), not {args.alpha}")


def check_port(args: argparse.Namespace) -> None:
    """--base-port leaves room for every port an embedded network takes."""
    _int_range("--base-port", args.base_port, 1024, 65535 - PORTS_PER_NETWORK + 1,
               f"the embedded network uses {PORTS_PER_NETWORK} ports from it")


def check_training(args: argparse.Namespace, batch_size: int, momentum: float) -> None:
    """--steps and --lr in the ranges of the round's TrainConfig (hospitals refuse other rounds), each named."""
    from fedchain.training import TrainConfig

    _int_range("--steps", args.steps, 1, 100_000)
    if not (math.isfinite(args.lr) and 0 < args.lr <= 10):
        raise ArgumentProblem(f"--lr must be a number in (0, 10], not {args.lr}")
    try:  # the same rules as the round record; kept in case TrainConfig grows stricter
        TrainConfig(steps=args.steps, batch_size=batch_size, lr=args.lr, momentum=momentum)
    except ValueError as exc:
        raise ArgumentProblem(f"--steps {args.steps} / --lr {args.lr}: {exc}") from None


def check_attack(args: argparse.Namespace) -> tuple[str | None, dict[str, Any]]:
    """(attack or None, its parameters); a parameter the attack does not declare, or a bad value, is refused."""
    from fedchain.attacks import AttackParamError, get_attack

    attack = None if args.attack == "none" or args.malicious == 0 else args.attack
    if attack is None:
        if args.attack_param:
            why = "--attack none" if args.attack == "none" else "--malicious 0"
            raise ArgumentProblem(f"--attack-param {args.attack_param[0]}: no hospital attacks with {why}")
        return None, {}
    try:
        return attack, get_attack(attack).parse_params(list(args.attack_param))
    except AttackParamError as exc:
        raise ArgumentProblem(str(exc)) from None
    except KeyError as exc:  # an unknown name (get_attack lists the known ones)
        raise ArgumentProblem(f"--attack: {exc.args[0]}") from None


def check_policy(args: argparse.Namespace) -> tuple[Any, bool]:
    """The verification settings (policy flags and --policy); the privacy floor must be reachable."""
    from fedchain.campaign.args import policy_from_args
    from fedchain.verification import PolicyError

    try:
        settings, auto = policy_from_args(args)
    except PolicyError as exc:
        raise ArgumentProblem(str(exc)) from None
    if settings.defense == "mpc" and args.hospitals < settings.min_accepted:
        raise ArgumentProblem(f"{args.hospitals} hospitals cannot reach the privacy floor of {settings.min_accepted} "
                              "accepted updates (--min-accepted): every round would fail")
    return settings, auto


def _writable_place(flag: str, path: Path, *, folder: bool) -> None:
    """`path` can be created or overwritten: no file where a folder must be (or vice versa), and its nearest
    existing ancestor is a folder we may write in. Nothing is created."""
    if path.exists():
        if folder and not path.is_dir():
            raise ArgumentProblem(f"{flag} {path}: exists and is not a folder")
        if not folder and path.is_dir():
            raise ArgumentProblem(f"{flag} {path}: is a folder, expected a file path")
        target = path if folder else path.parent
        if not os.access(target, os.W_OK):
            raise ArgumentProblem(f"{flag} {path}: not writable")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ArgumentProblem(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArgumentProblem(f"{flag} {path}: cannot create it in {parent} (not writable)")


def check_paths(args: argparse.Namespace, network: Path) -> None:
    """The network folder and the report outputs, before the demo spends minutes producing them."""
    _writable_place("--network", network, folder=True)
    if args.report_dir:
        _writable_place("--report-dir", Path(args.report_dir), folder=True)
    if args.report_json:
        _writable_place("--report-json", Path(args.report_json), folder=False)


def load_dataset(path: str | None, hospitals: int, batch_size: int) -> Any:
    """The --dataset npz, loaded and checked: readable MedMNIST format, and splits large enough for the demo
    (each hospital a shard of at least one batch, a root set from the validation split, a test set)."""
    if path is None:
        return None
    from fedchain.data import DatasetError, load_npz
    from fedchain.models import ModelSpec

    try:
        data = load_npz(path)
    except DatasetError as exc:
        raise ArgumentProblem(f"--dataset {exc}") from None
    check_sizes(f"--dataset {path}", len(data.train), hospitals, batch_size)
    if len(data.val) < 2:
        raise ArgumentProblem(f"--dataset {path}: the validation split has {len(data.val)} samples; the operator's "
                              "root set (the FLTrust reference) is drawn from it and needs at least 2")
    if len(data.test) == 0:
        raise ArgumentProblem(f"--dataset {path}: the test split is empty; the demo evaluates each round's model on it")
    try:  # the model is built for the data: labels 0..n_classes-1, 1 or 3 channels
        ModelSpec(in_channels=data.channels, n_classes=data.n_classes)
    except ValueError as exc:
        raise ArgumentProblem(f"--dataset {path}: no model fits it ({exc})") from None
    return data


def check_sizes(what: str, n_train: int, hospitals: int, batch_size: int) -> None:
    """Every hospital needs a shard of at least one batch (the Dirichlet split guarantees no less)."""
    if hospitals * batch_size > n_train:
        raise ArgumentProblem(f"{what}: {n_train} training samples cannot give {hospitals} hospitals "
                              f"{batch_size} samples each (--hospitals at most {n_train // batch_size})")
