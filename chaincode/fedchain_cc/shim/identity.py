"""The transaction creator as a `ClientIdentity`, parsed once per distinct creator.

Parsing an X.509 certificate costs ~100 µs; the same few creators sign thousands of
transactions, so the parse is cached by the exact SerializedIdentity bytes (a different
byte string is a different cache entry, so the cache can never confuse identities).
"""

from __future__ import annotations

import dataclasses
import functools
import json

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier
from fabric_protos.msp import identities_pb2
from google.protobuf.message import DecodeError

from fedchain_cc.shim.interface import ATTRIBUTE_EXTENSION_OID, ClientIdentity

_ATTR_OID = ObjectIdentifier(ATTRIBUTE_EXTENSION_OID)
CACHE_SIZE = 4096


class IdentityParseError(ValueError):
    """The creator is not an X.509 SerializedIdentity we can read."""


def attributes_of(cert: x509.Certificate) -> dict[str, str]:
    """Fabric-CA attributes: extension 1.2.3.4.5.6.7.8.1 holding JSON {"attrs": {name: value}}."""
    try:
        ext = cert.extensions.get_extension_for_oid(_ATTR_OID)
    except x509.ExtensionNotFound:
        return {}
    try:
        attrs = json.loads(ext.value.value)["attrs"]
        if not isinstance(attrs, dict):
            raise TypeError("attrs is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise IdentityParseError(f"creator certificate has a malformed attribute extension: {exc}") from None
    return {str(k): str(v) for k, v in attrs.items()}


@functools.lru_cache(maxsize=CACHE_SIZE)
def _parse(creator: bytes) -> ClientIdentity:
    try:
        sid = identities_pb2.SerializedIdentity.FromString(creator)
    except DecodeError as exc:
        raise IdentityParseError(f"creator is not a msp.SerializedIdentity: {exc}") from None
    if not sid.mspid:
        raise IdentityParseError("creator has no MSP id")
    return identity_from_pem(sid.mspid, sid.id_bytes)


def identity_from_pem(msp_id: str, cert_pem: bytes) -> ClientIdentity:
    """The ClientIdentity of a creator certificate (subject/issuer in RFC 4514, Fabric-CA attributes).

    Uncached; also what the in-memory test ledger uses, so tests see exactly what the shim derives."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise IdentityParseError(f"creator of {msp_id} is not a PEM X.509 certificate: {exc}") from None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return ClientIdentity(
        msp_id=msp_id,
        cert_pem=cert_pem,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        common_name=str(cns[0].value) if cns else "",
        attributes=attributes_of(cert),
    )


def client_identity(creator: bytes) -> ClientIdentity:
    """Parse (cached) and return a copy whose attribute dict the caller may freely modify."""
    if not creator:
        raise IdentityParseError("the transaction has no creator (no signed proposal)")
    cached = _parse(bytes(creator))
    return dataclasses.replace(cached, attributes=dict(cached.attributes))
