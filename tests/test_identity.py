"""Consortium material, MSP validation, signatures and wallets."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from fedchain.identity import (
    Consortium,
    IdentityError,
    SignatureError,
    Wallet,
    generate_consortium,
    load_signing_identity,
)
from fedchain.identity.certs import create_ca, issue_certificate, role_of
from fedchain.identity.crypto import P256_ORDER, generate_private_key, is_low_s, sign, verify
from fedchain.identity.identity import Identity


@pytest.fixture(scope="module")
def consortium(tmp_path_factory) -> Consortium:
    return generate_consortium(tmp_path_factory.mktemp("crypto"), ("Org1", "Org2"))


def test_signatures_are_low_s_and_high_s_rejected():
    key = generate_private_key()
    for i in range(20):
        data = f"message {i}".encode()
        sig = sign(key, data)
        assert is_low_s(sig)
        assert verify(key.public_key(), sig, data)
        r, s = decode_dss_signature(sig)
        high = encode_dss_signature(r, P256_ORDER - s)
        assert not verify(key.public_key(), high, data)  # malleated twin is refused
    assert not verify(key.public_key(), sign(key, b"a"), b"b")
    assert not verify(key.public_key(), b"garbage", b"a")


def test_layout_is_fabric_msp(consortium):
    org = consortium.org("Org1MSP")
    for rel in ["msp/cacerts", "msp/tlscacerts", "msp/config.yaml", "peers/peer0.org1.fedchain.local/msp/signcerts",
                "peers/peer0.org1.fedchain.local/msp/keystore/priv_sk", "peers/peer0.org1.fedchain.local/tls/server.crt",
                "users/Admin@org1.fedchain.local/msp/signcerts"]:
        assert (org.path / rel).exists(), rel
    key_mode = stat.S_IMODE(os.stat(org.path / "ca" / "priv_sk").st_mode)
    assert key_mode == 0o600
    assert stat.S_IMODE(os.stat(consortium.crypto_dir).st_mode) == 0o700
    assert org.msp_config.node_ous
    assert consortium.orderer.msp_id == "OrdererMSP"
    reloaded = Consortium.load(consortium.crypto_dir)
    assert [o.msp_id for o in reloaded.orgs] == ["Org1MSP", "Org2MSP"]
    with pytest.raises(IdentityError, match="already holds"):
        generate_consortium(consortium.crypto_dir)


def test_enroll_carries_role_and_validates(consortium):
    hospital = consortium.enroll("Org1MSP", "hospital1", "hospital")
    assert hospital.identity.role == "hospital"
    assert consortium.enroll("Org1MSP", "hospital1", "hospital").cert_pem == hospital.cert_pem  # idempotent
    with pytest.raises(IdentityError, match="exists with role"):
        consortium.enroll("Org1MSP", "hospital1", "auditor")
    mgr = consortium.msp_manager()
    ident = mgr.validate(hospital.serialize())
    assert ident.msp_id == "Org1MSP"
    assert mgr.node_ou(ident) == "client"
    assert mgr.node_ou(mgr.validate(consortium.org("Org2MSP").peer_identity.serialize())) == "peer"
    sig = hospital.sign(b"payload")
    assert mgr.verify(hospital.serialize(), sig, b"payload").fabric_id.startswith("x509::CN=hospital1@")
    with pytest.raises(SignatureError):
        mgr.verify(hospital.serialize(), sig, b"other payload")
    assert consortium.org("Org1MSP").admin_identity.identity.role == "operator"


def test_foreign_or_mislabeled_identities_rejected(consortium):
    mgr = consortium.msp_manager()
    hospital = consortium.enroll("Org1MSP", "hospital2", "hospital")
    # claims Org2 but was issued by Org1's CA
    forged = Identity("Org2MSP", hospital.cert_pem).serialize()
    with pytest.raises(IdentityError, match="not issued by a CA of MSP 'Org2MSP'"):
        mgr.validate(forged)
    with pytest.raises(IdentityError, match="unknown MSP 'EvilMSP'"):
        mgr.validate(Identity("EvilMSP", hospital.cert_pem).serialize())
    # a self-made CA with the same subject names is not trusted
    ca_key, ca_cert = create_ca("ca.org1.fedchain.local", "org1.fedchain.local")
    _, rogue = issue_certificate(ca_key, ca_cert, "mallory@org1.fedchain.local", ou="client", role="operator")
    from fedchain.identity.certs import cert_to_pem

    assert role_of(rogue) == "operator"
    with pytest.raises(IdentityError, match="not issued"):
        mgr.validate(Identity("Org1MSP", cert_to_pem(rogue)).serialize())
    with pytest.raises(IdentityError, match="malformed"):
        mgr.validate(b"\xff\xff not a proto")


def test_wallet_roundtrip_and_permissions(consortium, tmp_path):
    ident = consortium.enroll("Org2MSP", "auditor1", "auditor")
    wallet = Wallet(tmp_path / "wallet")
    wallet.put("auditor1", ident)
    assert stat.S_IMODE(os.stat(tmp_path / "wallet" / "auditor1" / "key.pem").st_mode) == 0o600
    loaded = wallet.get("auditor1")
    assert loaded.msp_id == "Org2MSP" and loaded.identity.role == "auditor"
    assert loaded.identity.verify(loaded.sign(b"x"), b"x")
    assert wallet.list() == ["auditor1"]
    os.chmod(tmp_path / "wallet" / "auditor1" / "key.pem", 0o644)
    with pytest.raises(IdentityError, match="readable by others"):
        wallet.get("auditor1")
    with pytest.raises(IdentityError, match="no identity 'nobody'"):
        wallet.get("nobody")


def test_msp_loader_reads_local_msp(consortium):
    org = consortium.org("Org1MSP")
    ident = load_signing_identity(org.node_dir / "msp", org.msp_id)
    assert ident.identity.common_name == "peer0.org1.fedchain.local"
    with pytest.raises(IdentityError, match="signcerts"):
        load_signing_identity(org.msp_dir, org.msp_id)


def _cryptogen_like_tree(root):
    """The file names Fabric's cryptogen writes (crypto-config/), made with our cert helpers."""
    from fedchain.identity.certs import cert_to_pem
    from fedchain.identity.crypto import private_key_to_pem
    from fedchain.identity.msp import write_private

    def org(sub, domain, node, node_ou):
        base = root / sub / domain
        ca_key, ca = create_ca(f"ca.{domain}", domain)
        tls_key, tlsca = create_ca(f"tlsca.{domain}", domain)
        for folder, cert, key, name in ((base / "ca", ca, ca_key, f"ca.{domain}-cert.pem"),
                                        (base / "tlsca", tlsca, tls_key, f"tlsca.{domain}-cert.pem")):
            folder.mkdir(parents=True)
            (folder / name).write_bytes(cert_to_pem(cert))
            write_private(folder / "priv_sk", private_key_to_pem(key))
        config = (f"NodeOUs:\n  Enable: true\n  ClientOUIdentifier:\n    Certificate: cacerts/ca.{domain}-cert.pem\n"
                  f"    OrganizationalUnitIdentifier: client\n  PeerOUIdentifier:\n    Certificate: cacerts/ca.{domain}-cert.pem\n"
                  f"    OrganizationalUnitIdentifier: peer\n")
        for msp in (base / "msp", base / node / "msp"):
            (msp / "cacerts").mkdir(parents=True)
            (msp / "tlscacerts").mkdir()
            (msp / "cacerts" / f"ca.{domain}-cert.pem").write_bytes(cert_to_pem(ca))
            (msp / "tlscacerts" / f"tlsca.{domain}-cert.pem").write_bytes(cert_to_pem(tlsca))
            (msp / "config.yaml").write_text(config)
        nkey, ncert = issue_certificate(ca_key, ca, node.split("/")[-1], ou=node_ou)
        (base / node / "msp" / "signcerts").mkdir()
        (base / node / "msp" / "signcerts" / f"{node.split('/')[-1]}-cert.pem").write_bytes(cert_to_pem(ncert))
        write_private(base / node / "msp" / "keystore" / "priv_sk", private_key_to_pem(nkey))

    org("ordererOrganizations", "example.com", "orderers/orderer.example.com", "orderer")
    org("peerOrganizations", "org1.example.com", "peers/peer0.org1.example.com", "peer")
    org("peerOrganizations", "org2.example.com", "peers/peer0.org2.example.com", "peer")


