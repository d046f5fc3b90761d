"""`python -m fedchain.fabricnet up|down|status|compose --dir D`: the operator entry the scripts call.

Same engine as `fedchain network up --fabric`; this entry also exposes every port and the
Compose generator.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fedchain.fabricnet import FabricNetworkError, PreflightError, down, status, up
from fedchain.fabricnet.settings import FabricSettings


def _settings(args: argparse.Namespace) -> FabricSettings:
    return FabricSettings(
        orgs=[f"Org{i + 1}" for i in range(args.orgs)], orderer_port=args.orderer_port,
        orderer_admin_port=args.orderer_admin_port, orderer_operations_port=args.orderer_operations_port,
        peer_base_port=args.peer_port, peer_port_step=args.peer_port_step,
        peer_operations_base_port=args.peer_operations_port, chaincode_port=args.chaincode_port,
        batch_timeout=args.batch_timeout, max_message_count=args.max_message_count,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedchain.fabricnet", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    parsers = {name: sub.add_parser(name, help=h) for name, h in (
        ("up", "start (or restart) a native one-host Fabric network"),
        ("down", "stop it; ledgers stay in D/ledger"),
        ("status", "processes and lifecycle state (JSON)"),
        ("compose", "write D/compose/ (docker-compose.yaml, configtx.yaml, ccaas package, setup.sh)"),
    )}
    for p in parsers.values():
        p.add_argument("--dir", default=".fedchain-fabric", help="network folder (default .fedchain-fabric)")
    d = FabricSettings()
    for name in ("up", "compose"):
        p = parsers[name]
        p.add_argument("--orgs", type=int, default=len(d.orgs), help="member organisations (new folder only)")
        p.add_argument("--orderer-port", type=int, default=d.orderer_port)
        p.add_argument("--orderer-admin-port", type=int, default=d.orderer_admin_port)
        p.add_argument("--orderer-operations-port", type=int, default=d.orderer_operations_port)
        p.add_argument("--peer-port", type=int, default=d.peer_base_port, help="peer of org i: this + step*i")
        p.add_argument("--peer-port-step", type=int, default=d.peer_port_step)
        p.add_argument("--peer-operations-port", type=int, default=d.peer_operations_base_port)
        p.add_argument("--chaincode-port", type=int, default=d.chaincode_port)
        p.add_argument("--batch-timeout", default=d.batch_timeout)
        p.add_argument("--max-message-count", type=int, default=d.max_message_count)
    parsers["compose"].add_argument("--publish", default="127.0.0.1",
                                    help="host address published ports bind to (0.0.0.0 for other hosts)")
    parsers["compose"].add_argument("--host", action="append", default=[], metavar="NAME=IP",
                                    help="extra_hosts entry for multi-host set-ups (repeatable)")
    args = parser.parse_args(argv)
    directory = Path(args.dir)

    def progress(msg: str) -> None:
        print(f"  - {msg}", file=sys.stderr, flush=True)

    try:
        if args.cmd == "up":
            up(directory, _settings(args), progress=progress)
            print(f"Fabric network ready: {directory.resolve() / 'network.json'}")
        elif args.cmd == "down":
            stopped = down(directory)
            print(f"stopped: {', '.join(stopped) or 'nothing was running'} (ledger kept)")
        elif args.cmd == "status":
            info = status(directory)
            print(json.dumps(info, indent=2))
            return 0 if info["services"] and all(s["running"] for s in info["services"].values()) else 3
        else:
            from fedchain.fabricnet.compose import write_compose

            hosts = dict(h.split("=", 1) for h in args.host)
            path = write_compose(directory, _settings(args), publish=args.publish, extra_hosts=hosts)
            print(f"compose files written: {path.parent}")
    except (PreflightError, FabricNetworkError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
