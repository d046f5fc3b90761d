"""Config files of the embedded network: the devnet's, the chaincode server's TLS, node.json, network.json.

Kept apart from embedded.py (the processes) because it is where the consortium meets the file formats of
the programs the network runs. The arrow goes one way: embedded.py builds a `ConfigPlan` of plain values and
calls `write_all`; this module never sees an EmbeddedNetwork.

The devnet is spoken to through its config file (format version 1, documented in fedchain_devnet.config),
never by import: DESIGN.md §1 lets only the CLI layer (fedchain.cli) import fedchain_devnet, and the
processes are started from here, by tests and by the CLI alike. It is the same contract as the MPC nodes'
node.json (netctl.mpc). tests/netctl_devnet_config_test.py checks that `devnet_config` writes exactly what
fedchain_devnet.config.make_devnet_config writes, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedchain.identity import Consortium
from fedchain.netconfig import write_network
from fedchain.netctl.hosts import HostMap, endpoint
from fedchain.netctl.layout import NetworkLayout
from fedchain.netctl.mpc import MPCPlan, write_json, write_node_configs
from fedchain.netctl.policy import parse_policy

CHANNEL = "fedchain"
CHAINCODE = "fedchain"

# fedchain_devnet.config's format version and the defaults it writes for what the embedded network leaves alone
DEVNET_CONFIG_VERSION = 1
_MiB = 1024 * 1024
DEVNET_PREFERRED_MAX_BYTES = 2 * _MiB
DEVNET_MAX_MESSAGE_BYTES = 16 * _MiB
DEVNET_CONNECT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ConfigPlan:
    """What the config files need from an embedded network's settings (EmbeddedNetwork.config_plan)."""

    layout: NetworkLayout
    hosts: HostMap
    gateway_port: int
    chaincode_port: int
    endorsement_policy: str
    batch_timeout_ms: int
    max_message_count: int
    mpc: MPCPlan | None  # None: a network without MPC nodes


def devnet_chaincode(name: str, address: str, policy: str | list[str], tls_root_cert: str | None = None,
                     client_cert: str | None = None, client_key: str | None = None) -> dict[str, Any]:
    """One `chaincodes` entry of devnet.json (fedchain_devnet.config.ChaincodeDef's fields, in its order)."""
    return {"name": name, "address": address, "policy": policy, "tls_root_cert": tls_root_cert, "server_name": None,
            "client_cert": client_cert, "client_key": client_key, "connect_timeout_s": DEVNET_CONNECT_TIMEOUT_S}


def devnet_config(consortium: Consortium, data_dir: Path, listen: str, chaincodes: list[dict[str, Any]], *,
                  batch_timeout_ms: int, max_message_count: int) -> dict[str, Any]:
    """devnet.json's contents: the gateway of the consortium's first org on `listen`, blocks in `data_dir`."""
    return {
        "version": DEVNET_CONFIG_VERSION,
        "channel": CHANNEL,
        "listen": listen,
        "data_dir": str(Path(data_dir).resolve()),
        "crypto_dir": str(Path(consortium.crypto_dir).resolve()),
        "gateway_org": consortium.orgs[0].msp_id,
        "tls": {"cert": None, "key": None, "client_auth": False},
        "orderer": {"batch_timeout_ms": batch_timeout_ms, "max_message_count": max_message_count,
                    "preferred_max_bytes": DEVNET_PREFERRED_MAX_BYTES},
        "max_message_bytes": DEVNET_MAX_MESSAGE_BYTES,
        "chaincodes": chaincodes,
    }


def write_all(plan: ConfigPlan, consortium: Consortium) -> None:
    """devnet.json, the chaincode server's TLS pair, node.json per MPC node, network.json."""
    lay, hosts = plan.layout, plan.hosts
    org1 = consortium.orgs[0]
    cc_cert, cc_key = consortium.issue_tls(org1.msp_id, "chaincode", hosts=hosts.chaincode.sans())
    tls_dir = lay.root / "chaincode-tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    links = [(cc_cert, "server.crt"), (cc_key, "server.key")]
    client: dict[str, str] = {}
    if not hosts.is_loopback:
        # the chaincode server is reachable from other hosts: it takes only the devnet's TLS client certificate
        cl_cert, cl_key = consortium.issue_tls(org1.msp_id, "devnet-client", hosts=hosts.ledger.sans())
        links.append((org1.tls_ca_cert_path, "client-ca.crt"))
        client = {"client_cert": str(cl_cert), "client_key": str(cl_key)}
    for src, name in links:
        target = tls_dir / name
        if not target.exists():
            target.symlink_to(src)
    policy = parse_policy(plan.endorsement_policy, [o.msp_id for o in consortium.orgs])
    chaincodes = [devnet_chaincode(CHAINCODE, endpoint(hosts.chaincode.address, plan.chaincode_port), policy,
                                   tls_root_cert=str(org1.tls_ca_cert_path), **client)]
    cfg = devnet_config(consortium, lay.ledger, endpoint(hosts.ledger.bind, plan.gateway_port), chaincodes,
                        batch_timeout_ms=plan.batch_timeout_ms, max_message_count=plan.max_message_count)
    if not hosts.is_loopback:  # the gateway's certificate names the ledger's host (as well as peer0.org1...)
        gw_cert, gw_key = consortium.issue_tls(org1.msp_id, "gateway",
                                               hosts=(*hosts.ledger.sans(), org1.node_name))
        cfg["tls"].update(cert=str(gw_cert), key=str(gw_key))
    write_json(lay.root / "devnet.json", cfg)
    mpc_nodes = write_node_configs(lay.root, consortium, plan.mpc) if plan.mpc is not None else []
    write_network_json(plan, consortium, mpc_nodes)


def write_network_json(plan: ConfigPlan, consortium: Consortium, mpc_nodes: list[dict]) -> Path:
    """D/network.json: what every client of the embedded network reads (fedchain.netconfig)."""
    lay = plan.layout
    org1 = consortium.orgs[0]
    return write_network(
        lay.root,
        {
            "kind": "devnet",
            "channel": CHANNEL,
            "chaincode": CHAINCODE,
            "gateway": {
                "endpoint": endpoint(plan.hosts.ledger.address, plan.gateway_port),
                "tls_root_cert": lay.rel(org1.tls_ca_cert_path),
                "server_name": org1.node_name,
            },
            "mpc_nodes": mpc_nodes,
            "orgs": [{"msp_id": o.msp_id, "tls_root_cert": lay.rel(o.tls_ca_cert_path)} for o in consortium.orgs],
            "wallet": "wallet",
            "crypto": "crypto",
        },
    )
