"""Which host runs which part of a network: the `--hosts FILE` of `fedchain network up`.

Why: the parts of a consortium run at different organisations; every listener must bind to
its own host's address and be reached there (127.0.0.1 stays the default). The file maps
each component to a host name or address::

    {
      "ledger":    "ledger.example.org",                  # devnet gateway (peers + orderer)
      "chaincode": "ledger.example.org",                  # chaincode server (default: the ledger's host)
      "mpc": ["mpc.org1.example", "mpc.org2.example",     # MPC node i: share intake and MPyC party
              {"address": "203.0.113.7", "bind": "10.0.0.5"}]
    }

A value is the address others use to reach the component (it goes into network.json, the
MPC nodes' peer and `-P` lists, and the TLS certificates' SANs), or an object whose
`address` is that and whose `bind` is the local address the listener binds (behind NAT).
Missing components stay on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
_NAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


@dataclass(frozen=True)
class HostAddress:
    """Where a component is reached (`address`) and what its listener binds (`bind`)."""

    address: str = LOOPBACK
    bind: str = LOOPBACK

    def sans(self) -> tuple[str, ...]:
        """Names a TLS server certificate for this component must carry."""
        return tuple(dict.fromkeys(("localhost", LOOPBACK, self.address, self.bind)))


def _check_host(value: str, where: str) -> str:
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _NAME_RE.match(value):
        raise ValueError(f"{where}: {value!r} is neither an IP address nor a host name")
    return value


def _entry(raw: Any, where: str) -> HostAddress:
    if isinstance(raw, str):
        host = _check_host(raw, where)
        return HostAddress(host, host)
    if isinstance(raw, dict) and isinstance(raw.get("address"), str):
        unknown = set(raw) - {"address", "bind"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (address, bind)")
        address = _check_host(raw["address"], f"{where}.address")
        bind = _check_host(str(raw.get("bind", address)), f"{where}.bind")
        return HostAddress(address, bind)
    raise ValueError(f"{where}: expected a host name/address or {{\"address\": ..., \"bind\": ...}}")


@dataclass(frozen=True)
class HostMap:
    """The parsed hosts file; `to_json()` is what embedded.json keeps."""

    ledger: HostAddress = HostAddress()
    chaincode: HostAddress = HostAddress()
    mpc: tuple[HostAddress, ...] = ()

    def mpc_node(self, i: int) -> HostAddress:
        return self.mpc[i] if i < len(self.mpc) else HostAddress()

    @property
    def is_loopback(self) -> bool:
        return all(h == HostAddress() for h in (self.ledger, self.chaincode, *self.mpc))

    @classmethod
    def parse(cls, raw: Any, mpc_nodes: int | None = None) -> HostMap:
        if raw is None or raw == {}:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError("hosts file: expected a JSON object with ledger, chaincode, mpc")
        unknown = set(raw) - {"ledger", "chaincode", "mpc"}
        if unknown:
            raise ValueError(f"hosts file: unknown component(s) {', '.join(sorted(unknown))} "
                             "(expected ledger, chaincode, mpc)")
        ledger = _entry(raw["ledger"], "ledger") if "ledger" in raw else HostAddress()
        chaincode = _entry(raw["chaincode"], "chaincode") if "chaincode" in raw else ledger
        mpc_raw = raw.get("mpc", [])
        if not isinstance(mpc_raw, list):
            raise ValueError("hosts file: mpc must be a list (node 0, 1, ...)")
        if mpc_nodes is not None and mpc_raw and len(mpc_raw) != mpc_nodes:
            raise ValueError(f"hosts file: mpc lists {len(mpc_raw)} hosts for {mpc_nodes} MPC nodes")
        mpc = tuple(_entry(e, f"mpc[{i}]") for i, e in enumerate(mpc_raw))
        return cls(ledger, chaincode, mpc)

    @classmethod
    def load(cls, path: str | Path, mpc_nodes: int | None = None) -> HostMap:
        try:
            raw = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ValueError(f"cannot read hosts file {path}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"hosts file {path} is not valid JSON: {exc}") from None
        return cls.parse(raw, mpc_nodes)

    def to_json(self) -> dict[str, Any]:
        def one(h: HostAddress) -> Any:
            return h.address if h.address == h.bind else {"address": h.address, "bind": h.bind}

        return {"ledger": one(self.ledger), "chaincode": one(self.chaincode), "mpc": [one(h) for h in self.mpc]}


def endpoint(host: str, port: int) -> str:
    """host:port, with brackets for IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
