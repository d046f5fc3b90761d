"""Generated real-Fabric configs: configtx.yaml, node environments, core.yaml patch, ccaas package, pre-flight."""

from __future__ import annotations

import gzip
import hashlib
import socket
from pathlib import Path

import pytest
import yaml
from fedchain.fabricnet import ccaas, configtx, node_env
from fedchain.fabricnet.preflight import FabricTools, PreflightError, preflight
from fedchain.fabricnet.settings import FabricSettings
from fedchain.identity import generate_consortium, load_msp_dir


@pytest.fixture(scope="module")
def consortium(tmp_path_factory):
    return generate_consortium(tmp_path_factory.mktemp("crypto"), ("Org1", "Org2", "Org3"))


def test_configtx_profile_structure(consortium):
    settings = FabricSettings()
    text = configtx.dump(configtx.configtx(consortium, settings))
    assert "&id" not in text and "*id" not in text  # no YAML aliases for configtxgen
    doc = yaml.safe_load(text)
    prof = doc["Profiles"][configtx.PROFILE]
    assert "Consortium" not in prof and "Consortiums" not in prof.get("Orderer", {})  # no system channel
    orderer = prof["Orderer"]
    assert orderer["OrdererType"] == "etcdraft"
    assert orderer["BatchTimeout"] == "100ms" and orderer["BatchSize"]["MaxMessageCount"] == 100
    (consenter,) = orderer["EtcdRaft"]["Consenters"]
    assert (consenter["Host"], consenter["Port"]) == ("127.0.0.1", 7050)
    for key in ("ClientTLSCert", "ServerTLSCert"):
        assert Path(consenter[key]).is_file()
        assert b"BEGIN CERTIFICATE" in Path(consenter[key]).read_bytes()
    assert orderer["Organizations"][0]["OrdererEndpoints"] == ["127.0.0.1:7050"]
    app = prof["Application"]
    assert [o["ID"] for o in app["Organizations"]] == ["Org1MSP", "Org2MSP", "Org3MSP"]
    assert app["Policies"]["LifecycleEndorsement"] == {"Type": "ImplicitMeta", "Rule": "MAJORITY Endorsement"}
    assert app["Policies"]["Endorsement"]["Rule"] == "MAJORITY Endorsement"
    for section in (prof, orderer, app):
        assert section["Capabilities"] == {"V2_0": True}
    assert orderer["Policies"]["BlockValidation"]["Rule"] == "ANY Writers"
    for i, org in enumerate(app["Organizations"]):
        msp = Path(org["MSPDir"])
        assert (msp / "cacerts").is_dir() and (msp / "tlscacerts").is_dir() and (msp / "config.yaml").is_file()
        assert load_msp_dir(msp, org["ID"]).node_ous  # NodeOUs on: no admincerts needed
        assert org["AnchorPeers"] == [{"Host": "127.0.0.1", "Port": 7051 + 1000 * i}]
        m = org["ID"]
        assert org["Policies"]["Endorsement"]["Rule"] == f"OR('{m}.peer')"
        assert f"'{m}.client'" in org["Policies"]["Writers"]["Rule"]
        assert org["Policies"]["Admins"]["Rule"] == f"OR('{m}.admin')"


def test_configtx_respects_ports_and_hosts(consortium):
    settings = FabricSettings(orderer_port=17050, peer_base_port=17051, peer_port_step=10)
    doc = configtx.configtx(consortium, settings, orderer_host="orderer0.example", peer_hosts=["a", "b", "c"],
                            path=lambda p: "/in/container/" + p.name)
    prof = doc["Profiles"][configtx.PROFILE]
    assert prof["Orderer"]["EtcdRaft"]["Consenters"][0]["Port"] == 17050
    assert prof["Orderer"]["EtcdRaft"]["Consenters"][0]["ClientTLSCert"] == "/in/container/server.crt"
    assert [o["AnchorPeers"][0] for o in prof["Application"]["Organizations"]] == [
        {"Host": "a", "Port": 17051}, {"Host": "b", "Port": 17061}, {"Host": "c", "Port": 17071}]


