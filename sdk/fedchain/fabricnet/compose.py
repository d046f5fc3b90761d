"""Docker Compose mode: the same configs as native mode, for containers on one or several hosts.

`write_compose(D)` writes D/compose/: docker-compose.yaml (orderer; per org a peer and the
org's own chaincode service; the MPC nodes; a `cli` tools container), configtx.yaml with
container paths and the nodes' hostnames, one ccaas package per org pointing at that org's
chaincode service (chaincode-orgN.env holds its package id), each MPC node's node.json and
network.json (compose_mpc), and setup.sh that runs the one-time channel and lifecycle steps
inside the `cli` container. Every service has a compose profile (orderer, org1.., mpc /
mpc0.., cli) so each host starts only its own part; `extra_hosts` maps the node names to
the hosts' addresses. Published ports bind to 127.0.0.1 unless a publish address is given,
as everywhere else in fedchain. Running the files on one host: compose_run.ComposeNetwork.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from fedchain.fabricnet import ccaas, configtx, node_env
from fedchain.fabricnet.compose_mpc import mpc_services, write_mpc_files
from fedchain.fabricnet.lifecycle import definition_args
from fedchain.fabricnet.native import FabricNetworkError, chaincode_host, chaincode_service
from fedchain.fabricnet.settings import FabricSettings
from fedchain.identity import Consortium

FABRIC_VERSION = "2.5"
CRYPTO = "/etc/hyperledger/fedchain/crypto"
CONFIG = "/etc/hyperledger/fedchain/config"
LEDGER = "/var/hyperledger/production"
FABRIC_CFG = "/etc/hyperledger/fabric"  # the images' own core.yaml/orderer.yaml (ccaas builder included)
_LEDGER_MARK, _CFG_MARK = Path("/__ledger__"), Path("/__fabric_cfg__")


def _mapper(crypto_dir: Path):
    crypto_dir = crypto_dir.resolve()

    def path(p: Path) -> str:
        p = Path(p)
        for mark, target in ((_LEDGER_MARK, LEDGER), (_CFG_MARK, FABRIC_CFG)):
            if p == mark or mark in p.parents:
                return target + str(p)[len(str(mark)):]
        rel = p.resolve().relative_to(crypto_dir)
        return CRYPTO if rel == Path(".") else f"{CRYPTO}/{rel}"

    return path


def source_root() -> Path | None:
    """The fedchain checkout (for building the chaincode image), if we run from one."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "network" / "fabric" / "Dockerfile.chaincode").is_file() else None


