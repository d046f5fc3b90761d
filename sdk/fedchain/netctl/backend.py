"""One interface over the three ways to run a fedchain network: embedded, Fabric native, Fabric Compose.

`fedchain network up|status|down`, `network/fabric/scripts/network.sh` and `fedchain demo`
talk to a network folder only through this interface, so the operations mean the same on
every backend:

- `up(progress)` starts whatever is down: everything on a new or stopped network, only the
  crashed MPC node on a running one. The consortium is initialised on the ledger once
  (InitConsortium: MPC nodes, threshold, quorum, privacy floor, default policy) before the
  MPC nodes start. Returns the names of the components it started.
- `status()` reports each component: running, state (running / exited / stopped), pid, log, kind.
- `down()` stops everything; ledgers, identities and settings stay for the next `up`.
- `services()` lists the components in start order.

Every backend writes the same D/network.json and D/wallet/, and runs the same MPC nodes
(netctl.mpc) and bootstrap (netctl.consortium); only the ledger beneath differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from fedchain.netctl.process import NetworkError

Progress = Callable[[str], None]
KINDS = ("devnet", "fabric", "compose")


class Component(Protocol):
    name: str

    def running(self) -> bool: ...


@runtime_checkable
class NetworkBackend(Protocol):
    kind: str

    @property
    def root(self) -> Path: ...

    def services(self) -> Sequence[Component]: ...

    def up(self, progress: Progress = ..., ready_timeout: float = ...) -> list[str]: ...

    def status(self) -> dict[str, dict[str, Any]]: ...

    def down(self) -> list[str]: ...


def detect_kind(directory: Path) -> str | None:
    """Which backend created the folder (from the settings file its first `up` wrote), or None."""
    directory = Path(directory)
    if (directory / "fabric.json").is_file():
        from fedchain.fabricnet.settings import FabricSettings

        settings = FabricSettings.load(directory)
        return "compose" if settings is not None and settings.mode == "compose" else "fabric"
    if (directory / "embedded.json").is_file():
        return "devnet"
    return None


def open_backend(directory: Path, kind: str | None = None) -> NetworkBackend:
    """The backend of an existing folder (or of `kind` for a new one, with default settings)."""
    kind = detect_kind(directory) or kind
    if kind == "devnet":
        from fedchain.netctl.embedded import EmbeddedNetwork

        return EmbeddedNetwork(directory)
    if kind == "fabric":
        from fedchain.fabricnet.native import FabricNetwork

        return FabricNetwork(directory)
    if kind == "compose":
        from fedchain.fabricnet.compose_run import ComposeNetwork

        return ComposeNetwork(directory)
    raise NetworkError(f"no network in {Path(directory).resolve()}: start one with "
                       f"`fedchain network up --network {directory}`")
