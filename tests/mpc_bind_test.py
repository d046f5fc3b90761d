"""MPyC's party listener binds the party's own -P host (127.0.0.1), not every interface."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import find_free_port_base

PARTY = """
import sys
from mpyc.runtime import mpc
from fedchain_mpc.mpyc_bind import bind_party_listener
print("bound", bind_party_listener(mpc), flush=True)
mpc.run(mpc.start())   # party 1 listens for party 0, which never comes
"""


def _listeners(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) listening on `port`."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                out.append(addr)
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp")
def test_party_listens_on_loopback_only():
    base = find_free_port_base(2)
    proc = subprocess.Popen([sys.executable, "-c", PARTY, "-P", f"127.0.0.1:{base}", "-P", f"127.0.0.1:{base + 1}",
                             "-I", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline().strip() == "bound 127.0.0.1"
        deadline = time.monotonic() + 20
        while not _listeners(base + 1) and time.monotonic() < deadline:
            time.sleep(0.1)
        addrs = _listeners(base + 1)
        assert addrs == ["0100007F"], f"party listens on {addrs} (0100007F = 127.0.0.1; 00000000 = every interface)"
    finally:
        proc.kill()
        proc.wait()


def test_explicit_host_argument_is_left_alone():
    import asyncio

    from fedchain_mpc.mpyc_bind import bind_party_listener

    calls = []

    class Loop:
        async def create_server(self, factory, *args, **kwargs):
            calls.append((args, kwargs))

    class Party:
        def __init__(self, host):
            self.host = host

    class FakeMPC:
        parties = (Party("10.0.0.1"), Party(""))
        pid = 1
        _loop = Loop()

    assert bind_party_listener(FakeMPC) == "127.0.0.1"  # INI-style own entry without host
    asyncio.run(FakeMPC._loop.create_server(None, port=5))
    asyncio.run(FakeMPC._loop.create_server(None, host="::1", port=6))
    assert calls == [((), {"port": 5, "host": "127.0.0.1"}), ((), {"host": "::1", "port": 6})]
