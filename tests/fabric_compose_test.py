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


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    d = tmp_path_factory.mktemp("compose-net")
    path = write_compose(d, FabricSettings(), extra_hosts={"peer0.org2.fedchain.local": "10.0.0.2"})
    return d, path, yaml.safe_load(path.read_text())


def test_services_volumes_ports(generated):
    d, _, doc = generated
    services = doc["services"]
    assert set(services) == {*NODES, "chaincode.org1", "chaincode.org2", "chaincode.org3", "cli"}
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
        assert set(example["services"][name]["environment"]) == set(svc["environment"]), name
