"""A campaign with separate processes, as on separate machines: `fedchain network up`, three hospitals
each with its own identity, data file and network folder (network.json, TLS roots, its own wallet entry
only) running `fedchain hospital run`, and `fedchain operator run --rounds 2`, killed with SIGKILL once
round 1 is on the ledger and restarted: both rounds finalize, the ledger holds rounds 1 and 2 once each.
Then a round made by hand gets its reference through `fedchain reference publish`.

Tiny data, the small CNN, 5 local steps: a few seconds of training in all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import find_free_port_base

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FEDCHAIN = str(Path(sys.executable).parent / "fedchain")  # the installed console script


def fedchain(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([FEDCHAIN, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if check:
        assert res.returncode == 0, f"fedchain {' '.join(args)}: {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def hospital_folder(net: Path, name: str, dest: Path) -> Path:
    """What a hospital machine gets from the operator: network.json, the TLS roots it names, its wallet entry."""
    dest.mkdir()
    shutil.copy(net / "network.json", dest / "network.json")
    for pem in (net / "crypto").glob("peerOrganizations/*/tlsca/*.pem"):
        target = dest / pem.relative_to(net)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pem, target)
    shutil.copytree(net / "wallet" / name, dest / "wallet" / name)
    return dest


def wait_for_round(fl, rid: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while fl.head().last_round_id < rid:
        assert proc.poll() is None, f"operator exited early ({proc.returncode})"
        assert time.monotonic() < deadline, f"round {rid} not created in {timeout:g} s"
        time.sleep(0.2)


def test_operator_run_with_separate_hospitals_survives_a_kill(tmp_path):
    from fedchain.fl_client import FLClient
    from fedchain.netconfig import load_network

    net = tmp_path / "operator"
    fedchain("network", "up", "--dir", str(net), "--base-port", str(find_free_port_base()), cwd=tmp_path)
    procs: list[subprocess.Popen] = []
    try:
        synth = [subprocess.Popen([FEDCHAIN, "data", "synth", "--out", f"h{i}.npz", "--n-train", "120", "--n-val", "10",
                                   "--n-test", "10", "--seed", str(i)], cwd=tmp_path, stdout=subprocess.DEVNULL)
                 for i in (1, 2, 3)]
        synth.append(subprocess.Popen([FEDCHAIN, "data", "synth", "--out", "root.npz", "--n-train", "10", "--n-val",
                                       "48", "--n-test", "60", "--seed", "9"], cwd=tmp_path, stdout=subprocess.DEVNULL))
        for i in (1, 2, 3):
            fedchain("network", "enroll", f"hospital{i}", "--role", "hospital", "--org", f"Org{i}MSP", "--dir", str(net),
                     cwd=tmp_path)
            fedchain("participant", "register", f"hospital{i}", "--role", "hospital", "--wallet-entry",
                     f"hospital{i}", "--sample-cap", "5000", "--network", str(net), cwd=tmp_path)
        assert all(p.wait(timeout=120) == 0 for p in synth)
        folders = [hospital_folder(net, f"hospital{i}", tmp_path / f"site{i}") for i in (1, 2, 3)]

        operator = [FEDCHAIN, "operator", "run", "--network", str(net), "--rounds", "2", "--root-data", "root.npz",
                    "--test-data", "root.npz", "--steps", "5", "--batch-size", "16", "--root-size", "32",
                    "--warmup-epochs", "1", "--deadline", "150", "--min-updates", "3", "--report-json", "report.json"]
        cfg = load_network(net)
        with cfg.connect("auditor") as gw:
            fl = FLClient(cfg.contract(gw))
            first = subprocess.Popen(operator, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
            procs.append(first)
            err_lines: list[str] = []
            reader = threading.Thread(target=lambda: err_lines.extend(first.stderr), daemon=True)
            reader.start()
            wait_for_round(fl, 1, first)
            # the ledger shows round 1 a moment before the operator prints it: wait for the line, then kill
            deadline = time.monotonic() + 60
            while not any("round 1: created" in line for line in err_lines) and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(first.pid, signal.SIGKILL)  # mid-round: round 1 is OPEN, its reference maybe not yet published
            first.wait(timeout=30)
            reader.join(timeout=30)
            assert "round 1: created" in "".join(err_lines)
            assert fl.get_round(1).state == "OPEN"

            hospitals = [subprocess.Popen([FEDCHAIN, "hospital", "run", "--network", str(folder), "--wallet",
                                           f"hospital{i}", "--data", f"h{i}.npz", "--rounds", "2", "--no-progress"],
                                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                         for i, folder in zip((1, 2, 3), folders, strict=True)]
            procs += hospitals
            second = subprocess.run(operator, cwd=tmp_path, capture_output=True, text=True, timeout=240)
            assert second.returncode == 0, second.stdout + second.stderr
            for h in hospitals:
                out, _ = h.communicate(timeout=120)
                assert h.returncode == 0, out
                assert out.count(": submitted (") + out.count(": already_submitted") == 2, out

            rounds = fl.list_rounds()
            assert [r.round_id for r in rounds] == [0, 1, 2]
            for rid in (1, 2):
                rnd = fl.get_round(rid)
                assert rnd.state == "FINALIZED" and rnd.submitted == ("hospital1", "hospital2", "hospital3")
                assert [e.function for e in fl.get_history("round", rid)].count("CreateRound") == 1
                ref = fl.get_reference(rid)  # hash-checked against the declared reference_sha256
                assert hashlib.sha256(ref).hexdigest() == rnd.hyper.reference_sha256
            assert fl.get_round(2).base_model_hash == fl.get_round(1).finalized.model_hash
            lines = [line for line in second.stdout.splitlines() if line.startswith("round ")]
            assert [line.split()[1:3] for line in lines] == [["1", "FINALIZED"], ["2", "FINALIZED"]]
            assert "submitted  3  accepted  3" in lines[0] and "acc" in lines[0]
            report = json.loads((tmp_path / "report.json").read_text())
            assert [r["round"] for r in report["rounds"]] == [1, 2]
            assert [r["model_hash"] for r in report["rounds"]] == [fl.get_round(r).finalized.model_hash
                                                                   for r in (1, 2)]
            assert all(r["accuracy"] is not None and set(r["timings_s"]) == {"train", "share", "mpc", "ledger",
                                                                             "total"} for r in report["rounds"])

            again = fedchain(*operator[1:], cwd=tmp_path)  # the campaign is over: a restart adds no round
            assert fl.head().last_round_id == 2 and "campaign complete" in again.stderr

            # a round made by hand: declared with --root-data, its reference published separately
            fedchain("round", "create", "--network", str(net), "--root-data", "root.npz", "--root-size", "32",
                     "--hyperparameters", '{"steps": 5, "batch_size": 16}', "--no-publish-reference", cwd=tmp_path)
            wrong = fedchain("reference", "publish", "--network", str(net), "--round", "3", "--root-data", "h1.npz",
                             cwd=tmp_path, check=False)
            assert wrong.returncode == 1 and "does not hold the round's root set" in wrong.stderr
            assert "Traceback" not in wrong.stderr
            published = fedchain("reference", "publish", "--network", str(net), "--round", "3", "--root-data",
                                 "root.npz", cwd=tmp_path)
            want = fl.get_round(3).hyper.reference_sha256
            assert f"reference {want} published" in published.stdout
            assert hashlib.sha256(fl.get_reference(3)).hexdigest() == want
            assert "already published" in fedchain("reference", "publish", "--network", str(net), "--round", "3",
                                                   "--root-data", "root.npz", cwd=tmp_path).stdout
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        fedchain("network", "down", "--dir", str(net), cwd=tmp_path, check=False)
