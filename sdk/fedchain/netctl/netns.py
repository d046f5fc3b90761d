"""Hosts on one machine: Linux network namespaces joined by an emulated WAN (root only).

Why: fedchain's parts run at different organizations; to test and measure that on one
machine, each "host" is a network namespace with its own loopback and one address on a
private subnet, and the links between hosts get a round-trip time and a rate limit.

How the links are emulated. Many kernels (this project's CI VM among them) are built
without ``sch_netem``, so delay is not done with ``tc netem``: each host's interface is a
TUN device (``eth0`` inside the namespace) whose other end is a small relay process
(``python -m fedchain.netctl.netns_relay``) in the root namespace. The relay routes IPv4
packets by destination address between the hosts (a switch), holding each packet from
host a to host b for ``rtt(a, b) / 2`` (so a ping/TCP round trip a→b→a takes the
requested RTT) after serialising it on a's uplink at a's rate (a FIFO link, packets that
would wait longer than ``queue_s`` are dropped, like a router's tail drop). Nothing is
added to the root namespace's network configuration: no bridge, no address, no route;
the relay only holds the TUN file descriptors. Two topologies (two test runs) never see
each other even with the same subnet. Measured on the 2-core dev machine (MTU 1500): the relay
forwards ~700 Mbit/s of TCP unshaped; a 100 Mbit/s uplink gives ~105 Mbit/s at 20 ms RTT and
~80 Mbit/s for a 20 MB transfer at 50 ms (TCP slow start); echo RTTs are within ~0.7 ms of
the set value while the machine is not saturated (the relay is one Python process: its own
CPU time adds to the delay when both cores are busy).

API::

    from fedchain.netctl import netns
    ok, why = netns.can_create_namespaces()        # (False, reason) when not root / no `ip`
    with netns.Topology(["ledger", "mpc0", "mpc1"], rtt_ms=20, rate="100mbit",
                        subnet="10.77.0.0/24") as topo:
        topo.address("mpc0")                       # "10.77.0.2" (hosts get .1, .2, ... in order)
        topo.namespace("mpc0")                     # "fcns-<pid>-<n>-mpc0"
        topo.exec_prefix("mpc0")                   # ["ip", "netns", "exec", "fcns-<pid>-<n>-mpc0"]
        proc = topo.popen("mpc0", [...], env=...)  # tracked: killed when the topology closes
        topo.run("ledger", ["true"])               # subprocess.run inside the host
        topo.set_rtt(50)                           # every pair, on the fly
        topo.set_rtt(80, "mpc0", "mpc1")           # one pair (both directions)
        topo.set_rate("10mbit")                    # every host's uplink; set_rate(None) = unlimited
        topo.set_rate("1mbit", "ledger")
    # on exit (also on error / KeyboardInterrupt): processes started in the hosts are
    # killed, the relay stops, namespaces and their /etc/netns/<ns>/ files are removed.
    netns.cleanup_stale()                          # namespaces left by a killed run (dead pid)

Host names resolve inside every host (``/etc/netns/<ns>/hosts``, which ``ip netns exec``
bind-mounts over /etc/hosts), so certificates with DNS SANs can be tested too.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .process import pid_alive

DEFAULT_PREFIX = "fcns"
DEFAULT_SUBNET = "10.77.0.0/24"
NETNS_RUN_DIR = Path("/var/run/netns")
NETNS_ETC_DIR = Path("/etc/netns")
_SERIAL = 0
_HOST_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


class NetnsError(RuntimeError):
    """A topology could not be created or changed; the message says which step failed."""


def can_create_namespaces() -> tuple[bool, str]:
    """Whether this process can build a topology, and why not (for pytest skip reasons)."""
    if not sys.platform.startswith("linux"):
        return False, f"network namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return False, "network namespaces need root (run as root, e.g. in CI)"
    if shutil.which("ip") is None:
        return False, "the `ip` command (iproute2) is not installed"
    if not os.path.exists("/dev/net/tun"):
        return False, "/dev/net/tun is missing (the WAN relay needs TUN devices)"
    probe = f"{DEFAULT_PREFIX}probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return False, f"`ip netns add` failed: {made.stderr.strip() or made.returncode}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return True, "ok"


def parse_rate(rate: str | float | int | None) -> float | None:
    """Bits per second from "100mbit", "1gbit", "500kbit", "2mbps" (bytes), or a number; None = unlimited."""
    if rate is None or rate == "" or rate == 0:
        return None
    if isinstance(rate, (int, float)):
        if rate < 0:
            raise ValueError(f"rate must be positive: {rate}")
        return float(rate)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmg]?)(bit|bps|b)?\s*", rate.lower())
    if not m:
        raise ValueError(f"rate {rate!r}: expected e.g. 100mbit, 1gbit, 500kbit")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]
    if m.group(3) == "bps":  # tc's convention: bps = bytes per second
        value *= 8
    if value <= 0:
        raise ValueError(f"rate must be positive: {rate!r}")
    return value


def exec_prefix_for(namespace: str) -> list[str]:
    """argv prefix that runs a command inside `namespace`."""
    return ["ip", "netns", "exec", namespace]


def list_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def _kill_namespace_pids(namespace: str) -> None:
    out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split() if p.isdigit()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3.0
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if pid_alive(p) and not _reaped(p)]
            if pids:
                time.sleep(0.05)
        if not pids:
            return


def _reaped(pid: int) -> bool:
    """Reap `pid` if it is our dead child; True when gone."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        stat = Path(f"/proc/{pid}/stat")
        try:
            text = stat.read_text()
        except OSError:
            return True
        return text[text.rfind(")") + 2:].startswith(("Z", "X"))