def test_peer_env_per_peer(consortium, tmp_path):
    settings = FabricSettings()
    envs = [node_env.peer_env(org, i, settings, cfg_dir=tmp_path / org.node_name, ledger_dir=tmp_path / "l" / str(i))
            for i, org in enumerate(consortium.orgs)]
    listens = [e["CORE_PEER_LISTENADDRESS"] for e in envs]
    assert listens == ["127.0.0.1:7051", "127.0.0.1:8051", "127.0.0.1:9051"]
    assert [e["CORE_PEER_CHAINCODELISTENADDRESS"] for e in envs] == ["127.0.0.1:7052", "127.0.0.1:8052",
                                                                     "127.0.0.1:9052"]
    assert len({e["CORE_OPERATIONS_LISTENADDRESS"] for e in envs}) == 3
    assert len({e["CORE_PEER_FILESYSTEMPATH"] for e in envs}) == 3
    for org, env in zip(consortium.orgs, envs, strict=True):
        assert env["CORE_PEER_LOCALMSPID"] == org.msp_id
        assert env["CORE_PEER_ID"] == org.node_name
        assert env["CORE_LEDGER_HISTORY_ENABLEHISTORYDATABASE"] == "true"
        assert env["CORE_PEER_GATEWAY_ENABLED"] == "true"
        assert env["CORE_VM_ENDPOINT"] == ""
        assert env["CORE_PEER_GOSSIP_EXTERNALENDPOINT"] == env["CORE_PEER_ADDRESS"]
        for key in ("CORE_PEER_TLS_CERT_FILE", "CORE_PEER_TLS_KEY_FILE", "CORE_PEER_TLS_ROOTCERT_FILE"):
            assert Path(env[key]).is_file(), key
        msp = Path(env["CORE_PEER_MSPCONFIGPATH"])
        assert list((msp / "signcerts").iterdir()) and (msp / "keystore" / "priv_sk").is_file()
        assert (msp / "keystore" / "priv_sk").stat().st_mode & 0o077 == 0
        assert all(v.startswith("127.0.0.1:") for k, v in env.items() if k.endswith("LISTENADDRESS"))


def test_orderer_env_channel_participation(consortium, tmp_path):
    env = node_env.orderer_env(consortium.orderer, FabricSettings(orderer_admin_port=17053), cfg_dir=tmp_path,
                               ledger_dir=tmp_path / "ledger")
    assert env["ORDERER_GENERAL_BOOTSTRAPMETHOD"] == "none"
    assert env["ORDERER_CHANNELPARTICIPATION_ENABLED"] == "true"
    assert env["ORDERER_ADMIN_LISTENADDRESS"] == "127.0.0.1:17053"
    assert env["ORDERER_ADMIN_TLS_CLIENTAUTHREQUIRED"] == "true"
    assert env["ORDERER_GENERAL_LOCALMSPID"] == "OrdererMSP"
    for key in ("ORDERER_GENERAL_TLS_PRIVATEKEY", "ORDERER_GENERAL_TLS_CERTIFICATE",
                "ORDERER_GENERAL_CLUSTER_CLIENTCERTIFICATE"):
        assert Path(env[key]).is_file(), key
    for key in ("ORDERER_GENERAL_TLS_ROOTCAS", "ORDERER_ADMIN_TLS_CLIENTROOTCAS"):
        assert env[key].startswith("[") and Path(env[key][1:-1]).is_file()


def test_core_yaml_patch_keeps_sample_and_sets_builder(tmp_path):
    sample = tmp_path / "core.yaml"
    sample.write_text("peer:\n  id: jdoe\n  keepalive:\n    minInterval: 60s\nvm:\n  endpoint: unix:///x\n"
                      "chaincode:\n  externalBuilders:\n    - name: other\n      path: /opt/x\n  logging:\n"
                      "    level: info\nledger:\n  history:\n    enableHistoryDatabase: false\n")
    out = yaml.safe_load(node_env.write_core_yaml(sample, tmp_path / "peer0", "/rel/builders/ccaas").read_text())
    assert out["chaincode"]["externalBuilders"] == [{
        "name": "ccaas_builder", "path": "/rel/builders/ccaas",
        "propagateEnvironment": ["CHAINCODE_AS_A_SERVICE_BUILDER_CONFIG"]}]
    assert out["chaincode"]["logging"] == {"level": "info"}
    assert out["peer"]["keepalive"]["minInterval"] == "60s" and out["peer"]["gateway"]["enabled"] is True
    assert out["ledger"]["history"]["enableHistoryDatabase"] is True
    assert out["vm"]["endpoint"] == ""


