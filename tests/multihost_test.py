"""A full round across hosts: network namespaces as the ledger, MPC node, operator and hospital hosts.

Each host is a namespace (fedchain.netctl.netns) with one address on 10.77.0.0/24; links
between hosts get RTT_MS round-trip time and RATE uplinks. The chaincode host runs the
chaincode server (`fedchain network up --hosts H --only chaincode`: this first `up` writes every
host's configuration), the ledger host the devnet (`--only devnet`; it dials the chaincode
server over mutual TLS and initialises the consortium), each MPC host its node
(`--only mpcI`), the operator and the hospitals run their steps
(tests/multihost_actor.py) in their own hosts: create round, shares over mutual TLS to each
node's address + SubmitUpdate, close, MPC across the three node hosts (MPyC, --ssl),
attest, finalize, model fetch. Checks: every listener is reachable on its own host's
address and nowhere else (not on another host's address, not on 127.0.0.1 from another
host); the round's model hash equals that of the same round on a loopback network.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fedchain.netctl import netns

CAN, WHY = netns.can_create_namespaces()
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.skipif(not CAN, reason=WHY)]

ACTOR = Path(__file__).with_name("multihost_actor.py")
FEDCHAIN = [sys.executable, "-c", "import sys; from fedchain.cli.main import main; sys.exit(main())"]
RTT_MS = 15
RATE = "100mbit"
BASE_PORT = 7050  # every host has its own ports: the same base on all of them
MPC_HOSTS = ["mpc0", "mpc1", "mpc2"]
HOSPITAL_HOSTS = {"mh0": "hosp0", "mh1": "hosp1", "mh2": "hosp2"}
HOSTS = ["ledger", "chaincode", "operator", *MPC_HOSTS, *HOSPITAL_HOSTS.values()]


def _env() -> dict[str, str]:
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _actor(prefix: list[str], directory: Path, *args: str, timeout: float = 120) -> dict:
    done = subprocess.run([*prefix, sys.executable, str(ACTOR), str(directory), *args], capture_output=True,
                          text=True, timeout=timeout, env=_env())
    assert done.returncode == 0, f"{args}: {done.stdout[-1500:]}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fedchain(prefix: list[str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run([*prefix, *FEDCHAIN, *args], capture_output=True, text=True, timeout=timeout, env=_env())
    assert done.returncode == 0, f"fedchain {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _round(prefix_of, directory: Path) -> dict:
    """setup, three hospitals submit, close, wait for FINALIZED, every hospital fetches; returns the results."""
    timings: dict[str, float] = {}
    t = time.monotonic()
    _actor(prefix_of("operator"), directory, "setup")
    timings["setup"] = time.monotonic() - t
    t = time.monotonic()
    submits = [subprocess.Popen([*prefix_of(host), sys.executable, str(ACTOR), str(directory), "submit", name],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
               for name, host in HOSPITAL_HOSTS.items()]
    endpoints = []
    for proc in submits:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["code"] == "VALID"
        endpoints = result["endpoints"]
    timings["submit"] = time.monotonic() - t
    t = time.monotonic()
    _actor(prefix_of("operator"), directory, "close")
    final = _actor(prefix_of("operator"), directory, "wait", "150", timeout=180)
    timings["close_to_finalized"] = time.monotonic() - t
    fetched = {name: _actor(prefix_of(host), directory, "fetch", name)["sha256"]
               for name, host in HOSPITAL_HOSTS.items()}
    return {"final": final, "fetched": fetched, "endpoints": endpoints, "timings": timings}


def _reach(topo: netns.Topology, host: str, addr: str, port: int) -> bool:
    code = ("import socket,sys\ns=socket.socket();s.settimeout(2)\n"
            "try:\n s.connect((sys.argv[1],int(sys.argv[2])));print('open')\nexcept OSError:\n print('closed')")
    done = topo.run(host, [sys.executable, "-c", code, addr, str(port)], capture_output=True, text=True, timeout=20)
    return done.stdout.strip() == "open"


def _listeners(topo: netns.Topology, host: str) -> set[tuple[str, int]]:
    """(address, port) of every TCP listener inside `host`, from /proc/<pid>/net/tcp{,6} of a process in its
    namespace (gRPC listens on IPv6 sockets with v4-mapped addresses: reported as the IPv4 address)."""
    pids = subprocess.run(["ip", "netns", "pids", topo.namespace(host)], capture_output=True, text=True).stdout.split()
    for pid in pids:
        out = set()
        try:
            tables = [Path(f"/proc/{pid}/net/{t}").read_text().splitlines()[1:] for t in ("tcp", "tcp6")]
        except OSError:
            continue
        for line in (ln for table in tables for ln in table):
            local, state = line.split()[1], line.split()[3]
            if state != "0A":  # LISTEN
                continue
            ip_hex, port_hex = local.split(":")
            raw = bytes.fromhex(ip_hex)
            raw = b"".join(raw[k:k + 4][::-1] for k in range(0, len(raw), 4))  # host-order 32-bit words
            ip = ipaddress.ip_address(raw)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            out.add((str(ip), int(port_hex, 16)))
        return out
    return set()


class ListenerWatch(threading.Thread):
    """Samples the MPC hosts' listeners while a round runs (MPyC party listeners live only during the MPC)."""

    def __init__(self, topo: netns.Topology, hosts: list[str]) -> None:
        super().__init__(daemon=True)
        self.topo, self.hosts = topo, hosts
        self.seen: dict[str, set[tuple[str, int]]] = {h: set() for h in hosts}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for h in self.hosts:
                self.seen[h] |= _listeners(self.topo, h)
            time.sleep(0.02)


