"""Fabric MSP folders and channel-side identity validation.

The folder layout is Fabric's (cacerts/, intermediatecerts/, tlscacerts/, signcerts/,
keystore/, config.yaml with NodeOUs), so material made by cryptogen or Fabric CA loads
here and material made here loads in a real peer.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509

from fedchain.identity import certs
from fedchain.identity.identity import Identity, IdentityError, SignatureError, SigningIdentity

NODE_OUS = ("client", "peer", "admin", "orderer")


@dataclass
class MSPConfig:
    """What a channel knows about one organisation: its roots of trust and NodeOU rules."""

    msp_id: str
    root_certs: list[x509.Certificate]
    intermediate_certs: list[x509.Certificate] = field(default_factory=list)
    tls_root_certs: list[x509.Certificate] = field(default_factory=list)
    node_ous: bool = True

    def root_pems(self) -> list[bytes]:
        return [certs.cert_to_pem(c) for c in self.root_certs]

    def tls_root_pems(self) -> list[bytes]:
        return [certs.cert_to_pem(c) for c in self.tls_root_certs]


def _read_certs(folder: Path) -> list[x509.Certificate]:
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir()):
        if path.is_file():
            out.extend(x509.load_pem_x509_certificates(path.read_bytes()))
    return out


def load_msp_dir(path: str | os.PathLike, msp_id: str) -> MSPConfig:
    """Read the verifying part of an MSP folder (no private keys)."""
    root = Path(path)
    roots = _read_certs(root / "cacerts")
    if not roots:
        raise IdentityError(f"MSP folder {root} has no cacerts/: not an MSP directory")
    node_ous = False
    cfg_path = root / "config.yaml"
    if cfg_path.is_file():
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        node_ous = bool((cfg.get("NodeOUs") or {}).get("Enable", False))
    return MSPConfig(
        msp_id=msp_id,
        root_certs=roots,
        intermediate_certs=_read_certs(root / "intermediatecerts"),
        tls_root_certs=_read_certs(root / "tlscacerts"),
        node_ous=node_ous,
    )


def node_ou_config(ca_cert_relpath: str) -> dict:
    """config.yaml content enabling NodeOUs, as cryptogen writes it."""
    def ident(ou: str) -> dict:
        return {"Certificate": ca_cert_relpath, "OrganizationalUnitIdentifier": ou}

    return {
        "NodeOUs": {
            "Enable": True,
            "ClientOUIdentifier": ident("client"),
            "PeerOUIdentifier": ident("peer"),
            "AdminOUIdentifier": ident("admin"),
            "OrdererOUIdentifier": ident("orderer"),
        }
    }


def write_private(path: Path, data: bytes) -> None:
    """Write a secret readable by its owner only (0600 from the first byte on)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def write_msp_dir(
    path: str | os.PathLike,
    *,
    ca_cert: x509.Certificate,
    tls_ca_cert: x509.Certificate,
    sign_cert: x509.Certificate | None = None,
    private_key_pem: bytes | None = None,
    ca_file: str = "ca-cert.pem",
    tls_ca_file: str = "tlsca-cert.pem",
) -> Path:
    """An MSP folder: the org's verifying MSP when sign_cert is None, a local MSP otherwise."""
    root = Path(path)
    (root / "cacerts").mkdir(parents=True, exist_ok=True)
    (root / "tlscacerts").mkdir(parents=True, exist_ok=True)
    (root / "cacerts" / ca_file).write_bytes(certs.cert_to_pem(ca_cert))
    (root / "tlscacerts" / tls_ca_file).write_bytes(certs.cert_to_pem(tls_ca_cert))
    (root / "config.yaml").write_text(yaml.safe_dump(node_ou_config(f"cacerts/{ca_file}"), sort_keys=False))
    if sign_cert is not None:
        (root / "signcerts").mkdir(exist_ok=True)
        cn = certs.common_name_of(sign_cert)
        (root / "signcerts" / f"{cn}-cert.pem").write_bytes(certs.cert_to_pem(sign_cert))
        if private_key_pem is not None:
            write_private(root / "keystore" / "priv_sk", private_key_pem)
            os.chmod(root / "keystore", 0o700)
    return root