def test_ccaas_package_layout_and_id(consortium, tmp_path):
    root = consortium.orgs[0].tls_ca_cert_path.read_bytes()
    conn = ccaas.connection_json("127.0.0.1:9999", tls_root_cert_pem=root)
    path, pkg_id = ccaas.write_package(tmp_path, "fedchain_1.0", conn)
    content = ccaas.read_package(path)
    assert sorted(content["names"]) == ["code.tar.gz", "metadata.json"]
    assert content["metadata"] == {"type": "ccaas", "label": "fedchain_1.0"}
    assert content["code_names"] == ["connection.json"]
    assert content["connection"]["address"] == "127.0.0.1:9999"
    assert content["connection"]["tls_required"] is True and content["connection"]["root_cert"] == root.decode()
    assert content["connection"]["dial_timeout"] == "10s"
    assert "client_key" not in content["connection"]
    assert pkg_id == "fedchain_1.0:" + hashlib.sha256(path.read_bytes()).hexdigest()
    # deterministic: same inputs, same bytes (every org installs the same id; restarts keep it)
    assert ccaas.build_package("fedchain_1.0", conn) == path.read_bytes()
    other = ccaas.build_package("fedchain_1.0", ccaas.connection_json("127.0.0.1:9998"))
    assert ccaas.package_id("fedchain_1.0", other) != pkg_id
    # an installed package is kept byte for byte (its id is what the orgs approved)
    recompressed = gzip.compress(gzip.decompress(path.read_bytes()), compresslevel=1, mtime=0)
    path.write_bytes(recompressed)
    again, again_id = ccaas.write_package(tmp_path, "fedchain_1.0", conn)
    assert again_id == ccaas.package_id("fedchain_1.0", recompressed) != pkg_id
    assert again.read_bytes() == recompressed
    _, new_id = ccaas.write_package(tmp_path, "fedchain_1.0", ccaas.connection_json("127.0.0.1:9998"))
    assert new_id != again_id  # a different connection does replace it
    with pytest.raises(ValueError):
        ccaas.build_package("bad label!", conn)
    with pytest.raises(ValueError):
        ccaas.connection_json("h:1", tls_root_cert_pem=root, client_auth=True)


def test_preflight_lists_every_missing_piece(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "peer").write_text("#!/bin/sh\n")  # present but not executable
    tools = FabricTools(tmp_path / "bin", tmp_path / "cfg", None)
    with pytest.raises(PreflightError) as err:
        preflight(FabricSettings(), tools, check_ports=False)
    msg = str(err.value)
    for needle in ("orderer not found", "configtxgen not found", "osnadmin not found", "not executable",
                   "core.yaml not found", "orderer.yaml not found", "FABRIC_CCAAS_BUILDER is not set",
                   f"its default {tmp_path / 'builders' / 'ccaas'} does not exist"):
        assert needle in msg, needle
    with pytest.raises(PreflightError, match="FABRIC_BIN is not set"):
        preflight(FabricSettings(), FabricTools.from_env({}), check_ports=False)


def test_tools_from_release_layout(tmp_path):
    for d in ("bin", "config", "builders/ccaas"):
        (tmp_path / d).mkdir(parents=True)
    tools = FabricTools.from_env({"FABRIC_BIN": str(tmp_path / "bin")})
    assert tools.cfg_dir == tmp_path / "config" and tools.ccaas_builder == tmp_path / "builders" / "ccaas"


def test_preflight_reports_taken_port_and_duplicates(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        taken = sock.getsockname()[1]
        settings = FabricSettings(chaincode_port=taken)
        tools = FabricTools(None, None, None)
        with pytest.raises(PreflightError) as err:
            preflight(settings, tools)
        assert f"port {taken} (chaincode server org1) is already in use" in str(err.value)
    with pytest.raises(PreflightError, match="used twice"):
        preflight(FabricSettings(chaincode_port=7050), tools, check_ports=False)
