"""Environment of each Fabric node and of the admin CLI: Fabric's own override mechanism.

Fabric reads core.yaml / orderer.yaml and lets CORE_* / ORDERER_* variables override any
scalar key, so the sample configs from the release stay untouched and everything that
differs per node (addresses, MSP, TLS, ledger folders) is explicit here. Lists that env
cannot express well (the external builders) are patched into a per-peer copy of core.yaml.
`path` maps a host path to the path the node sees (identity in native mode, container
paths in compose mode).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from fedchain.fabricnet.settings import FabricSettings
from fedchain.identity import Org

PathFn = Callable[[Path], str]


def _identity(p: Path) -> str:
    return str(p)


def peer_env(
    org: Org,
    index: int,
    settings: FabricSettings,
    *,
    cfg_dir: Path,
    ledger_dir: Path,
    host: str | None = None,
    listen_host: str | None = None,
    path: PathFn = _identity,
) -> dict[str, str]:
    """CORE_* for peer0 of `org` (the index-th org)."""
    host = host or settings.peer_address(index)
    listen = listen_host or settings.peer_address(index)
    port, cc_port = settings.peer_port(index), settings.peer_chaincode_port(index)
    tls = org.node_dir / "tls"
    endpoint = f"{host}:{port}"
    return {
        "FABRIC_CFG_PATH": path(cfg_dir),
        "FABRIC_LOGGING_SPEC": "INFO",
        "CORE_PEER_ID": org.node_name,
        "CORE_PEER_NETWORKID": "fedchain",
        "CORE_PEER_ADDRESS": endpoint,
        "CORE_PEER_LISTENADDRESS": f"{listen}:{port}",
        "CORE_PEER_CHAINCODEADDRESS": f"{host}:{cc_port}",
        "CORE_PEER_CHAINCODELISTENADDRESS": f"{listen}:{cc_port}",
        "CORE_PEER_GOSSIP_BOOTSTRAP": endpoint,
        "CORE_PEER_GOSSIP_EXTERNALENDPOINT": endpoint,  # needed for cross-org discovery (gateway)
        "CORE_PEER_GOSSIP_ENDPOINT": endpoint,
        "CORE_PEER_GOSSIP_USELEADERELECTION": "false",  # one peer per org: it pulls blocks itself
        "CORE_PEER_GOSSIP_ORGLEADER": "true",
        "CORE_PEER_LOCALMSPID": org.msp_id,
        "CORE_PEER_MSPCONFIGPATH": path(org.node_dir / "msp"),
        "CORE_PEER_FILESYSTEMPATH": path(ledger_dir),
        "CORE_PEER_TLS_ENABLED": "true",
        "CORE_PEER_TLS_CERT_FILE": path(tls / "server.crt"),
        "CORE_PEER_TLS_KEY_FILE": path(tls / "server.key"),
        "CORE_PEER_TLS_ROOTCERT_FILE": path(tls / "ca.crt"),
        "CORE_PEER_PROFILE_ENABLED": "false",
        "CORE_PEER_GATEWAY_ENABLED": "true",
        "CORE_LEDGER_STATE_STATEDATABASE": "goleveldb",
        "CORE_LEDGER_HISTORY_ENABLEHISTORYDATABASE": "true",
        "CORE_LEDGER_SNAPSHOTS_ROOTDIR": path(ledger_dir / "snapshots"),
        "CORE_VM_ENDPOINT": "",  # no Docker: chaincode runs as a service (ccaas builder)
        "CORE_CHAINCODE_MODE": "net",
        "CORE_OPERATIONS_LISTENADDRESS": f"{listen}:{settings.peer_operations_port(index)}",
        "CORE_OPERATIONS_TLS_ENABLED": "false",  # local /healthz and /metrics (the gossip readiness probe)
        "CORE_METRICS_PROVIDER": "prometheus",
    }


def orderer_env(
    org: Org,
    settings: FabricSettings,
    *,
    cfg_dir: Path,
    ledger_dir: Path,
    listen_host: str | None = None,
    path: PathFn = _identity,
) -> dict[str, str]:
    """ORDERER_* for the single etcdraft orderer with the channel participation API (no system channel)."""
    listen = listen_host or settings.orderer_address()
    tls = org.node_dir / "tls"
    tls_ca = path(tls / "ca.crt")
    return {
        "FABRIC_CFG_PATH": path(cfg_dir),
        "FABRIC_LOGGING_SPEC": "INFO",
        "ORDERER_GENERAL_LISTENADDRESS": listen,
        "ORDERER_GENERAL_LISTENPORT": str(settings.orderer_port),
        "ORDERER_GENERAL_LOCALMSPID": org.msp_id,
        "ORDERER_GENERAL_LOCALMSPDIR": path(org.node_dir / "msp"),
        "ORDERER_GENERAL_TLS_ENABLED": "true",
        "ORDERER_GENERAL_TLS_PRIVATEKEY": path(tls / "server.key"),
        "ORDERER_GENERAL_TLS_CERTIFICATE": path(tls / "server.crt"),
        "ORDERER_GENERAL_TLS_ROOTCAS": f"[{tls_ca}]",
        "ORDERER_GENERAL_CLUSTER_CLIENTCERTIFICATE": path(tls / "server.crt"),
        "ORDERER_GENERAL_CLUSTER_CLIENTPRIVATEKEY": path(tls / "server.key"),
        "ORDERER_GENERAL_CLUSTER_ROOTCAS": f"[{tls_ca}]",
        "ORDERER_GENERAL_BOOTSTRAPMETHOD": "none",
        "ORDERER_CHANNELPARTICIPATION_ENABLED": "true",
        "ORDERER_FILELEDGER_LOCATION": path(ledger_dir),
        "ORDERER_CONSENSUS_WALDIR": path(ledger_dir / "etcdraft" / "wal"),
        "ORDERER_CONSENSUS_SNAPDIR": path(ledger_dir / "etcdraft" / "snapshot"),
        "ORDERER_ADMIN_LISTENADDRESS": f"{listen}:{settings.orderer_admin_port}",
        "ORDERER_ADMIN_TLS_ENABLED": "true",
        "ORDERER_ADMIN_TLS_PRIVATEKEY": path(tls / "server.key"),
        "ORDERER_ADMIN_TLS_CERTIFICATE": path(tls / "server.crt"),
        "ORDERER_ADMIN_TLS_ROOTCAS": f"[{tls_ca}]",
        "ORDERER_ADMIN_TLS_CLIENTAUTHREQUIRED": "true",
        "ORDERER_ADMIN_TLS_CLIENTROOTCAS": f"[{tls_ca}]",
        "ORDERER_OPERATIONS_LISTENADDRESS": f"{listen}:{settings.orderer_operations_port}",
        "ORDERER_OPERATIONS_TLS_ENABLED": "false",
        "ORDERER_METRICS_PROVIDER": "prometheus",
    }


def admin_cli_env(org: Org, index: int, settings: FabricSettings, *, cfg_dir: Path,
                  host: str | None = None, path: PathFn = _identity) -> dict[str, str]:
    """The `peer` CLI acting as the org's Admin against its own peer."""
    host = host or settings.peer_address(index)
    return {
        "FABRIC_CFG_PATH": path(cfg_dir),
        "CORE_PEER_LOCALMSPID": org.msp_id,
        "CORE_PEER_MSPCONFIGPATH": path(org.user_dir("Admin") / "msp"),
        "CORE_PEER_ADDRESS": f"{host}:{settings.peer_port(index)}",
        "CORE_PEER_TLS_ENABLED": "true",
        "CORE_PEER_TLS_ROOTCERT_FILE": path(org.tls_ca_cert_path),
    }


