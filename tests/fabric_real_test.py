"""REAL Fabric 2.5 networks (native binaries, one host): the round scenario, and the operator's path.

Runs only when FABRIC_BIN points at a Fabric release's bin/ (FABRIC_CFG / FABRIC_CCAAS_BUILDER
default to the release's config/ and builders/ccaas/).
1. The embedded network's round scenario: brought up with fedchain.fabricnet (no MPC node
   processes: the test attests by hand), then driven exclusively through network.json, the
   wallet, the gateway client and FLClient, as hospitals, MPC nodes and auditors do: genesis,
   round, submissions, close, attestations (quorum -> finalize), model publish and fetch,
   history, then a restart that keeps the ledger.
2. What the README tells an operator to type: `network.sh up` (consortium initialised, MPC
   nodes started, ports from --base-port, endorsement policy ALL), a crashed chaincode server
   and MPC node restarted alone by `network.sh up`, then `fedchain demo --network D` unchanged
   and `fedchain audit verify --network D`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fedchain import fabricnet
from fedchain.fabricnet.preflight import FabricTools
from fedchain.fabricnet.settings import FabricSettings
from fedchain.identity import Consortium
from fedchain.netconfig import load_network
from fedchain.netctl.process import free_port, pid_alive

REPO = Path(__file__).resolve().parents[1]


def _skip_reason() -> str | None:
    if not os.environ.get("FABRIC_BIN"):
        return ("FABRIC_BIN is not set: this test needs Hyperledger Fabric 2.5 release binaries "
                "(peer, orderer, configtxgen, osnadmin); see network/fabric/README.md")
    problems = FabricTools.from_env().problems()
    if problems:
        return "Fabric release incomplete: " + "; ".join(problems)
    for module in ("fedchain.fl_client", "fedchain_cc.__main__"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not available yet (needed to drive / serve the FL chaincode)"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.fabric, pytest.mark.timeout(900),
              pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")]

SPEC = {"arch": "tiny_cnn", "param_count": 1000, "in_channels": 1}
GENESIS = b"genesis-model-bytes" * 10
NEW_MODEL = b"model-after-round-1" * 7
HOSPITALS = ("hospital1", "hospital2", "hospital3")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _settings() -> FabricSettings:
    base = free_port()
    return FabricSettings(
        orderer_port=free_port(), orderer_admin_port=free_port(), orderer_operations_port=free_port(),
        peer_base_port=base, peer_port_step=2, peer_operations_base_port=free_port(), chaincode_port=free_port(),
        with_mpc=False,  # this scenario attests by hand, as the MPC nodes would
    )


def _fedchain(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The installed console script, as an operator or auditor types it."""
    return subprocess.run([str(Path(sys.executable).with_name("fedchain")), *args], capture_output=True, text=True,
                          timeout=timeout)


def _audit(d, *extra: str) -> subprocess.CompletedProcess:
    return _fedchain("audit", "verify", "--network", str(d), *extra)


def _client(cfg, name: str):
    from fedchain.fl_client import FLClient

    gw = cfg.connect(name)
    return gw, FLClient(cfg.contract(gw))


