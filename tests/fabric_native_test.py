"""Native orchestration against a fake Fabric release: step order, MPC nodes and bootstrap, restart on the
same ledger, partial restart, cleanup on failure."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from conftest import find_free_port_base
from fabric_fakes import apply_env, fake_env, make_fake_release
from fedchain import fabricnet
from fedchain.fabricnet.settings import FabricSettings
from fedchain.netconfig import load_network
from fedchain.netctl.process import free_port, pid_alive

ORGS = ["Org1", "Org2"]


@pytest.fixture(autouse=True)
def fake_discovery(monkeypatch):
    """The fake peers have no discovery service: answer "ready" and record who was asked."""
    from fedchain.fabricnet import readiness
    from fedchain.fabricnet.discovery import EndorsementPlan

    asked: list[tuple[str, str, str]] = []

    def plan(endpoint, root, server_name, signer, channel, chaincode, timeout=5.0):
        asked.append((endpoint, server_name, signer.msp_id))
        return EndorsementPlan(None, {"G0": 1, "G1": 1}, [{"G0": 1, "G1": 1}])

    monkeypatch.setattr(readiness, "endorsement_plan", plan)
    return asked


def _settings(release, **kwargs) -> FabricSettings:
    """Every listener in one free block (FabricSettings.from_base_port), fake chaincode servers and MPC nodes."""
    return FabricSettings.from_base_port(
        find_free_port_base(70), orgs=ORGS, chaincode_command=[sys.executable, str(release["chaincode"])],
        mpc_command=[sys.executable, str(release["mpc"])], **kwargs)


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _steps(calls: list[dict]) -> list[str]:
    out = []
    for c in calls:
        a = c["args"]
        if c["bin"] == "peer" and a[:1] == ["lifecycle"]:
            out.append(f"peer {a[2]} {c['msp']}".strip())
        elif c["bin"] == "peer":
            out.append(f"peer {' '.join(a[:2])} {c['msp']}".strip())
        else:
            out.append(f"{c['bin']} {' '.join(a[:2])}".strip())
    return out


@pytest.mark.slow
def test_up_down_restart_with_fake_release(tmp_path, monkeypatch, fake_discovery):
    release = make_fake_release(tmp_path / "release")
    log = tmp_path / "calls.jsonl"
    apply_env(monkeypatch, fake_env(release, log, ORGS))
    d = tmp_path / "net"
    boots = []

    def bootstrap(directory):
        assert load_network(directory).kind == "fabric"  # network.json is there for the bootstrap
        st = fabricnet.status(directory)["services"]
        assert not any(st[f"mpc{i}"]["running"] for i in range(3))  # MPC nodes start after it
        assert st["chaincode.org1"]["running"] and st["peer0.org2.fedchain.local"]["running"]
        boots.append(directory)

    settings = _settings(release)
    base = settings.orderer_port - 30
    net = fabricnet.up(d, settings, bootstrap=bootstrap)
    try:
        steps = _steps(_calls(log))
        assert steps == [
            "orderer", "configtxgen -profile FedchainChannel", "osnadmin channel join",
            "peer node start Org1MSP", "peer channel join Org1MSP", "peer node start Org2MSP", "peer channel join Org2MSP",
            "peer install Org1MSP", "peer calculatepackageid Org1MSP",
            "peer install Org2MSP", "peer calculatepackageid Org2MSP",
            "peer approveformyorg Org1MSP", "peer approveformyorg Org2MSP",
            "peer checkcommitreadiness Org1MSP", "peer commit Org1MSP",
        ]
        assert boots == [d.resolve()]
        assert [a[1] for a in fake_discovery] == ["peer0.org1.fedchain.local", "peer0.org2.fedchain.local"]
        commit = _calls(log)[-1]["args"]
        assert commit.count("--peerAddresses") == 2
        assert commit[commit.index("--channel-config-policy") + 1] == "/Channel/Application/Endorsement"  # MAJORITY
        approvals = {c["msp"]: c["args"][c["args"].index("--package-id") + 1]
                     for c in _calls(log) if "approveformyorg" in c["args"]}
        assert approvals == net.state()["package_ids"] and set(approvals) == {"Org1MSP", "Org2MSP"}
        assert len(set(approvals.values())) == 2  # each org its own package -> its own chaincode server
        assert all(p.startswith("fedchain_1.0:") for p in approvals.values())
        installs = {c["msp"]: c["args"][3] for c in _calls(log) if c["args"][:3] == ["lifecycle", "chaincode", "install"]}
        assert installs["Org1MSP"] != installs["Org2MSP"]
        cfg = load_network(d)
        assert cfg.kind == "fabric" and cfg.channel == "fedchain" and cfg.chaincode == "fedchain"
        assert cfg.gateway.endpoint == f"127.0.0.1:{base + 60}"  # --base-port: peer of Org1 at base+60
        assert cfg.gateway.tls_root_cert.is_file() and cfg.gateway.server_name == "peer0.org1.fedchain.local"
        assert set(cfg.wallet.list()) >= {"operator", "auditor", "mpc0", "mpc1", "mpc2"}
        assert cfg.identity("operator").identity.role == "operator"
        st = fabricnet.status(d)
        assert set(st["services"]) == {"orderer", "peer0.org1.fedchain.local", "peer0.org2.fedchain.local",
                                       "chaincode.org1", "chaincode.org2", "mpc0", "mpc1", "mpc2"}
        assert all(s["running"] and s["state"] == "running" for s in st["services"].values())
        # the MPC nodes: the same node.json files and network.json entries as on the embedded network
        assert [(n.id, n.endpoint) for n in cfg.mpc_nodes] == [(f"mpc{i}", f"127.0.0.1:{base + 10 + i}")
                                                                 for i in range(3)]
        for i in range(3):
            node = json.loads((d / "mpc" / f"node{i}.json").read_text())
            assert node["network"] == str(d.resolve()) and node["mpc"]["threshold"] == 1
            assert node["mpc"]["parties"] == [f"127.0.0.1:{base + 20 + j}" for j in range(3)]
            assert f"READY 127.0.0.1:{base + 10 + i} mpc{i}" in (d / "logs" / f"mpc{i}.log").read_text()
        for org in ("Org1MSP", "Org2MSP"):
            name = f"chaincode.{org[:4].lower()}"
            assert f"READY {approvals[org]}" in (d / "logs" / f"{name}.log").read_text()
        pids = [s["pid"] for s in st["services"].values()]
    finally:
        stopped = fabricnet.down(d)
    assert stopped[:3] == ["mpc2", "mpc1", "mpc0"] and len(stopped) == 8 and not any(pid_alive(p) for p in pids)
    assert not list((d / "run").glob("*.pid"))
    assert all(s["state"] == "stopped" for s in fabricnet.status(d)["services"].values())
    # restart: same ledger and package, no one-time step again, no second bootstrap
    (d / "ledger" / "orderer").mkdir(parents=True, exist_ok=True)
    (d / "ledger" / "orderer" / "marker").write_text("kept")
    before = len(_calls(log))
    fabricnet.up(d, bootstrap=bootstrap)
    assert len(boots) == 1  # once per network, not per restart
    try:
        assert _steps(_calls(log)[before:]) == ["orderer", "peer node start Org1MSP", "peer node start Org2MSP"]
        assert (d / "ledger" / "orderer" / "marker").read_text() == "kept"
        st = fabricnet.status(d)["services"]
        assert all(s["running"] for s in st.values())
        before = len(_calls(log))
        lines: list[str] = []
        assert fabricnet.FabricNetwork(d).up(progress=lines.append) == []  # everything runs: nothing to do
        assert _calls(log)[before:] == [] and "nothing to start" in lines[-1]
        assert {n: s["pid"] for n, s in fabricnet.status(d)["services"].items()} == {n: s["pid"] for n, s in st.items()}
    finally:
        fabricnet.down(d)


@pytest.mark.slow
def test_partial_restart_starts_only_what_is_down(tmp_path, monkeypatch):
    """One MPC node, one chaincode server and one peer killed: `up` restarts exactly those, re-runs no
    one-time step, leaves the others' processes alone and says what it restarts."""
    release = make_fake_release(tmp_path / "release")
    log = tmp_path / "calls.jsonl"
    apply_env(monkeypatch, fake_env(release, log, ORGS))
    d = tmp_path / "net"
    fabricnet.up(d, _settings(release, endorsement_policy="ANY"), bootstrap=lambda _d: None)
    try:
        approve = next(c["args"] for c in _calls(log) if "approveformyorg" in c["args"])
        assert approve[approve.index("--signature-policy") + 1] == "OR('Org1MSP.peer','Org2MSP.peer')"
        assert "--channel-config-policy" not in approve
        before = fabricnet.status(d)["services"]
        killed = ["peer0.org2.fedchain.local", "chaincode.org2", "mpc1"]
        for name in killed:  # processes this test started (through up), by their pid
            os.kill(before[name]["pid"], signal.SIGKILL)
        for name in killed:
            _wait_dead(before[name]["pid"])
        st = fabricnet.status(d)["services"]
        assert [n for n, s in st.items() if not s["running"]] == killed
        assert all(st[n]["state"] == "exited" for n in killed)
        n_calls = len(_calls(log))
        lines: list[str] = []
        started = fabricnet.FabricNetwork(d, bootstrap=lambda _d: pytest.fail("bootstrapped twice")).up(
            progress=lines.append)
        assert started == killed
        assert _steps(_calls(log)[n_calls:]) == ["peer node start Org2MSP"]  # no join, install, approve, commit
        assert any(line.startswith("already running: orderer, peer0.org1.fedchain.local, chaincode.org1, mpc0, mpc2")
                   for line in lines)
        assert [line for line in lines if line.startswith("restarting")] == [
            f"restarting {n} (it had exited; previous output in {d.resolve() / 'logs' / (n + '.log')})" for n in killed]
        after = fabricnet.status(d)["services"]
        assert all(s["running"] for s in after.values())
        assert all(after[n]["pid"] == before[n]["pid"] for n in after if n not in killed)
        assert all(after[n]["pid"] != before[n]["pid"] for n in killed)
    finally:
        fabricnet.down(d)


