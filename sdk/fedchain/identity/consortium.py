"""A consortium's crypto material in cryptogen's folder layout.

One orderer organisation and N member organisations, each with a signing CA and a TLS CA,
a peer (or orderer) node identity with its TLS pair, an Admin user (role operator) and any
users enrolled later (hospitals, MPC nodes, auditors) carrying their role attribute. The
same tree works for the embedded network and for real Fabric peers.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fedchain.identity import certs, crypto
from fedchain.identity.identity import IdentityError, SigningIdentity
from fedchain.identity.msp import (
    MSPConfig,
    MSPManager,
    load_msp_dir,
    load_signing_identity,
    write_msp_dir,
    write_private,
)

MANIFEST = "consortium.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _write_pair(folder: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, cert_name: str,
                key_name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / cert_name).write_bytes(certs.cert_to_pem(cert))
    write_private(folder / key_name, crypto.private_key_to_pem(key))


def _covers(cert_path: Path, hosts: Sequence[str]) -> bool:
    """Whether an existing TLS certificate names every requested host (else it is reissued)."""
    import ipaddress

    try:
        sans = certs.load_cert_pem(cert_path.read_bytes()).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    names = set(sans.get_values_for_type(x509.DNSName)) | {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    for host in hosts:
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            pass
        if host not in names:
            return False
    return True


def _find_cert(folder: Path, ours: str) -> Path:
    """Our file name, or cryptogen's `<ca name>-cert.pem`."""
    if (folder / ours).is_file() or not folder.is_dir():
        return folder / ours
    found = sorted(folder.glob("*-cert.pem")) or sorted(folder.glob("*.pem"))
    return found[0] if found else folder / ours


def _find_key(folder: Path, cert: x509.Certificate) -> ec.EllipticCurvePrivateKey:
    """priv_sk (ours, cryptogen) or <ski>_sk (Fabric CA): whichever matches the certificate."""
    for path in [folder / "priv_sk", *sorted(folder.glob("*_sk"))]:
        if path.is_file():
            key = crypto.load_private_key_pem(path.read_bytes())
            if key.public_key().public_numbers() == cert.public_key().public_numbers():
                return key
    raise IdentityError(f"no private key in {folder} matches its CA certificate")


@dataclass
class Org:
    """One organisation's material on disk; keys are loaded lazily and only when asked for."""

    name: str
    msp_id: str
    domain: str
    path: Path
    kind: str  # "peer" or "orderer"

    @property
    def _nodes_dir(self) -> Path:
        return self.path / ("peers" if self.kind == "peer" else "orderers")

    @property
    def node_name(self) -> str:
        """Our trees use peer0./orderer0.<domain>; cryptogen's may name the first node otherwise."""
        default = f"{'peer' if self.kind == 'peer' else 'orderer'}0.{self.domain}"
        if (self._nodes_dir / default).is_dir() or not self._nodes_dir.is_dir():
            return default
        found = sorted(p.name for p in self._nodes_dir.iterdir() if p.is_dir())
        return found[0] if found else default

    @property
    def node_dir(self) -> Path:
        return self._nodes_dir / self.node_name

    @property
    def msp_dir(self) -> Path:
        return self.path / "msp"

    @functools.cached_property
    def msp_config(self) -> MSPConfig:
        return load_msp_dir(self.msp_dir, self.msp_id)

    @property
    def ca_cert_path(self) -> Path:
        return _find_cert(self.path / "ca", "ca-cert.pem")

    @property
    def tls_ca_cert_path(self) -> Path:
        return _find_cert(self.path / "tlsca", "tlsca-cert.pem")

    @functools.cached_property
    def ca_cert(self) -> x509.Certificate:
        return certs.load_cert_pem(self.ca_cert_path.read_bytes())

    @functools.cached_property
    def tls_ca_cert(self) -> x509.Certificate:
        return certs.load_cert_pem(self.tls_ca_cert_path.read_bytes())

    @property
    def ca_key(self) -> ec.EllipticCurvePrivateKey:
        return _find_key(self.path / "ca", self.ca_cert)

    @property
    def tls_ca_key(self) -> ec.EllipticCurvePrivateKey:
        return _find_key(self.path / "tlsca", self.tls_ca_cert)

    @functools.cached_property
    def node_identity(self) -> SigningIdentity:
        return load_signing_identity(self.node_dir / "msp", self.msp_id)

    @property
    def peer_identity(self) -> SigningIdentity:
        return self.node_identity

    @property
    def peer_tls_cert(self) -> Path:
        return self.node_dir / "tls" / "server.crt"

    @property
    def peer_tls_key(self) -> Path:
        return self.node_dir / "tls" / "server.key"

    def user_dir(self, name: str) -> Path:
        return self.path / "users" / f"{name}@{self.domain}"

    @property
    def admin_identity(self) -> SigningIdentity:
        return load_signing_identity(self.user_dir("Admin") / "msp", self.msp_id)

    def to_manifest(self) -> dict:
        return {"name": self.name, "msp_id": self.msp_id, "domain": self.domain, "kind": self.kind}