def load_signing_identity(msp_dir: str | os.PathLike, msp_id: str) -> SigningIdentity:
    """A local MSP (signcerts/ + keystore/), e.g. from cryptogen, Fabric CA or this package."""
    root = Path(msp_dir)
    signcerts = sorted(p for p in (root / "signcerts").glob("*") if p.is_file())
    keys = sorted(p for p in (root / "keystore").glob("*") if p.is_file())
    if not signcerts:
        raise IdentityError(f"{root}/signcerts holds no certificate")
    if not keys:
        raise IdentityError(f"{root}/keystore holds no private key")
    cert_pem = signcerts[0].read_bytes()
    errors = []
    for key_path in keys:  # Fabric CA names keys <ski>_sk; cryptogen uses priv_sk
        try:
            return SigningIdentity.from_pem(msp_id, cert_pem, key_path.read_bytes())
        except (IdentityError, ValueError) as exc:
            errors.append(f"{key_path.name}: {exc}")
    raise IdentityError(f"no key in {root}/keystore matches the certificate ({'; '.join(errors)})")


class MSPManager:
    """Validates creators and endorsers against the channel's MSPs; results cached per identity bytes."""

    def __init__(self, configs: list[MSPConfig], cache_size: int = 4096) -> None:
        self._msps = {c.msp_id: c for c in configs}
        self._cache: OrderedDict[bytes, Identity] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def msp_ids(self) -> list[str]:
        return sorted(self._msps)

    def config(self, msp_id: str) -> MSPConfig:
        try:
            return self._msps[msp_id]
        except KeyError:
            raise IdentityError(f"unknown MSP {msp_id!r}: channel knows {', '.join(self.msp_ids)}") from None

    def validate(self, serialized_identity: bytes) -> Identity:
        """The identity, if its certificate chains to its MSP's CA and is within its validity period."""
        with self._lock:
            cached = self._cache.get(serialized_identity)
            if cached is not None:
                self._cache.move_to_end(serialized_identity)
        if cached is not None:
            self._check_validity_period(cached)
            return cached
        ident = Identity.deserialize(serialized_identity)
        msp = self.config(ident.msp_id)
        self._check_chain(ident, msp)
        self._check_validity_period(ident)
        with self._lock:
            self._cache[serialized_identity] = ident
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return ident

    def verify(self, serialized_identity: bytes, signature: bytes, data: bytes) -> Identity:
        ident = self.validate(serialized_identity)
        if not ident.verify(signature, data):
            raise SignatureError(
                f"signature of {ident.common_name!r} ({ident.msp_id}) does not verify"
            )
        return ident

    def node_ou(self, ident: Identity) -> str | None:
        for ou in certs.ou_of(ident.certificate):
            if ou in NODE_OUS:
                return ou
        return None

    @staticmethod
    def _check_chain(ident: Identity, msp: MSPConfig) -> None:
        cert = ident.certificate
        issuers = msp.intermediate_certs + msp.root_certs
        for _ in range(len(issuers) + 1):
            parent = next((c for c in issuers if c.subject == cert.issuer), None)
            if parent is None:
                break
            try:
                cert.verify_directly_issued_by(parent)
            except (ValueError, TypeError, Exception):  # InvalidSignature has no common base
                break
            if parent in msp.root_certs:
                return
            cert = parent
        raise IdentityError(
            f"certificate {ident.common_name!r} was not issued by a CA of MSP {msp.msp_id!r}"
        )

    @staticmethod
    def _check_validity_period(ident: Identity) -> None:
        cert = ident.certificate
        now = dt.datetime.now(dt.UTC)
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            raise IdentityError(f"certificate {ident.common_name!r} ({ident.msp_id}) is expired or not yet valid")
