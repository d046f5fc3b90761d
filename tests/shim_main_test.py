"""`python -m fedchain_cc`: configuration, READY line, mutual TLS from env, clean SIGTERM, quiet logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from fedchain.identity.certs import cert_to_pem, create_ca, issue_certificate
from fedchain_cc.server_main import config_warnings, load_chaincode, main
from fedchain_cc.testcc import TestChaincode

sys.path.insert(0, str(Path(__file__).parent))
from shim_peer import FakePeer, creator_bytes  # noqa: E402


def _pem_key(key) -> bytes:  # noqa: ANN001
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_load_chaincode_by_name_and_path() -> None:
    assert isinstance(load_chaincode("testcc"), TestChaincode)
    assert type(load_chaincode("fedchain")).__name__ == "FLContract"
    assert isinstance(load_chaincode("fedchain_cc.testcc:TestChaincode"), TestChaincode)
    with pytest.raises(ValueError, match="unknown chaincode 'nope'"):
        load_chaincode("nope")
    with pytest.raises(ValueError, match="has no attribute 'Missing'"):
        load_chaincode("fedchain_cc.testcc:Missing")
    with pytest.raises(ValueError, match="is not a fedchain_cc.shim.interface.Chaincode"):
        load_chaincode("fedchain_cc.testcc:_text")  # not a class: refused before calling it
    with pytest.raises(ImportError):
        load_chaincode("no_such_module:X")


def test_bad_configuration_exits_with_a_clear_error(monkeypatch, caplog) -> None:
    monkeypatch.delenv("CHAINCODE_ID", raising=False)
    assert main(["--chaincode", "testcc"]) == 2
    assert main(["--chaincode-id", "x", "--tls-cert", "c.pem"]) == 2
    assert main(["--chaincode-id", "x", "--chaincode", "nope", "--address", "127.0.0.1:0"]) == 1
    err = caplog.text
    assert "CHAINCODE_ID" in err and "must be set together" in err and "unknown chaincode 'nope'" in err


def test_config_warnings(tmp_path) -> None:
    key = tmp_path / "k.pem"
    key.write_bytes(b"x")
    key.chmod(0o600)
    assert config_warnings("127.0.0.1:9999", None, None, None) == []
    assert config_warnings("0.0.0.0:9999", str(key), str(key), str(key)) == []
    assert "without TLS" in config_warnings("0.0.0.0:9999", None, None, None)[0]
    assert "without client authentication" in config_warnings("10.0.0.5:9999", "c", str(key), None)[0]
    key.chmod(0o644)
    assert "readable by group/others" in config_warnings("127.0.0.1:1", "c", str(key), None)[0]


@pytest.mark.slow
def test_module_serves_over_mutual_tls_and_stops_on_sigterm(tmp_path) -> None:
    ca_key, ca_cert = create_ca("ca.org1", "Org1MSP")
    skey, scert = issue_certificate(ca_key, ca_cert, "cc.org1", org="Org1MSP", ou="peer", tls=True)
    ckey, ccert = issue_certificate(ca_key, ca_cert, "peer0.org1", org="Org1MSP", ou="peer", tls=True)
    _, user = issue_certificate(ca_key, ca_cert, "alice", org="Org1MSP", ou="client", role="hospital")
    files = {"tls.crt": cert_to_pem(scert), "tls.key": _pem_key(skey), "ca.crt": cert_to_pem(ca_cert)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    env = dict(
        os.environ,
        CHAINCODE_ID="testcc:42",
        CHAINCODE_SERVER_ADDRESS="127.0.0.1:0",
        CHAINCODE_TLS_CERT=str(tmp_path / "tls.crt"),
        CHAINCODE_TLS_KEY=str(tmp_path / "tls.key"),
        CHAINCODE_TLS_CLIENT_CA=str(tmp_path / "ca.crt"),
        FEDCHAIN_CHAINCODE="testcc",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedchain_cc"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("READY 127.0.0.1:"), line
        creds = grpc.ssl_channel_credentials(
            root_certificates=files["ca.crt"],
            private_key=_pem_key(ckey),
            certificate_chain=cert_to_pem(ccert),
        )
        with FakePeer(
            line.split()[1], credentials=creds, server_name="localhost", expect_id="testcc:42"
        ) as peer:
            alice = creator_bytes("Org1MSP", cert_to_pem(user))
            assert peer.call("put", "k", "SECRET-VALUE-123", creator=alice).ok
            assert peer.call("get", "k", creator=alice).payload == b"SECRET-VALUE-123"
            assert peer.call("boom", creator=alice).status == 500
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out == ""  # exactly one stdout line: READY
    assert "SECRET-VALUE-123" not in err and "mutual TLS" in err and "stopping" in err
