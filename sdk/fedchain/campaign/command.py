"""Bodies of `fedchain operator run`, `fedchain reference publish`, `fedchain validation publish` and
`round create --root-data`.

Arguments and local files (root data, test data, model spec, policy) are checked before anything
touches the ledger; expected failures end in one line on stderr and an exit code:
1 (ledger, network or campaign), 2 (arguments), 3 (the ledger went backwards: refused), 130 (Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedchain.records import CLOSED, OPEN, Hyperparameters, ModelSpecRecord, RecordError, Round, RoundId


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class ArgumentProblem(ValueError):
    """A command-line argument or a local file is unusable (exit 2, nothing was sent to the ledger)."""


def _expected_errors() -> tuple[type[BaseException], ...]:
    from fedchain.fl_client import ModelIntegrityError
    from fedchain.gateway import GatewayError
    from fedchain.identity import IdentityError
    from fedchain.netconfig import NetworkConfigError

    from .driver import CampaignError

    return (CampaignError, GatewayError, NetworkConfigError, IdentityError, ModelIntegrityError, TimeoutError,
            ValueError, OSError, KeyError)


def guarded(body: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command body; expected failures become one line (no traceback) and an exit code."""
    from fedchain.data import DatasetError
    from fedchain.gateway import GatewayError
    from fedchain.gateway.watermark import LedgerRollback
    from fedchain.verification import PolicyError

    try:
        return int(body(args) or 0)
    except KeyboardInterrupt:
        say("stopped (the ledger is the record: running the command again continues from it)")
        return 130
    except (ArgumentProblem, PolicyError, DatasetError) as exc:  # local inputs: nothing was sent
        say(f"error: {exc}")
        return 2
    except LedgerRollback as exc:
        say(f"error: refusing the ledger: {exc}")
        return 3
    except _expected_errors() as exc:
        if isinstance(exc, GatewayError):
            from fedchain.gateway.errors import describe_gateway_error

            say(f"error: {describe_gateway_error(exc)}")
        else:
            say(f"error: {exc}")
        return 1


# ---------------------------------------------------------------------------- inputs
@dataclass
class RootData:
    """The root file as the operator uses it: its validation split (the pool roots are drawn from) and shape."""

    path: str
    pool: tuple[Any, Any]
    channels: int
    n_classes: int


def load_root_data(path: str) -> RootData:
    from fedchain.data import load_npz

    ds = load_npz(path)
    if len(ds.val) == 0:
        raise ArgumentProblem(f"{path}: the validation split is empty; the root set is drawn from it")
    return RootData(path, (ds.val.images, ds.val.labels), ds.channels, ds.n_classes)


def default_arch(inference_check: bool) -> str:
    """The demo CNN, or with the encrypted-inference check its MPC-friendly variant (pooling before the
    ReLU: 4x fewer secure comparisons) when this fedchain has it."""
    from fedchain.models import ARCHS

    return "cnn_pool" if inference_check and "cnn_pool" in ARCHS else "cnn"


def model_spec_from(value: str | None, root: RootData, inference_check: bool = False) -> Any:
    """--model-spec (JSON or @file), default: the demo CNN for the root data's shape (its MPC-friendly
    variant with --inference-check); checked against it."""
    from fedchain.cli.operator import json_arg
    from fedchain.models import ModelSpec

    if value is None:
        return ModelSpec(arch=default_arch(inference_check), in_channels=root.channels, n_classes=root.n_classes)
    raw = json_arg(value, "--model-spec")
    if not isinstance(raw, dict):
        raise ArgumentProblem("--model-spec must be a JSON object")
    raw = {k: v for k, v in raw.items() if k != "param_count"}
    try:
        spec = ModelSpec.from_json(raw)
    except ValueError as exc:
        raise ArgumentProblem(f"--model-spec: {exc}") from None
    check_spec_fits(spec, root)
    return spec