def _free_base() -> int:
    from conftest import find_free_port_base

    return find_free_port_base()


@pytest.fixture(scope="module")
def loopback(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same round on an ordinary one-host network (127.0.0.1): the model hash to compare with."""
    loop_dir = tmp_path_factory.mktemp("loopback") / "net"
    started = time.monotonic()
    try:
        _fedchain([], "network", "up", "--network", str(loop_dir), "--base-port", str(_free_base()),
                  "--min-accepted", "2", timeout=180)
        result = _round(lambda host: [], loop_dir)
    finally:
        subprocess.run([*FEDCHAIN, "network", "down", "--network", str(loop_dir)], capture_output=True,
                       timeout=120, env=_env())
    result["took"] = time.monotonic() - started
    assert set(result["fetched"].values()) == {result["final"]["model_hash"]}
    return result


def _check_round(multi: dict, loopback: dict, stats: dict) -> None:
    """Same accepted set, same model hash as on loopback; every hospital fetched those bytes."""
    assert multi["final"]["accepted"] == ["mh0", "mh1"] and multi["final"]["rejected"] == {"mh2": "cosine"}
    assert multi["final"]["model_hash"] == loopback["final"]["model_hash"]
    assert set(multi["fetched"].values()) == {multi["final"]["model_hash"]}
    assert sum(h["bytes"] for h in stats["hosts"].values()) > 3 * 3 * 400 * 10  # shares crossed the relay


def _watched_round(topo: netns.Topology, directory: Path, party_base: int) -> dict:
    """_round inside the hosts, sampling the MPC hosts' listeners: each MPyC party binds its node's address."""
    watch = ListenerWatch(topo, MPC_HOSTS)
    watch.start()
    try:
        result = _round(topo.exec_prefix, directory)
    finally:
        watch.stop.set()
        watch.join()
    for i, h in enumerate(MPC_HOSTS):
        party = {lst for lst in watch.seen[h] if lst[1] == party_base + i}
        # MPyC: party 0 only dials; parties 1, 2 listen for the lower ones, on their own address only
        assert party == (set() if i == 0 else {(topo.address(h), party_base + i)}), (h, watch.seen[h])
        assert {lst[0] for lst in watch.seen[h]} == {topo.address(h)}, (h, watch.seen[h])
    return result


def _check_reach(topo: netns.Topology, listeners: list[tuple[str, int]]) -> None:
    """Each listener answers on its host's address, not on another host's, not on 127.0.0.1 anywhere."""
    for host, port in listeners:
        addr = topo.address(host)
        assert _reach(topo, "hosp0", addr, port), f"{host}:{port} unreachable from hosp0"
        assert not _reach(topo, "hosp0", "127.0.0.1", port), f"{host}:{port} on hosp0's loopback"
        other = "mpc1" if host != "mpc1" else "mpc2"
        assert not _reach(topo, "hosp0", topo.address(other), port), f"{host}'s port {port} open on {other}"
        assert not _reach(topo, host, "127.0.0.1", port), f"{host}:{port} also bound to 127.0.0.1"


def test_round_across_hosts_matches_loopback(tmp_path: Path, loopback: dict) -> None:
    started = time.monotonic()
    multi_dir = tmp_path / "multihost"
    with netns.Topology(HOSTS, rtt_ms=RTT_MS, rate=RATE) as topo:
        addr = topo.address
        hosts_file = tmp_path / "hosts.json"
        hosts_file.write_text(json.dumps({"ledger": addr("ledger"), "chaincode": addr("chaincode"),
                                          "mpc": [addr(h) for h in MPC_HOSTS]}))
        try:
            _fedchain(topo.exec_prefix("chaincode"), "network", "up", "--network", str(multi_dir), "--hosts",
                      str(hosts_file), "--base-port", str(BASE_PORT), "--min-accepted", "2", "--only",
                      "chaincode", timeout=180)
            _fedchain(topo.exec_prefix("ledger"), "network", "up", "--network", str(multi_dir), "--only", "devnet",
                      timeout=180)
            nodes = [subprocess.Popen([*topo.exec_prefix(h), *FEDCHAIN, "network", "up", "--network", str(multi_dir),
                                       "--only", h], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=_env()) for h in MPC_HOSTS]
            for proc in nodes:
                _, err = proc.communicate(timeout=180)
                assert proc.returncode == 0, err[-3000:]
            up_took = time.monotonic() - started

            network = json.loads((multi_dir / "network.json").read_text())
            assert network["gateway"]["endpoint"] == f"{addr('ledger')}:{BASE_PORT + 1}"
            assert [n["endpoint"] for n in network["mpc_nodes"]] == [f"{addr(h)}:{BASE_PORT + 10 + i}"
                                                                     for i, h in enumerate(MPC_HOSTS)]
            node0 = json.loads((multi_dir / "mpc" / "node0.json").read_text())
            assert node0["listen"] == f"{addr('mpc0')}:{BASE_PORT + 10}"
            assert node0["mpc"]["parties"] == [f"{addr(h)}:{BASE_PORT + 20 + i}" for i, h in enumerate(MPC_HOSTS)]
            _check_sans(multi_dir, addr)
            # every listener of every host binds that host's address, and only the expected ones exist
            expected = {"ledger": {(addr("ledger"), BASE_PORT + 1)}, "chaincode": {(addr("chaincode"), BASE_PORT + 2)}} | {
                h: {(addr(h), BASE_PORT + 10 + i)} for i, h in enumerate(MPC_HOSTS)}
            for host, want in expected.items():
                assert _listeners(topo, host) == want, host

            multi = _watched_round(topo, multi_dir, BASE_PORT + 20)
            assert multi["endpoints"] == [n["endpoint"] for n in network["mpc_nodes"]]
            _check_reach(topo, [("ledger", BASE_PORT + 1), ("chaincode", BASE_PORT + 2)]
                         + [(h, BASE_PORT + 10 + i) for i, h in enumerate(MPC_HOSTS)])
            stats = topo.relay_stats()
        finally:
            for h in reversed(MPC_HOSTS):
                topo.run(h, [*FEDCHAIN, "network", "down", "--network", str(multi_dir), "--only", h],
                         capture_output=True, timeout=60, env=_env())
            for host in ("ledger", "chaincode"):
                topo.run(host, [*FEDCHAIN, "network", "down", "--network", str(multi_dir), "--only",
                                "devnet" if host == "ledger" else "chaincode"], capture_output=True, timeout=60, env=_env())
    _check_round(multi, loopback, stats)
    print(f"\nloopback: {loopback['took']:.1f} s {loopback['timings']}; across hosts (RTT {RTT_MS} ms, {RATE}): "
          f"up {up_took:.1f} s, round {multi['timings']}; total {time.monotonic() - started:.1f} s")


FABRIC_HOSTS = ["operator", "orderer", "peer0", "peer1", "peer2", *MPC_HOSTS, *HOSPITAL_HOSTS.values()]


@pytest.mark.fabric
@pytest.mark.skipif(not os.environ.get("FABRIC_BIN"), reason="FABRIC_BIN is not set: the real-Fabric variant needs "
                    "Hyperledger Fabric 2.5 release binaries (network/fabric/README.md)")
def test_round_across_hosts_on_real_fabric(tmp_path: Path, loopback: dict) -> None:
    """The same round with the ledger as real Fabric: orderer and each org's peer (with its chaincode server)
    on their own hosts, orchestrated (channel, lifecycle) from the operator's host."""
    from fedchain.fabricnet.preflight import FabricTools

    problems = FabricTools.from_env().problems()
    if problems:
        pytest.skip("Fabric release incomplete: " + "; ".join(problems))
    started = time.monotonic()
    d = tmp_path / "fabric"
    with netns.Topology(FABRIC_HOSTS, rtt_ms=RTT_MS, rate=RATE) as topo:
        addr = topo.address
        spec = {
            "settings": {"orderer_host": addr("orderer"), "peer_hosts": [addr(f"peer{i}") for i in range(3)],
                         "mpc_hosts": [addr(h) for h in MPC_HOSTS], "min_accepted": 2},
            "orderer": topo.exec_prefix("orderer"),
            "peers": [topo.exec_prefix(f"peer{i}") for i in range(3)],
            "mpc": [topo.exec_prefix(h) for h in MPC_HOSTS],
        }
        try:
            _actor(topo.exec_prefix("operator"), d, "fabric-up", json.dumps(spec), timeout=400)
            up_took = time.monotonic() - started
            network = json.loads((d / "network.json").read_text())
            assert network["gateway"]["endpoint"].startswith(addr("peer0") + ":")
            assert network["orderer"]["endpoint"].startswith(addr("orderer") + ":")
            for host in ["orderer", "peer0", "peer1", "peer2", *MPC_HOSTS]:
                found = _listeners(topo, host)
                assert found and {a for a, _ in found} == {addr(host)}, (host, found)
            settings = json.loads((d / "fabric.json").read_text())
            multi = _watched_round(topo, d, settings["mpc_party_port"])
            _check_reach(topo, [("orderer", settings["orderer_port"]), ("peer0", settings["peer_base_port"])]
                         + [(h, settings["mpc_intake_port"] + i) for i, h in enumerate(MPC_HOSTS)])
            stats = topo.relay_stats()
        finally:
            topo.run("operator", [sys.executable, str(ACTOR), str(d), "fabric-down"], capture_output=True,
                     timeout=120, env=_env())
    _check_round(multi, loopback, stats)
    print(f"\nreal Fabric across hosts (RTT {RTT_MS} ms, {RATE}): up {up_took:.1f} s, round {multi['timings']}; "
          f"total {time.monotonic() - started:.1f} s")


def _check_sans(directory: Path, addr) -> None:
    """The TLS certificates of the gateway, the chaincode server and each MPC node's intake name their host."""
    from cryptography import x509

    def ips(path: Path) -> set[str]:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}

    devnet = json.loads((directory / "devnet.json").read_text())
    assert addr("ledger") in ips(Path(devnet["tls"]["cert"]))
    assert addr("chaincode") in ips((directory / "chaincode-tls" / "server.crt").resolve())
    assert devnet["chaincodes"][0]["address"] == f"{addr('chaincode')}:{BASE_PORT + 2}"
    assert devnet["chaincodes"][0]["client_cert"]  # the chaincode server takes only the devnet's certificate
    for i, host in enumerate(MPC_HOSTS):
        node = json.loads((directory / "mpc" / f"node{i}.json").read_text())
        assert addr(host) in ips(Path(node["tls"]["cert"]))

