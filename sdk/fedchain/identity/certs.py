"""X.509 certificates shaped like Fabric's cryptogen / Fabric CA output.

Roles travel as a Fabric-CA attribute: extension OID 1.2.3.4.5.6.7.8.1 whose raw value is
JSON `{"attrs": {"fedchain.role": "hospital"}}`, so chaincode on real Fabric can read them
the same way (`cid.GetAttributeValue`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from fedchain.identity.crypto import generate_private_key

ROLE_ATTRIBUTE_OID = "1.2.3.4.5.6.7.8.1"
ROLE_ATTRIBUTE = "fedchain.role"
ROLES = ("operator", "hospital", "mpc_node", "auditor")
_ATTR_OID = ObjectIdentifier(ROLE_ATTRIBUTE_OID)
CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=825)


def _name(common_name: str, org: str | None = None, ou: str | None = None) -> x509.Name:
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "California"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "San Francisco"),
    ]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def create_ca(common_name: str, org: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Self-signed root CA (signing or TLS) for one organisation."""
    key = generate_private_key()
    name = _name(common_name, org)
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    *,
    org: str | None = None,
    ou: str | None = None,
    role: str | None = None,
    tls: bool = False,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Leaf certificate: an enrolment (signing) certificate, or a TLS one when tls=True."""
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    key = key or generate_private_key()
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, org, ou))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=tls,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )
    )
    if tls:
        sans: list[x509.GeneralName] = [x509.DNSName(common_name)] if "@" not in common_name else []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                if host != common_name:
                    sans.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    if role is not None:
        value = json.dumps({"attrs": {ROLE_ATTRIBUTE: role}}, separators=(",", ":")).encode()
        builder = builder.add_extension(x509.UnrecognizedExtension(_ATTR_OID, value), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def cert_attributes(cert: x509.Certificate) -> dict[str, str]:
    """Fabric-CA attributes carried in the certificate ({} when there are none or they are malformed)."""
    try:
        ext = cert.extensions.get_extension_for_oid(_ATTR_OID)
    except x509.ExtensionNotFound:
        return {}
    try:
        attrs = json.loads(ext.value.value).get("attrs", {})
    except (ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in attrs.items()} if isinstance(attrs, dict) else {}


def role_of(cert: x509.Certificate) -> str | None:
    return cert_attributes(cert).get(ROLE_ATTRIBUTE)


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert_pem(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def common_name_of(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def ou_of(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