class Consortium:
    """The crypto tree of a consortium: create it once, load it anywhere."""

    def __init__(self, crypto_dir: Path, orderer: Org, orgs: list[Org]) -> None:
        self.crypto_dir = crypto_dir
        self.orderer = orderer
        self.orgs = orgs

    # --- lookup ---------------------------------------------------------------
    def org(self, msp_id_or_name: str) -> Org:
        for org in [*self.orgs, self.orderer]:
            if msp_id_or_name in (org.msp_id, org.name):
                return org
        raise IdentityError(f"no organisation {msp_id_or_name!r} in the consortium")

    def msp_configs(self, include_orderer: bool = True) -> list[MSPConfig]:
        orgs = [*self.orgs, self.orderer] if include_orderer else self.orgs
        return [o.msp_config for o in orgs]

    def msp_manager(self) -> MSPManager:
        return MSPManager(self.msp_configs())

    def tls_root_pems(self) -> list[bytes]:
        return [o.tls_ca_cert_path.read_bytes() for o in [*self.orgs, self.orderer]]

    def ca_root_pems(self) -> list[bytes]:
        return [o.ca_cert_path.read_bytes() for o in [*self.orgs, self.orderer]]

    # --- issuing --------------------------------------------------------------
    def enroll(self, org_msp_id: str, name: str, role: str) -> SigningIdentity:
        """A user identity with a role attribute, issued by the org's CA (loaded if it exists)."""
        if not _NAME_RE.match(name):
            raise ValueError(f"identity name {name!r} must match {_NAME_RE.pattern}")
        org = self.org(org_msp_id)
        msp_dir = org.user_dir(name) / "msp"
        if (msp_dir / "signcerts").is_dir():
            existing = load_signing_identity(msp_dir, org.msp_id)
            if existing.identity.role != role:
                raise IdentityError(f"{name}@{org.domain} exists with role {existing.identity.role!r}, not {role!r}")
            return existing
        ou = "admin" if role == "operator" else "client"
        key, cert = certs.issue_certificate(
            org.ca_key, org.ca_cert, f"{name}@{org.domain}", ou=ou, role=role
        )
        write_msp_dir(
            msp_dir, ca_cert=org.ca_cert, tls_ca_cert=org.tls_ca_cert, sign_cert=cert,
            private_key_pem=crypto.private_key_to_pem(key),
        )
        return SigningIdentity(load_signing_identity(msp_dir, org.msp_id).identity, key)

    def issue_tls(self, org_msp_id: str, name: str, hosts: Sequence[str] = ("localhost", "127.0.0.1")
                  ) -> tuple[Path, Path]:
        """A TLS server/client pair for a service (MPC node, chaincode server) from the org's TLS CA."""
        if not _NAME_RE.match(name):
            raise ValueError(f"service name {name!r} must match {_NAME_RE.pattern}")
        org = self.org(org_msp_id)
        folder = org.path / "services" / name / "tls"
        cert_path, key_path = folder / "server.crt", folder / "server.key"
        if not cert_path.exists() or not _covers(cert_path, hosts):
            key, cert = certs.issue_certificate(org.tls_ca_key, org.tls_ca_cert, name, tls=True, hosts=hosts)
            _write_pair(folder, cert, key, "server.crt", "server.key")
            (folder / "ca.crt").write_bytes(certs.cert_to_pem(org.tls_ca_cert))
        return cert_path, key_path

    def issue_node_tls(self, org: Org, hosts: Sequence[str]) -> Path:
        """Reissue a peer's or orderer's TLS server certificate (same file names) so that it also names
        `hosts`, when it does not yet: a node placed on its own host is dialled at that host's address."""
        folder = org.node_dir / "tls"
        cert_path = folder / "server.crt"
        if not _covers(cert_path, (org.node_name, *hosts)):
            key, cert = certs.issue_certificate(org.tls_ca_key, org.tls_ca_cert, org.node_name, tls=True, hosts=hosts)
            _write_pair(folder, cert, key, "server.crt", "server.key")
        return cert_path

    # --- persistence ----------------------------------------------------------
    @classmethod
    def load(cls, crypto_dir: str | os.PathLike) -> Consortium:
        root = Path(crypto_dir)
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise IdentityError(f"{root} holds no {MANIFEST}: create it with generate_consortium()")
        manifest = json.loads(manifest_path.read_text())

        def org(entry: dict) -> Org:
            sub = "peerOrganizations" if entry["kind"] == "peer" else "ordererOrganizations"
            return Org(entry["name"], entry["msp_id"], entry["domain"], root / sub / entry["domain"], entry["kind"])

        return cls(root, org(manifest["orderer"]), [org(e) for e in manifest["orgs"]])