def _wait_dead(pid: int, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid)


@pytest.mark.slow
@pytest.mark.parametrize("fail", ["configtxgen", "peer:install"])
def test_failure_stops_everything_started(tmp_path, monkeypatch, fail):
    release = make_fake_release(tmp_path / "release")
    log = tmp_path / "calls.jsonl"
    apply_env(monkeypatch, fake_env(release, log, ORGS, fail=fail))
    d = tmp_path / "net"
    with pytest.raises(fabricnet.FabricNetworkError) as err:
        fabricnet.up(d, _settings(release), bootstrap=lambda _d: None)
    assert "nothing half-started is left running" in str(err.value) and "fake" in str(err.value)
    st = fabricnet.status(d)
    assert st["services"] and not any(s["running"] for s in st["services"].values())
    assert not list((d / "run").glob("*.pid"))
    started = [c for c in _calls(log) if c["bin"] == "orderer" or c["args"][:2] == ["node", "start"]]
    assert len(started) == (1 if fail == "configtxgen" else 3)
    assert not (d / "network.json").exists()


def test_missing_binary_starts_nothing(tmp_path, monkeypatch):
    release = make_fake_release(tmp_path / "release")
    (release["bin"] / "osnadmin").unlink()
    log = tmp_path / "calls.jsonl"
    apply_env(monkeypatch, fake_env(release, log, ORGS))
    with pytest.raises(fabricnet.PreflightError, match="binary osnadmin not found"):
        fabricnet.up(tmp_path / "net", _settings(release))
    assert _calls(log) == [] and not (tmp_path / "net" / "crypto").exists()


