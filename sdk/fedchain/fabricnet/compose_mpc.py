"""The MPC nodes in Compose mode: one service per node, its node.json and network.json as the container sees them.

Same nodes, ports and consortium as every other backend (netctl.mpc): node i is run by org
i mod n, listens for shares on mpc_intake_port + i and for its MPyC peers on
mpc_party_port + i, and talks to the gateway of its own org's peer. Container paths:
  /etc/hyperledger/fedchain/crypto   D/crypto (read-only): MSP roots, the node's TLS and MPyC TLS pairs
  /etc/fedchain/wallet/mpc<i>        D/wallet/mpc<i> (read-only): the node's signing identity
  /etc/fedchain/mpc                  D/compose/mpc/mpc<i> (read-only): node.json, network.json (no secrets)
  /var/fedchain/mpc                  named volume mpc<i>-data: received shares, runs, state
Every secret stays in D/crypto under the node's own org (or D/wallet), never in D/compose,
which is handed to every host.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedchain.fabricnet.settings import FabricSettings
from fedchain.identity import Consortium
from fedchain.netctl.mpc import MPCPlan, node_config, node_name, node_org, party_tls, write_json

WALLET = "/etc/fedchain/wallet"
CONFIG = "/etc/fedchain/mpc"
DATA = "/var/fedchain/mpc"
IMAGE = "fedchain/mpc-node:latest"
DOCKERFILE = "network/fabric/Dockerfile.mpc"
DOMAIN = "fedchain.local"
PathFn = Callable[[Path], str]


def node_host(i: int) -> str:
    """Container and TLS host name of MPC node i."""
    return f"{node_name(i)}.{DOMAIN}"


def _node_tls(consortium: Consortium, i: int) -> tuple[Path, Path]:
    """The node's intake TLS pair, valid for its container name as well as for 127.0.0.1 (published port)."""
    return consortium.issue_tls(node_org(consortium, i).msp_id, node_name(i),
                                hosts=("localhost", "127.0.0.1", node_host(i)))


def _party_dir(consortium: Consortium, i: int) -> Path:
    return node_org(consortium, i).path / "services" / node_name(i) / "party-tls"


def write_mpc_files(out: Path, consortium: Consortium, settings: FabricSettings, path: PathFn) -> None:
    """D/compose/mpc/mpc<i>/{node.json,network.json} for every node (container paths)."""
    plan = settings.mpc_plan()
    peers = [{"index": j, "id": node_name(j), "endpoint": f"{node_host(j)}:{plan.intake_port(j)}",
              "tls_root_cert": path(node_org(consortium, j).tls_ca_cert_path)} for j in range(plan.nodes)]
    for i in range(plan.nodes):
        cert, key = _node_tls(consortium, i)
        p_cert, p_key = party_tls(consortium, i, _party_dir(consortium, i))
        files = {
            "tls_cert": path(cert), "tls_key": path(key), "party_cert": path(p_cert), "party_key": path(p_key),
            "party_ca": path(_party_dir(consortium, i) / "mpyc_ca.crt"), "wallet": WALLET, "crypto_dir": path(
                consortium.crypto_dir), "network": CONFIG, "data_dir": f"{DATA}/data",
            "reference_dir": f"{DATA}/references",
        }
        folder = out / "mpc" / node_name(i)
        write_json(folder / "node.json", node_config(i, plan, files, peers, listen_host="0.0.0.0",
                                                     party_hosts=[node_host(j) for j in range(plan.nodes)]))
        write_json(folder / "network.json", _network_json(consortium, settings, plan, i, path))


def _network_json(consortium: Consortium, s: FabricSettings, plan: MPCPlan, i: int, path: PathFn) -> dict[str, Any]:
    """What node i reads to reach the ledger: the gateway of its own org's peer, by container name."""
    org = node_org(consortium, i)
    k = consortium.orgs.index(org)
    return {
        "version": 1, "kind": "fabric", "channel": s.channel, "chaincode": s.chaincode,
        "gateway": {"endpoint": f"{org.node_name}:{s.peer_port(k)}", "tls_root_cert": path(org.tls_ca_cert_path),
                    "server_name": org.node_name},
        "mpc_nodes": [{"index": j, "id": node_name(j), "endpoint": f"{node_host(j)}:{plan.intake_port(j)}",
                       "tls_root_cert": path(node_org(consortium, j).tls_ca_cert_path),
                       "msp_id": node_org(consortium, j).msp_id} for j in range(plan.nodes)],
        "crypto": path(consortium.crypto_dir),
    }


def mpc_services(consortium: Consortium, settings: FabricSettings, common: Callable[[list[str]], dict[str, Any]],
                 crypto_volume: str, publish: str, source: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(services, named volumes) of the MPC nodes; profiles `mpc` (all nodes) and `mpc<i>` (one node's host)."""
    plan = settings.mpc_plan()
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    image: dict[str, Any] = {"image": IMAGE}
    if source:
        image["build"] = {"context": str(source), "dockerfile": DOCKERFILE}
    for i in range(plan.nodes):
        name = node_name(i)
        volumes[f"{name}-data"] = {}
        services[name] = {
            **common(["mpc", name]),
            **image,
            "container_name": node_host(i),
            "hostname": node_host(i),
            "command": ["--config", f"{CONFIG}/node.json"],
            "volumes": [crypto_volume, f"../wallet/{name}:{WALLET}/{name}:ro", f"./mpc/{name}:{CONFIG}:ro",
                        f"{name}-data:{DATA}"],
            "ports": [f"{publish}:{p}:{p}" for p in (plan.intake_port(i), plan.party_port(i))],
        }
        image = {"image": IMAGE}  # built once, by the first node's service
    return services, volumes