def patched_core_yaml(sample: dict[str, Any], ccaas_builder: str) -> dict[str, Any]:
    """The release's core.yaml with our ccaas builder as the only external builder, history on, no Docker."""
    doc = dict(sample)
    chaincode = dict(doc.get("chaincode") or {})
    chaincode["externalBuilders"] = [{
        "name": "ccaas_builder",
        "path": ccaas_builder,
        "propagateEnvironment": ["CHAINCODE_AS_A_SERVICE_BUILDER_CONFIG"],
    }]
    doc["chaincode"] = chaincode
    ledger = dict(doc.get("ledger") or {})
    ledger["history"] = {**(ledger.get("history") or {}), "enableHistoryDatabase": True}
    doc["ledger"] = ledger
    vm = dict(doc.get("vm") or {})
    vm["endpoint"] = ""
    doc["vm"] = vm
    peer = dict(doc.get("peer") or {})
    peer["gateway"] = {**(peer.get("gateway") or {}), "enabled": True}
    doc["peer"] = peer
    return doc


def write_core_yaml(sample_path: Path, dest_dir: Path, ccaas_builder: str) -> Path:
    sample = yaml.safe_load(sample_path.read_text()) or {}
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / "core.yaml"
    out.write_text("# generated from " + str(sample_path) + " by fedchain.fabricnet\n"
                   + yaml.safe_dump(patched_core_yaml(sample, ccaas_builder), sort_keys=False))
    return out


def env_file(env: dict[str, str]) -> str:
    """KEY=value lines (for docs, compose env files and debugging a node by hand)."""
    return "".join(f"{k}={v}\n" for k, v in env.items())
