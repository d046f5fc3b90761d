"""ECDSA P-256 signing the way Fabric expects it.

Fabric accepts only low-S signatures (s <= n/2) to rule out signature malleability, so
`sign` normalises s and `verify` rejects high-S signatures outright.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_HALF_ORDER = P256_ORDER >> 1
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sign(private_key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """DER ECDSA-SHA256 signature with s normalised to the lower half of the group order."""
    r, s = decode_dss_signature(private_key.sign(data, _ECDSA_SHA256))
    if s > _HALF_ORDER:
        s = P256_ORDER - s
    return encode_dss_signature(r, s)


def is_low_s(signature: bytes) -> bool:
    try:
        _, s = decode_dss_signature(signature)
    except ValueError:
        return False
    return 0 < s <= _HALF_ORDER


def verify(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    """True only for a valid, low-S DER signature over data."""
    if not is_low_s(signature):
        return False
    try:
        public_key.verify(signature, data, _ECDSA_SHA256)
    except (InvalidSignature, ValueError):
        return False
    return True


def private_key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key_pem(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("expected an ECDSA P-256 private key")
    return key