def check_spec_fits(spec: Any, root: RootData) -> None:
    if spec.in_channels != root.channels:
        raise ArgumentProblem(f"the model takes {spec.in_channels}-channel images, {root.path} has {root.channels}")
    if spec.n_classes < root.n_classes:
        raise ArgumentProblem(f"the model has {spec.n_classes} classes, {root.path} has labels up to "
                              f"{root.n_classes - 1}")


def _train_config(args: argparse.Namespace) -> Any:
    from fedchain.training import TrainConfig

    try:
        return TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum)
    except ValueError as exc:
        raise ArgumentProblem(str(exc)) from None


def _check_numbers(args: argparse.Namespace) -> None:
    if args.rounds < 1:
        raise ArgumentProblem("--rounds must be at least 1 (it is the last round id of the campaign)")
    if args.deadline <= 0 or args.round_timeout <= 0 or args.poll <= 0:
        raise ArgumentProblem("--deadline, --round-timeout and --poll must be positive seconds")
    if args.min_updates is not None and args.min_updates < 1:
        raise ArgumentProblem("--min-updates must be at least 1")
    if args.root_size < 2 or args.warmup_epochs < 0:
        raise ArgumentProblem("--root-size must be at least 2 and --warmup-epochs not negative")


# ---------------------------------------------------------------------------- operator run
def operator_run(args: argparse.Namespace) -> int:
    """`fedchain operator run`: the campaign's round loop against hospitals on their own machines."""
    from fedchain.campaign.args import policy_from_args

    settings, auto = policy_from_args(args)  # PolicyError: exit 2
    _check_numbers(args)
    hp = _train_config(args)
    root = load_root_data(args.root_data)
    inference = bool(getattr(args, "inference_check", False))
    spec = model_spec_from(args.model_spec, root, inference)
    if inference:
        from .args import inference_settings

        batch = int(inference_settings(args).get("inference_batch", 32))
        if batch > min(args.root_size, len(root.pool[1])):
            raise ArgumentProblem(f"inference_batch {batch}: the validation batch is drawn from the root set, which "
                                  f"has {min(args.root_size, len(root.pool[1]))} samples (--root-size, the root "
                                  "file's validation split)")
    test = None
    if args.test_data:
        from fedchain.data import load_npz

        test = load_npz(args.test_data).test
        if len(test) == 0:
            raise ArgumentProblem(f"{args.test_data}: the test split is empty")
    close_after = args.min_updates or settings.min_accepted

    from fedchain.training import set_threads

    set_threads()  # FEDCHAIN_TORCH_THREADS (default 1): references recompute bit-identically with the same count
    from fedchain.netconfig import load_network

    net = load_network(args.network)
    from .ledger import OperatorLedger

    ledger = OperatorLedger(net, args.identity)
    try:
        return _campaign(args, ledger, net, settings, auto, hp, root, spec, test, close_after)
    finally:
        ledger.close()


