"""Who is who, rebuilt from the chain: the registrations the FL contract's access rules rest on.

The contract admits a caller only if its certificate (MSP id + Fabric client id
"x509::<subject>::<issuer>") was registered by InitConsortium (the operator, the MPC nodes) or
RegisterParticipant, and the certificate's role attribute equals the registered role. The
auditor rebuilds that registry from the transactions' arguments instead of asking a peer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedchain.identity import Identity, IdentityError


@dataclass(frozen=True)
class Caller:
    """A transaction's creator as the contract sees it."""

    msp_id: str
    fabric_id: str | None  # None: the certificate does not parse
    cert_role: str | None
    participant: dict[str, Any] | None  # the registration, None when unregistered

    @property
    def role(self) -> str | None:
        """The registered role, else the certificate's (for messages about unregistered callers)."""
        return self.participant["role"] if self.participant else self.cert_role

    @property
    def name(self) -> str:
        if self.participant:
            return str(self.participant["id"])
        return f"{self.fabric_id or '<unreadable certificate>'} of {self.msp_id}"


@dataclass
class Registry:
    participants: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> registration
    by_identity: dict[tuple[str, str], str] = field(default_factory=dict)  # (msp id, fabric id) -> id
    _certs: dict[bytes, tuple[str | None, str | None]] = field(default_factory=dict)

    def caller(self, msp_id: str, cert_pem: bytes) -> Caller:
        fabric_id, role = self._cert(msp_id, cert_pem)
        pid = self.by_identity.get((msp_id, fabric_id)) if fabric_id else None
        return Caller(msp_id, fabric_id, role, self.participants.get(pid) if pid else None)

    def _cert(self, msp_id: str, cert_pem: bytes) -> tuple[str | None, str | None]:
        """(fabric id, role attribute), parsed once per certificate: parsing costs more than the rest."""
        cached = self._certs.get(cert_pem)
        if cached is None:
            try:
                ident = Identity(msp_id, cert_pem)
                cached = (ident.fabric_id, ident.role)
            except (IdentityError, ValueError):
                cached = (None, None)
            self._certs[cert_pem] = cached
        return cached

    def register(self, record: dict[str, Any]) -> str | None:
        """Add a registration; returns why the contract would have refused it (None: it would not)."""
        pid, key = str(record.get("id")), (str(record.get("msp_id")), str(record.get("identity")))
        if pid in self.participants:
            return f"participant {pid!r} registered twice"
        if key in self.by_identity:
            return f"the identity registered as {pid!r} is already registered as {self.by_identity[key]!r}"
        self.participants[pid] = record
        self.by_identity[key] = pid
        return None
