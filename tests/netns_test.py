"""fedchain.netctl.netns: namespace hosts, emulated RTT and rate, isolation, cleanup (root only)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from fedchain.netctl import netns

CAN, WHY = netns.can_create_namespaces()
needs_netns = pytest.mark.skipif(not CAN, reason=WHY)

# Inside a host: connect to ADDR:PORT, time 5 one-byte echoes (median, ms), then push BULK bytes
# and time until the server says it got them all (Mbit/s). Prints "rtt_ms mbit" or "refused".
CLIENT = r"""
import socket, sys, time
addr, port, bulk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    s = socket.create_connection((addr, port), timeout=3)
except OSError:
    print("refused"); sys.exit(0)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
rtts = []
for _ in range(5):
    t = time.monotonic(); s.sendall(b"p"); s.recv(1); rtts.append(time.monotonic() - t)
rtt = sorted(rtts)[2] * 1000
mbit = 0.0
if bulk:
    t = time.monotonic(); s.sendall(b"b" + bulk.to_bytes(8, "big") + b"x" * bulk); s.recv(1)
    mbit = bulk * 8 / (time.monotonic() - t) / 1e6
print(f"{rtt:.2f} {mbit:.2f}")
"""

# Echo server: "p" -> "p"; "b" + 8-byte length + payload -> "k" once all bytes arrived.
SERVER = r"""
import socket, sys, threading
def serve(c):
    with c:
        while True:
            op = c.recv(1)
            if not op: return
            if op == b"p": c.sendall(b"p"); continue
            n = int.from_bytes(c.recv(8, socket.MSG_WAITALL), "big")
            while n > 0:
                n -= len(c.recv(min(n, 1 << 20)))
            c.sendall(b"k")
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
print("READY", flush=True)
while True:
    c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def _client(topo: netns.Topology, host: str, addr: str, port: int, bulk: int = 0) -> str:
    out = topo.run(host, [sys.executable, "-c", CLIENT, addr, str(port), str(bulk)],
                   capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _server(topo: netns.Topology, host: str, addr: str, port: int) -> subprocess.Popen[str]:
    proc = topo.popen(host, [sys.executable, "-c", SERVER, addr, str(port)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
    return proc


def test_parse_rate() -> None:
    assert netns.parse_rate("100mbit") == 100e6
    assert netns.parse_rate("1gbit") == 1e9
    assert netns.parse_rate("500kbit") == 500e3
    assert netns.parse_rate("1mbps") == 8e6
    assert netns.parse_rate(None) is None
    with pytest.raises(ValueError):
        netns.parse_rate("fast")


def test_topology_rejects_bad_hosts() -> None:
    with pytest.raises(ValueError):
        netns.Topology(["Bad_Name"])
    with pytest.raises(ValueError):
        netns.Topology({"a": "10.1.0.1"}, subnet="10.77.0.0/24")
    assert netns.Topology(["a", "b"], subnet="10.9.8.0/24").addresses == {"a": "10.9.8.1", "b": "10.9.8.2"}


@needs_netns
def test_rtt_rate_isolation_and_cleanup() -> None:
    before = set(netns.list_namespaces())
    with netns.Topology(["alpha", "beta", "gamma"], rtt_ms=20, rate="50mbit") as topo:
        beta = topo.address("beta")
        _server(topo, "beta", beta, 7001)
        _server(topo, "beta", "127.0.0.1", 7002)  # beta's loopback only

        rtt, mbit = map(float, _client(topo, "alpha", beta, 7001, bulk=4_000_000).split())
        assert 19.0 <= rtt <= 35.0, rtt
        assert 25.0 <= mbit <= 55.0, mbit  # 50 Mbit/s uplink (minus slow start over 20 ms)

        rtt_by_name = float(_client(topo, "gamma", "beta", 7001).split()[0])  # /etc/hosts inside the host
        assert 19.0 <= rtt_by_name <= 35.0

        topo.set_rtt(60)
        assert 59.0 <= float(_client(topo, "alpha", beta, 7001).split()[0]) <= 80.0
        topo.set_rtt(4, "alpha", "beta")
        assert 3.5 <= float(_client(topo, "alpha", beta, 7001).split()[0]) <= 15.0
        assert 59.0 <= float(_client(topo, "gamma", beta, 7001).split()[0]) <= 80.0

        # another host's 127.0.0.1 is its own loopback: beta's loopback listener is out of reach
        assert _client(topo, "alpha", "127.0.0.1", 7002) == "refused"
        assert _client(topo, "alpha", beta, 7002) == "refused"
        assert _client(topo, "beta", "127.0.0.1", 7002) != "refused"

        stats = topo.relay_stats()
        assert stats["hosts"]["alpha"]["bytes"] > 4_000_000
        names = {topo.namespace(h) for h in topo.hosts}
        assert names <= set(netns.list_namespaces())
        server_pids = [p.pid for p in topo._procs]
    time.sleep(0.1)
    assert set(netns.list_namespaces()) == before
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"ft{os.getpid() % 100000}" not in links
    for pid in server_pids:
        assert not netns.pid_alive(pid) or netns._reaped(pid)


@needs_netns
def test_cleanup_on_error_and_stale_namespaces() -> None:
    before = set(netns.list_namespaces())
    with pytest.raises(KeyboardInterrupt):
        with netns.Topology(["one", "two"]) as topo:
            topo.popen("one", ["sleep", "60"])
            raise KeyboardInterrupt
    assert set(netns.list_namespaces()) == before
    # a namespace left by a dead run (pid 999999 does not exist) is removed; live runs' are not
    stale = f"{netns.DEFAULT_PREFIX}-999999-1-x"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in netns.cleanup_stale()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)
    assert stale not in netns.list_namespaces()