def _create_org(root: Path, name: str, msp_id: str, domain: str, kind: str) -> Org:
    sub = "peerOrganizations" if kind == "peer" else "ordererOrganizations"
    org = Org(name, msp_id, domain, root / sub / domain, kind)
    ca_key, ca_cert = certs.create_ca(f"ca.{domain}", domain)
    tls_key, tls_cert = certs.create_ca(f"tlsca.{domain}", domain)
    _write_pair(org.path / "ca", ca_cert, ca_key, "ca-cert.pem", "priv_sk")
    _write_pair(org.path / "tlsca", tls_cert, tls_key, "tlsca-cert.pem", "priv_sk")
    write_msp_dir(org.msp_dir, ca_cert=ca_cert, tls_ca_cert=tls_cert)

    node_ou = "peer" if kind == "peer" else "orderer"
    node_key, node_cert = certs.issue_certificate(ca_key, ca_cert, org.node_name, ou=node_ou)
    write_msp_dir(org.node_dir / "msp", ca_cert=ca_cert, tls_ca_cert=tls_cert, sign_cert=node_cert,
                  private_key_pem=crypto.private_key_to_pem(node_key))
    tls_node_key, tls_node_cert = certs.issue_certificate(tls_key, tls_cert, org.node_name, tls=True)
    _write_pair(org.node_dir / "tls", tls_node_cert, tls_node_key, "server.crt", "server.key")
    (org.node_dir / "tls" / "ca.crt").write_bytes(certs.cert_to_pem(tls_cert))

    admin_name = f"Admin@{domain}"
    admin_key, admin_cert = certs.issue_certificate(ca_key, ca_cert, admin_name, ou="admin", role="operator")
    write_msp_dir(org.user_dir("Admin") / "msp", ca_cert=ca_cert, tls_ca_cert=tls_cert, sign_cert=admin_cert,
                  private_key_pem=crypto.private_key_to_pem(admin_key))
    tls_admin_key, tls_admin_cert = certs.issue_certificate(tls_key, tls_cert, admin_name, tls=True)
    _write_pair(org.user_dir("Admin") / "tls", tls_admin_cert, tls_admin_key, "client.crt", "client.key")
    (org.user_dir("Admin") / "tls" / "ca.crt").write_bytes(certs.cert_to_pem(tls_cert))
    return org


