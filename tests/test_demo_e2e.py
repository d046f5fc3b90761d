"""End to end in CI: `fedchain demo` with 4 hospitals, 2 rounds, 1 malicious (scaling) on a fresh
embedded network. Checks detection and that every round's model hash on the ledger equals the hash
of the model hospitals load (GetModel bytes) and the next round's base. The attacker scales by 8,
as the default demo's attacker does (factor = number of hospitals, 8): with 4 hospitals a factor-4
update sits at the default relative norm bound (4x the median) and may pass."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

import pytest
from conftest import find_free_port_base

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_demo_small_end_to_end(tmp_path):
    from fedchain.fl_client import FLClient
    from fedchain.netconfig import load_network
    from fedchain.netctl.embedded import EmbeddedNetwork

    net_dir, out = tmp_path / "net", tmp_path / "report.json"
    cmd = [sys.executable, "-m", "fedchain.cli.main", "demo", "--hospitals", "4", "--rounds", "2", "--malicious", "1",
           "--attack", "scaling", "--attack-param", "factor=8", "--steps", "30", "--network", str(net_dir), "--base-port", str(find_free_port_base()),
           "--report-json", str(out), "--report-dir", str(tmp_path / "rep"), "--keep-network"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=280)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        report = json.loads(out.read_text())
        assert [r["round"] for r in report["rounds"]] == [1, 2]
        assert report["detection"]["tp"] == 2 and report["detection"]["fn"] == 0  # hospital4 caught twice
        assert report["detection"]["fp"] <= 1
        for r in report["rounds"]:
            assert r["malicious"] == ["hospital4"] and "hospital4" in r["rejected"]
            assert set(r["timings_s"]) == {"train", "share", "mpc", "ledger", "total"}
        for name in ("report.json", "report.md", "accuracy.png", "decisions.png"):
            assert (tmp_path / "rep" / name).stat().st_size > 0
        assert "h4*:" in res.stdout  # the live table marks the caught malicious hospital

        net = load_network(net_dir)
        with net.connect("hospital1") as gw:  # a hospital's own view of the ledger
            fl = FLClient(net.contract(gw))
            for r in report["rounds"]:
                rnd = fl.get_round(r["round"])
                assert rnd.state == "FINALIZED" and rnd.finalized is not None
                loaded = hashlib.sha256(fl.get_model(r["round"]).model).hexdigest()
                assert loaded == rnd.finalized.model_hash == r["model_hash"]
                assert len(rnd.attestations) >= 2
                assert all(a.model_hash == loaded for a in rnd.attestations.values())
                ref = fl.get_reference(r["round"])  # FLTrust reference on the ledger, hash-checked
                assert hashlib.sha256(ref).hexdigest() == rnd.hyper.reference_sha256
                assert len(ref) == 4 * rnd.model_spec.param_count
            assert fl.get_round(2).base_model_hash == report["rounds"][0]["model_hash"]
            assert len(fl.get_updates(2)) == 4  # each hospital exactly once
        assert all(c["equal"] for c in report["model_checks"])
        assert report["audit"]["ok"], report["audit"]["findings"]  # the auditor re-validated the whole chain
        assert (tmp_path / "rep" / "audit" / "audit.md").read_text().startswith("# fedchain audit")

        # a reused network with a round left OPEN: the demo closes it, waits, and carries on from the head
        with net.connect("operator") as gw:
            op = FLClient(net.contract(gw))
            head, last = op.head(), op.get_round(2)
            op.create_round({"round_id": 3, "base_model_hash": head.model_hash, "model_spec": last.model_spec.to_json(),
                             "hyperparameters": last.hyper.to_json(), "policy": last.policy.to_json(),
                             "deadline": time.time() + 300, "min_updates": 2})
        again = subprocess.run([*cmd[:7], "1", *cmd[8:]], capture_output=True, text=True, timeout=200)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert "round 3 was left OPEN" in again.stderr
        assert [r["round"] for r in json.loads(out.read_text())["rounds"]] == [4]
    finally:
        EmbeddedNetwork(net_dir).down()