def test_import_cryptogen_tree(tmp_path):
    from fedchain.identity import import_cryptogen

    _cryptogen_like_tree(tmp_path)
    cons = import_cryptogen(tmp_path)
    assert [o.msp_id for o in cons.orgs] == ["Org1MSP", "Org2MSP"] and cons.orderer.msp_id == "OrdererMSP"
    assert cons.orderer.node_name == "orderer.example.com"
    mgr = cons.msp_manager()
    peer = cons.org("Org2MSP").peer_identity
    assert mgr.node_ou(mgr.verify(peer.serialize(), peer.sign(b"d"), b"d")) == "peer"
    user = cons.enroll("Org1MSP", "hospital1", "hospital")  # signs with cryptogen's CA key
    assert mgr.validate(user.serialize()).role == "hospital"
    # the same tree, loaded again, needs nothing new
    assert Consortium.load(tmp_path).org("Org1MSP").ca_cert_path.name == "ca.org1.example.com-cert.pem"


def test_fabric_ca_style_keystore(tmp_path, consortium):
    """Fabric CA names the key <SKI>_sk and the cert cert.pem; both load."""
    import shutil

    src = consortium.org("Org1MSP").user_dir("Admin") / "msp"
    dst = tmp_path / "msp"
    shutil.copytree(src, dst)
    (dst / "keystore" / "priv_sk").rename(dst / "keystore" / "3f2a9c_sk")
    (dst / "signcerts" / next((dst / "signcerts").iterdir()).name).rename(dst / "signcerts" / "cert.pem")
    ident = load_signing_identity(dst, "Org1MSP")
    assert ident.identity.role == "operator"
    assert consortium.msp_manager().verify(ident.serialize(), ident.sign(b"x"), b"x")


def test_issue_tls_reissues_when_hosts_change(consortium):
    cert1, _ = consortium.issue_tls("Org1MSP", "svc1")
    first = cert1.read_bytes()
    assert consortium.issue_tls("Org1MSP", "svc1")[0].read_bytes() == first  # same hosts: kept
    cert2, _ = consortium.issue_tls("Org1MSP", "svc1", hosts=("localhost", "127.0.0.1", "node7.example"))
    assert cert2.read_bytes() != first
    from fedchain.identity.consortium import _covers

    assert _covers(cert2, ("node7.example", "127.0.0.1")) and not _covers(cert2, ("10.0.0.9",))
