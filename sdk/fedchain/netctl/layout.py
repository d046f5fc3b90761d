"""Where things live inside a network folder D (default .fedchain/)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NetworkLayout:
    root: Path

    @property
    def crypto(self) -> Path:
        return self.root / "crypto"

    @property
    def wallet(self) -> Path:
        return self.root / "wallet"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def mpc(self) -> Path:
        return self.root / "mpc"

    @property
    def state_file(self) -> Path:
        """Ports and settings chosen at first `up`, reused by every restart."""
        return self.root / "embedded.json"

    def rel(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.root.resolve()))
