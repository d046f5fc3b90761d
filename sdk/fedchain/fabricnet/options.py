"""Command-line options of a real Fabric network, shared by `fedchain network up --fabric`,
`fedchain network compose` and `network/fabric/scripts/network.sh`, so every entry point
accepts the same flags and builds the same FabricSettings from them.

Every option defaults to None ("not given"): the CLI can then tell a choice the operator made
from a default, and say which choices an existing network (whose settings are fixed at its
first `up`) ignores.
"""

from __future__ import annotations

import argparse

from fedchain.fabricnet.settings import FabricSettings

# option -> FabricSettings field
PORT_OPTIONS = {
    "orderer_port": "orderer_port", "orderer_admin_port": "orderer_admin_port",
    "orderer_operations_port": "orderer_operations_port", "peer_port": "peer_base_port",
    "peer_port_step": "peer_port_step", "peer_operations_port": "peer_operations_base_port",
    "chaincode_port": "chaincode_port", "mpc_port": "mpc_intake_port", "mpc_party_port": "mpc_party_port",
}
TUNING_OPTIONS = {"batch_timeout": "batch_timeout", "max_message_count": "max_message_count"}


def add_fabric_options(parser: argparse.ArgumentParser) -> None:
    d = FabricSettings()
    g = parser.add_argument_group(
        "real Fabric ports and tuning (--fabric / --compose)",
        "defaults: Fabric's usual ports (orderer 7050, peers 7051/8051/9051, ...; MPC nodes 7060.., 7070..); "
        "with --base-port B every listener moves into a block from B (see network/fabric/README.md, Ports); "
        "a port option given here overrides both")
    g.add_argument("--orderer-port", type=int, help=f"orderer (default {d.orderer_port})")
    g.add_argument("--orderer-admin-port", type=int, help=f"orderer admin, osnadmin (default {d.orderer_admin_port})")
    g.add_argument("--orderer-operations-port", type=int,
                   help=f"orderer metrics/health (default {d.orderer_operations_port})")
    g.add_argument("--peer-port", type=int, help=f"peer of org i: this + step*i (default {d.peer_base_port})")
    g.add_argument("--peer-port-step", type=int, help=f"(default {d.peer_port_step})")
    g.add_argument("--peer-operations-port", type=int, help=f"peer of org i: this + i (default "
                                                             f"{d.peer_operations_base_port})")
    g.add_argument("--chaincode-port", type=int, help=f"chaincode server of org i: this + i (default {d.chaincode_port})")
    g.add_argument("--mpc-port", type=int, help=f"share intake of MPC node i: this + i (default {d.mpc_intake_port})")
    g.add_argument("--mpc-party-port", type=int, help=f"MPyC party of node i: this + i (default {d.mpc_party_port})")
    g.add_argument("--batch-timeout", help=f"orderer BatchTimeout (default {d.batch_timeout})")
    g.add_argument("--max-message-count", type=int, help=f"orderer MaxMessageCount (default {d.max_message_count})")


def given_fabric_options(args: argparse.Namespace) -> list[str]:
    """The Fabric-only options the operator typed (as --flags)."""
    return [f"--{k.replace('_', '-')}" for k in (*PORT_OPTIONS, *TUNING_OPTIONS) if getattr(args, k, None) is not None]


def fabric_settings(args: argparse.Namespace, *, orgs: list[str], base_port: int | None, with_mpc: bool,
                    min_accepted: int, policy: str, mode: str = "native") -> FabricSettings:
    """FabricSettings from the parsed options: Fabric's defaults, or the block from base_port, then each port given."""
    chosen = {field: getattr(args, opt) for opt, field in {**PORT_OPTIONS, **TUNING_OPTIONS}.items()
              if getattr(args, opt, None) is not None}
    common = {"orgs": orgs, "with_mpc": with_mpc, "min_accepted": min_accepted, "endorsement_policy": policy,
              "mode": mode}
    if base_port is not None:
        return FabricSettings.from_base_port(base_port, **common, **chosen)
    return FabricSettings(**common, **chosen)  # type: ignore[arg-type]
