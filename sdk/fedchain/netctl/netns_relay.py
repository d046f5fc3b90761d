"""The WAN between namespace hosts: a user-space IPv4 switch with per-pair delay and uplink rate.

Started by `fedchain.netctl.netns.Topology` (root only) as
``python -m fedchain.netctl.netns_relay CONFIG_JSON``; CONFIG_JSON is
``{"hosts": [{"tun": NAME, "address": IPV4}, ...], "mtu": 1500, "queue_s": 0.5}``.
It creates one TUN device per host (the caller moves each into its namespace), prints
READY, then forwards packets: a packet from host a to host b leaves a's uplink after
its serialisation time at a's rate (FIFO; dropped if it would queue longer than
queue_s), and is written to b's TUN delay[a][b] seconds later. Commands arrive as JSON
lines on stdin (``{"delay": [[a, b, seconds], ...]}``, ``{"rate": [[a, bps|null], ...]}``,
``{"stats": true}``) and each gets one JSON line back; EOF on stdin stops the relay.
Why user space: kernels without sch_netem (see netns.py).
"""

from __future__ import annotations

import errno
import fcntl
import heapq
import json
import os
import selectors
import struct
import sys
import time
from typing import Any

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Relay:
    def __init__(self, config: dict[str, Any]) -> None:
        hosts = config["hosts"]
        self.n = len(hosts)
        self.fds = [open_tun(h["tun"]) for h in hosts]
        self.by_addr = {bytes(int(x) for x in h["address"].split(".")): i for i, h in enumerate(hosts)}
        self.delay = [[0.0] * self.n for _ in range(self.n)]
        self.rate: list[float | None] = [None] * self.n
        self.link_free = [0.0] * self.n
        self.queue_s = float(config.get("queue_s", 0.5))
        self.bufsize = int(config.get("mtu", 1500)) + 64
        self.heap: list[tuple[float, int, int, bytes]] = []
        self.seq = 0
        self.stats = [{"packets": 0, "bytes": 0, "dropped": 0} for _ in range(self.n)]
        self.unroutable = 0

    def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if "delay" in cmd:
            for a, b, seconds in cmd["delay"]:
                self.delay[int(a)][int(b)] = max(0.0, float(seconds))
        if "rate" in cmd:
            for a, bps in cmd["rate"]:
                self.rate[int(a)] = float(bps) if bps else None
        if "stats" in cmd:
            return {"hosts": self.stats, "unroutable": self.unroutable}
        return {"ok": True}

    def receive(self, src: int) -> None:
        fd = self.fds[src]
        for _ in range(256):
            try:
                pkt = os.read(fd, self.bufsize)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EIO):  # EIO: device down (being moved)
                    return
                raise
            if len(pkt) < 20 or pkt[0] >> 4 != 4:
                continue  # IPv4 only
            dst = self.by_addr.get(pkt[16:20])
            if dst is None or dst == src:
                self.unroutable += 1
                continue
            now = time.monotonic()
            depart = now
            rate = self.rate[src]
            if rate:
                start = max(now, self.link_free[src])
                if start - now > self.queue_s:
                    self.stats[src]["dropped"] += 1
                    continue
                depart = start + len(pkt) * 8 / rate
                self.link_free[src] = depart
            self.seq += 1
            heapq.heappush(self.heap, (depart + self.delay[src][dst], self.seq, dst, pkt))
            st = self.stats[src]
            st["packets"] += 1
            st["bytes"] += len(pkt)

    def deliver(self) -> None:
        now = time.monotonic()
        while self.heap and self.heap[0][0] <= now:
            _, _, dst, pkt = heapq.heappop(self.heap)
            try:
                os.write(self.fds[dst], pkt)
            except OSError:
                pass  # host down or its queue full: the packet is lost, TCP resends

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        for i, fd in enumerate(self.fds):
            sel.register(fd, selectors.EVENT_READ, i)
        stdin = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
        os.set_blocking(stdin.fileno(), False)
        sel.register(stdin.fileno(), selectors.EVENT_READ, -1)
        pending = b""
        print("READY", flush=True)
        while True:
            timeout = max(0.0, self.heap[0][0] - time.monotonic()) if self.heap else None
            for key, _ in sel.select(timeout):
                if key.data >= 0:
                    self.receive(key.data)
                    continue
                try:
                    chunk = os.read(stdin.fileno(), 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    try:
                        reply = self.command(json.loads(line))
                    except (ValueError, KeyError, TypeError, IndexError) as exc:
                        reply = {"error": f"bad command: {exc}"}
                    sys.stdout.write(json.dumps(reply) + "\n")
                    sys.stdout.flush()
            self.deliver()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m fedchain.netctl.netns_relay CONFIG_JSON", file=sys.stderr)
        return 2
    try:
        relay = Relay(json.loads(argv[0]))
    except (OSError, ValueError, KeyError) as exc:
        print(f"cannot create TUN devices: {exc}", file=sys.stderr)
        return 1
    try:
        relay.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
