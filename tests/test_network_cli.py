"""`fedchain network up|status|down|enroll` on the embedded network (ledger only: MPC nodes have their own tests)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys

import pytest
from conftest import find_free_port_base
from fedchain.fl_client import FLClient
from fedchain.netconfig import load_network

pytestmark = pytest.mark.slow




def fedchain(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "fedchain.cli.main", *args], capture_output=True, text=True,
                          timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"fedchain {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture()
def netdir(tmp_path):
    d = tmp_path / "net"
    yield d
    fedchain("network", "down", "--dir", str(d), check=False)


def test_up_status_down_restart(netdir):
    base = find_free_port_base()
    fedchain("network", "up", "--dir", str(netdir), "--no-mpc", "--base-port", str(base))
    cfg = load_network(netdir)
    assert cfg.kind == "devnet" and cfg.channel == "fedchain" and cfg.gateway.endpoint == f"127.0.0.1:{base + 1}"
    for name in ("operator", "auditor", "mpc0", "mpc1", "mpc2"):
        key = netdir / "wallet" / name / "key.pem"
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    status = json.loads(fedchain("network", "status", "--dir", str(netdir), "--json").stdout)
    assert all(s["running"] for s in status["services"].values())
    assert status["ledger"].startswith("height ")

    with cfg.connect("auditor") as gw:
        consortium = FLClient(cfg.contract(gw)).get_consortium()
    assert [n["id"] for n in consortium["mpc_nodes"]] == ["mpc0", "mpc1", "mpc2"]
    height_before = status["ledger"].split(",")[0]

    again = fedchain("network", "up", "--dir", str(netdir), check=False)
    assert again.returncode == 1 and "already running" in again.stderr

    fedchain("network", "down", "--dir", str(netdir))
    stopped = fedchain("network", "status", "--dir", str(netdir), "--json", check=False)
    assert stopped.returncode == 3
    assert not any(s["running"] for s in json.loads(stopped.stdout)["services"].values())

    fedchain("network", "up", "--dir", str(netdir))  # resumes: same ledger, no second bootstrap
    status = json.loads(fedchain("network", "status", "--dir", str(netdir), "--json").stdout)
    assert status["ledger"].split(",")[0] == height_before


def test_port_taken_is_a_clear_error_and_starts_nothing(netdir):
    base = find_free_port_base()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", base + 1))
        blocker.listen()
        proc = fedchain("network", "up", "--dir", str(netdir), "--no-mpc", "--base-port", str(base), check=False)
    assert proc.returncode == 1
    assert f"ports already in use on 127.0.0.1: {base + 1}" in proc.stderr
    assert not list((netdir / "run").glob("*.pid")) if (netdir / "run").exists() else True


def test_enroll_hospital(netdir):
    base = find_free_port_base()
    fedchain("network", "up", "--dir", str(netdir), "--no-mpc", "--base-port", str(base))
    out = fedchain("network", "enroll", "--dir", str(netdir), "hospital9", "--role", "hospital", "--org", "Org2MSP")
    assert "enrolled hospital9" in out.stdout
    ident = load_network(netdir).identity("hospital9")
    assert ident.msp_id == "Org2MSP" and ident.identity.role == "hospital"
    dup = fedchain("network", "enroll", "--dir", str(netdir), "hospital9", "--role", "hospital", check=False)
    assert dup.returncode == 1 and "already in the wallet" in dup.stderr


def test_fabric_without_release_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    for var in ("FABRIC_BIN", "FABRIC_CFG", "FABRIC_CCAAS_BUILDER"):
        monkeypatch.delenv(var, raising=False)
    d = tmp_path / "fab"
    proc = fedchain("network", "up", "--fabric", "--dir", str(d), check=False)
    assert proc.returncode == 1
    assert "FABRIC_BIN is not set" in proc.stderr and "Traceback" not in proc.stderr
    assert not (d / "crypto").exists() and not (d / "network.json").exists()
