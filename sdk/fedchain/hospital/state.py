"""Durable per-round state of a hospital: the shares it made and whether they were committed.

Why: Shamir shares use fresh randomness, so re-training after a crash would produce
*different* shares for the same round. The MPC nodes and the ledger must only ever see one
set, so the shares are written (0600, fsynced, atomically) before any of them leaves the
machine; a restart re-sends exactly these bytes. `status` moves prepared -> submitted.
Layout: STATE_DIR/rounds/<round_id>/{share_<j>.bin, state.json}; state.json is written last,
so its presence means every share file it names is complete.

Once the round is over (FINALIZED, FAILED, DISPUTED) the shares are deleted: anyone who can read
all of them reconstructs this hospital's update, and no node will ask for them again. Until then
they stay (a resend may still be needed while the round is OPEN or CLOSED). state.json keeps the
share hashes and the nodes' receipts as evidence, with `shares_deleted` set. Deleting unlinks
the files; it does not scrub the disk blocks (use an encrypted volume for that).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedchain.durable import fsync_dir, write_durably
from fedchain.records import RoundId, parse_round_id
from fedchain.sharing import sha256_hex

PREPARED = "prepared"
SUBMITTED = "submitted"


class StateError(Exception):
    """Local round state is unreadable or contradicts itself (the message says which file)."""


def write_private(path: Path, data: bytes) -> None:
    """Atomic, fsynced write readable by the owner only (shares are secret material)."""
    write_durably(path, data, mode=0o600)


@dataclass
class RoundState:
    round_id: RoundId
    participant_id: str
    base_model_hash: str
    share_hashes: list[str]
    n_samples: int
    dim: int
    status: str = PREPARED
    tx_id: str | None = None
    receipts: list[dict[str, Any]] = field(default_factory=list)
    shares_deleted: bool = False  # the round ended and its share files were deleted


class HospitalState:
    """Files under `root` (created 0700)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def round_dir(self, round_id: RoundId) -> Path:
        return self.root / "rounds" / str(parse_round_id(round_id, genesis_ok=True))

    @property
    def checkpoint_path(self) -> Path:
        return self.root / "events-checkpoint.json"

    @property
    def watermark_path(self) -> Path:
        """The newest ledger block this hospital has seen (fedchain.gateway.watermark)."""
        return self.root / "ledger.watermark.json"

    def load(self, round_id: RoundId) -> RoundState | None:
        path = self.round_dir(round_id) / "state.json"
        if not path.exists():
            return None
        try:
            st = RoundState(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise StateError(f"{path} is corrupt ({exc}); move it away to start this round afresh") from exc
        if st.status not in (PREPARED, SUBMITTED) or st.round_id != parse_round_id(round_id, genesis_ok=True):
            raise StateError(f"{path} is inconsistent (round {st.round_id}, status {st.status!r})")
        return st

    def save(self, st: RoundState) -> None:
        write_private(self.round_dir(st.round_id) / "state.json",
                      json.dumps(asdict(st), indent=1, sort_keys=True).encode())

    def save_shares(self, round_id: RoundId, shares: list[bytes]) -> list[str]:
        hashes = []
        for j, blob in enumerate(shares):
            write_private(self.round_dir(round_id) / f"share_{j}.bin", blob)
            hashes.append(sha256_hex(blob))
        return hashes

    def load_shares(self, st: RoundState) -> list[bytes]:
        """The persisted shares, each checked against the hash recorded for it."""
        if st.shares_deleted:
            raise StateError(f"the shares of round {st.round_id} were deleted when the round ended")
        out = []
        for j, want in enumerate(st.share_hashes):
            path = self.round_dir(st.round_id) / f"share_{j}.bin"
            try:
                blob = path.read_bytes()
            except OSError as exc:
                raise StateError(f"share file {path} is missing ({exc})") from exc
            if sha256_hex(blob) != want:
                raise StateError(f"share file {path} does not match its recorded SHA-256")
            out.append(blob)
        return out

    def rounds(self) -> list[RoundId]:
        base = self.root / "rounds"
        return sorted(RoundId(int(p.name)) for p in base.iterdir() if p.name.isdigit()) if base.exists() else []

    def share_files(self, round_id: RoundId) -> list[Path]:
        """Share files of a round, including temporary ones a crash may have left behind."""
        folder = self.round_dir(round_id)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.name.startswith(("share_", ".share_")))

    def rounds_with_shares(self) -> list[RoundId]:
        return [r for r in self.rounds() if self.share_files(r)]

    def delete_shares(self, round_id: RoundId) -> bool:
        """Delete a finished round's share files (call only once the round is over); True if any were there.

        state.json is marked first: a crash in between leaves files that the next clean-up removes,
        never a state that promises shares it no longer has.
        """
        files = self.share_files(round_id)
        try:
            st = self.load(round_id)
        except StateError:
            st = None  # unreadable state: the shares of an ended round go all the same
        if st is not None and not st.shares_deleted:
            st.shares_deleted = True
            self.save(st)
        for path in files:
            path.unlink(missing_ok=True)
        if files:
            fsync_dir(self.round_dir(round_id))
        return bool(files)
