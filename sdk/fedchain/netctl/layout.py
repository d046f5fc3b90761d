"""Where things live inside a network folder D (default .fedchain/).

`NetworkFolder` is what every backend's folder holds (crypto, wallet, ledger, logs, run): one definition,
because `fedchain network enroll` and the wallet readers use it whatever the backend. `NetworkLayout` adds
the embedded network's own files; fabricnet.layout.FabricLayout adds the real Fabric network's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


def subfolder(name: str, doc: str | None = None) -> Any:
    """A read-only property for D/`name` (a folder or a file of the network folder)."""
    return property(lambda self: self.root / name, doc=doc or f"D/{name}")


@dataclass(frozen=True)
class NetworkFolder:
    root: Path

    crypto = subfolder("crypto", "the consortium: each org's CA, MSP and TLS material")
    wallet = subfolder("wallet", "identities: wallet/NAME/ (cert.pem, key.pem, msp_id)")
    ledger = subfolder("ledger", "blocks and state (kept by `down` and restarts)")
    logs = subfolder("logs")
    run = subfolder("run", "pid files of the running services")

    def rel(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.root.resolve()))


@dataclass(frozen=True)
class NetworkLayout(NetworkFolder):
    """The embedded network's folder."""

    mpc = subfolder("mpc", "the MPC nodes' node.json files and data")
    state_file = subfolder("embedded.json", "Ports and settings chosen at first `up`, reused by every restart.")
