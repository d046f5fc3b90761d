"""Who signs: a Fabric identity (MSP id + certificate) and its signing counterpart."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from fabric_protos.msp import identities_pb2

from fedchain.identity import certs, crypto


class IdentityError(Exception):
    """An identity that is malformed, unknown to the channel, or not issued by its MSP."""


class SignatureError(IdentityError):
    """A signature that does not verify against the claimed identity."""


@dataclass(frozen=True)
class Identity:
    """The public half: what goes into a SerializedIdentity (creator / endorser)."""

    msp_id: str
    cert_pem: bytes

    @functools.cached_property
    def certificate(self) -> x509.Certificate:
        try:
            return certs.load_cert_pem(self.cert_pem)
        except ValueError as exc:
            raise IdentityError(f"identity of MSP {self.msp_id!r} has no valid PEM certificate: {exc}") from exc

    def serialize(self) -> bytes:
        return identities_pb2.SerializedIdentity(mspid=self.msp_id, id_bytes=self.cert_pem).SerializeToString()

    @classmethod
    def deserialize(cls, data: bytes) -> Identity:
        try:
            sid = identities_pb2.SerializedIdentity.FromString(data)
        except Exception as exc:  # protobuf raises DecodeError; keep the message short
            raise IdentityError(f"malformed SerializedIdentity: {exc}") from exc
        if not sid.mspid or not sid.id_bytes:
            raise IdentityError("SerializedIdentity lacks an MSP id or certificate")
        return cls(msp_id=sid.mspid, cert_pem=bytes(sid.id_bytes))

    @property
    def role(self) -> str | None:
        return certs.role_of(self.certificate)

    @property
    def common_name(self) -> str:
        return certs.common_name_of(self.certificate)

    @property
    def fabric_id(self) -> str:
        """Fabric's client identity id: x509::<subject>::<issuer> (RFC 4514 strings)."""
        cert = self.certificate
        return f"x509::{cert.subject.rfc4514_string()}::{cert.issuer.rfc4514_string()}"

    def verify(self, signature: bytes, data: bytes) -> bool:
        public_key = self.certificate.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            return False
        return crypto.verify(public_key, signature, data)


@dataclass(frozen=True)
class SigningIdentity:
    """An identity plus its private key; the key never leaves the owner's wallet."""

    identity: Identity
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def msp_id(self) -> str:
        return self.identity.msp_id

    @property
    def cert_pem(self) -> bytes:
        return self.identity.cert_pem

    @functools.cached_property
    def creator(self) -> bytes:
        """Serialized identity, computed once: it goes into every proposal."""
        return self.identity.serialize()

    def serialize(self) -> bytes:
        return self.creator

    def sign(self, data: bytes) -> bytes:
        return crypto.sign(self.private_key, data)

    def private_key_pem(self) -> bytes:
        return crypto.private_key_to_pem(self.private_key)

    @classmethod
    def from_pem(cls, msp_id: str, cert_pem: bytes, key_pem: bytes) -> SigningIdentity:
        key = crypto.load_private_key_pem(key_pem)
        ident = Identity(msp_id, cert_pem)
        if ident.certificate.public_key().public_numbers() != key.public_key().public_numbers():
            raise IdentityError(f"private key does not match the certificate of {ident.common_name!r}")
        return cls(ident, key)