def _campaign(args: argparse.Namespace, ledger: Any, net: Any, settings: Any, auto: bool, hp: Any, root: RootData,
              spec: Any, test: Any, close_after: int) -> int:
    from fedchain.verification import VerificationPolicy

    from .driver import DriverSettings, RoundDriver, RoundResult
    from .genesis import initial_model, ledger_model_spec
    from .recipe import RoundMaker, RoundRecipe
    from .report import Evaluator, campaign_report, round_line, write_json

    ledger.check_ledger()
    spec = _ledger_spec(ledger_model_spec(ledger.fl), spec, explicit=args.model_spec is not None, root=root)
    from .args import inference_settings

    recipe = RoundRecipe(train=hp, seed=args.seed, policy=settings, cosine_min_auto=auto,
                         inference_check=bool(getattr(args, "inference_check", False)),
                         inference=inference_settings(args))
    maker = RoundMaker(recipe, spec, root.pool, args.root_size,
                       policy_check=lambda policy: VerificationPolicy.from_json(policy))
    head = ledger.fl.head()
    last = head.last_round_id
    say(f"operator {args.identity} on {net.directory}: the ledger is at round {last}"
        + (" (no model yet)" if head.model_hash is None else "")
        + f"; campaign: rounds 1..{args.rounds}, closing each at {close_after} update(s) or {args.deadline:g} s")
    if last > args.rounds:
        say(f"the ledger already has {last} rounds (--rounds counts every round on the ledger): nothing to do; "
            f"--rounds {last + 1} would run one more")
    evaluator = Evaluator(spec, test.images, test.labels) if test is not None else None
    timings: dict[RoundId, dict[str, float]] = {}
    config = _report_config(args, root, maker, settings, auto, close_after, net)

    def write_report() -> None:
        if args.report_json:
            write_json(args.report_json, campaign_report(ledger.fl, config, args.rounds, timings, evaluator))

    def finished(res: RoundResult) -> None:
        timings[res.round_id] = res.timings_s
        acc = evaluator(res.model_hash, res.model)[0] if evaluator is not None else None
        print(round_line(res, acc), flush=True)
        if res.note:
            say(f"warning: {res.note}")
        write_report()

    driver = RoundDriver(
        ledger, maker,
        DriverSettings(deadline_s=args.deadline, close_after=close_after,
                       min_updates=min(close_after, settings.min_accepted), round_timeout_s=args.round_timeout,
                       poll_s=args.poll),
        genesis=lambda: initial_model(spec, maker.root, args.warmup_epochs, hp, args.seed),
        on_result=finished, out=say, progress=say)
    t0 = time.perf_counter()
    driver.run(args.rounds)
    write_report()
    head = ledger.fl.head()
    say(f"campaign complete: round {min(args.rounds, head.last_round_id)} has ended; the model is round "
        f"{head.finalized_round_id}'s {(head.model_hash or '')[:16]}… ({time.perf_counter() - t0:.0f} s)"
        + (f"; report in {args.report_json}" if args.report_json else ""))
    return 0


def _ledger_spec(on_ledger: ModelSpecRecord | None, spec: Any, *, explicit: bool, root: RootData) -> Any:
    """The spec rounds are made with: the ledger's model's once there is one (a restart needs no
    --model-spec); an explicit --model-spec must agree with it."""
    from fedchain.models import ModelSpec

    if on_ledger is None:
        return spec
    try:
        theirs = ModelSpec.from_ledger(on_ledger)
    except ValueError as exc:
        raise ArgumentProblem(f"the ledger's model spec is not one this operator can train ({exc})") from None
    if explicit and theirs != spec:
        raise ArgumentProblem(f"--model-spec {spec.to_json()} differs from the ledger's model {theirs.to_json()}; "
                              "a campaign keeps its model (leave --model-spec out to use the ledger's)")
    check_spec_fits(theirs, root)
    return theirs


def _report_config(args: argparse.Namespace, root: RootData, maker: Any, settings: Any, auto: bool,
                   close_after: int, net: Any) -> dict[str, Any]:
    return {"network": str(net.directory), "network_kind": net.kind, "identity": args.identity,
            "rounds": args.rounds, "root_data": str(root.path), "root_size": maker.root.size,
            "root_sha256": maker.root.sha256, "test_data": args.test_data, "model_spec": maker.spec_json,
            "seed": args.seed, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
            "momentum": args.momentum, "warmup_epochs": args.warmup_epochs, "deadline_s": args.deadline,
            "min_updates": close_after, "round_timeout_s": args.round_timeout, "defense": settings.defense,
            "policy": settings.as_dict() | ({"cosine_min": "auto"} if auto else {}), "attack": None,
            "inference_check": bool(getattr(args, "inference_check", False)),
            "malicious": 0, "hospital_ids": None, "malicious_ids": []}


