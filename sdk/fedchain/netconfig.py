"""`network.json`: how every client finds the network, whatever kind it is.

Written by `fedchain network up` (embedded devnet) and by the real-Fabric scripts in the
same form, so hospitals, MPC nodes and auditors use one loader and never care which kind
of network they talk to. Paths inside the file are relative to its folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedchain.identity import SigningIdentity, Wallet

DEFAULT_DIR = ".fedchain"
NETWORK_FILE = "network.json"
SCHEMA_VERSION = 1


class NetworkConfigError(Exception):
    """network.json missing or malformed: tells the user how to get a valid one."""


@dataclass(frozen=True)
class GatewayEndpoint:
    endpoint: str
    tls_root_cert: Path | None
    server_name: str | None = None

    def root_cert_bytes(self) -> bytes | None:
        return self.tls_root_cert.read_bytes() if self.tls_root_cert else None


@dataclass(frozen=True)
class MPCNodeEndpoint:
    index: int
    id: str
    endpoint: str  # share intake (gRPC, mutual TLS)
    tls_root_cert: Path
    server_name: str | None = None
    msp_id: str = ""


@dataclass(frozen=True)
class NetworkConfig:
    directory: Path
    kind: str  # "devnet" or "fabric"
    channel: str
    chaincode: str
    gateway: GatewayEndpoint
    mpc_nodes: tuple[MPCNodeEndpoint, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def wallet(self) -> Wallet:
        return Wallet(self.directory / "wallet")

    def identity(self, name: str) -> SigningIdentity:
        return self.wallet.get(name)

    def connect(self, identity: str | SigningIdentity, **kwargs: Any):
        """A gateway connection as `identity` (a wallet entry name or a SigningIdentity)."""
        from fedchain.gateway import Gateway

        signer = self.identity(identity) if isinstance(identity, str) else identity
        return Gateway.connect(
            signer,
            self.gateway.endpoint,
            tls_root_cert=self.gateway.root_cert_bytes(),
            server_name=self.gateway.server_name,
            **kwargs,
        )

    def contract(self, gateway):
        return gateway.network(self.channel).contract(self.chaincode)


def network_dir(directory: str | os.PathLike | None = None) -> Path:
    return Path(directory or os.environ.get("FEDCHAIN_NETWORK") or DEFAULT_DIR)


def _path(base: Path, value: str | None) -> Path | None:
    if not value:
        return None
    p = Path(value)
    return p if p.is_absolute() else base / p


def load_network(directory: str | os.PathLike | None = None) -> NetworkConfig:
    base = network_dir(directory).resolve()
    path = base / NETWORK_FILE
    if not path.is_file():
        raise NetworkConfigError(
            f"no {NETWORK_FILE} in {base}: start a network with `fedchain network up --network {base}` "
            f"or point --network at the folder of a running one"
        )
    try:
        raw = json.loads(path.read_text())
        gw = raw["gateway"]
        nodes = tuple(
            MPCNodeEndpoint(
                index=int(n["index"]), id=str(n["id"]), endpoint=str(n["endpoint"]),
                tls_root_cert=_path(base, n["tls_root_cert"]), server_name=n.get("server_name"),
                msp_id=n.get("msp_id", ""),
            )
            for n in raw.get("mpc_nodes", [])
        )
        known = {"kind", "channel", "chaincode", "gateway", "mpc_nodes", "version"}
        return NetworkConfig(
            directory=base,
            kind=str(raw.get("kind", "devnet")),
            channel=str(raw["channel"]),
            chaincode=str(raw["chaincode"]),
            gateway=GatewayEndpoint(
                endpoint=str(gw["endpoint"]), tls_root_cert=_path(base, gw.get("tls_root_cert")),
                server_name=gw.get("server_name"),
            ),
            mpc_nodes=nodes,
            extra={k: v for k, v in raw.items() if k not in known},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise NetworkConfigError(f"{path} is malformed ({type(exc).__name__}: {exc})") from exc


def write_network(directory: str | os.PathLike, data: dict[str, Any]) -> Path:
    """Write network.json atomically; `data` uses paths relative to `directory`."""
    base = Path(directory)
    base.mkdir(parents=True, exist_ok=True)
    payload = {"version": SCHEMA_VERSION, **data}
    tmp = base / (NETWORK_FILE + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, base / NETWORK_FILE)
    return base / NETWORK_FILE
