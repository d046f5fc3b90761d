"""`fedchain demo` stopped with SIGTERM stops the network it started, as Ctrl-C does (issue 12).

Before the fix SIGTERM killed the demo's Python process outright and its five network processes
(chaincode server, devnet, 3 MPC nodes: started in their own sessions) kept running.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import find_free_port_base

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

FEDCHAIN = str(Path(sys.executable).with_name("fedchain"))


def _status(network: Path) -> dict:
    """`fedchain network status --json`: the services and whether each runs."""
    res = subprocess.run([FEDCHAIN, "network", "status", "--network", str(network), "--json"], capture_output=True,
                         text=True, timeout=120)
    return json.loads(res.stdout) if res.stdout.strip() else {"services": {}}


def _wait_for_line(lines: list[str], fragment: str, proc: subprocess.Popen, timeout: float) -> None:
    """Until the demo printed a line with `fragment` (it exits early: fail with its output)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(fragment in line for line in lines):
            return
        assert proc.poll() is None, "".join(lines)
        time.sleep(0.2)
    pytest.fail(f"no {fragment!r} within {timeout} s:\n" + "".join(lines))


def test_sigterm_stops_the_network_the_demo_started(tmp_path):
    network = tmp_path / "net"
    proc = subprocess.Popen([FEDCHAIN, "demo", "--network", str(network), "--base-port", str(find_free_port_base()),
                             "--hospitals", "3", "--malicious", "1", "--rounds", "2", "--steps", "20",
                             "--report-dir", str(tmp_path / "rep")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        _wait_for_line(lines, "network up in", proc, timeout=180)
        running = _status(network)["services"]
        assert len(running) == 5 and all(s["running"] for s in running.values()), running
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=180)
        reader.join(timeout=10)
        out = "".join(lines)
        assert code == 143, out
        assert "stopped the network the demo started" in out and "stopped by SIGTERM" in out
        assert "Traceback" not in out
        after = _status(network)["services"]
        assert set(after) == set(running) and not any(s["running"] for s in after.values()), after
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run([FEDCHAIN, "network", "down", "--network", str(network)], capture_output=True, timeout=120)
