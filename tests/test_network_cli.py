"""`fedchain network up|status|down|enroll` on the embedded network: lifecycle, partial restart of a crashed
MPC node, and one clear line (no traceback) for every expected mistake."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

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
    assert [n.id for n in consortium.mpc_nodes] == ["mpc0", "mpc1", "mpc2"]
    height_before = status["ledger"].split(",")[0]

    pids = {n: s["pid"] for n, s in status["services"].items()}
    again = fedchain("network", "up", "--network", str(netdir), "--base-port", "1")  # running: nothing to do
    assert "nothing to start" in again.stderr and "--base-port ignored" in again.stderr
    status = json.loads(fedchain("network", "status", "--network", str(netdir), "--json").stdout)
    assert {n: s["pid"] for n, s in status["services"].items()} == pids

    fedchain("network", "down", "--dir", str(netdir))
    stopped = fedchain("network", "status", "--dir", str(netdir), "--json", check=False)
    assert stopped.returncode == 3
    assert all(s["state"] == "stopped" for s in json.loads(stopped.stdout)["services"].values())

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


def _wait_dead(pid: int, timeout: float = 10.0) -> None:
    from fedchain.netctl.process import pid_alive

    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid), pid


def test_up_restarts_only_the_crashed_mpc_node(netdir):
    fedchain("network", "up", "--network", str(netdir), "--base-port", str(find_free_port_base()))
    before = json.loads(fedchain("network", "status", "--network", str(netdir), "--json").stdout)["services"]
    assert set(before) == {"chaincode", "devnet", "mpc0", "mpc1", "mpc2"}
    os.kill(before["mpc1"]["pid"], signal.SIGKILL)  # a node this test started (through `up`), by its pid
    _wait_dead(before["mpc1"]["pid"])

    st = fedchain("network", "status", "--network", str(netdir), check=False)
    assert st.returncode == 3
    assert "mpc1" in st.stdout and "EXITED" in st.stdout and "restarts only those" in st.stdout

    up = fedchain("network", "up", "--network", str(netdir))
    assert "already running: chaincode, devnet, mpc0, mpc2; starting only mpc1" in up.stderr
    assert "restarting mpc1 (it had exited" in up.stderr
    assert [line for line in up.stderr.splitlines() if "starting " in line and "only" not in line] == []
    after = json.loads(fedchain("network", "status", "--network", str(netdir), "--json").stdout)["services"]
    assert all(s["running"] for s in after.values())
    assert {n: s["pid"] for n, s in after.items() if n != "mpc1"} == {n: s["pid"] for n, s in before.items()
                                                                     if n != "mpc1"}
    assert after["mpc1"]["pid"] != before["mpc1"]["pid"]
    log = (netdir / "logs" / "mpc1.log").read_text()
    assert log.count("READY") == 2  # the restarted node reported ready again


def _one_line_error(proc: subprocess.CompletedProcess, code: int | tuple[int, ...], *needles: str) -> None:
    codes = code if isinstance(code, tuple) else (code,)
    assert proc.returncode in codes, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_mistakes_get_one_clear_line(tmp_path):
    missing = tmp_path / "nothing-here"
    _one_line_error(fedchain("network", "enroll", "h1", "--role", "hospital", "--network", str(missing), check=False),
                    1, f"no network in {missing}", "fedchain network up --network")
    _one_line_error(fedchain("network", "status", "--network", str(missing), check=False), 3, "no network in")
    assert fedchain("network", "down", "--network", str(missing)).stdout.startswith("nothing to stop")
    _one_line_error(fedchain("network", "up", "--network", str(missing), "--policy", "Org9MSP", check=False), 2,
                    "unknown: Org9MSP")
    _one_line_error(fedchain("network", "up", "--network", str(missing), "--peer-port", "9000", check=False), 2,
                    "--peer-port only apply with --fabric or --compose")
    assert not missing.exists()  # refused before anything was written


def test_enroll_unknown_org_and_bad_name(netdir):
    fedchain("network", "up", "--network", str(netdir), "--no-mpc", "--base-port", str(find_free_port_base()))
    _one_line_error(fedchain("network", "enroll", "h1", "--role", "hospital", "--org", "Org7MSP",
                             "--network", str(netdir), check=False), 2,
                    "unknown organisation 'Org7MSP'", "Org1MSP, Org2MSP, Org3MSP")
    _one_line_error(fedchain("network", "enroll", "bad name!", "--role", "hospital", "--network", str(netdir),
                             check=False), 2, "'bad name!' must match")
    assert not (netdir / "wallet" / "h1").exists()
    out = fedchain("network", "enroll", "h2", "--role", "hospital", "--org", "Org3", "--network", str(netdir))
    assert "enrolled h2 (hospital, Org3MSP)" in out.stdout  # an org name works as well as its MSP id
    _one_line_error(fedchain("network", "up", "--fabric", "--network", str(netdir), check=False), 2,
                    "already holds the embedded network")