def test_gossip_metric_reader():
    import http.server
    import threading

    from fedchain.fabricnet.procs import gossip_peers_known

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            body = (b'# HELP gossip_membership_total_peers_known Total known peers\n'
                    b'gossip_membership_total_peers_known{channel="other"} 9\n'
                    b'gossip_membership_total_peers_known{channel="fedchain"} 2\n')
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        port = srv.server_address[1]
        assert gossip_peers_known("127.0.0.1", port, "fedchain") == 2
        assert gossip_peers_known("127.0.0.1", port, "nochannel") == 0
    finally:
        srv.shutdown()
        srv.server_close()
    assert gossip_peers_known("127.0.0.1", free_port(), "fedchain", timeout=0.5) is None


def test_operator_cli_reports_missing_release(tmp_path):
    import subprocess

    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("FABRIC_")}
    proc = subprocess.run([sys.executable, "-m", "fedchain.fabricnet", "up", "--dir", str(tmp_path / "n")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "FABRIC_BIN is not set" in proc.stderr and "FABRIC_CCAAS_BUILDER is not set" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "n").exists()
    proc = subprocess.run([sys.executable, "-m", "fedchain.fabricnet", "status", "--dir", str(tmp_path / "n")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and '"services": {}' in proc.stdout


@pytest.mark.slow
def test_failed_bootstrap_stops_everything_and_runs_again(tmp_path, monkeypatch):
    release = make_fake_release(tmp_path / "release")
    apply_env(monkeypatch, fake_env(release, tmp_path / "calls.jsonl", ORGS))
    d = tmp_path / "net"

    def broken(directory):
        raise RuntimeError("InitConsortium refused")

    with pytest.raises(RuntimeError, match="InitConsortium refused"):
        fabricnet.up(d, _settings(release), bootstrap=broken)
    st = fabricnet.status(d)
    assert st["services"] and not any(s["running"] for s in st["services"].values())
    assert not any((d / "logs" / f"mpc{i}.log").exists() for i in range(3))  # never started
    ran = []
    fabricnet.up(d, bootstrap=ran.append)
    try:
        assert ran == [d.resolve()] and fabricnet.FabricNetwork(d).state()["bootstrapped"] is True
    finally:
        fabricnet.down(d)