def test_round_scenario_on_real_fabric(tmp_path):
    from fedchain.fl_client import mpc_node_entry, participant_entry
    from fedchain.records import Round

    d = tmp_path / "net"
    t0 = time.monotonic()
    fabricnet.up(d, _settings(), progress=lambda m: print("  -", m))
    bring_up_s = time.monotonic() - t0
    gateways = []
    try:
        cfg = load_network(d)
        assert cfg.kind == "fabric"
        fresh = _audit(d)  # the lifecycle transactions (approve per org, commit) under Fabric's own policies
        assert fresh.returncode == 0, fresh.stdout + fresh.stderr
        consortium = Consortium.load(d / "crypto")
        wallet = cfg.wallet
        for i, name in enumerate(HOSPITALS):
            wallet.put(name, consortium.enroll(consortium.orgs[i % 3].msp_id, name, "hospital"))

        gw, op = _client(cfg, "operator")
        gateways.append(gw)
        try:
            op.get_consortium()  # a launcher bootstrap hook may have initialized it already
        except Exception:
            mpc = [wallet.get(f"mpc{j}") for j in range(3)]
            op.init_consortium({"mpc_nodes": [mpc_node_entry(f"mpc{j}", m) for j, m in enumerate(mpc)],
                                "threshold": 1, "quorum": 2,
                                "default_policy": {"norm_bound": 10.0, "cosine_min": 0.0},
                                "max_model_bytes": 64 * 1024})
        registered = {p.id for p in op.list_participants()}
        for name in HOSPITALS:
            op.register_participant(participant_entry(name, wallet.get(name), "hospital", sample_cap=1000))
        if "auditor" not in registered:
            op.register_participant(participant_entry("auditor", wallet.get("auditor"), "auditor"))
        if op.head().model_hash is None:
            op.publish_genesis_model(SPEC, GENESIS)
        head = op.head()
        assert head.finalized_round_id is not None
        spec_record = op.get_round(head.finalized_round_id).model_spec
        spec = spec_record.to_json()
        created = op.create_round({"round_id": head.last_round_id + 1, "base_model_hash": head.model_hash,
                                   "model_spec": spec, "hyperparameters": {"lr": 0.01, "epochs": 1},
                                   # attested by hand below: no FLTrust reference, so no cosine check
                                   "policy": {"cosine_enabled": False},
                                   "deadline": time.time() + 3600, "min_updates": 2})
        assert created.validation_code_name == "VALID"
        rid = head.last_round_id + 1

        for name in HOSPITALS:  # each hospital submits through its own gateway connection
            hgw, hc = _client(cfg, name)
            gateways.append(hgw)
            hc.submit_update({"round_id": rid, "share_hashes": [_sha(f"{rid}/{name}/{j}".encode()) for j in range(3)],
                              "n_samples": 100, "dim": spec_record.param_count})
        op.close_round(rid)
        assert op.get_round(rid).state == "CLOSED"

        att = {"round_id": rid, "model_hash": _sha(NEW_MODEL), "accepted": list(HOSPITALS), "rejected": {},
               "report_hash": _sha(b"report1")}
        nodes = []
        for node in op.get_consortium().mpc_nodes:  # until the quorum (2 of 3 here) finalizes the round
            mgw, mc = _client(cfg, node.id)
            gateways.append(mgw)
            mc.attest_result(att)
            nodes.append(mc)
            if op.get_round(rid).state == "FINALIZED":
                break
        rnd = op.get_round(rid)
        assert rnd.state == "FINALIZED" and rnd.finalized is not None and rnd.finalized.model_hash == _sha(NEW_MODEL)
        nodes[0].publish_model(rid, NEW_MODEL)

        agw, auditor = _client(cfg, "auditor")
        gateways.append(agw)
        assert auditor.get_model(rid).model == NEW_MODEL
        hist = auditor.get_history("round", str(rid))  # needs the history database on every peer
        states = [e.record(Round).state for e in hist]  # type: ignore[union-attr]
        assert states[0] == "FINALIZED" and states[-1] == "OPEN"
        assert len(auditor.get_updates(rid)) == 3

        # chaincode events through the peer's Gateway ChaincodeEvents stream
        seen = []
        with gw.network(cfg.channel).chaincode_events(cfg.chaincode, start_block=created.block_number) as stream:
            for ev in stream:
                if json.loads(ev.payload).get("round_id") == rid:
                    seen.append(ev.event_name)
                if ev.event_name == "RoundFinalized":
                    break
        assert seen == ["RoundCreated", *["UpdateSubmitted"] * 3, "RoundClosed", "RoundFinalized"]

        # blocks through qscc, as `fedchain network status` and the auditor read them
        from fabric_protos.common import ledger_pb2

        info = ledger_pb2.BlockchainInfo.FromString(
            agw.network(cfg.channel).contract("qscc").evaluate("GetChainInfo", cfg.channel))
        assert info.height >= 10
        for g in gateways:
            g.close()
        gateways.clear()

        # restart on the same ledger
        assert len(fabricnet.down(d)) == 7  # orderer, 3 peers, 3 chaincode servers
        fabricnet.up(d)
        gw, op = _client(cfg, "operator")
        gateways.append(gw)
        assert op.get_round(rid).state == "FINALIZED"
        op.create_round({"round_id": rid + 1, "base_model_hash": _sha(NEW_MODEL), "model_spec": spec,
                         "hyperparameters": {"lr": 0.01, "epochs": 1}, "deadline": time.time() + 3600,
                         "min_updates": 1})
        assert op.get_round(rid + 1).state == "OPEN"
        audited = _audit(d)  # the whole history, across the restart, must audit clean
        assert audited.returncode == 0, audited.stdout + audited.stderr
        print(f"bring-up {bring_up_s:.1f} s, chain height before restart {info.height}")
    finally:
        for g in gateways:
            g.close()
        fabricnet.down(d)


