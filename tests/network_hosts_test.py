"""`network up --hosts FILE / --only NAMES`: addresses reach every config, certificate and listener."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fedchain.netctl.embedded import EmbeddedNetwork, EmbeddedSettings
from fedchain.netctl.hosts import HostAddress, HostMap
from fedchain.netctl.process import address_is_local

HOSTS = {"ledger": "10.77.0.1", "mpc": ["10.77.0.2", "mpc1.example.org", {"address": "203.0.113.7",
                                                                          "bind": "10.77.0.4"}]}


def test_parse_hosts() -> None:
    hm = HostMap.parse(HOSTS, 3)
    assert hm.ledger == HostAddress("10.77.0.1", "10.77.0.1")
    assert hm.chaincode == hm.ledger  # default: the ledger's host
    assert hm.mpc[2] == HostAddress("203.0.113.7", "10.77.0.4")
    assert "mpc1.example.org" in hm.mpc_node(1).sans() and "127.0.0.1" in hm.mpc_node(1).sans()
    assert HostMap.parse(hm.to_json(), 3) == hm
    assert HostMap.parse({}).is_loopback and not hm.is_loopback
    assert HostMap.parse({}).mpc_node(5) == HostAddress()
    for bad, msg in [({"ledgr": "x"}, "unknown component"), ({"ledger": "bad name!"}, "neither an IP"),
                     ({"mpc": ["a", "b"]}, "2 hosts for 3"), ({"mpc": [{"bind": "a"}, "b", "c"]}, "expected a host"),
                     ({"mpc": [{"address": "a", "port": 1}, "b", "c"]}, "unknown key"), ([], "JSON object")]:
        with pytest.raises(ValueError, match=msg):
            HostMap.parse(bad, 3)


def test_address_is_local() -> None:
    assert address_is_local("127.0.0.1")
    assert address_is_local("localhost")
    assert not address_is_local("203.0.113.7")  # TEST-NET-3: never an address of this machine
    assert not address_is_local("no-such-host.invalid")


def test_services_and_configs_carry_the_hosts(tmp_path: Path) -> None:
    net = EmbeddedNetwork(tmp_path / "net", EmbeddedSettings(base_port=7050, hosts=HostMap.parse(HOSTS).to_json()))
    by_name = {svc.name: svc for svc in net.services()}
    assert by_name["chaincode"].env["CHAINCODE_SERVER_ADDRESS"] == "10.77.0.1:7052"
    assert by_name["chaincode"].env["CHAINCODE_TLS_CLIENT_CA"].endswith("client-ca.crt")
    assert (by_name["devnet"].host, by_name["mpc1"].host, by_name["mpc2"].host) == (
        "10.77.0.1", "mpc1.example.org", "10.77.0.4")
    net.settings.validate()
    net._save_settings()
    consortium = net.consortium()
    from fedchain.identity import Wallet, enroll_default_identities

    enroll_default_identities(consortium, Wallet(net.layout.wallet), 3)
    net._write_configs(consortium)
    root = net.layout.root
    network = json.loads((root / "network.json").read_text())
    assert network["gateway"]["endpoint"] == "10.77.0.1:7051"
    assert [n["endpoint"] for n in network["mpc_nodes"]] == [
        "10.77.0.2:7060", "mpc1.example.org:7061", "203.0.113.7:7062"]
    devnet = json.loads((root / "devnet.json").read_text())
    assert devnet["listen"] == "10.77.0.1:7051"
    assert devnet["chaincodes"][0]["address"] == "10.77.0.1:7052"
    assert devnet["chaincodes"][0]["client_cert"] and devnet["tls"]["cert"]
    node2 = json.loads((root / "mpc" / "node2.json").read_text())
    assert node2["listen"] == "10.77.0.4:7062"  # binds its local address ...
    # ... its own party entry is what its MPyC listener binds; the others are dialled at their addresses
    assert node2["mpc"]["parties"] == ["10.77.0.2:7070", "mpc1.example.org:7071", "10.77.0.4:7072"]
    node0 = json.loads((root / "mpc" / "node0.json").read_text())
    assert node0["mpc"]["parties"][2] == "203.0.113.7:7072"

    from cryptography import x509

    def sans(path: str | Path) -> set[str]:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return {str(v) for v in ext.get_values_for_type(x509.IPAddress)} | set(ext.get_values_for_type(x509.DNSName))

    assert {"10.77.0.1", "127.0.0.1", consortium.orgs[0].node_name} <= sans(devnet["tls"]["cert"])
    assert "10.77.0.1" in sans((root / "chaincode-tls" / "server.crt").resolve())
    assert "mpc1.example.org" in sans(json.loads((root / "mpc" / "node1.json").read_text())["tls"]["cert"])
    assert {"203.0.113.7", "10.77.0.4"} <= sans(node2["tls"]["cert"])
    key = Path(node2["tls"]["key"])
    assert key.stat().st_mode & 0o777 == 0o600


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from fedchain.cli.main import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_refuses_bad_hosts_and_foreign_addresses(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"ledger": "10.0.0.1", "mcp": []}')
    done = _cli("network", "up", "--network", "n1", "--hosts", str(bad), cwd=tmp_path)
    assert done.returncode == 2 and "unknown component(s) mcp" in done.stderr and "Traceback" not in done.stderr
    done = _cli("network", "up", "--network", "n1", "--hosts", str(tmp_path / "missing.json"), cwd=tmp_path)
    assert done.returncode == 2 and "cannot read hosts file" in done.stderr
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"ledger": "203.0.113.7"}))
    done = _cli("network", "up", "--network", "n2", "--hosts", str(foreign), "--no-mpc", cwd=tmp_path)
    assert done.returncode == 1 and "not an address of this host" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    done = _cli("network", "up", "--network", "n3", "--only", "mpc7", cwd=tmp_path)
    assert done.returncode == 1 and "unknown component(s) mpc7" in done.stderr, done.stderr
    done = _cli("network", "up", "--network", "n4", "--fabric", "--hosts", str(foreign), cwd=tmp_path)
    assert done.returncode == 2 and "apply to the embedded network" in done.stderr, done.stderr


def test_fabric_settings_place_each_component(tmp_path: Path) -> None:
    from fedchain.fabricnet import configtx, node_env
    from fedchain.fabricnet.settings import FabricSettings
    from fedchain.identity import generate_consortium
    from fedchain.netctl.mpc import network_entries

    s = FabricSettings(orderer_host="10.77.0.2", peer_hosts=["10.77.0.3", "10.77.0.4", "10.77.0.5"],
                       mpc_hosts=["10.77.0.6", "10.77.0.7", "10.77.0.8"], launch={"orderer": ["ip", "netns", "exec", "o"]})
    s.validate()
    assert s.port_host("orderer admin") == "10.77.0.2"
    assert s.port_host("peer0.org2 operations") == "10.77.0.4"
    assert s.port_host("chaincode server org3") == s.port_host("chaincode.org3") == "10.77.0.5"
    assert s.port_host("mpc1 MPyC party") == "10.77.0.7"
    assert s.launch_prefix("orderer") == ["ip", "netns", "exec", "o"] and s.launch_prefix("mpc0") == []
    cons = generate_consortium(tmp_path / "crypto", s.orgs)
    peer = node_env.peer_env(cons.orgs[1], 1, s, cfg_dir=tmp_path, ledger_dir=tmp_path)
    assert peer["CORE_PEER_ADDRESS"] == "10.77.0.4:8051" and peer["CORE_PEER_LISTENADDRESS"] == "10.77.0.4:8051"
    assert peer["CORE_OPERATIONS_LISTENADDRESS"] == "10.77.0.4:9445"
    orderer = node_env.orderer_env(cons.orderer, s, cfg_dir=tmp_path, ledger_dir=tmp_path)
    assert orderer["ORDERER_GENERAL_LISTENADDRESS"] == "10.77.0.2"
    doc = configtx.configtx(cons, s)
    assert doc["Profiles"][configtx.PROFILE]["Orderer"]["EtcdRaft"]["Consenters"][0]["Host"] == "10.77.0.2"
    assert node_env.admin_cli_env(cons.orgs[2], 2, s, cfg_dir=tmp_path)["CORE_PEER_ADDRESS"] == "10.77.0.5:9051"
    entries = network_entries(s.mpc_plan(), cons, tmp_path)
    assert [e["endpoint"] for e in entries] == ["10.77.0.6:7060", "10.77.0.7:7061", "10.77.0.8:7062"]
    with pytest.raises(ValueError, match="peer_hosts lists 1 hosts for 3"):
        FabricSettings(peer_hosts=["10.0.0.1"]).validate()
    # the defaults are unchanged: everything on `host`
    d = FabricSettings()
    assert d.orderer_address() == d.peer_address(2) == d.port_host("peer0.org1") == "127.0.0.1"
