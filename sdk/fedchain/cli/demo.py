"""`fedchain demo`: the whole system on one machine — secure rounds, poisoned hospitals caught.

Every argument is checked (fedchain.demo.checks) before a network is started or reused: a mistake is
one `error: ...` line and exit code 2. SIGTERM is handled like Ctrl-C: the network the demo started
is stopped again.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from fedchain.campaign.args import add_policy_args, inference_settings
from fedchain.campaign.command import ArgumentProblem
from fedchain.demo.config import DemoConfig

D = DemoConfig()

EXAMPLES = """examples:
  fedchain demo                                   8 hospitals, 2 scaling attackers, 6 rounds (= make demo)
  fedchain demo --attack sign_flip --defense none show the damage without the MPC checks
  fedchain demo --attack gaussian --attack-param factor=5
  fedchain demo --dataset digits.npz --rounds 3   real images (fedchain data digits --out digits.npz)
  fedchain demo --network D --keep-network        use (or start) the network in D and leave it up

attack parameters (--attack-param NAME=VALUE):
{params}

exit codes: 0 done, 1 the run failed (network, ledger, MPC), 2 a bad argument (nothing was started),
130 Ctrl-C, 143 SIGTERM (both stop the network the demo started)."""


def _attack_params_help() -> str:
    """One line per attack parameter: what `--attack-param` accepts (the registry's declarations)."""
    from fedchain.attacks import ATTACKS

    lines = []
    for a in ATTACKS.values():
        if not a.params:
            lines.append(f"  {a.name:<11} (none)")
        for i, (name, p) in enumerate(a.params.items()):
            lines.append(f"  {a.name if i == 0 else '':<11} {name}: {p.meaning}; {p.rule()} (default {p.default})")
    return "\n".join(lines)


DESCRIPTION = """\
Start the embedded network if none is running in --network D, enrol simulated
hospitals (each with its own identity, talking only to the gateway and the MPC
nodes), run R secure rounds with the last K hospitals poisoning, print a live
per-round table and write a report folder (JSON, Markdown, PNG plots). Every
argument is checked before anything starts. Step by step: docs/demo.md."""


def register(sub: argparse._SubParsersAction) -> None:
    from fedchain.attacks import ATTACKS

    p = sub.add_parser(
        "demo", help="run federated rounds end to end on the embedded network (or --network D)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=DESCRIPTION,
        epilog=EXAMPLES.format(params=_attack_params_help()))
    p.error = _one_line_error(p)  # type: ignore[method-assign]
    g = p.add_argument_group("campaign")
    g.add_argument("--rounds", type=int, default=D.rounds, metavar="R",
                   help="rounds to run (1..1000); on a reused network R more rounds (default %(default)s)")
    g.add_argument("--hospitals", type=int, default=D.hospitals, metavar="N",
                   help="simulated hospitals, hospital1..N (2..100, and every one needs a shard of at least one "
                        "batch, 64 samples) (default %(default)s)")
    g.add_argument("--malicious", type=int, default=D.malicious, metavar="K",
                   help="how many hospitals poison: the last K ids (0..N) (default %(default)s)")
    g.add_argument("--attack", default=D.attack, choices=[*ATTACKS, "none"],
                   help="poisoning attack of the malicious hospitals; 'none' = every hospital honest "
                        "(default %(default)s)")
    g.add_argument("--attack-param", action="append", default=[], metavar="NAME=VALUE",
                   help="a parameter of the chosen attack, e.g. factor=5; repeatable; the attacks' parameters are "
                        "listed below (default: the attack's own defaults)")
    g.add_argument("--seed", type=int, default=D.seed, metavar="S",
                   help="seed of the data, the split, the genesis model and the training (0..2^31-1) "
                        "(default %(default)s)")
    d = p.add_argument_group("data and training")
    d.add_argument("--dataset", default=None, metavar="NPZ",
                   help="MedMNIST-format npz (train_/val_/test_ images and labels); the model is built for its "
                        "channels and classes (default: synthetic data, cached in D/data)")
    d.add_argument("--alpha", type=float, default=D.alpha, metavar="A",
                   help="Dirichlet non-IID concentration of the hospitals' shards, > 0 (smaller = more skewed) "
                        "(default %(default)s)")
    d.add_argument("--steps", type=int, default=D.steps, metavar="N", help="local SGD steps per round (1..100000) "
                                                                "(default %(default)s)")
    d.add_argument("--lr", type=float, default=D.lr, metavar="LR", help="learning rate, in (0, 10] (default %(default)s)")
    d.add_argument("--warmup-epochs", type=int, default=D.warmup_epochs, metavar="E",
                   help="epochs the operator pre-trains the genesis model on the public root set (0..1000) "
                        "(default %(default)s)")
    add_policy_args(p)
    n = p.add_argument_group("network and output")
    n.add_argument("--network", default=None, metavar="D",
                   help="network folder: use the network running there (embedded or real Fabric), or start the "
                        "embedded one there (default: $FEDCHAIN_NETWORK or .fedchain)")
    n.add_argument("--base-port", type=int, default=7050, metavar="PORT",
                   help="first of the 30 ports of a newly started embedded network (1024..65506; the next free "
                        "block of 100 is taken if busy) (default %(default)s)")
    n.add_argument("--keep-network", action="store_true",
                   help="leave a network the demo started running (default: stop it at the end)")
    n.add_argument("--report-json", default=None, metavar="PATH",
                   help="also write the report JSON here (default: only in the report folder)")
    n.add_argument("--report-dir", default=None, metavar="DIR",
                   help="report folder: report.json, report.md, accuracy.png, decisions.png, audit/ "
                        "(default: reports/demo-<time>)")
    p.set_defaults(func=_demo)


def _one_line_error(parser: argparse.ArgumentParser) -> Callable[[str], NoReturn]:
    """argparse's error without the long usage block: one line, exit 2 (issue 12)."""
    def error(message: str) -> NoReturn:
        parser.exit(2, f"error: {message} (see {parser.prog} --help)\n")
    return error


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so every clean-up path runs the same way."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the demo runs, SIGTERM stops it as Ctrl-C does; a second SIGTERM cannot cut the clean-up short."""
    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _sigterm_deferred() -> Iterator[None]:
    """Clean-up (stopping the network) runs to its end; a SIGTERM meanwhile is raised as Terminated after it."""
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
    if received:
        raise Terminated()


def _free_base_port(base_port: int) -> int:
    """The first block of 30 free ports from base_port on, in steps of 100."""
    from fedchain.demo.checks import PORTS_PER_NETWORK
    from fedchain.netctl.process import port_is_free

    base = base_port
    while not all(port_is_free("127.0.0.1", base + k) for k in range(PORTS_PER_NETWORK)):
        base += 100
        if base + PORTS_PER_NETWORK > 65536:
            raise RuntimeError(f"no {PORTS_PER_NETWORK} free ports from {base_port} on; choose another --base-port")
    if base != base_port:
        _say(f"ports {base_port}.. are busy; using {base}..")
    return base


def _ensure_network(directory: Path, base_port: int, starting: Callable[[Any], None]):
    """The network config; `starting(net)` is told about a network the demo starts before it starts, so that a
    stop (Ctrl-C, SIGTERM) during the start still stops it.

    A running network (any backend) is used as is; a partly running one gets what is down started (e.g. a
    crashed MPC node) and stays up; a stopped one is started; a new folder gets an embedded network on free ports.
    """
    from fedchain.netconfig import load_network
    from fedchain.netctl.backend import detect_kind, open_backend
    from fedchain.netctl.embedded import EmbeddedNetwork, EmbeddedSettings

    kind = detect_kind(directory)
    if kind is None and (directory / "network.json").is_file():
        return load_network(directory)  # a network run elsewhere: use as is

    def progress(msg: str) -> None:
        _say(f"  - {msg}")

    if kind is not None:
        net = open_backend(directory)
        status = net.status()
        if status and all(s["running"] for s in status.values()):
            _say(f"using the network running in {directory}")
            return load_network(directory)
        if any(s["running"] for s in status.values()):
            _say(f"the network in {directory} is partly running: starting what is down")
            net.up(progress=progress)
            return load_network(directory)
    else:
        net = EmbeddedNetwork(directory, EmbeddedSettings(base_port=_free_base_port(base_port)))
    _say(f"starting the network in {directory}")
    starting(net)
    t0 = time.perf_counter()
    net.up(progress=progress)
    _say(f"network up in {time.perf_counter() - t0:.1f} s")
    return load_network(directory)


def _policy_check():
    try:
        from fedchain.verification import VerificationPolicy
    except ImportError:  # hospitals-only install: the ledger's MPC nodes will judge the policy
        return None
    return lambda policy: VerificationPolicy.from_json(policy)


def demo_config(args: argparse.Namespace, network: Path) -> tuple[DemoConfig, Any]:
    """(config, the --dataset loaded or None) from the arguments, every one checked; ArgumentProblem otherwise.

    Nothing is created or started here: a mistake costs no network start (issue 12)."""
    from fedchain.demo import checks

    checks.check_numbers(args)
    checks.check_port(args)
    checks.check_training(args, D.batch_size, D.momentum)
    attack, params = checks.check_attack(args)
    settings, auto = checks.check_policy(args)
    checks.check_paths(args, network)
    data = checks.load_dataset(args.dataset, args.hospitals, D.batch_size)
    if data is None:
        checks.check_sizes("synthetic data", D.n_train, args.hospitals, D.batch_size)
    cfg = DemoConfig(rounds=args.rounds, hospitals=args.hospitals, malicious=args.malicious if attack else 0,
                     attack=attack, attack_params=params, defense=settings.defense, dataset=args.dataset,
                     seed=args.seed, alpha=args.alpha, steps=args.steps, lr=args.lr, warmup_epochs=args.warmup_epochs,
                     policy=settings, cosine_min_auto=auto, inference_check=bool(args.inference_check),
                     inference=inference_settings(args))
    if data is not None:  # its own sizes, not the synthetic defaults
        cfg = replace(cfg, n_train=len(data.train), n_test=len(data.test))
    if cfg.inference_check:
        _check_inference_batch(cfg, data)
    return cfg, data


def _check_inference_batch(cfg: DemoConfig, data: Any) -> None:
    """The validation batch is drawn from the root set (root_size samples of the validation split): it must
    hold policy.inference_batch samples, or the first round would fail after the network started."""
    from fedchain.campaign.command import ArgumentProblem

    batch = int(cfg.inference.get("inference_batch", 32))
    root = min(cfg.root_size, len(data.val)) if data is not None else cfg.root_size
    if batch > root:
        raise ArgumentProblem(f"--policy inference_batch {batch}: the validation batch is drawn from the root set, "
                              f"which has {root} samples here")


def _demo(args: argparse.Namespace) -> int:
    from fedchain.netconfig import network_dir

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("fedchain.hospital").setLevel(logging.WARNING)  # the live table says it all
    directory = network_dir(args.network).resolve()
    try:
        cfg, data = demo_config(args, directory)
    except ArgumentProblem as exc:
        _say(f"error: {exc}")
        return 2
    try:
        with _sigterm_as_interrupt():
            return _run(args, cfg, data, directory)
    except Terminated:
        _say("stopped by SIGTERM")
        return 143


def _run(args: argparse.Namespace, cfg: DemoConfig, data: Any, directory: Path) -> int:
    """Network, hospitals, rounds, report; the network the demo started is stopped on every way out."""
    from fedchain.demo.report import TABLE_HEADER, table_row
    from fedchain.demo.rounds import Demo
    from fedchain.training import set_threads

    set_threads()  # FEDCHAIN_TORCH_THREADS, default 1: measured 2x faster than 2 threads on a busy 2-core box
    t0 = time.perf_counter()
    started: list[Any] = []
    demo = None
    try:
        net = _ensure_network(directory, args.base_port, started.append)
        demo = Demo(cfg, net, out=_say, policy_check=_policy_check(), data=data)
        demo.check_network_model()  # a reused network's model must fit the data: before the table starts
        _say(f"{cfg.hospitals} hospitals, malicious: {cfg.malicious} ({cfg.attack or 'no attack'}), "
             f"defense: {cfg.defense}, {cfg.rounds} rounds")
        print(TABLE_HEADER, flush=True)
        report = demo.run(on_round=lambda r: print(table_row(r), flush=True))
    except Terminated:
        raise
    except KeyboardInterrupt:
        return 130
    except ArgumentProblem as exc:  # the arguments do not fit the network that is there (e.g. its model)
        _say(f"error: {exc}")
        return 2
    except Exception as exc:  # one clear line; details in the network's logs
        from fedchain.gateway import GatewayError
        from fedchain.gateway.errors import describe_gateway_error

        msg = describe_gateway_error(exc) if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}"
        _say(f"error: {msg}")
        return 1
    finally:
        with _sigterm_deferred():
            if demo is not None:
                demo.close()
            if started and not args.keep_network:
                started[0].down()
                _say("stopped the network the demo started")
    report["wall_time_s"] = round(time.perf_counter() - t0, 2)
    _write_outputs(args, demo, report)
    return 0


