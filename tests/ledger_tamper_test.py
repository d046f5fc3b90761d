"""World-state tampering on the embedded network, as found by an attacker with access to the devnet host.

Before issue 11: an edit of the devnet's state.sqlite (a hospital's sample cap 5,000 → 10^9) went
unnoticed, the chaincode used the edited cap (n_samples 1,000,000 committed VALID) and `audit
verify` said OK. Now the audit rebuilds the world state from the blocks' write sets, checks the
contract's rules on it and compares it with the live state (exit 4, the key named), and the devnet
refuses to start on a state that does not match its blocks (the key named).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DIM = 16
FEDCHAIN = str(Path(sys.executable).with_name("fedchain"))  # the installed console script


def _edit_participant(state_db: Path, pid: str, **fields) -> str:
    """Rewrite the participant record's value in place (version untouched); returns its key."""
    db = sqlite3.connect(state_db)
    try:
        rows = db.execute("SELECT key, value FROM state WHERE ns = 'fedchain'").fetchall()
        key, value = next((k, v) for k, v in rows if "participant" in k and k.endswith(f"{pid}\x00"))
        record = {**json.loads(value), **fields}
        db.execute("UPDATE state SET value = ? WHERE ns = 'fedchain' AND key = ?",
                   (json.dumps(record, sort_keys=True, separators=(",", ":")).encode(), key))
        db.commit()
    finally:
        db.close()
    return key


def test_state_edit_is_found_by_the_audit_and_refused_at_start(tmp_path):
    from conftest import running_network
    from fedchain.fl_client import FLClient, participant_entry
    from fedchain.identity import Consortium, Wallet
    from fedchain.netconfig import load_network
    from fedchain.netctl.process import ServiceError
    from safetensors.numpy import save

    with running_network(tmp_path / "net", with_mpc=False) as net:
        cfg = load_network(net.layout.root)
        cons, wallet = Consortium.load(net.layout.crypto), Wallet(net.layout.wallet)
        wallet.put("hospital1", cons.enroll(cons.orgs[0].msp_id, "hospital1", "hospital"))
        with cfg.connect("operator") as gw:
            op = FLClient(cfg.contract(gw))
            op.register_participant(participant_entry("hospital1", wallet.get("hospital1"), "hospital",
                                                      sample_cap=5000))
            op.publish_genesis_model({"arch": "flat", "param_count": DIM}, save({"w": np.zeros(DIM, np.float32)}))
            op.create_round({"round_id": 1, "base_model_hash": op.head().model_hash,
                             "model_spec": {"arch": "flat", "param_count": DIM}, "policy": {"cosine_enabled": False},
                             "deadline": time.time() + 600, "min_updates": 1})
        clean = subprocess.run([FEDCHAIN, "audit", "verify", "--network", str(net.layout.root)],
                               capture_output=True, text=True, timeout=300)
        assert clean.returncode == 0, clean.stdout + clean.stderr

        state_db = next(net.layout.ledger.rglob("state.sqlite"))
        _edit_participant(state_db, "hospital1", sample_cap=10**9)
        with cfg.connect("hospital1") as hgw:  # the running devnet uses the edited cap
            res = FLClient(cfg.contract(hgw)).submit_update({
                "round_id": 1, "n_samples": 1_000_000, "dim": DIM,
                "share_hashes": [hashlib.sha256(f"s{j}".encode()).hexdigest() for j in range(3)]})
            assert res.validation_code_name == "VALID"

        audit = subprocess.run([FEDCHAIN, "audit", "verify", "--network", str(net.layout.root)],
                               capture_output=True, text=True, timeout=300)
        out = audit.stdout + audit.stderr
        assert audit.returncode == 4, out
        assert "sample_cap" in out and "1000000" in out  # the inflated update against the registered cap
        assert "world state" in out and "hospital1" in out  # the edited record, named

        net.down()
        with pytest.raises(ServiceError) as refused:
            net.up(ready_timeout=60)
        assert "hospital1" in str(refused.value) and "state" in str(refused.value).lower()
