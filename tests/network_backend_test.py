"""The NetworkBackend interface: every backend behind it, the shared policy and port rules, the Compose
runner against a fake `docker`, and network.sh as a thin wrapper over `fedchain network`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fabric_fakes import make_fake_docker
from fedchain.fabricnet.compose import write_compose
from fedchain.fabricnet.compose_run import ComposeNetwork
from fedchain.fabricnet.lifecycle import definition_args
from fedchain.fabricnet.native import FabricNetwork
from fedchain.fabricnet.settings import FabricSettings
from fedchain.netctl.backend import NetworkBackend, detect_kind, open_backend
from fedchain.netctl.embedded import EmbeddedNetwork, EmbeddedSettings
from fedchain.netctl.policy import fabric_signature_policy, parse_policy
from fedchain.netctl.process import NetworkError

REPO = Path(__file__).resolve().parents[1]
MSPS = ["Org1MSP", "Org2MSP", "Org3MSP"]


@pytest.mark.parametrize(("text", "parsed", "fabric"), [
    ("MAJORITY", "MAJORITY", None),
    ("any", "ANY", "OR('Org1MSP.peer','Org2MSP.peer','Org3MSP.peer')"),
    ("ALL", "ALL", "AND('Org1MSP.peer','Org2MSP.peer','Org3MSP.peer')"),
    ("Org2MSP, Org3MSP,Org2MSP", ["Org2MSP", "Org3MSP"], "AND('Org2MSP.peer','Org3MSP.peer')"),
])
def test_one_policy_spelling_for_every_backend(text, parsed, fabric):
    assert parse_policy(text, MSPS) == parsed
    assert fabric_signature_policy(parsed, MSPS) == fabric
    args = definition_args(FabricSettings(endorsement_policy=text), MSPS)
    if fabric is None:
        assert args[-2:] == ["--channel-config-policy", "/Channel/Application/Endorsement"]
    else:
        assert args[-2:] == ["--signature-policy", fabric]


@pytest.mark.parametrize("text", ["Org9MSP", "", " , ", "MOST"])
def test_unknown_policy_is_refused_with_the_choices(text):
    with pytest.raises(ValueError, match="expected MAJORITY, ANY, ALL or MSP ids"):
        parse_policy(text, MSPS)
    with pytest.raises(ValueError):
        FabricSettings(endorsement_policy=text).validate()


def test_base_port_moves_every_fabric_listener_into_one_block():
    base = 30000
    s = FabricSettings.from_base_port(base, orgs=["Org1", "Org2", "Org3"])
    s.validate()  # no port used twice
    ports = s.ports()
    assert all(base <= p < base + 70 for p in ports.values()), ports
    assert [ports[f"mpc{i} intake"] for i in range(3)] == [base + 10, base + 11, base + 12]  # as on the embedded
    assert [ports[f"mpc{i} MPyC party"] for i in range(3)] == [base + 20, base + 21, base + 22]
    assert EmbeddedSettings(base_port=base).mpc_plan().ports() == s.mpc_plan().ports()
    assert ports["orderer"] == base + 30 and s.peer_port(0) == base + 60
    moved = FabricSettings.from_base_port(base, orderer_port=31000)  # a port option overrides the block
    assert moved.orderer_port == 31000 and moved.peer_port(0) == base + 60
    assert FabricSettings(with_mpc=False).mpc_plan().ports() == {}


def test_embedded_policy_reaches_the_devnet_config(tmp_path):
    net = EmbeddedNetwork(tmp_path / "n", EmbeddedSettings(endorsement_policy="Org1MSP,Org3MSP", with_mpc=False))
    net._write_configs(net.consortium())
    devnet = json.loads((tmp_path / "n" / "devnet.json").read_text())
    assert [cc["policy"] for cc in devnet["chaincodes"]] == [["Org1MSP", "Org3MSP"]]
    with pytest.raises(NetworkError, match="unknown: Org7MSP"):
        EmbeddedNetwork(tmp_path / "m", EmbeddedSettings(endorsement_policy="Org7MSP", base_port=1)).up()
    assert not (tmp_path / "m" / "embedded.json").exists()  # refused before a bad setting was saved


def test_every_backend_is_found_from_its_folder(tmp_path):
    with pytest.raises(NetworkError, match="no network in"):
        open_backend(tmp_path / "empty")
    EmbeddedNetwork(tmp_path / "e", EmbeddedSettings())._save_settings()
    FabricSettings().save(tmp_path / "f")
    write_compose(tmp_path / "c", FabricSettings())
    found = {name: open_backend(tmp_path / name) for name in ("e", "f", "c")}
    assert [detect_kind(tmp_path / n) for n in ("e", "f", "c", "empty")] == ["devnet", "fabric", "compose", None]
    assert [type(b) for b in found.values()] == [EmbeddedNetwork, FabricNetwork, ComposeNetwork]
    for backend in found.values():
        assert isinstance(backend, NetworkBackend) and backend.kind == detect_kind(backend.root)
    assert open_backend(tmp_path / "new", "compose").kind == "compose"


@pytest.fixture()
def docker(tmp_path, monkeypatch):
    """A fake `docker` first on PATH; returns the call log reader."""
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{make_fake_docker(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_FABRIC_LOG", str(log))
    monkeypatch.setenv("FAKE_DOCKER_STATE", str(tmp_path / "docker-state.json"))
    return lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _compose_cmds(calls: list[dict]) -> list[list[str]]:
    """Each docker call as [command, service names...] without -f/--project-directory/--profile."""
    out = []
    for c in calls:
        rest = c["args"][1:]
        while rest and rest[0] in ("-f", "--project-directory", "--profile"):
            rest = rest[2:]
        out.append([a for a in rest if not a.startswith("-") and a not in ("json",)])
    return out


def test_compose_backend_starts_only_what_is_down(tmp_path, docker, monkeypatch):
    d = tmp_path / "net"
    write_compose(d, FabricSettings())
    boots, waits, lines = [], [], []
    net = ComposeNetwork(d, bootstrap=boots.append, wait=lambda *a: waits.append(a))
    ledger = ["orderer0.orderer.fedchain.local", "peer0.org1.fedchain.local", "peer0.org2.fedchain.local",
              "peer0.org3.fedchain.local", "chaincode.org1", "chaincode.org2", "chaincode.org3"]
    mpc = ["mpc0", "mpc1", "mpc2"]
    assert net.up(progress=lines.append) == ledger + mpc
    cmds = _compose_cmds(docker())
    ups = [c for c in cmds if c[0] == "up"]
    assert ups == [["up", *ledger, "cli"], ["up", *mpc]]  # MPC nodes after the ledger ...
    assert cmds.index(["up", *mpc]) > max(i for i, c in enumerate(cmds) if c[0] == "exec")  # ... and setup.sh
    assert all(c["cwd"] == str((d / "compose").resolve()) for c in docker() if c["args"][1] == "exec")
    assert boots == [d.resolve()] and len(waits) == 1
    status = net.status()
    assert all(s["running"] for s in status.values()) and status["mpc1"]["kind"] == "mpc"
    assert status["peer0.org1.fedchain.local"]["kind"] == "ledger" and status["chaincode.org2"]["kind"] == "chaincode"

    state = json.loads((tmp_path / "docker-state.json").read_text())
    state["mpc1"] = "exited"  # one MPC node's container died
    (tmp_path / "docker-state.json").write_text(json.dumps(state))
    n = len(docker())
    lines.clear()
    assert ComposeNetwork(d, bootstrap=lambda _d: pytest.fail("bootstrapped twice"), wait=lambda *a: None).up(
        progress=lines.append) == ["mpc1"]
    assert [c for c in _compose_cmds(docker()[n:]) if c[0] not in ("ps", "version")] == [["up", "mpc1"]]  # no setup.sh
    assert any("restarting mpc1 (its container had exited" in line for line in lines)
    assert ComposeNetwork(d).up(progress=lines.append) == [] and "nothing to start" in lines[-1]

    assert sorted(ComposeNetwork(d).down()) == sorted(ledger + mpc)
    assert all(s["state"] == "stopped" for s in ComposeNetwork(d).status().values())


def test_compose_failure_stops_what_it_started(tmp_path, docker, monkeypatch):
    d = tmp_path / "net"
    write_compose(d, FabricSettings())
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "mpc2")
    with pytest.raises(NetworkError, match="fake container mpc2 failed"):
        ComposeNetwork(d, bootstrap=lambda _d: None, wait=lambda *a: None).up()
    assert _compose_cmds(docker())[-1][0] == "stop"
    assert not any(s["running"] for s in ComposeNetwork(d).status().values())


@pytest.mark.parametrize(("docker_script", "message"), [
    (None, "error: docker not found on PATH"),
    ("#!/bin/sh\necho \"unknown shorthand flag: 'f' in -f\" >&2; exit 125\n", "has no compose plugin"),
])
def test_compose_without_docker_compose_is_one_line(tmp_path, docker_script, message):
    d = tmp_path / "net"
    write_compose(d, FabricSettings())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if docker_script:  # a docker CLI without the compose plugin
        (bin_dir / "docker").write_text(docker_script)
        (bin_dir / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    proc = subprocess.run([sys.executable, "-m", "fedchain.cli.main", "network", "status", "--network", str(d)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def _network_sh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "network/fabric/scripts/network.sh"), *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=REPO)


def test_network_sh_is_fedchain_network(tmp_path):
    """Same parser, same checks, same messages: network.sh up == fedchain network up --fabric."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABRIC_")} | {"PYTHON": sys.executable}
    d = tmp_path / "fab"
    sh = _network_sh("up", "--network", str(d), "--base-port", "30000", env=env)
    cli = subprocess.run([sys.executable, "-m", "fedchain.cli.main", "network", "up", "--fabric", "--network", str(d),
                          "--base-port", "30000"], capture_output=True, text=True, timeout=120, env=env)
    assert sh.returncode == cli.returncode == 1 and sh.stderr == cli.stderr
    assert "FABRIC_BIN is not set" in sh.stderr and "Traceback" not in sh.stderr and not d.exists()
    assert _network_sh("--help", env=env).returncode == 0
    bad = _network_sh("start", env=env)
    assert bad.returncode == 2 and "usage" in bad.stderr
    help_up = _network_sh("up", "--help", env=env)
    assert help_up.returncode == 0 and "--base-port" in help_up.stdout and "--policy" in help_up.stdout
