"""Real Hyperledger Fabric 2.5 networks: generated configs and native one-host orchestration.

`up(D)` brings up an etcdraft orderer, one peer per org, the `fedchain` channel and the FL
chaincode as a service from Fabric's release binaries (FABRIC_BIN, FABRIC_CFG,
FABRIC_CCAAS_BUILDER), then writes D/network.json and D/wallet/ exactly like the embedded
network, so every SDK and CLI command works unchanged. `down(D)` stops it (ledger kept);
`up(D)` again restarts it on the same ledger. Compose mode: `fedchain.fabricnet.compose`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedchain.fabricnet.native import ExtraService, FabricNetwork, FabricNetworkError
from fedchain.fabricnet.preflight import FabricTools, PreflightError
from fedchain.fabricnet.settings import FabricSettings

__all__ = ["ExtraService", "FabricNetwork", "FabricNetworkError", "FabricSettings", "FabricTools", "PreflightError", "down", "status",
           "up"]


def up(directory: str | os.PathLike, settings: FabricSettings | None = None, *,
       progress: Callable[[str], None] = lambda msg: None, tools: FabricTools | None = None,
       extra_services: list[ExtraService] | None = None, mpc_nodes: list[dict] | None = None,
       bootstrap: Callable[[Path], None] | None = None) -> FabricNetwork:
    """Start (or restart) the network in `directory`; returns when the chaincode is committed and serving.

    extra_services (e.g. MPC nodes: argv + env, READY-line handshake) start last, after network.json
    and the bootstrap; mpc_nodes are its `mpc_nodes` entries. Both are remembered for `down`/restarts.
    bootstrap(D) runs once when the ledger is ready, before the extra services (e.g. InitConsortium).
    """
    net = FabricNetwork(Path(directory), settings, tools)
    net.up(progress=progress, extra_services=extra_services, mpc_nodes=mpc_nodes, bootstrap=bootstrap)
    return net


def down(directory: str | os.PathLike) -> list[str]:
    """Stop every node and the chaincode server; the ledgers stay in D/ledger."""
    return FabricNetwork(Path(directory)).down()


def status(directory: str | os.PathLike) -> dict[str, Any]:
    return FabricNetwork(Path(directory)).status()