def compose_document(consortium: Consortium, settings: FabricSettings, *, publish: str = "127.0.0.1",
                     extra_hosts: Mapping[str, str] | None = None, image_tag: str = FABRIC_VERSION,
                     source: Path | None = None) -> dict[str, Any]:
    path = _mapper(consortium.crypto_dir)
    hosts = [f"{k}:{v}" for k, v in sorted((extra_hosts or {}).items())]
    crypto_vol = f"../crypto:{CRYPTO}:ro"
    services: dict[str, Any] = {}
    orderer = consortium.orderer

    def common(profiles: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"profiles": profiles, "restart": "unless-stopped", "networks": ["fedchain"]}
        if hosts:
            out["extra_hosts"] = hosts
        return out

    o_env = node_env.orderer_env(orderer, settings, cfg_dir=_CFG_MARK, ledger_dir=_LEDGER_MARK,
                                 listen_host="0.0.0.0", path=path)
    services[orderer.node_name] = {
        **common(["orderer"]),
        "image": f"hyperledger/fabric-orderer:{image_tag}",
        "container_name": orderer.node_name,
        "hostname": orderer.node_name,
        "command": "orderer",
        "environment": o_env,
        "volumes": [crypto_vol, f"orderer-ledger:{LEDGER}"],
        "ports": [f"{publish}:{p}:{p}" for p in (settings.orderer_port, settings.orderer_admin_port,
                                                 settings.orderer_operations_port)],
    }
    volumes: dict[str, Any] = {"orderer-ledger": {}}
    for i, org in enumerate(consortium.orgs):
        env = node_env.peer_env(org, i, settings, cfg_dir=_CFG_MARK, ledger_dir=_LEDGER_MARK, host=org.node_name,
                                listen_host="0.0.0.0", path=path)
        vol = f"{org.name.lower()}-peer-ledger"
        volumes[vol] = {}
        services[org.node_name] = {
            **common([org.name.lower()]),
            "image": f"hyperledger/fabric-peer:{image_tag}",
            "container_name": org.node_name,
            "hostname": org.node_name,
            "command": "peer node start",
            "environment": env,
            "volumes": [crypto_vol, f"{vol}:{LEDGER}"],
            "ports": [f"{publish}:{p}:{p}" for p in (settings.peer_port(i), settings.peer_operations_port(i))],
        }
    image = {"image": "fedchain/chaincode:latest"}
    if source:
        image["build"] = {"context": str(source), "dockerfile": "network/fabric/Dockerfile.chaincode"}
    for i, org in enumerate(consortium.orgs):  # each org runs the chaincode its peer endorses with
        cc_tls = org.path / "services" / "chaincode" / "tls"
        port = settings.chaincode_server_port(i)
        services[chaincode_service(org)] = {
            **common([org.name.lower()]),
            **image,
            "container_name": chaincode_host(org),
            "hostname": chaincode_host(org),
            "env_file": [f"chaincode-{org.name.lower()}.env"],  # CHAINCODE_ID = this org's package id
            "environment": {
                "CHAINCODE_SERVER_ADDRESS": f"0.0.0.0:{port}",
                **({"CHAINCODE_TLS_CERT": path(cc_tls / "server.crt"),
                    "CHAINCODE_TLS_KEY": path(cc_tls / "server.key")} if settings.chaincode_tls else {}),
            },
            "volumes": [crypto_vol],
            "ports": [f"{publish}:{port}:{port}"],
        }
        image = {"image": "fedchain/chaincode:latest"}  # built once, by the first org's service
    mpc, mpc_volumes = mpc_services(consortium, settings, common, crypto_vol, publish, source)
    services |= mpc
    volumes |= mpc_volumes
    services["cli"] = {
        **common(["cli"]),
        "image": f"hyperledger/fabric-tools:{image_tag}",
        "container_name": "fedchain-cli",
        "working_dir": CONFIG,
        "command": "sleep infinity",
        "environment": {"FABRIC_CFG_PATH": FABRIC_CFG},
        "volumes": [crypto_vol, f".:{CONFIG}"],
    }
    return {"name": "fedchain", "services": services, "volumes": volumes,
            "networks": {"fedchain": {"name": "fedchain"}}}


