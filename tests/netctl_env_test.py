"""A Fabric node's environment is exactly what fabricnet gives it, not the caller's shell.

The Fabric README's peer-CLI recipe exports CORE_PEER_ADDRESS, CORE_PEER_MSPCONFIGPATH, ... in the
operator's shell; a later `fedchain network up --fabric` from that shell must not hand them to the
peers (Fabric lets CORE_* override core.yaml, so a stray one silently reconfigures a node)."""

from __future__ import annotations

import sys

from fedchain.netctl.process import Service

PRINT_ENV = ("import os, sys, time; print('CORE_PEER_ADDRESS=' + os.environ.get('CORE_PEER_ADDRESS', '-'), "
             "'MINE=' + os.environ.get('MINE', '-'), flush=True); print('READY', flush=True); time.sleep(30)")


def _start(tmp_path, monkeypatch, **kw) -> str:
    monkeypatch.setenv("CORE_PEER_ADDRESS", "127.0.0.1:9999")
    svc = Service("node", [sys.executable, "-c", PRINT_ENV], tmp_path / "run", tmp_path / "logs",
                  {"MINE": "1", "PATH": "/usr/bin:/bin"}, **kw)
    svc.start(ready_timeout=30)
    try:
        return svc.log_file.read_text()
    finally:
        svc.stop()


def test_a_service_that_does_not_inherit_sees_only_its_own_environment(tmp_path, monkeypatch):
    out = _start(tmp_path, monkeypatch, inherit_env=False)
    assert "CORE_PEER_ADDRESS=-" in out and "MINE=1" in out


def test_services_inherit_by_default(tmp_path, monkeypatch):
    out = _start(tmp_path, monkeypatch)
    assert "CORE_PEER_ADDRESS=127.0.0.1:9999" in out and "MINE=1" in out


def test_fabric_nodes_do_not_inherit_the_callers_environment(tmp_path, monkeypatch):
    from fabric_fakes import make_fake_release
    from fedchain.fabricnet.native import FabricNetwork
    from fedchain.fabricnet.preflight import FabricTools

    release = make_fake_release(tmp_path / "release")
    net = FabricNetwork(tmp_path / "net", tools=FabricTools(release["bin"], release["cfg"], release["builder"]))
    monkeypatch.setenv("CORE_PEER_MSPCONFIGPATH", "/home/operator/admin/msp")
    fabric = [s for s in net.services(net.consortium()) if s.name == "orderer" or s.name.startswith("peer")]
    assert len(fabric) == 4 and all(not s.inherit_env for s in fabric)
    for svc in fabric:  # what they get is fabricnet's own, never the stray value
        assert (svc.env or {}).get("CORE_PEER_MSPCONFIGPATH") != "/home/operator/admin/msp"