def _network_sh(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run([str(REPO / "network/fabric/scripts/network.sh"), *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=REPO)


def _operator_campaign(d: Path, tmp_path: Path) -> float:
    """`fedchain operator run` for one more round after the demo's, with three `fedchain hospital run`
    followers enrolled and registered as docs/operator.md shows; returns the operator's seconds."""
    net = ["--network", str(d)]
    for name in ("root", "h5", "h6", "h7"):
        made = _fedchain("data", "synth", "--out", str(tmp_path / f"{name}.npz"), "--n-train", "300",
                         "--seed", str(len(name) + ord(name[-1])))
        assert made.returncode == 0, made.stderr
    followers = []
    for i, org in ((5, "Org1MSP"), (6, "Org2MSP"), (7, "Org3MSP")):
        for argv in (["network", "enroll", f"hospital{i}", "--role", "hospital", "--org", org, *net],
                     ["participant", "register", f"hospital{i}", "--role", "hospital", "--wallet-entry",
                      f"hospital{i}", "--sample-cap", "5000", *net]):
            done = _fedchain(*argv)
            assert done.returncode == 0, done.stdout + done.stderr
        followers.append(subprocess.Popen(
            [str(Path(sys.executable).with_name("fedchain")), "hospital", "run", "--wallet", f"hospital{i}",
             "--data", str(tmp_path / f"h{i}.npz"), "--rounds", "1", "--no-progress", *net],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        t0 = time.monotonic()
        run = _fedchain("operator", "run", *net, "--rounds", "2", "--root-data", str(tmp_path / "root.npz"),
                        "--min-updates", "3", "--deadline", "300", "--report-json", str(tmp_path / "op.json"),
                        timeout=600)
        took = time.monotonic() - t0
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        rounds = json.loads((tmp_path / "op.json").read_text())["rounds"]
        assert [r["round"] for r in rounds][-1] == 2
        for f in followers:
            out, _ = f.communicate(timeout=120)
            assert f.returncode == 0, out[-2000:]
            assert "round 2" in out
        return took
    finally:
        for f in followers:
            if f.poll() is None:
                f.kill()


def test_network_sh_up_then_demo_and_audit(tmp_path):
    from conftest import find_free_port_base

    d = tmp_path / "net"
    base = find_free_port_base(70)
    t0 = time.monotonic()
    up = _network_sh("up", "--network", str(d), "--base-port", str(base), "--policy", "ALL")
    up_s = time.monotonic() - t0
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "bootstrapping the consortium on the ledger" in up.stderr and "starting mpc2" in up.stderr
        assert "--signature-policy AND('Org1MSP.peer','Org2MSP.peer','Org3MSP.peer')" in (
            d / "logs" / "setup.log").read_text()
        cfg = load_network(d)
        assert cfg.kind == "fabric" and cfg.gateway.endpoint == f"127.0.0.1:{base + 60}"
        assert [n.endpoint for n in cfg.mpc_nodes] == [f"127.0.0.1:{base + 10 + i}" for i in range(3)]
        status = json.loads(_fedchain("network", "status", "--network", str(d), "--json").stdout)
        assert all(s["running"] for s in status["services"].values()) and len(status["services"]) == 10

        # a crashed chaincode server and MPC node: `up` again restarts exactly those
        killed = ["chaincode.org2", "mpc1"]
        for name in killed:  # processes this test started (through network.sh), by their pid
            os.kill(status["services"][name]["pid"], 9)
        for name in killed:
            deadline = time.monotonic() + 10
            while pid_alive(status["services"][name]["pid"]) and time.monotonic() < deadline:
                time.sleep(0.05)
        assert _network_sh("status", "--network", str(d)).returncode == 3
        again = _network_sh("up", "--network", str(d))
        assert again.returncode == 0, again.stdout + again.stderr
        assert "starting only chaincode.org2, mpc1" in again.stderr
        assert [line for line in again.stderr.splitlines() if line.startswith("  - restarting")] == [
            f"  - restarting {n} (it had exited; previous output in {d / 'logs' / (n + '.log')})" for n in killed]
        after = json.loads(_fedchain("network", "status", "--network", str(d), "--json").stdout)["services"]
        assert all(s["running"] for s in after.values())
        assert {n: s["pid"] for n, s in after.items() if n not in killed} == {
            n: s["pid"] for n, s in status["services"].items() if n not in killed}

        # the README's next command, unchanged; every transaction needs all three orgs (policy ALL),
        # so the restarted chaincode server of Org2 must endorse
        t1 = time.monotonic()
        demo = _fedchain("demo", "--network", str(d), "--rounds", "1", "--hospitals", "4", "--malicious", "1",
                         "--report-dir", str(tmp_path / "report"), "--report-json", str(tmp_path / "report.json"),
                         timeout=600)
        demo_s = time.monotonic() - t1
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "using the network running in" in demo.stderr
        report = json.loads((tmp_path / "report.json").read_text())
        assert [r["round"] for r in report["rounds"]] == [1]
        audited = _audit(d)
        assert audited.returncode == 0, audited.stdout + audited.stderr

        # the operator's campaign on the same ledger, unchanged: three hospitals of their own follow it
        t2 = time.monotonic()
        operator_s = _operator_campaign(d, tmp_path)
        audited = _audit(d)
        assert audited.returncode == 0, audited.stdout + audited.stderr
        assert _audit(d, "--policy", "ALL").returncode == 0  # every transaction was endorsed by all three orgs
        print(f"network.sh up {up_s:.1f} s, demo {demo_s:.1f} s, operator run {operator_s:.1f} s "
              f"(with set-up {time.monotonic() - t2:.1f} s)")
    finally:
        down = _network_sh("down", "--network", str(d))
        assert down.returncode == 0, down.stderr