def setup_script(consortium: Consortium, settings: FabricSettings, package_ids: dict[str, str]) -> str:
    """The one-time steps of native mode, as commands for the `cli` container (run once, from D/compose)."""
    path = _mapper(consortium.crypto_dir)
    s, orderer = settings, consortium.orderer
    o_addr = f"{orderer.node_name}:{s.orderer_port}"
    o_tls = f"--tls --cafile {path(orderer.tls_ca_cert_path)}"
    admin_tls = orderer.user_dir("Admin") / "tls"
    definition = shlex.join(definition_args(s, [o.msp_id for o in consortium.orgs]))
    lines = [
        "#!/bin/sh",
        "# Generated by `fedchain network compose`. Run from D/compose after",
        "# each host started its profiles (orderer, orgN, cli); every step runs in the cli container.",
        "set -eu",
        'run() { docker compose exec -T "$@"; }',
        f"run cli configtxgen -profile {configtx.PROFILE} -channelID {s.channel} -configPath {CONFIG} "
        f"-outputBlock {CONFIG}/{s.channel}.block",
        f"run cli osnadmin channel join --channelID {s.channel} --config-block {CONFIG}/{s.channel}.block "
        f"-o {orderer.node_name}:{s.orderer_admin_port} --ca-file {path(orderer.tls_ca_cert_path)} "
        f"--client-cert {path(admin_tls / 'client.crt')} --client-key {path(admin_tls / 'client.key')}",
    ]
    peers = ""
    for i, org in enumerate(consortium.orgs):
        env = node_env.admin_cli_env(org, i, s, cfg_dir=_CFG_MARK, host=org.node_name, path=path)
        env_args = " ".join(f"-e {k}={shlex.quote(v)}" for k, v in env.items())
        peer = f"run {env_args} cli peer"
        lines += [
            f"# --- {org.msp_id}",
            f"{peer} channel join -b {CONFIG}/{s.channel}.block",
            f"{peer} lifecycle chaincode install {CONFIG}/chaincode/{org.name.lower()}/{s.chaincode_label}.tar.gz"
            " || echo '(already installed)'",
            f"{peer} lifecycle chaincode approveformyorg -o {o_addr} {o_tls} {definition} "
            f"--package-id {package_ids[org.msp_id]}",
        ]
        peers += f" --peerAddresses {org.node_name}:{s.peer_port(i)} --tlsRootCertFiles {path(org.tls_ca_cert_path)}"
        if i == 0:
            commit_peer = peer
    lines += [
        "# --- commit (any org's admin)",
        f"{commit_peer} lifecycle chaincode checkcommitreadiness {definition}",
        f"{commit_peer} lifecycle chaincode commit -o {o_addr} {o_tls} {definition}{peers}",
        "echo 'fedchain channel and chaincode ready'",
        "# next, on the operator's host: `fedchain network up --network D` (InitConsortium once, then the MPC nodes)",
    ]
    return "\n".join(lines) + "\n"


def write_compose(directory: Path, settings: FabricSettings | None = None, *, publish: str = "127.0.0.1",
                  extra_hosts: Mapping[str, str] | None = None) -> Path:
    """D/compose/ for the consortium in D/crypto (created if missing). Returns the compose file."""
    from fedchain.fabricnet.native import FabricNetwork

    net = FabricNetwork(directory, settings)
    s = net.settings
    if s.mode != "compose" and net.state():
        raise FabricNetworkError(f"{net.root} holds a native Fabric network; generate Compose files in another "
                                 "folder")
    s.mode = "compose"
    s.validate()
    s.save(net.layout.root)
    consortium = net.consortium()
    net.enroll_defaults(consortium)
    out = net.layout.root / "compose"
    out.mkdir(parents=True, exist_ok=True)
    names = [o.node_name for o in consortium.orgs]
    path = _mapper(consortium.crypto_dir)
    configtx.write_configtx(out, configtx.configtx(consortium, s, orderer_host=consortium.orderer.node_name,
                                                   peer_hosts=names, path=lambda p: path(Path(p))))
    package_ids: dict[str, str] = {}
    for i, org in enumerate(consortium.orgs):
        root_pem = None
        if s.chaincode_tls:
            consortium.issue_tls(org.msp_id, "chaincode", hosts=("localhost", s.host, chaincode_host(org)))
            root_pem = org.tls_ca_cert_path.read_bytes()
        conn = ccaas.connection_json(f"{chaincode_host(org)}:{s.chaincode_server_port(i)}", tls_root_cert_pem=root_pem)
        _, package_ids[org.msp_id] = ccaas.write_package(out / "chaincode" / org.name.lower(), s.chaincode_label, conn)
        (out / f"chaincode-{org.name.lower()}.env").write_text(f"CHAINCODE_ID={package_ids[org.msp_id]}\n")
    write_mpc_files(out, consortium, s, path)
    script = out / "setup.sh"
    script.write_text(setup_script(consortium, s, package_ids))
    script.chmod(0o755)
    compose_file = out / "docker-compose.yaml"
    doc = compose_document(consortium, s, publish=publish, extra_hosts=extra_hosts, source=source_root())
    compose_file.write_text("# generated by `fedchain network compose`; see network/fabric/README.md\n"
                            + yaml.safe_dump(doc, sort_keys=False))
    net.write_network_json(consortium)  # clients on this host reach the published peer port
    return compose_file
