"""`fedchain hospital run`: one command for a hospital to take part in training."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    hosp = sub.add_parser("hospital", help="take part in federated training as a hospital")
    hsub = hosp.add_subparsers(dest="hospital_command", metavar="ACTION", required=True)
    p = hsub.add_parser("run", help="follow RoundCreated events: train locally, share to the MPC nodes, commit",
                        description="Follow the ledger and take part in every round: fetch and hash-check the "
                                    "base model, train on the local data, secret-share the update to the MPC nodes "
                                    "(mutual TLS), commit the share hashes. Safe to stop and restart at any time: "
                                    "it never submits twice.")
    p.add_argument("--wallet", required=True, metavar="W",
                   help="wallet entry: a folder with cert.pem, key.pem, msp_id, or a name in D/wallet")
    p.add_argument("--data", required=True, metavar="PATH", help="MedMNIST-format npz; its train split is used")
    p.add_argument("--network", default=None, metavar="D",
                   help="network folder with network.json (default: $FEDCHAIN_NETWORK or .fedchain)")
    p.add_argument("--participant-id", default=None, help="id registered on the ledger (default: the wallet name)")
    p.add_argument("--rounds", type=int, default=None, metavar="N", help="exit after taking part in N rounds")
    p.add_argument("--round", type=int, default=None, metavar="R",
                   help="take part in round R only (now) instead of following events")
    p.add_argument("--state-dir", default=None,
                   help="where shares and progress are kept (default: D/hospitals/<id>)")
    p.add_argument("--no-progress", action="store_true", help="no training progress bar")
    p.set_defaults(func=_run)


def _signing_identity(net, wallet: str):
    from fedchain.identity import Wallet

    path = Path(wallet)
    if (path / "cert.pem").is_file():
        return Wallet(path.parent).get(path.name), path.name
    return net.identity(wallet), wallet


def _run(args: argparse.Namespace) -> int:
    from fedchain.data import DatasetError, load_npz
    from fedchain.gateway import GatewayError
    from fedchain.gateway.watermark import LedgerRollback
    from fedchain.hospital import HospitalClient, follow
    from fedchain.hospital.follow import ROUND_FAILURES
    from fedchain.identity import IdentityError
    from fedchain.netconfig import NetworkConfigError, load_network
    from fedchain.training import set_threads

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        net = load_network(args.network)
        ident, name = _signing_identity(net, args.wallet)
        data = load_npz(args.data)
    except (NetworkConfigError, IdentityError, DatasetError, OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    pid = args.participant_id or name
    state_dir = Path(args.state_dir) if args.state_dir else net.directory / "hospitals" / pid
    set_threads()
    try:
        client = HospitalClient(net, ident, pid, data.train.images, data.train.labels, state_dir,
                                progress=not args.no_progress)
    except (LedgerRollback, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def report(o) -> None:
        t = " ".join(f"{k}={v:.1f}s" for k, v in o.timings_s.items())
        print(f"{pid}: round {o.round_id}: {o.status} ({o.n_samples} samples) {t}", flush=True)

    try:
        if args.round is not None:
            client.check_ledger()
            client.forget_finished_rounds()
            report(client.participate(args.round))
            return 0
        print(f"{pid}: following rounds on {net.directory} (state in {state_dir})", flush=True)
        follow(client, rounds=args.rounds, stop=stop, on_outcome=report)
        return 0
    except KeyboardInterrupt:
        return 130
    except LedgerRollback as exc:
        print(f"error: refusing the ledger: {exc}", file=sys.stderr)
        return 3
    except (*ROUND_FAILURES, GatewayError, OSError) as exc:
        from fedchain.gateway.errors import describe_gateway_error

        msg = describe_gateway_error(exc) if isinstance(exc, GatewayError) else str(exc)
        print(f"error: {msg}", file=sys.stderr)
        return 1
    finally:
        client.close()
