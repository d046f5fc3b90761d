"""The MPC nodes of a network: where they listen, their node.json files, their processes.

The same for every backend (embedded, Fabric native, Fabric Compose): only the ledger under
them differs, so the nodes' configuration is generated here once. Node i is run by org
i mod n (each node by a different organisation, as the wallet's mpc0.. identities are).
It starts `python -m fedchain_mpc` by module name and talks to the nodes through node.json and their READY
line; it never imports `fedchain_mpc` (DESIGN.md §1: only fedchain.cli may; tests/import_rules_test.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedchain.identity import Consortium, Org
from fedchain.netctl.hosts import HostAddress, endpoint
from fedchain.netctl.process import Service, python_module

THRESHOLD = 1  # Shamir degree t: any 2 of 3 nodes reconstruct, 1 alone learns nothing


@dataclass(frozen=True)
class MPCPlan:
    """How many nodes and on which ports: node i's share intake on intake_base + i, its MPyC party on party_base + i."""

    nodes: int
    intake_base: int
    party_base: int
    host: str = "127.0.0.1"
    threshold: int = THRESHOLD
    hosts: tuple[HostAddress, ...] = ()  # node i's own host (netctl.hosts); else every node on `host`

    def host_of(self, i: int) -> HostAddress:
        """Where node i is reached and what its listeners bind."""
        return self.hosts[i] if i < len(self.hosts) else HostAddress(self.host, self.host)

    def intake_port(self, i: int) -> int:
        return self.intake_base + i

    def party_port(self, i: int) -> int:
        return self.party_base + i

    def ports(self) -> dict[str, int]:
        out = {f"mpc{i} intake": self.intake_port(i) for i in range(self.nodes)}
        return out | {f"mpc{i} MPyC party": self.party_port(i) for i in range(self.nodes)}


def node_name(i: int) -> str:
    return f"mpc{i}"


def node_org(consortium: Consortium, i: int) -> Org:
    return consortium.orgs[i % len(consortium.orgs)]


def config_path(mpc_dir: Path, i: int) -> Path:
    return mpc_dir / f"node{i}.json"


def network_entries(plan: MPCPlan, consortium: Consortium, root: Path, host: str | None = None) -> list[dict]:
    """The `mpc_nodes` of network.json: where hospitals send shares (paths relative to root)."""
    return [{
        "index": i, "id": node_name(i), "endpoint": endpoint(host or plan.host_of(i).address, plan.intake_port(i)),
        "tls_root_cert": str(node_org(consortium, i).tls_ca_cert_path.resolve().relative_to(root.resolve())),
        "msp_id": node_org(consortium, i).msp_id,
    } for i in range(plan.nodes)]


def node_config(i: int, plan: MPCPlan, files: dict[str, str], peers: list[dict], *, listen_host: str | None = None,
                party_hosts: list[str] | None = None) -> dict[str, Any]:
    """One node.json (fedchain_mpc.config format). `files` maps tls_cert, tls_key, party_cert, party_key,
    party_ca, wallet, crypto_dir, network, data_dir, reference_dir to the paths the node sees."""
    # others dial node j's advertised address; node i's own entry is what its MPyC listener binds
    hosts = party_hosts or [plan.host_of(j).bind if j == i else plan.host_of(j).address for j in range(plan.nodes)]
    return {
        "node_index": i,
        "node_id": node_name(i),
        "listen": endpoint(listen_host or plan.host_of(i).bind, plan.intake_port(i)),
        "tls": {"cert": files["tls_cert"], "key": files["tls_key"]},
        "identity": {"wallet": files["wallet"], "name": node_name(i)},
        "crypto_dir": files["crypto_dir"],
        "network": files["network"],
        "data_dir": files["data_dir"],
        "peers": peers,
        "mpc": {
            "parties": [endpoint(hosts[j], plan.party_port(j)) for j in range(plan.nodes)],
            "threshold": plan.threshold,
            "ssl": {"cert": files["party_cert"], "key": files["party_key"], "ca": files["party_ca"]},
            "timeout_s": 600,
            "retries": 3,
            "backoff_s": 2,
        },
        "l": 32,
        "f": 16,
        "reference_dir": files["reference_dir"],
    }


def party_tls(consortium: Consortium, i: int, folder: Path) -> tuple[Path, Path]:
    """MPyC party i's TLS pair (issued once, from its org's TLS CA): (cert, key)."""
    from fedchain.identity import issue_party_tls

    cert, key = folder / f"party_{i}.crt", folder / f"party_{i}.key"
    if not cert.exists():
        issue_party_tls(consortium, node_org(consortium, i).msp_id, i, folder)
    return cert, key


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def write_node_configs(root: Path, consortium: Consortium, plan: MPCPlan) -> list[dict]:
    """D/mpc/node<i>.json for a network whose nodes run on this host; returns network.json's `mpc_nodes`."""
    root = root.resolve()
    mpc_dir = root / "mpc"
    bundle = mpc_dir / "tls-ca-bundle.pem"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_bytes(b"".join(consortium.tls_root_pems()))
    entries = network_entries(plan, consortium, root)
    peers = [{**{k: e[k] for k in ("index", "endpoint", "id")}, "tls_root_cert": str(root / e["tls_root_cert"])}
             for e in entries]
    for i in range(plan.nodes):
        name = node_name(i)
        cert, key = consortium.issue_tls(node_org(consortium, i).msp_id, name, hosts=plan.host_of(i).sans())
        p_cert, p_key = party_tls(consortium, i, mpc_dir / name / "party-tls")
        files = {
            "tls_cert": str(cert), "tls_key": str(key), "party_cert": str(p_cert), "party_key": str(p_key),
            "party_ca": str(bundle), "wallet": str(root / "wallet"), "crypto_dir": str(root / "crypto"),
            "network": str(root), "data_dir": str(mpc_dir / name / "data"),
            "reference_dir": str(mpc_dir / name / "references"),
        }
        write_json(config_path(mpc_dir, i), node_config(i, plan, files, peers))
    return entries


def node_services(root: Path, plan: MPCPlan, command: list[str] | None = None) -> list[Service]:
    """One `python -m fedchain_mpc --config D/mpc/node<i>.json` per node (READY-line handshake).
    `command` replaces `python -m fedchain_mpc` (tests run a stand-in)."""
    root = root.resolve()
    argv = command or python_module("fedchain_mpc")
    return [Service(node_name(i), [*argv, "--config", str(config_path(root / "mpc", i))], root / "run", root / "logs",
                    ports=(plan.intake_port(i),), host=plan.host_of(i).bind)
            for i in range(plan.nodes)]
