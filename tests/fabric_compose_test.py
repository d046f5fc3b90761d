"""Compose mode: generated docker-compose.yaml, container-path configtx, setup script, committed example."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from fedchain.fabricnet import ccaas
from fedchain.fabricnet.compose import CRYPTO, LEDGER, write_compose
from fedchain.fabricnet.settings import FabricSettings
from fedchain.netconfig import load_network

REPO = Path(__file__).resolve().parents[1]
NODES = ["orderer0.orderer.fedchain.local", "peer0.org1.fedchain.local", "peer0.org2.fedchain.local",
         "peer0.org3.fedchain.local"]
MPC = ["mpc0", "mpc1", "mpc2"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    d = tmp_path_factory.mktemp("compose-net")
    path = write_compose(d, FabricSettings(), extra_hosts={"peer0.org2.fedchain.local": "10.0.0.2"})
    return d, path, yaml.safe_load(path.read_text())


def test_services_volumes_ports(generated):
    d, _, doc = generated
    services = doc["services"]
    assert set(services) == {*NODES, "chaincode.org1", "chaincode.org2", "chaincode.org3", *MPC, "cli"}
    assert services[NODES[0]]["image"].startswith("hyperledger/fabric-orderer:2.5")
    assert services[NODES[0]]["ports"] == ["127.0.0.1:7050:7050", "127.0.0.1:7053:7053", "127.0.0.1:9443:9443"]
    for i, name in enumerate(NODES[1:]):
        svc = services[name]
        assert svc["image"].startswith("hyperledger/fabric-peer:2.5") and svc["hostname"] == name
        assert svc["profiles"] == [f"org{i + 1}"]
        assert f"127.0.0.1:{7051 + 1000 * i}:{7051 + 1000 * i}" in svc["ports"]
        env = svc["environment"]
        assert env["CORE_PEER_ADDRESS"] == f"{name}:{7051 + 1000 * i}"
        assert env["CORE_PEER_LISTENADDRESS"] == f"0.0.0.0:{7051 + 1000 * i}"
        assert env["CORE_PEER_FILESYSTEMPATH"] == LEDGER
        assert env["CORE_LEDGER_HISTORY_ENABLEHISTORYDATABASE"] == "true"
        assert svc["extra_hosts"] == ["peer0.org2.fedchain.local:10.0.0.2"]
        vol_name, mount = svc["volumes"][1].split(":")
        assert mount == LEDGER and vol_name in doc["volumes"]
        # every container path of crypto material exists on the host under D/crypto
        for key in ("CORE_PEER_TLS_CERT_FILE", "CORE_PEER_TLS_KEY_FILE", "CORE_PEER_MSPCONFIGPATH"):
            assert env[key].startswith(CRYPTO + "/")
            assert (d / "crypto" / env[key][len(CRYPTO) + 1:]).exists(), key
        assert svc["volumes"][0] == f"../crypto:{CRYPTO}:ro"
    for i in range(3):  # each org runs its own chaincode service, on its own host (profile)
        cc = services[f"chaincode.org{i + 1}"]
        assert cc["profiles"] == [f"org{i + 1}"] and cc["hostname"] == f"chaincode.org{i + 1}.fedchain.local"
        assert cc["env_file"] == [f"chaincode-org{i + 1}.env"]
        assert cc["environment"]["CHAINCODE_SERVER_ADDRESS"] == f"0.0.0.0:{9999 + i}"
        cert = cc["environment"]["CHAINCODE_TLS_CERT"]
        assert f"org{i + 1}.fedchain.local/services/chaincode/tls" in cert
        assert (d / "crypto" / cert[len(CRYPTO) + 1:]).is_file()
        assert cc["image"] == "fedchain/chaincode:latest"
    assert "build" not in services["chaincode.org2"] and "build" not in services["chaincode.org3"]
    build = services["chaincode.org1"]["build"]
    assert build["dockerfile"] == "network/fabric/Dockerfile.chaincode"
    assert (Path(build["context"]) / build["dockerfile"]).is_file()


def test_configtx_and_package_use_service_names(generated):
    d, path, _ = generated
    tx = yaml.safe_load((path.parent / "configtx.yaml").read_text())
    prof = tx["Profiles"]["FedchainChannel"]
    consenter = prof["Orderer"]["EtcdRaft"]["Consenters"][0]
    assert consenter["Host"] == NODES[0] and consenter["ClientTLSCert"].startswith(CRYPTO + "/")
    assert [o["AnchorPeers"][0]["Host"] for o in prof["Application"]["Organizations"]] == NODES[1:]
    assert all(o["MSPDir"].startswith(CRYPTO + "/") for o in tx["Organizations"])
    script = (path.parent / "setup.sh").read_text()
    assert script.count("approveformyorg") == 3 and script.count("lifecycle chaincode commit") == 1
    ids = set()
    for i in range(3):
        pkg = path.parent / "chaincode" / f"org{i + 1}" / "fedchain_1.0.tar.gz"
        conn = ccaas.read_package(pkg)["connection"]
        assert conn["address"] == f"chaincode.org{i + 1}.fedchain.local:{9999 + i}" and conn["tls_required"] is True
        org_ca = d / "crypto/peerOrganizations" / f"org{i + 1}.fedchain.local" / "tlsca/tlsca-cert.pem"
        assert conn["root_cert"] == org_ca.read_text()
        pkg_id = ccaas.package_id("fedchain_1.0", pkg.read_bytes())
        assert (path.parent / f"chaincode-org{i + 1}.env").read_text().strip() == f"CHAINCODE_ID={pkg_id}"
        assert f"chaincode/org{i + 1}/fedchain_1.0.tar.gz" in script and f"--package-id {pkg_id}" in script
        ids.add(pkg_id)
    assert len(ids) == 3
    for line in script.splitlines():
        if line and not line.startswith("#") and "'" not in line.split("=", 1)[0]:
            shlex.split(line)  # every line is valid shell quoting
    assert subprocess.run(["sh", "-n", str(path.parent / "setup.sh")], capture_output=True).returncode == 0
    cfg = load_network(d)
    assert cfg.kind == "fabric" and cfg.gateway.endpoint == "127.0.0.1:7051"
    assert json.loads((d / "network.json").read_text())["orderer"]["endpoint"] == "127.0.0.1:7050"


def test_committed_example_matches_generator(generated):
    example = yaml.safe_load((REPO / "network/fabric/compose/docker-compose.yaml").read_text())
    _, _, doc = generated
    assert set(example["services"]) == set(doc["services"])
    assert set(example["volumes"]) == set(doc["volumes"])
    for name, svc in doc["services"].items():
        assert example["services"][name].get("ports") == svc.get("ports"), name
        assert example["services"][name]["image"] == svc["image"], name
        assert set(example["services"][name].get("environment", {})) == set(svc.get("environment", {})), name
        assert example["services"][name].get("volumes") == svc.get("volumes"), name


def _host_path(container_path: str, volumes: list[str], compose_dir: Path) -> Path:
    """The host file behind a container path, through the service's bind mounts (relative to D/compose)."""
    for volume in volumes:
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")) and (container_path == target or container_path.startswith(target + "/")):
            return (compose_dir / source / container_path[len(target):].lstrip("/")).resolve()
    raise AssertionError(f"{container_path} is on no bind mount of {volumes}")