def generate_consortium(
    crypto_dir: str | os.PathLike,
    org_names: Sequence[str] = ("Org1", "Org2", "Org3"),
    *,
    domain_suffix: str = "fedchain.local",
) -> Consortium:
    """Create the whole tree (refuses to overwrite an existing consortium)."""
    root = Path(crypto_dir)
    if (root / MANIFEST).exists():
        raise IdentityError(f"{root} already holds a consortium; load it with Consortium.load()")
    if not org_names or len(set(org_names)) != len(org_names):
        raise ValueError("need at least one organisation, with distinct names")
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)  # holds every org's CA keys on a one-machine network
    orderer = _create_org(root, "Orderer", "OrdererMSP", f"orderer.{domain_suffix}", "orderer")
    orgs = [
        _create_org(root, name, f"{name}MSP", f"{name.lower()}.{domain_suffix}", "peer") for name in org_names
    ]
    manifest = {"orderer": orderer.to_manifest(), "orgs": [o.to_manifest() for o in orgs]}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return Consortium(root, orderer, orgs)


def import_cryptogen(crypto_dir: str | os.PathLike, msp_ids: dict[str, str] | None = None) -> Consortium:
    """Adopt a tree made by Fabric's `cryptogen` (crypto-config/): writes only consortium.json.

    cryptogen does not record MSP ids; by default `org1.example.com` becomes Org1MSP and the
    orderer organisation OrdererMSP. Pass msp_ids={domain: msp_id} to override.
    """
    root = Path(crypto_dir)
    msp_ids = msp_ids or {}
    if (root / MANIFEST).exists():
        return Consortium.load(root)

    def entries(sub: str, kind: str) -> list[dict]:
        out = []
        for d in sorted(p for p in (root / sub).glob("*") if p.is_dir()):
            label = d.name.split(".")[0]
            name = "Orderer" if kind == "orderer" else label[:1].upper() + label[1:]
            out.append({"name": name, "msp_id": msp_ids.get(d.name, f"{name}MSP"), "domain": d.name, "kind": kind})
        return out

    orderers, orgs = entries("ordererOrganizations", "orderer"), entries("peerOrganizations", "peer")
    if len(orderers) != 1 or not orgs:
        raise IdentityError(f"{root} is not a cryptogen tree with one orderer organisation and at least one "
                            f"peer organisation (found {len(orderers)} and {len(orgs)})")
    (root / MANIFEST).write_text(json.dumps({"orderer": orderers[0], "orgs": orgs}, indent=2))
    consortium = Consortium.load(root)
    for org in [consortium.orderer, *consortium.orgs]:
        org.msp_config  # noqa: B018 - fail now, with the folder named, if an MSP does not load
        org.node_identity  # noqa: B018
    return consortium


def enroll_default_identities(consortium: Consortium, wallet: Any, mpc_nodes: int = 3) -> None:
    """The wallet entries every network starts with: operator (first org), auditor (last org),
    and mpc0.. spread over the orgs in turn (each MPC node run by a different organisation).
    Hospitals are enrolled later, one by one. Existing entries are kept."""
    orgs = consortium.orgs
    wanted = [("operator", orgs[0].msp_id, "operator"), ("auditor", orgs[-1].msp_id, "auditor")]
    wanted += [(f"mpc{i}", orgs[i % len(orgs)].msp_id, "mpc_node") for i in range(mpc_nodes)]
    for name, msp_id, role in wanted:
        if not wallet.exists(name):
            wallet.put(name, consortium.enroll(msp_id, name, role))
