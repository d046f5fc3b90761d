"""Consortium identities: MSP folders, certificates with role attributes, signing, wallets."""

from fedchain.identity.certs import ROLE_ATTRIBUTE, ROLE_ATTRIBUTE_OID, ROLES, cert_attributes, role_of
from fedchain.identity.consortium import (
    Consortium,
    Org,
    enroll_default_identities,
    generate_consortium,
    import_cryptogen,
)
from fedchain.identity.identity import Identity, IdentityError, SignatureError, SigningIdentity
from fedchain.identity.msp import MSPConfig, MSPManager, load_msp_dir, load_signing_identity
from fedchain.identity.party_tls import PartyTLS, issue_party_tls
from fedchain.identity.wallet import Wallet

__all__ = [
    "ROLE_ATTRIBUTE", "ROLE_ATTRIBUTE_OID", "ROLES", "Consortium", "enroll_default_identities", "Identity", "IdentityError", "MSPConfig",
    "MSPManager", "Org", "PartyTLS", "SignatureError", "SigningIdentity", "Wallet", "cert_attributes", "generate_consortium", "import_cryptogen",
    "issue_party_tls", "load_msp_dir", "load_signing_identity", "role_of",
]
