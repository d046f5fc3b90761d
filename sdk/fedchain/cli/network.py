"""`fedchain network up|status|down|enroll`: run the embedded network (or real Fabric) in the background."""

from __future__ import annotations

import argparse
import json
import sys

from fedchain.netconfig import network_dir


def register(sub: argparse._SubParsersAction) -> None:
    net = sub.add_parser(
        "network",
        help="start, inspect and stop a network on this machine",
        description="The embedded network (default) is a small Fabric-protocol network in a few local "
        "processes: devnet (gateway, peers, orderer), the fedchain chaincode server and the MPC nodes. "
        "Everything listens on 127.0.0.1; state lives in the network folder (default .fedchain/).",
    )
    nsub = net.add_subparsers(dest="network_command", metavar="ACTION", required=True)

    def with_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--dir", default=None, help="network folder (default: $FEDCHAIN_NETWORK or .fedchain)")
        return p

    up = with_dir(nsub.add_parser("up", help="start the network in the background; returns when it is ready"))
    up.add_argument("--base-port", type=int, default=7050,
                    help="first of the ports used (gateway = base+1, chaincode = base+2, MPC intake = base+10.., "
                    "MPC parties = base+20..); only used when the folder is new (default 7050)")
    up.add_argument("--orgs", type=int, default=3, help="member organisations for a new network (default 3)")
    up.add_argument("--policy", default="MAJORITY",
                    help="endorsement policy: MAJORITY (default), ANY, ALL or a comma list of MSP ids")
    up.add_argument("--no-mpc", action="store_true", help="ledger only, without MPC nodes")
    up.add_argument("--min-accepted", type=_positive, default=3, metavar="N",
                    help="the consortium's privacy floor for a new ledger: no round may aggregate fewer accepted "
                         "updates (default 3; the aggregate of one update is that update)")
    up.add_argument("--fabric", action="store_true",
                    help="bring up a REAL Hyperledger Fabric 2.5 network from native binaries "
                    "(needs FABRIC_BIN, FABRIC_CFG, FABRIC_CCAAS_BUILDER; see network/fabric/README.md)")
    up.set_defaults(func=_up)

    st = with_dir(nsub.add_parser("status", help="which services run, and the ledger height"))
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=_status)

    down = with_dir(nsub.add_parser("down", help="stop every service (the ledger stays on disk)"))
    down.set_defaults(func=_down)

    enroll = with_dir(nsub.add_parser("enroll", help="issue a new identity into the wallet (operator task)"))
    enroll.add_argument("name", help="wallet entry name, e.g. hospital4")
    enroll.add_argument("--role", required=True, choices=["hospital", "mpc_node", "auditor", "operator"])
    enroll.add_argument("--org", default=None, help="MSP id of the issuing organisation (default: the first)")
    enroll.set_defaults(func=_enroll)


def _progress(msg: str) -> None:
    print(f"  - {msg}", file=sys.stderr, flush=True)


def _is_fabric(directory) -> bool:
    """A real-Fabric folder has fabric.json from its first `up`, even if network.json was never written."""
    return (directory / "fabric.json").is_file()


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value!r}")
    return n


def _up(args: argparse.Namespace) -> int:
    directory = network_dir(args.dir)
    if args.fabric:
        return _up_fabric(args, directory)
    from fedchain.netctl.embedded import EmbeddedNetwork, EmbeddedSettings
    from fedchain.netctl.process import ServiceError

    settings = EmbeddedSettings(
        base_port=args.base_port, orgs=[f"Org{i + 1}" for i in range(args.orgs)],
        endorsement_policy=args.policy, with_mpc=not args.no_mpc, min_accepted=args.min_accepted,
    )
    net = EmbeddedNetwork(directory, settings)
    print(f"starting the embedded network in {net.layout.root}", file=sys.stderr)
    try:
        net.up(progress=_progress)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"network ready: {net.layout.root / 'network.json'}")
    return 0


def _up_fabric(args: argparse.Namespace, directory) -> int:
    """Real Fabric from native binaries, then the same MPC nodes and bootstrap as the embedded network."""
    from fedchain import fabricnet
    from fedchain.netctl import embedded_configs
    from fedchain.netctl.embedded import EmbeddedNetwork, EmbeddedSettings
    from fedchain.netctl.process import python_module

    orgs = [f"Org{i + 1}" for i in range(args.orgs)]
    settings = fabricnet.FabricSettings(orgs=orgs)
    # MPC ports come from --base-port (default 7050: intake 7060.., parties 7070..), clear of Fabric's ports
    mpc = EmbeddedNetwork(directory, EmbeddedSettings(base_port=args.base_port, orgs=orgs,
                                                      with_mpc=not args.no_mpc, min_accepted=args.min_accepted))
    try:
        if not fabricnet.FabricNetwork(directory, settings).status()["services"]:
            # first start: refuse before writing anything when a binary, config or port is missing
            from fedchain.fabricnet.preflight import preflight

            preflight(settings, fabricnet.FabricTools.from_env())
        consortium = fabricnet.FabricNetwork(directory, settings).consortium()
        entries = embedded_configs.write_mpc_configs(mpc, consortium) if not args.no_mpc else []
        extras = [fabricnet.ExtraService(f"mpc{i}", python_module("fedchain_mpc", "--config",
                                                                  str(mpc.layout.mpc / f"node{i}.json")))
                  for i in range(len(entries))]
        fabricnet.up(directory, settings, progress=_progress, extra_services=extras, mpc_nodes=entries,
                     bootstrap=lambda _d: embedded_configs.bootstrap_ledger(mpc))
    except (fabricnet.PreflightError, fabricnet.FabricNetworkError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"real Fabric network ready: {directory / 'network.json'}")
    return 0


def _status(args: argparse.Namespace) -> int:
    directory = network_dir(args.dir)
    if _is_fabric(directory):
        from fedchain import fabricnet

        info = fabricnet.status(directory)
        info["ledger"] = _ledger_height(directory)
    else:
        from fedchain.netctl.embedded import EmbeddedNetwork

        info = {"services": EmbeddedNetwork(directory).status()}
        info["ledger"] = _ledger_height(directory)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for name, svc in info.get("services", {}).items():
            state = f"running (pid {svc['pid']})" if svc.get("running") else "stopped"
            print(f"{name:10s} {state}")
        if info.get("ledger"):
            print(f"ledger     {info['ledger']}")
    services = info.get("services", {})
    return 0 if services and all(s.get("running") for s in services.values()) else 3


def _ledger_height(directory) -> str | None:
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
    directory = network_dir(args.dir)
    if _is_fabric(directory):
        from fedchain import fabricnet

        fabricnet.down(directory)
        print("real Fabric network stopped (ledger kept)")
        return 0
    from fedchain.netctl.embedded import EmbeddedNetwork

    stopped = EmbeddedNetwork(directory).down()
    print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'} (ledger kept in {directory})")
    return 0


def _enroll(args: argparse.Namespace) -> int:
    from fedchain.identity import Consortium, Wallet
    from fedchain.netctl.layout import NetworkLayout

    lay = NetworkLayout(network_dir(args.dir).resolve())
    consortium = Consortium.load(lay.crypto)
    org = args.org or consortium.orgs[0].msp_id
    wallet = Wallet(lay.wallet)
    if wallet.exists(args.name):
        print(f"error: {args.name} is already in the wallet", file=sys.stderr)
        return 1
    ident = consortium.enroll(org, args.name, args.role)
    wallet.put(args.name, ident)
    print(f"enrolled {args.name} ({args.role}, {org}): {lay.wallet / args.name}")
    return 0
