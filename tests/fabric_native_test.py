"""Native orchestration against a fake Fabric release: step order, restart on the same ledger, cleanup on failure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fabric_fakes import apply_env, fake_env, make_fake_release
from fedchain import fabricnet
from fedchain.fabricnet.settings import FabricSettings
from fedchain.netconfig import load_network
from fedchain.netctl.process import free_port, pid_alive

ORGS = ["Org1", "Org2"]


@pytest.fixture(autouse=True)
def fake_discovery(monkeypatch):
    """The fake peers have no discovery service: answer "ready" and record who was asked."""
    from fedchain.fabricnet import native
    from fedchain.fabricnet.discovery import EndorsementPlan

    asked: list[tuple[str, str, str]] = []

    def plan(endpoint, root, server_name, signer, channel, chaincode, timeout=5.0):
        asked.append((endpoint, server_name, signer.msp_id))
        return EndorsementPlan(None, {"G0": 1, "G1": 1}, [{"G0": 1, "G1": 1}])

    monkeypatch.setattr(native, "endorsement_plan", plan)
    return asked


def _settings(release) -> FabricSettings:
    ports = [free_port() for _ in range(4)]
    peer_base = free_port()
    return FabricSettings(
        orgs=ORGS, orderer_port=ports[0], orderer_admin_port=ports[1], orderer_operations_port=ports[2],
        chaincode_port=ports[3], peer_base_port=peer_base, peer_port_step=3,
        peer_operations_base_port=free_port(), chaincode_command=[sys.executable, str(release["chaincode"])],
    )


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
    mpc = fabricnet.ExtraService("mpc0", [sys.executable, str(release["chaincode"])],
                                 {"CHAINCODE_ID": "mpc0", "CHAINCODE_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"})
    entry = {"index": 0, "id": "mpc0", "endpoint": "127.0.0.1:1", "tls_root_cert": "crypto/x.pem"}
    boots = []

    def bootstrap(directory):
        assert load_network(directory).kind == "fabric"  # network.json is there for the bootstrap
        assert not fabricnet.status(directory)["services"]["mpc0"]["running"]  # MPC nodes start after it
        assert fabricnet.status(directory)["services"]["chaincode.org1"]["running"]
        boots.append(directory)

    net = fabricnet.up(d, _settings(release), extra_services=[mpc], mpc_nodes=[entry], bootstrap=bootstrap)
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
        assert [a[1] for a in fake_discovery] == ["peer0.org1.fedchain.local", "peer0.org2.fedchain.local"]
        commit = _calls(log)[-1]["args"]
        assert commit.count("--peerAddresses") == 2 and "--channel-config-policy" in commit
        approvals = {c["msp"]: c["args"][c["args"].index("--package-id") + 1]
                     for c in _calls(log) if "approveformyorg" in c["args"]}
        assert approvals == net.state()["package_ids"] and set(approvals) == {"Org1MSP", "Org2MSP"}
        assert len(set(approvals.values())) == 2  # each org its own package -> its own chaincode server
        assert all(p.startswith("fedchain_1.0:") for p in approvals.values())
        installs = {c["msp"]: c["args"][3] for c in _calls(log) if c["args"][:3] == ["lifecycle", "chaincode", "install"]}
        assert installs["Org1MSP"] != installs["Org2MSP"]
        cfg = load_network(d)
        assert cfg.kind == "fabric" and cfg.channel == "fedchain" and cfg.chaincode == "fedchain"
        assert cfg.gateway.endpoint == f"127.0.0.1:{net.settings.peer_port(0)}"
        assert cfg.gateway.tls_root_cert.is_file() and cfg.gateway.server_name == "peer0.org1.fedchain.local"
        assert set(cfg.wallet.list()) >= {"operator", "auditor", "mpc0", "mpc1", "mpc2"}
        assert cfg.identity("operator").identity.role == "operator"
        st = fabricnet.status(d)
        assert set(st["services"]) == {"orderer", "peer0.org1.fedchain.local", "peer0.org2.fedchain.local",
                                       "chaincode.org1", "chaincode.org2", "mpc0"}
        assert [n.id for n in cfg.mpc_nodes] == ["mpc0"]
        assert all(s["running"] for s in st["services"].values())
        for org in ("Org1MSP", "Org2MSP"):
            name = f"chaincode.{org[:4].lower()}"
            assert f"READY {approvals[org]}" in (d / "logs" / f"{name}.log").read_text()
        pids = [s["pid"] for s in st["services"].values()]
    finally:
        stopped = fabricnet.down(d)
    assert stopped[0] == "mpc0" and len(stopped) == 6 and not any(pid_alive(p) for p in pids)
    assert not list((d / "run").glob("*.pid"))
    # restart: same ledger and package, no one-time step again
    (d / "ledger" / "orderer").mkdir(parents=True, exist_ok=True)
    (d / "ledger" / "orderer" / "marker").write_text("kept")
    before = len(_calls(log))
    fabricnet.up(d, bootstrap=bootstrap)
    assert len(boots) == 1  # once per network, not per restart
    try:
        assert _steps(_calls(log)[before:]) == ["orderer", "peer node start Org1MSP", "peer node start Org2MSP"]
        assert (d / "ledger" / "orderer" / "marker").read_text() == "kept"
        assert all(s["running"] for s in fabricnet.status(d)["services"].values())
        with pytest.raises(fabricnet.FabricNetworkError, match="already running"):
            fabricnet.up(d)
    finally:
        fabricnet.down(d)


@pytest.mark.slow
@pytest.mark.parametrize("fail", ["configtxgen", "peer:install"])
def test_failure_stops_everything_started(tmp_path, monkeypatch, fail):
    release = make_fake_release(tmp_path / "release")
    log = tmp_path / "calls.jsonl"
    apply_env(monkeypatch, fake_env(release, log, ORGS, fail=fail))
    d = tmp_path / "net"
    with pytest.raises(fabricnet.FabricNetworkError) as err:
        fabricnet.up(d, _settings(release))
    assert "nothing left running" in str(err.value) and "fake" in str(err.value)
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
    ran = []
    fabricnet.up(d, bootstrap=ran.append)
    try:
        assert ran == [d.resolve()] and fabricnet.FabricNetwork(d).state()["bootstrapped"] is True
    finally:
        fabricnet.down(d)
