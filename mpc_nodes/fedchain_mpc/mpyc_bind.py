"""Bind MPyC's party listener to the party's own host instead of every interface.

MPyC 0.11 calls `loop.create_server(factory, port=...)` without a host, so a party listens on
all interfaces whatever `-P` says. Our rule is that every listener binds where it was told
(127.0.0.1 by default), so before `mpc.run` we make the runtime's loop pass the host of this
party's own `-P host:port` entry. MPyC's `--ssl` (client certificates required) still applies.
The other hardening of MPyC's runtime, no pickle between parties, is fedchain_mpc.safe_wire;
mpc_program.main does both before the run.
"""

from __future__ import annotations

import functools
from typing import Any


def bind_party_listener(mpc: Any) -> str | None:
    """Patch mpc's event loop so the party server binds to its own -P host; returns that host."""
    if len(mpc.parties) <= 1:
        return None
    host = mpc.parties[mpc.pid].host or "127.0.0.1"
    loop = mpc._loop
    original = loop.create_server

    @functools.wraps(original)
    async def create_server(protocol_factory, *args, **kwargs):
        if not args and "host" not in kwargs:
            kwargs["host"] = host
        return await original(protocol_factory, *args, **kwargs)

    loop.create_server = create_server
    return host
