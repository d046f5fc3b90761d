"""A ledger restored from an older, consistent copy, on the embedded network with real MPC nodes.

Before issue 11 the nodes, which remembered the newer round 1 as done, silently skipped the
re-created round 1 (it stayed CLOSED forever and wedged the network) and everyone carried on.
Now every long-running client remembers the newest block it saw (fedchain.gateway.watermark):
the MPC nodes refuse to act and say so in their logs and in every intake refusal, the hospital
client refuses with a clear error (CLI exit 3, no traceback), and `audit verify --expect-block`
flags the ledger as behind a trusted checkpoint.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DIM = 64
FEDCHAIN = str(Path(sys.executable).with_name("fedchain"))  # the installed console script


def _model() -> bytes:
    from safetensors.numpy import save

    return save({"w": np.zeros(DIM, dtype=np.float32)})


def _wait(what: str, cond, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _node_marks(net) -> list[int | None]:
    out = []
    for i in range(3):
        path = net.layout.mpc / f"mpc{i}" / "data" / "ledger.watermark.json"
        out.append(json.loads(path.read_text())["number"] if path.exists() else None)
    return out


def _create_round(op, rid: int) -> None:
    head = op.head()
    op.create_round({"round_id": rid, "base_model_hash": head.model_hash,
                     "model_spec": {"arch": "flat", "param_count": DIM}, "policy": {"cosine_enabled": False},
                     "deadline": time.time() + 600, "min_updates": 1})


def test_rollback_is_refused_by_nodes_hospitals_and_the_audit(tmp_path):
    from conftest import running_network
    from fedchain.fl_client import FLClient
    from fedchain.gateway.qscc import chain_info
    from fedchain.gateway.watermark import LedgerRollback, LedgerWatermark, NetworkHeads
    from fedchain.mpc_client import IntakeError, endpoints_from_network, submit_share
    from fedchain.netconfig import load_network

    with running_network(tmp_path / "net", with_mpc=True) as net:
        cfg = load_network(net.layout.root)
        with cfg.connect("operator") as gw:
            op = FLClient(cfg.contract(gw))
            op.publish_genesis_model({"arch": "flat", "param_count": DIM}, _model())
            for name in ("hospital1", "hospital2"):
                _register(op, cfg, name, "hospital")
        net.down()
        backup = tmp_path / "ledger-backup"
        shutil.copytree(net.layout.ledger, backup)  # an older, internally consistent copy
        net.up()

        # ---- round 1 ends (no updates: FAILED, too few accepted) and everyone sees the new head
        with cfg.connect("operator") as gw:
            op = FLClient(cfg.contract(gw))
            _create_round(op, 1)
            op.close_round(1)
            _wait("round 1 FAILED", lambda: op.get_round(1).state == "FAILED")
            head = chain_info(gw.network(cfg.channel))
            checkpoint = f"{head.height - 1}:{bytes(head.currentBlockHash).hex()}"
        _wait("every node's watermark at the head",
              lambda: all(m is not None and m >= head.height - 1 for m in _node_marks(net)))
        with cfg.connect("hospital1") as gw:
            hospital_mark = LedgerWatermark(tmp_path / "hospital1" / "ledger.watermark.json")
            hospital_mark.check(NetworkHeads(gw.network(cfg.channel)))

        # ---- restore the older copy
        net.down()
        shutil.rmtree(net.layout.ledger)
        shutil.copytree(backup, net.layout.ledger)
        net.up()

        with cfg.connect("operator") as gw:
            op = FLClient(cfg.contract(gw))  # an operator without memory re-creates round 1
            assert op.head().last_round_id == 0
            _create_round(op, 1)

            # nodes refuse, in their logs and at the intake
            _wait("the nodes' refusal in their logs",
                  lambda: all("REFUSING THE LEDGER" in s.tail(lines=200) for s in net.services()[2:]))
            assert "went backwards" in net.services()[2].tail(lines=200)
            node0 = endpoints_from_network(cfg)[0]
            with pytest.raises(IntakeError, match="FAILED_PRECONDITION.*refuses the ledger"):
                submit_share(node0, cfg.identity("hospital2"), 1, b"any share bytes", retries=0)

            # the hospital refuses (library and CLI)
            with cfg.connect("hospital1") as hgw, pytest.raises(LedgerRollback, match="went backwards"):
                hospital_mark.check(NetworkHeads(hgw.network(cfg.channel)))
            data = tmp_path / "h1.npz"
            rng = np.random.default_rng(0)
            np.savez(data, **{f"{s}_images": rng.integers(0, 255, (8, 28, 28), dtype=np.uint8) for s in
                              ("train", "val", "test")},
                     **{f"{s}_labels": rng.integers(0, 2, (8, 1)) for s in ("train", "val", "test")})
            run = subprocess.run([FEDCHAIN, "hospital", "run", "--network",
                                  str(net.layout.root), "--wallet", "hospital1", "--data", str(data),
                                  "--state-dir", str(tmp_path / "hospital1"), "--round", "1"],
                                 capture_output=True, text=True, timeout=120)
            assert run.returncode == 3, run.stderr
            assert "refusing the ledger" in run.stderr and "Traceback" not in run.stderr

            # the re-created round is closed but nobody attests on a ledger they refuse
            op.close_round(1)
            time.sleep(6)
            rnd = op.get_round(1)
            assert rnd.state == "CLOSED" and dict(rnd.attestations) == {}

            # the audit against the checkpoint taken before the rollback
            audit = subprocess.run([FEDCHAIN, "audit", "verify", "--network",
                                    str(net.layout.root), "--expect-block", checkpoint],
                                   capture_output=True, text=True, timeout=300)
            assert audit.returncode == 4, audit.stdout + audit.stderr
            assert "behind the trusted checkpoint" in audit.stdout + audit.stderr

            # the restored ledger grows past the remembered height: now it is a fork
            for i in range(8):
                if chain_info(gw.network(cfg.channel)).height > head.height:
                    break
                _register(op, cfg, f"filler{i}", "auditor")
            with cfg.connect("hospital1") as hgw, pytest.raises(LedgerRollback, match="forked"):
                hospital_mark.check(NetworkHeads(hgw.network(cfg.channel)))


def _register(op, cfg, name: str, role: str) -> None:
    from fedchain.fl_client import participant_entry
    from fedchain.identity import Consortium, Wallet

    cons = Consortium.load(Path(cfg.directory) / "crypto")
    wallet = Wallet(Path(cfg.directory) / "wallet")
    if not wallet.exists(name):
        wallet.put(name, cons.enroll(cons.orgs[0].msp_id, name, role))
    extra = {"sample_cap": 1000} if role == "hospital" else {}
    op.register_participant(participant_entry(name, wallet.get(name), role, **extra))