def _delete_namespace(namespace: str) -> None:
    _kill_namespace_pids(namespace)
    subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
    shutil.rmtree(NETNS_ETC_DIR / namespace, ignore_errors=True)


def cleanup_stale(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Remove namespaces named `<prefix>-<pid>-*` whose creating process is dead (a killed run).

    Topologies of live processes (another test run on the same machine) are left alone."""
    removed = []
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)-")
    for name in list_namespaces():
        m = pattern.match(name)
        if m and not pid_alive(int(m.group(1))):
            _delete_namespace(name)
            removed.append(name)
    if NETNS_ETC_DIR.is_dir():
        for entry in NETNS_ETC_DIR.iterdir():
            m = pattern.match(entry.name)
            if m and not pid_alive(int(m.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
    return removed


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")


class Topology:
    """Hosts as namespaces plus the relay that emulates the WAN between them (a context manager)."""

    def __init__(self, hosts: Sequence[str] | Mapping[str, str], *, rtt_ms: float = 0.0,
                 rate: str | float | None = None, subnet: str = DEFAULT_SUBNET,
                 prefix: str = DEFAULT_PREFIX, mtu: int = 1500, queue_s: float = 0.5) -> None:
        """`hosts`: names (addresses .1, .2, ... of `subnet` in order) or {name: address in subnet}."""
        net = ipaddress.ip_network(subnet)
        if isinstance(hosts, Mapping):
            addresses = {h: str(ipaddress.ip_address(a)) for h, a in hosts.items()}
        else:
            pool = net.hosts()
            addresses = {h: str(next(pool)) for h in hosts}
        if not addresses:
            raise ValueError("a topology needs at least one host")
        for host, addr in addresses.items():
            if not _HOST_RE.match(host):
                raise ValueError(f"host name {host!r}: lower-case letters, digits and '-', at most 20")
            if ipaddress.ip_address(addr) not in net:
                raise ValueError(f"host {host}: {addr} is not in {subnet}")
        if len(set(addresses.values())) != len(addresses):
            raise ValueError("two hosts share an address")
        if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", prefix):
            raise ValueError(f"prefix {prefix!r}: lower-case letters/digits, at most 8")
        self.subnet = net
        self.prefix = prefix
        self.hosts = list(addresses)
        self._addresses = addresses
        self._rtt_ms = float(rtt_ms)
        self._rate = parse_rate(rate)
        self._mtu = mtu
        self._queue_s = queue_s
        global _SERIAL
        _SERIAL += 1
        self._serial = _SERIAL
        self._tag = f"{prefix}-{os.getpid()}-{self._serial}"
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._relay: subprocess.Popen[str] | None = None
        self._closed = False

    # -- names -------------------------------------------------------------------------
    def namespace(self, host: str) -> str:
        self._check_host(host)
        return f"{self._tag}-{host}"

    def address(self, host: str) -> str:
        self._check_host(host)
        return self._addresses[host]

    @property
    def addresses(self) -> dict[str, str]:
        return dict(self._addresses)

    def exec_prefix(self, host: str) -> list[str]:
        return exec_prefix_for(self.namespace(host))

    def _check_host(self, host: str) -> None:
        if host not in self._addresses:
            raise KeyError(f"unknown host {host!r} (hosts: {', '.join(self.hosts)})")

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> Topology:
        try:
            self.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self) -> None:
        """Make the namespaces, start the relay, move each TUN into its host and address it."""
        ok, why = can_create_namespaces()
        if not ok:
            raise NetnsError(why)
        cleanup_stale(self.prefix)
        hosts_file = "127.0.0.1 localhost\n" + "".join(
            f"{addr} {host}\n" for host, addr in self._addresses.items())
        for host in self.hosts:
            ns = self.namespace(host)
            _ip("netns", "add", ns)
            self._namespaces.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            etc = NETNS_ETC_DIR / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts_file)
        # unique in the root namespace while they wait there (<= 15 chars); renamed eth0 inside
        tun_names = {h: f"ft{os.getpid() % 100000}{self._serial % 100}h{i}" for i, h in enumerate(self.hosts)}
        config = {
            "hosts": [{"tun": tun_names[h], "address": self._addresses[h]} for h in self.hosts],
            "mtu": self._mtu, "queue_s": self._queue_s,
        }
        self._relay = subprocess.Popen(
            [sys.executable, "-m", "fedchain.netctl.netns_relay", json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self._relay.stdout.readline() if self._relay.stdout else ""
        if line.strip() != "READY":
            err = self._relay.stderr.read() if self._relay.stderr else ""
            raise NetnsError(f"WAN relay did not start: {(line + err).strip()[-500:]}")
        prefixlen = self.subnet.prefixlen
        for host in self.hosts:
            ns = self.namespace(host)
            tun = tun_names[host]
            _ip("link", "set", tun, "netns", ns)
            _ip("-n", ns, "link", "set", tun, "name", "eth0")
            _ip("-n", ns, "addr", "add", f"{self._addresses[host]}/{prefixlen}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "mtu", str(self._mtu), "up")
        self.set_rtt(self._rtt_ms)
        self.set_rate(self._rate)

    def close(self) -> None:
        """Kill what runs in the hosts, stop the relay, delete the namespaces (idempotent, best effort)."""
        if self._closed:
            return
        self._closed = True
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    proc.kill()
                proc.wait(timeout=5)
        for ns in self._namespaces:
            _delete_namespace(ns)
        self._namespaces.clear()
        if self._relay is not None:
            relay = self._relay
            self._relay = None
            try:
                if relay.stdin:
                    relay.stdin.close()
            except OSError:
                pass
            try:
                relay.wait(timeout=5)
            except subprocess.TimeoutExpired:
                relay.kill()
                relay.wait(timeout=5)
            for stream in (relay.stdout, relay.stderr):
                if stream:
                    stream.close()

    # -- processes -----------------------------------------------------------------------
    def popen(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside `host` (own process group); it is killed when the topology closes."""
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen([*self.exec_prefix(host), *argv], **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        return subprocess.run([*self.exec_prefix(host), *argv], **kwargs)

    # -- link parameters -----------------------------------------------------------------
    def set_rtt(self, rtt_ms: float, a: str | None = None, b: str | None = None) -> None:
        """Round-trip time between every pair of hosts, or between `a` and `b` (both directions)."""
        if rtt_ms < 0:
            raise ValueError("rtt must be >= 0")
        if (a is None) != (b is None):
            raise ValueError("give both hosts of the pair, or neither")
        idx = {h: i for i, h in enumerate(self.hosts)}
        one_way = rtt_ms / 2000.0
        if a is None:
            pairs = [[i, j, one_way] for i in range(len(self.hosts)) for j in range(len(self.hosts)) if i != j]
        else:
            assert b is not None
            self._check_host(a)
            self._check_host(b)
            pairs = [[idx[a], idx[b], one_way], [idx[b], idx[a], one_way]]
        self._command({"delay": pairs})

    def set_rate(self, rate: str | float | None, host: str | None = None) -> None:
        """Uplink rate of every host (or one); None = unlimited."""
        bps = parse_rate(rate)
        targets = self.hosts if host is None else [host]
        for h in targets:
            self._check_host(h)
        self._command({"rate": [[self.hosts.index(h), bps] for h in targets]})

    def relay_stats(self) -> dict[str, Any]:
        """Packets/bytes forwarded and dropped, per source host (for benchmarks)."""
        reply = self._command({"stats": True})
        return {"hosts": dict(zip(self.hosts, reply.get("hosts", []), strict=True)), **{k: v for k, v in reply.items() if k != "hosts"}}

    def _command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        relay = self._relay
        if relay is None or relay.stdin is None or relay.stdout is None or relay.poll() is not None:
            raise NetnsError("the WAN relay is not running")
        relay.stdin.write(json.dumps(cmd) + "\n")
        relay.stdin.flush()
        line = relay.stdout.readline()
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            raise NetnsError(f"WAN relay: unexpected reply {line!r}") from None
        if "error" in reply:
            raise NetnsError(f"WAN relay: {reply['error']}")
        return dict(reply)
