"""netctl writes devnet.json itself (fedchain may not import fedchain_devnet outside the CLI layer, DESIGN.md §1):
the file must be exactly what the devnet's own fedchain_devnet.config.make_devnet_config writes for the same
values, and the devnet must accept it. Tests may import both sides; this is where the contract is held."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fedchain.netctl.embedded import EmbeddedNetwork, EmbeddedSettings
from fedchain.netctl.hosts import HostMap
from fedchain_devnet.config import ChaincodeDef, make_devnet_config, parse_config

HOSTS = {"ledger": "10.77.0.1", "mpc": []}


@pytest.mark.parametrize("hosts", [{}, HOSTS], ids=["loopback", "hosts"])
def test_devnet_json_is_what_the_devnet_itself_would_write(tmp_path: Path, hosts: dict) -> None:
    settings = EmbeddedSettings(base_port=7050, endorsement_policy="Org1MSP,Org3MSP", with_mpc=False,
                                batch_timeout_ms=70, max_message_count=9,
                                hosts=HostMap.parse(hosts, 0).to_json() if hosts else {})
    net = EmbeddedNetwork(tmp_path / "net", settings)
    consortium = net.consortium()
    net._write_configs(consortium)
    written = json.loads((tmp_path / "net" / "devnet.json").read_text())

    cc = written["chaincodes"][0]
    expected = make_devnet_config(
        consortium, tmp_path / "net" / "ledger", "10.77.0.1:7051" if hosts else "127.0.0.1:7051",
        [ChaincodeDef(name="fedchain", address=cc["address"], policy=["Org1MSP", "Org3MSP"],
                      tls_root_cert=str(consortium.orgs[0].tls_ca_cert_path),
                      client_cert=cc["client_cert"], client_key=cc["client_key"])],
        batch_timeout_ms=70, max_message_count=9)
    if hosts:  # the gateway's own certificate for the ledger's address, and the chaincode's client pair
        assert written["tls"]["cert"] and cc["client_cert"] and cc["address"] == "10.77.0.1:7052"
        expected["tls"].update(cert=written["tls"]["cert"], key=written["tls"]["key"])
    else:
        assert cc["client_cert"] is None and cc["address"] == "127.0.0.1:7052"
    assert written == expected
    assert list(written) == list(expected)  # the same key order: the same bytes
    cfg = parse_config(written, tmp_path / "net")
    assert cfg.chaincode("fedchain").policy == ["Org1MSP", "Org3MSP"] and cfg.batch_timeout_ms == 70