# ---------------------------------------------------------------------------- reference publish
def reference_publish(args: argparse.Namespace) -> int:
    """`fedchain reference publish`: recompute a round's declared reference from its base model and the
    root data, check it against reference_sha256, publish it."""
    from fedchain.netconfig import load_network
    from fedchain.reference import ReferenceMismatch, declared_reference
    from fedchain.training import set_threads

    if args.round < 1:
        raise ArgumentProblem("--round must be a round id (1 or more)")
    root = load_root_data(args.root_data)
    set_threads()
    net = load_network(args.network)
    from .ledger import OperatorLedger

    ledger = OperatorLedger(net, args.identity)
    try:
        ledger.check_ledger()
        rnd = ledger.fl.get_round(args.round)
        if _already_published(rnd, "reference", rnd.hyper.reference_sha256, ledger.reference_published):
            return 0
        if rnd.base_round_id is None:
            raise ValueError(f"round {rnd.round_id} is the genesis round: it has no reference")
        base = ledger.fl.get_model(rnd.base_round_id)
        if base.sha256 != rnd.base_model_hash:
            raise ValueError(f"the ledger's model of round {rnd.base_round_id} is {base.sha256}, the round's "
                             f"base is {rnd.base_model_hash}")
        say(f"round {args.round}: recomputing the reference from round {rnd.base_round_id}'s model and "
            f"{args.root_data}")
        try:
            ref = declared_reference(rnd, base.model, *root.pool)
        except ReferenceMismatch as exc:
            raise ValueError(str(exc)) from None
        ledger.publish_reference(args.round, ref.vector)
        print(f"round {args.round}: reference {ref.sha256} published ({ref.vector.size} values, "
              f"{ref.n_samples} root samples)")
        return 0
    finally:
        ledger.close()


def _already_published(rnd: Round, what: str, declared: str | None,
                       published: Callable[[RoundId], bool]) -> bool:
    """True (and says so) if the round's declared `what` (its hash `declared`) is on the ledger already; raises
    ValueError if the contract would refuse it now (the round is past CLOSED or attested)."""
    if declared and published(rnd.round_id):
        print(f"round {rnd.round_id}: {what} {declared} is already published")
        return True
    if rnd.state not in (OPEN, CLOSED) or rnd.attestations:
        raise ValueError(f"round {rnd.round_id} is {rnd.state}: a {what} is accepted only while a round is OPEN or "
                         "CLOSED before any MPC node attested it")
    return False


# ---------------------------------------------------------------------------- validation publish
def validation_publish(args: argparse.Namespace) -> int:
    """`fedchain validation publish`: redraw a round's declared validation batch from the root data (its recorded
    root set, validation_size and validation_seed), check it against validation_sha256, publish it."""
    from fedchain.netconfig import load_network
    from fedchain.validation_batch import ValidationBatchError, decode, sha256_hex

    from .validation import ValidationMismatch, declared_validation_batch

    if args.round < 1:
        raise ArgumentProblem("--round must be a round id (1 or more)")
    if (args.root_data is None) == (args.file is None):
        raise ArgumentProblem("give exactly one of --root-data F (redraw the batch) and --file F (a batch file)")
    root = load_root_data(args.root_data) if args.root_data else None
    given = None
    if args.file:
        try:
            given = Path(args.file).read_bytes()
            decode(given)  # its layout now; the round's classes and batch size below
        except OSError as exc:
            raise ArgumentProblem(f"--file {args.file}: {exc.strerror or exc}") from None
        except ValidationBatchError as exc:
            raise ArgumentProblem(f"--file {args.file}: {exc}") from None
    net = load_network(args.network)
    from .ledger import OperatorLedger

    ledger = OperatorLedger(net, args.identity)
    try:
        ledger.check_ledger()
        rnd = ledger.fl.get_round(args.round)
        want = rnd.hyper.validation_sha256
        if _already_published(rnd, "validation batch", want, ledger.validation_published):
            return 0
        if given is not None:
            if sha256_hex(given) != want:
                raise ValueError(f"{args.file} hashes to {sha256_hex(given)}; round {args.round} declares "
                                 f"validation_sha256 {want}")
            data = given
        else:
            try:
                data = declared_validation_batch(rnd, *root.pool)  # type: ignore[union-attr]
            except ValidationMismatch as exc:
                raise ValueError(str(exc)) from None
        sha = ledger.publish_validation_batch(args.round, data)
        print(f"round {args.round}: validation batch {sha} published ({len(decode(data)[1])} images, "
              f"{len(data)} bytes)")
        return 0
    finally:
        ledger.close()