def _write_outputs(args: argparse.Namespace, demo: Any, report: dict[str, Any]) -> None:
    """Report folder (+ audit), --report-json, and the closing summary line."""
    from fedchain.demo.report import write_report_folder

    folder = Path(args.report_dir or f"reports/demo-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    write_report_folder(folder, report, demo.ids)
    if demo.audit_report is not None:
        from fedchain.audit.report import write_audit_report

        write_audit_report(demo.audit_report, folder / "audit")
    a = report["audit"]
    _say(f"audit: {a['blocks']} blocks, {a['transactions']} transactions re-validated from block 0 "
         f"(signatures, policy, MVCC replay, round protocol): "
         + ("OK" if a["ok"] else f"{len(a['findings'])} finding(s), see {folder / 'audit' / 'audit.md'}"))
    if args.report_json:
        Path(args.report_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report_json).write_text(json.dumps(report, indent=2) + "\n")
    print(_summary(report, folder))


def _summary(report: dict[str, Any], folder: Path) -> str:
    """The closing line; a run that finished no round (a dispute stopped it) says so instead of failing on None."""
    d = report["detection"]
    final = report.get("final_accuracy")
    acc = (f"final accuracy {final * 100:.1f}% (start {report['initial_accuracy'] * 100:.1f}%)" if final is not None
           else "no round finished")
    return (f"{acc}; poisoned updates rejected {d['tp']}/{d['tp'] + d['fn']}, honest rejected "
            f"{d['fp']}/{d['fp'] + d['tn']}; {report['wall_time_s']:.0f} s; report in {folder}/")