def test_mpc_node_services(generated):
    """Each MPC node: its own service and profile, published intake and MPyC ports, and every file its
    node.json and network.json name reachable through its mounts (checked on the host side)."""
    from cryptography import x509
    from fedchain.fabricnet.compose_mpc import CONFIG, DATA, WALLET

    d, path, doc = generated
    compose_dir = path.parent
    for i, name in enumerate(MPC):
        svc = doc["services"][name]
        host = f"mpc{i}.fedchain.local"
        assert svc["profiles"] == ["mpc", name] and svc["hostname"] == host == svc["container_name"]
        assert svc["image"] == "fedchain/mpc-node:latest" and svc["restart"] == "unless-stopped"
        assert svc["ports"] == [f"127.0.0.1:{7060 + i}:{7060 + i}", f"127.0.0.1:{7070 + i}:{7070 + i}"]
        assert svc["command"] == ["--config", f"{CONFIG}/node.json"]
        vols = svc["volumes"]
        assert f"../crypto:{CRYPTO}:ro" in vols and f"./mpc/{name}:{CONFIG}:ro" in vols
        assert f"../wallet/{name}:{WALLET}/{name}:ro" in vols
        assert f"{name}-data:{DATA}" in vols and f"{name}-data" in doc["volumes"]  # shares survive `down`
        node = json.loads(_host_path(f"{CONFIG}/node.json", vols, compose_dir).read_text())
        assert node["node_index"] == i and node["node_id"] == name and node["listen"] == f"0.0.0.0:{7060 + i}"
        assert node["mpc"]["parties"] == [f"mpc{j}.fedchain.local:{7070 + j}" for j in range(3)]
        assert [p["endpoint"] for p in node["peers"]] == [f"mpc{j}.fedchain.local:{7060 + j}" for j in range(3)]
        assert node["data_dir"].startswith(DATA + "/") and node["network"] == CONFIG
        files = [node["tls"]["cert"], node["tls"]["key"], *node["mpc"]["ssl"].values(),
                 *(p["tls_root_cert"] for p in node["peers"])]
        for f in files:
            assert _host_path(f, vols, compose_dir).is_file(), f
        wallet = _host_path(f"{node['identity']['wallet']}/{name}", vols, compose_dir)
        assert (wallet / "key.pem").is_file() and wallet == (d / "wallet" / name).resolve()
        cert = x509.load_pem_x509_certificate(_host_path(node["tls"]["cert"], vols, compose_dir).read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert host in sans.get_values_for_type(x509.DNSName)  # peers dial it by container name
        net = json.loads(_host_path(f"{CONFIG}/network.json", vols, compose_dir).read_text())
        org = i % 3 + 1  # node i is run by org i mod 3 and talks to its own org's peer
        assert net["gateway"]["endpoint"] == f"peer0.org{org}.fedchain.local:{7051 + 1000 * (org - 1)}"
        assert _host_path(net["gateway"]["tls_root_cert"], vols, compose_dir).is_file()
    assert doc["services"]["mpc0"]["build"]["dockerfile"] == "network/fabric/Dockerfile.mpc"
    assert (Path(doc["services"]["mpc0"]["build"]["context"]) / "network/fabric/Dockerfile.mpc").is_file()
    assert "build" not in doc["services"]["mpc1"]
    # hospitals on this host reach the published intake ports
    assert [n.endpoint for n in load_network(d).mpc_nodes] == [f"127.0.0.1:{7060 + i}" for i in range(3)]
    # D/compose is handed to every host: no private key in it
    assert not [f for f in compose_dir.rglob("*") if f.is_file() and b"PRIVATE KEY" in f.read_bytes()]
