"""Real Hyperledger Fabric 2.5 networks: generated configs, native one-host processes, Docker Compose.

`up(D)` brings up an etcdraft orderer, one peer per org, the `fedchain` channel and the FL
chaincode as a service from Fabric's release binaries (FABRIC_BIN, FABRIC_CFG,
FABRIC_CCAAS_BUILDER), writes D/network.json and D/wallet/ exactly like the embedded
network, initialises the consortium on the ledger and starts the MPC nodes, so every SDK and
CLI command works unchanged. `down(D)` stops it (ledger kept); `up(D)` again starts whatever
is down on the same ledger. Compose mode: `fedchain.fabricnet.compose` (files) and
`fedchain.fabricnet.compose_run` (running them). All three backends: `fedchain.netctl.backend`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedchain.fabricnet.native import FabricNetwork, FabricNetworkError
from fedchain.fabricnet.preflight import FabricTools, PreflightError
from fedchain.fabricnet.settings import FabricSettings

__all__ = ["FabricNetwork", "FabricNetworkError", "FabricSettings", "FabricTools", "PreflightError", "down",
           "status", "up"]


def up(directory: str | os.PathLike, settings: FabricSettings | None = None, *,
       progress: Callable[[str], None] = lambda msg: None, tools: FabricTools | None = None,
       bootstrap: Callable[[Path], object] | None = None) -> FabricNetwork:
    """Start what is down in `directory` (everything, the first time); returns when the network is usable:
    chaincode committed and serving, consortium initialised, MPC nodes ready.

    bootstrap(D) replaces the consortium's InitConsortium (tests without a real ledger).
    """
    net = FabricNetwork(Path(directory), settings, tools, bootstrap=bootstrap)
    net.up(progress=progress)
    return net


def down(directory: str | os.PathLike) -> list[str]:
    """Stop every node, chaincode server and MPC node; the ledgers stay in D/ledger."""
    return FabricNetwork(Path(directory)).down()


def status(directory: str | os.PathLike) -> dict[str, Any]:
    """{"kind", "services": per-component status, "package_ids", "chaincode_committed", "endorsement_policy"}."""
    net = FabricNetwork(Path(directory))
    return {"kind": "fabric", "services": net.status(), **net.lifecycle()}
