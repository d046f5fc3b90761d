"""A wallet on disk: one folder per identity (cert.pem, key.pem with mode 0600, msp_id).

Same shape for every network kind, so hospitals and auditors carry their wallet from the
embedded network to real Fabric unchanged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from fedchain.identity.identity import IdentityError, SigningIdentity
from fedchain.identity.msp import write_private

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


class Wallet:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def _entry(self, name: str) -> Path:
        if not _NAME_RE.match(name):
            raise IdentityError(f"wallet entry name {name!r} must match {_NAME_RE.pattern}")
        return self.path / name

    def put(self, name: str, ident: SigningIdentity) -> Path:
        entry = self._entry(name)
        entry.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        os.chmod(entry, 0o700)
        (entry / "cert.pem").write_bytes(ident.cert_pem)
        (entry / "msp_id").write_text(ident.msp_id + "\n")
        write_private(entry / "key.pem", ident.private_key_pem())
        return entry

    def exists(self, name: str) -> bool:
        return (self._entry(name) / "key.pem").is_file()

    def get(self, name: str) -> SigningIdentity:
        entry = self._entry(name)
        if not (entry / "cert.pem").is_file():
            known = ", ".join(self.list()) or "none"
            raise IdentityError(f"no identity {name!r} in wallet {self.path} (known: {known})")
        key_path = entry / "key.pem"
        mode = key_path.stat().st_mode & 0o777
        if mode & 0o077:
            raise IdentityError(f"{key_path} is readable by others (mode {mode:o}); run chmod 600 on it")
        return SigningIdentity.from_pem(
            (entry / "msp_id").read_text().strip(), (entry / "cert.pem").read_bytes(), key_path.read_bytes()
        )

    def list(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if (p / "cert.pem").is_file())
