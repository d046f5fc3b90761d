"""`fedchain network up|status|down|enroll|compose`: one command set over every network backend.

The backend (embedded devnet, real Fabric from native binaries, Fabric in Docker Compose) is
chosen when a folder is first brought up and remembered there; afterwards every command
works on the folder the same way (fedchain.netctl.backend). Expected failures (a missing
network, a taken port, an unknown org) print one line and exit 1 or 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fedchain.netconfig import network_dir

LABELS = {"devnet": "embedded network", "fabric": "real Fabric network (native)",
          "compose": "real Fabric network (Docker Compose)"}
EMBEDDED_BASE_PORT = 7050


def register(sub: argparse._SubParsersAction) -> None:
    net = sub.add_parser(
        "network",
        help="start, inspect and stop a network on this machine",
        description="The embedded network (default) is a small Fabric-protocol network in a few local "
        "processes: devnet (gateway, peers, orderer), the fedchain chaincode server and the MPC nodes. "
        "--fabric runs real Hyperledger Fabric 2.5 from its release binaries instead, --compose in Docker "
        "Compose; every kind gives the same network.json, wallet and MPC nodes. State lives in the network "
        "folder (default .fedchain/); listeners bind 127.0.0.1 unless --hosts places the parts on their own "
        "hosts (docs/deploy.md).",
    )
    nsub = net.add_subparsers(dest="network_command", metavar="ACTION", required=True)

    def with_network(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--network", "--dir", dest="network", metavar="D", default=None,
                       help="network folder (default: $FEDCHAIN_NETWORK or .fedchain); --dir is an alias")
        return p

    up = with_network(nsub.add_parser(
        "up", help="start the network in the background (or whatever part of it is down); returns when ready",
        description="Starts a new network, a stopped one, or only the components of a running one that are "
                    "down (e.g. one crashed MPC node). Settings are chosen at a folder's first `up` and kept."))
    kind = up.add_mutually_exclusive_group()
    kind.add_argument("--fabric", action="store_true",
                      help="a REAL Hyperledger Fabric 2.5 network from native binaries (needs FABRIC_BIN; "
                           "see network/fabric/README.md)")
    kind.add_argument("--compose", action="store_true",
                      help="a REAL Fabric network in Docker Compose on this host (generates D/compose/ if missing)")
    up.add_argument("--base-port", type=int, default=None,
                    help=f"first port of a new network. Embedded (default {EMBEDDED_BASE_PORT}): gateway = base+1, "
                         "chaincode = base+2, MPC intake = base+10.., MPC parties = base+20... Fabric: every listener "
                         "in a block from base (default: Fabric's usual ports)")
    up.add_argument("--orgs", type=_positive, default=None, help="member organisations of a new network (default 3)")
    up.add_argument("--policy", default=None,
                    help="endorsement policy of the FL chaincode: MAJORITY (default), ANY, ALL or a comma list of "
                         "MSP ids that must all endorse (on Fabric: the chaincode definition's policy)")
    up.add_argument("--no-mpc", action="store_true", help="ledger only, without MPC node processes")
    up.add_argument("--min-accepted", type=_positive, default=None, metavar="N",
                    help="the consortium's privacy floor for a new ledger: no round may aggregate fewer accepted "
                         "updates (default 3; the aggregate of one update is that update)")
    up.add_argument("--hosts", metavar="FILE", default=None,
                    help="JSON placing the ledger, the chaincode server and each MPC node on its own host "
                         '(e.g. {"ledger": "10.0.0.1", "mpc": ["10.0.1.1", "10.0.2.1", "10.0.3.1"]}): each listener '
                         "binds that address and network.json, node configs and TLS SANs carry it (embedded "
                         "network, new folder; docs/deploy.md)")
    up.add_argument("--only", metavar="NAMES", default=None, type=_names,
                    help="start only these components on this host, comma-separated: chaincode, devnet, mpc0, mpc1, "
                         "... (a multi-host deployment runs each part on its own host)")
    from fedchain.fabricnet.options import add_fabric_options

    add_fabric_options(up)
    up.set_defaults(func=_up)

    st = with_network(nsub.add_parser("status", help="each component's state, and the ledger height"))
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=_status)

    down = with_network(nsub.add_parser("down", help="stop every component (ledgers and identities stay on disk)"))
    down.add_argument("--only", metavar="NAMES", default=None, type=_names,
                      help="stop only these components (embedded network; comma-separated, as for `up --only`)")
    down.set_defaults(func=_down)

    enroll = with_network(nsub.add_parser("enroll", help="issue a new identity into the wallet (operator task)"))
    enroll.add_argument("name", help="wallet entry name, e.g. hospital4")
    enroll.add_argument("--role", required=True, choices=["hospital", "mpc_node", "auditor", "operator"])
    enroll.add_argument("--org", default=None, help="MSP id of the issuing organisation (default: the first)")
    enroll.set_defaults(func=_enroll)

    comp = with_network(nsub.add_parser(
        "compose", help="write Docker Compose files for a real Fabric network (D/compose/)",
        description="Generates D/compose/: docker-compose.yaml (orderer, a peer and a chaincode service per org, "
                    "the MPC nodes, a cli container), configtx.yaml, ccaas packages, MPC node configs and "
                    "setup.sh. Run them with `fedchain network up --network D` (one host) or per host by "
                    "compose profile (network/fabric/README.md)."))
    comp.add_argument("--base-port", type=int, default=None, help="every listener in a block from this port")
    comp.add_argument("--orgs", type=_positive, default=None, help="member organisations (default 3)")
    comp.add_argument("--policy", default=None, help="endorsement policy, as for `up`")
    comp.add_argument("--no-mpc", action="store_true", help="no MPC node services")
    comp.add_argument("--min-accepted", type=_positive, default=None, metavar="N", help="privacy floor (default 3)")
    comp.add_argument("--publish", default="127.0.0.1",
                      help="host address published ports bind to (0.0.0.0 for other hosts)")
    comp.add_argument("--host", action="append", default=[], metavar="NAME=IP",
                      help="extra_hosts entry for multi-host set-ups (repeatable)")
    add_fabric_options(comp)
    comp.set_defaults(func=_compose)


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value!r}")
    return n


def _names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected component names, e.g. devnet,chaincode or mpc1")
    return names


def _progress(msg: str) -> None:
    print(f"  - {msg}", file=sys.stderr, flush=True)


def _error(msg: str, code: int = 1) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


# --- up ----------------------------------------------------------------------------------
def _given_settings(args: argparse.Namespace) -> list[str]:
    from fedchain.fabricnet.options import given_fabric_options

    given = [f"--{k.replace('_', '-')}" for k in ("base_port", "orgs", "policy", "min_accepted", "hosts")
             if getattr(args, k, None) is not None]
    return given + (["--no-mpc"] if args.no_mpc else []) + given_fabric_options(args)


def _new_backend(args: argparse.Namespace, directory: Path, kind: str) -> Any:
    """The backend for a new folder, with the settings the options ask for (ValueError if they are invalid)."""
    from fedchain.netctl.policy import parse_policy

    orgs = [f"Org{i + 1}" for i in range(args.orgs or 3)]
    policy = args.policy or "MAJORITY"
    parse_policy(policy, [f"{o}MSP" for o in orgs])
    min_accepted = args.min_accepted or 3
    if kind == "devnet":
        from fedchain.fabricnet.options import given_fabric_options
        from fedchain.netctl.embedded import EmbeddedNetwork, EmbeddedSettings
        from fedchain.netctl.hosts import HostMap

        if given_fabric_options(args):
            raise ValueError(f"{', '.join(given_fabric_options(args))} only apply with --fabric or --compose")
        hosts = HostMap.load(args.hosts).to_json() if args.hosts else {}
        settings = EmbeddedSettings(
            base_port=args.base_port or EMBEDDED_BASE_PORT, orgs=orgs, endorsement_policy=policy,
            with_mpc=not args.no_mpc, min_accepted=min_accepted, hosts=hosts)
        settings.validate()
        return EmbeddedNetwork(directory, settings, only=args.only)
    if args.hosts or args.only:
        raise ValueError("--hosts and --only apply to the embedded network (Fabric: network/fabric/README.md)")
    from fedchain.fabricnet.options import fabric_settings

    settings = fabric_settings(args, orgs=orgs, base_port=args.base_port, with_mpc=not args.no_mpc,
                               min_accepted=min_accepted, policy=policy, mode=kind if kind == "compose" else "native")
    settings.validate()
    if kind == "compose":
        from fedchain.fabricnet.compose import write_compose
        from fedchain.fabricnet.compose_run import ComposeNetwork

        write_compose(directory, settings)
        return ComposeNetwork(directory)
    from fedchain.fabricnet.native import FabricNetwork

    return FabricNetwork(directory, settings)


def _up(args: argparse.Namespace) -> int:
    from fedchain.gateway import GatewayError
    from fedchain.netctl.backend import detect_kind, open_backend
    from fedchain.netctl.process import NetworkError

    directory = network_dir(args.network).resolve()
    existing = detect_kind(directory)
    asked = "fabric" if args.fabric else "compose" if args.compose else None
    if existing and asked and existing != asked:
        return _error(f"{directory} already holds the {LABELS[existing]}; `fedchain network up --network "
                      f"{args.network or directory}` restarts it (without --{asked}), or choose another folder", 2)
    kind = existing or asked or "devnet"
    if args.only and kind != "devnet":
        return _error("--only applies to the embedded network", 2)
    try:
        backend = open_backend(directory) if existing else _new_backend(args, directory, kind)
        if existing and args.only:
            backend.only = args.only
    except ValueError as exc:
        return _error(str(exc), 2)
    except NetworkError as exc:
        return _error(str(exc))
    print(f"starting the {LABELS[kind]} in {directory}", file=sys.stderr)
    if existing and _given_settings(args):
        _progress(f"existing network: its settings stay as chosen at its first `up` ({', '.join(_given_settings(args))}"
                  " ignored)")
    try:
        backend.up(progress=_progress)
    except NetworkError as exc:
        return _error(str(exc))
    except GatewayError as exc:  # the consortium bootstrap talks to the ledger
        return _error(f"the ledger refused the consortium bootstrap: {exc}")
    print(f"network ready: {directory / 'network.json'}")
    return 0


# --- status / down -----------------------------------------------------------------------
def _status(args: argparse.Namespace) -> int:
    from fedchain.netctl.backend import detect_kind, open_backend
    from fedchain.netctl.process import NetworkError

    directory = network_dir(args.network).resolve()
    kind = detect_kind(directory)
    info: dict[str, Any] = {"kind": kind, "directory": str(directory), "services": {}}
    if kind is None:
        if args.json:
            print(json.dumps(info, indent=2))
        print(f"no network in {directory}: start one with `fedchain network up --network {args.network or directory}`",
              file=sys.stderr)
        return 3
    backend = open_backend(directory)
    try:
        info["services"] = backend.status()
    except NetworkError as exc:
        return _error(str(exc))
    if kind == "fabric":
        info["fabric"] = backend.lifecycle()
    running = [n for n, s in info["services"].items() if s["running"]]
    info["ledger"] = _ledger_height(directory) if running else None
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_status(info, args.network or str(directory))
    return 0 if info["services"] and len(running) == len(info["services"]) else 3


def _print_status(info: dict[str, Any], where: str) -> None:
    print(f"{LABELS[info['kind']]} in {info['directory']}")
    width = max(len(n) for n in info["services"]) if info["services"] else 10
    for name, svc in info["services"].items():
        if svc["running"]:
            state = f"running (pid {svc['pid']})" if svc.get("pid") else "running"
        elif svc["state"] == "exited":
            state = f"EXITED (it stopped on its own; see {svc['log']})"
        else:
            state = "stopped"
        print(f"  {name:{width}s}  {svc.get('kind', ''):9s}  {state}")
    if info.get("ledger"):
        print(f"  {'ledger':{width}s}  {'':9s}  {info['ledger']}")
    down = [n for n, s in info["services"].items() if not s["running"]]
    if down and len(down) < len(info["services"]):
        print(f"{len(down)} component(s) down ({', '.join(down)}): `fedchain network up --network {where}` restarts "
              "only those")


def _ledger_height(directory: Path) -> str | None:
    """Height and head hash through the gateway (qscc GetChainInfo), as any client would see it."""
    try:
        from fabric_protos.common import ledger_pb2

        from fedchain.netconfig import load_network

        cfg = load_network(directory)
        with cfg.connect("operator") as gw:
            raw = gw.network(cfg.channel).contract("qscc").evaluate("GetChainInfo", cfg.channel)
        info = ledger_pb2.BlockchainInfo.FromString(raw)
        return f"height {info.height}, head {info.currentBlockHash.hex()[:16]}…"
    except Exception as exc:  # status must not crash on a half-up network
        return f"unreachable ({type(exc).__name__}: {exc})"


def _down(args: argparse.Namespace) -> int:
    from fedchain.netctl.backend import detect_kind, open_backend
    from fedchain.netctl.process import NetworkError

    directory = network_dir(args.network).resolve()
    kind = detect_kind(directory)
    if kind is None:
        print(f"nothing to stop: no network in {directory}")
        return 0
    try:
        backend = open_backend(directory)
        if args.only:
            if kind != "devnet":
                return _error("--only applies to the embedded network", 2)
            backend.only = args.only
        stopped = backend.down()
    except NetworkError as exc:
        return _error(str(exc))
    print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'} (ledger kept in {directory})")
    return 0


# --- enroll ------------------------------------------------------------------------------
def _enroll(args: argparse.Namespace) -> int:
    from fedchain.identity import Consortium, IdentityError, Wallet
    from fedchain.netctl.layout import NetworkLayout

    lay = NetworkLayout(network_dir(args.network).resolve())
    if not (lay.crypto / "consortium.json").is_file():
        return _error(f"no network in {lay.root}: start one with `fedchain network up --network "
                      f"{args.network or lay.root}` (or point --network at an existing network folder)")
    consortium = Consortium.load(lay.crypto)
    orgs = {o.msp_id: o.msp_id for o in consortium.orgs} | {o.name: o.msp_id for o in consortium.orgs}
    if args.org is not None and args.org not in orgs:
        return _error(f"unknown organisation {args.org!r}; this consortium has "
                      f"{', '.join(o.msp_id for o in consortium.orgs)}", 2)
    org = orgs[args.org] if args.org else consortium.orgs[0].msp_id
    wallet = Wallet(lay.wallet)
    try:
        if wallet.exists(args.name):
            return _error(f"{args.name} is already in the wallet")
        ident = consortium.enroll(org, args.name, args.role)
    except (ValueError, IdentityError) as exc:  # a name the wallet or the CA refuses
        return _error(str(exc), 2)
    wallet.put(args.name, ident)
    print(f"enrolled {args.name} ({args.role}, {org}): {lay.wallet / args.name}")
    return 0


# --- compose -----------------------------------------------------------------------------
def _compose(args: argparse.Namespace) -> int:
    from fedchain.netctl.backend import detect_kind
    from fedchain.netctl.process import NetworkError

    directory = network_dir(args.network).resolve()
    kind = detect_kind(directory)
    if kind in ("devnet", "fabric"):
        return _error(f"{directory} already holds the {LABELS[kind]}; generate Compose files in another folder", 2)
    try:
        hosts = dict(_host_entry(h) for h in args.host)
        from fedchain.fabricnet.compose import write_compose
        from fedchain.fabricnet.options import fabric_settings

        orgs = [f"Org{i + 1}" for i in range(args.orgs or 3)]
        settings = fabric_settings(args, orgs=orgs, base_port=args.base_port, with_mpc=not args.no_mpc,
                                   min_accepted=args.min_accepted or 3, policy=args.policy or "MAJORITY",
                                   mode="compose")
        path = write_compose(directory, settings, publish=args.publish, extra_hosts=hosts)
    except ValueError as exc:
        return _error(str(exc), 2)
    except NetworkError as exc:
        return _error(str(exc))
    print(f"compose files written: {path.parent} (start them: `fedchain network up --network "
          f"{args.network or directory}`, or per host: network/fabric/README.md)")
    return 0


def _host_entry(text: str) -> tuple[str, str]:
    name, sep, ip = text.partition("=")
    if not sep or not name or not ip:
        raise ValueError(f"--host takes NAME=IP, not {text!r}")
    return name, ip
