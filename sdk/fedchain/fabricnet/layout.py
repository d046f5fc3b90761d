"""Where a real Fabric network keeps things inside its folder D."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedchain.netctl.layout import NetworkFolder, subfolder


@dataclass(frozen=True)
class FabricLayout(NetworkFolder):
    """A real Fabric network's folder: the common parts (crypto, wallet, ledger, logs, run) and Fabric's own."""

    config = subfolder("fabric", "generated configs (configtx, core.yaml, ...)")

    @property
    def configtx_dir(self) -> Path:
        return self.config / "configtx"

    @property
    def channel_block(self) -> Path:
        return self.config / "channel" / "fedchain.block"

    @property
    def orderer_cfg(self) -> Path:
        return self.config / "orderer"

    def peer_cfg(self, node_name: str) -> Path:
        return self.config / "peers" / node_name

    @property
    def chaincode_dir(self) -> Path:
        return self.config / "chaincode"

    @property
    def state_file(self) -> Path:
        """Which one-time steps (channel join, lifecycle) are done, so a restart skips them."""
        return self.root / "fabric-state.json"

    @property
    def setup_log(self) -> Path:
        return self.logs / "setup.log"


class StateFile:
    """D/fabric-state.json: which one-time steps are done (a restart skips them), written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.read().get(key, default)

    def mark(self, **values: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self.read(), **values}, indent=2) + "\n")
        os.replace(tmp, self.path)