def validation_for_new_round(round_id: RoundId, policy: dict[str, Any] | None, hyper: dict[str, Any],
                             root: RootData) -> tuple[dict[str, Any], bytes | None]:
    """For a round made by hand whose policy enables the encrypted-inference check: (hyperparameters with the
    validation batch declared, its bytes); unchanged and None otherwise. The batch comes from the same root set
    as the reference (the hyperparameters' root_size/root_seed)."""
    from fedchain.reference import root_for_round

    from .validation import inference_batch_of, plan_validation, validation_seed

    if not (policy or {}).get("inference_enabled"):
        return hyper, None
    if "validation_sha256" in hyper:
        raise ArgumentProblem("--root-data computes validation_sha256: leave it out of --hyperparameters")
    try:
        size = inference_batch_of(policy or {})
        data, declared = plan_validation(root_for_round(Hyperparameters.from_json(hyper), *root.pool), size,
                                         validation_seed(int(hyper.get("seed", 0)), round_id))
    except ValueError as exc:
        raise ArgumentProblem(f"validation batch: {exc}") from None
    return hyper | declared, data


# ---------------------------------------------------------------------------- round create --root-data
def reference_for_new_round(fl: Any, round_id: RoundId, model_spec: dict[str, Any], hyper: dict[str, Any] | None,
                            root: RootData, root_size: int) -> tuple[dict[str, Any], Any]:
    """(hyperparameters with reference_sha256 and everything it depends on, the reference) for a round made
    by hand on the ledger's current model: TrainConfig fields from `hyper` (defaults otherwise), its "seed"."""
    from fedchain.models import SPEC_FIELDS, ModelSpec
    from fedchain.reference import recompute_reference, reference_hyperparameters, root_set
    from fedchain.training import TrainConfig, set_threads

    hyper = dict(hyper or {})
    if "reference_sha256" in hyper:
        raise ArgumentProblem("--root-data computes reference_sha256: leave it out of --hyperparameters")
    check_spec_fits(ModelSpec.from_json({k: v for k, v in model_spec.items() if k in SPEC_FIELDS}), root)
    try:
        hp = TrainConfig.from_json({k: v for k, v in hyper.items() if k in TrainConfig.__dataclass_fields__})
    except (TypeError, ValueError) as exc:
        raise ArgumentProblem(f"--hyperparameters: {exc}") from None
    seed = int(hyper.get("seed", 0))
    head = fl.head()
    if head.finalized_round_id is None:
        raise ValueError("the ledger has no finalized model yet (no genesis model)")
    base = fl.get_model(head.finalized_round_id)
    if base.sha256 != head.model_hash:
        raise ValueError(f"the ledger's last finalized model is {base.sha256}, the head says {head.model_hash}")
    set_threads()
    chosen = root_set(*root.pool, root_size, seed=seed)
    computed = hyper | reference_hyperparameters(hp, seed, chosen, round_id)
    try:
        spec, declared = ModelSpecRecord.from_json(model_spec), Hyperparameters.from_json(computed)
    except RecordError as exc:
        raise ArgumentProblem(str(exc)) from None
    ref = recompute_reference(round_id, spec, declared, base.model, chosen)
    return computed | {"reference_sha256": ref.sha256}, ref
