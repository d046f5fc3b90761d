"""The encrypted-inference check on the embedded network, with real MPC node processes.

One `fedchain demo --inference-check` round (4 hospitals, hospital4 scales its update: a degraded model)
with the other robustness checks switched off, so that the inference check is the one that judges:
1. hospital4 is rejected with reason "inference", the honest hospitals are accepted, the validation batch
   on the ledger is the declared one and the audit is clean;
2. privacy: everything the nodes wrote (logs, job and result JSON, reports, state database, round
   directories) holds each hospital's accept bit and reason code and nothing more: no logits (float or
   fixed-point), no correct counts and no accuracies of any candidate model. The needles are computed
   here from the hospitals' updates (recombined from the nodes' shares, which only a test can do) with
   the check's own fixed-point plan.

Batch of 4 images (the policy's inference_batch from --policy) keeps the MPC part at ~20-30 s on the
shared 2-core machine; the whole module takes ~40-60 s.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import find_free_port_base

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

HOSPITALS = [f"hospital{i}" for i in range(1, 5)]
FORBIDDEN_KEYS = re.compile(r"logit|correct|accura|predict|base_count|threshold", re.I)
FORBIDDEN_WORDS = re.compile(r"logit|correct (count|predictions)|accuracy|predicted", re.I)


@pytest.fixture(scope="module")
def round_done(tmp_path_factory):
    """Run the demo round (network kept for inspection), yield (network folder, report), stop the network."""
    tmp = tmp_path_factory.mktemp("inference")
    net_dir, out = tmp / "net", tmp / "report.json"
    cmd = [sys.executable, "-m", "fedchain.cli.main", "demo", "--inference-check",
           "--policy", '{"inference_batch": 4}', "--norm-rel", "0", "--cosine-rel", "0", "--outlier-factor", "0",
           "--hospitals", "4", "--rounds", "1", "--malicious", "1", "--attack", "scaling",
           "--network", str(net_dir), "--base-port", str(find_free_port_base()), "--report-json", str(out),
           "--report-dir", str(tmp / "rep"), "--keep-network"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=380)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        yield net_dir, json.loads(out.read_text())
    finally:
        subprocess.run([sys.executable, "-m", "fedchain.cli.main", "network", "down", "--dir", str(net_dir)],
                       capture_output=True, timeout=120)


def test_degraded_model_is_rejected_for_inference_and_the_batch_is_on_the_ledger(round_done):
    from fedchain.canonical import sha256_hex
    from fedchain.fl_client import FLClient
    from fedchain.netconfig import load_network
    from fedchain.validation_batch import decode

    net_dir, report = round_done
    [r] = report["rounds"]
    assert r["rejected"] == {"hospital4": "inference"} and sorted(r["accepted"]) == HOSPITALS[:3]
    assert report["config"]["inference_check"] is True and report["config"]["model_spec"]["arch"] == "cnn_pool"
    assert report["audit"]["ok"], report["audit"]["findings"]
    net = load_network(net_dir)
    with net.connect("auditor") as gw:
        fl = FLClient(net.contract(gw))
        rnd = fl.get_round(1)
        assert rnd.policy.inference_enabled is True and rnd.policy.inference_batch == 4
        data = fl.get_validation_batch(1)  # hash-checked against validation_sha256
        images, labels = decode(data, rnd.model_spec.to_json()["n_classes"], max_batch=4)
        assert len(labels) == 4 == rnd.hyper.validation_size
        for j in range(3):  # every node ran on exactly the ledger's batch
            node_copy = net_dir / "mpc" / f"mpc{j}" / "data" / "runs" / "1" / "validation.safetensors"
            assert sha256_hex(node_copy.read_bytes()) == rnd.hyper.validation_sha256


def _updates(net_dir: Path) -> dict[str, np.ndarray]:
    """Each hospital's update, recombined from the three nodes' shares (no node could do this alone)."""
    from fedchain.sharing import FixedPoint, decode, parse_share, recombine

    out = {}
    for hid in HOSPITALS:
        shares = {}
        for j in range(3):
            _, arr = parse_share((net_dir / "mpc" / f"mpc{j}" / "data" / "shares" / "1" / f"{hid}.share").read_bytes())
            shares[j] = arr
        out[hid] = decode(recombine(shares, FixedPoint()), FixedPoint())
    return out


def _needles(net_dir: Path) -> tuple[list[str], list[bytes], dict[str, int]]:
    """Renderings of every candidate's logits (fixed-point twin and float torch) and its correct count."""
    import torch
    from fedchain.models import ModelSpec, load_model_bytes
    from fedchain.validation_batch import decode
    from fedchain_mpc.aggregate import apply_delta, flatten
    from fedchain_mpc.inference.plan import (
        correct_int,
        forward_int,
        make_plan,
        quantize_images,
        quantize_weights,
    )
    from safetensors.numpy import load as st_load

    run = net_dir / "mpc" / "mpc0" / "data" / "runs" / "1"
    job = json.loads((run / "job.json").read_text())
    spec = ModelSpec.from_json({k: v for k, v in job["model_spec"].items() if k in ModelSpec.__dataclass_fields__})
    images, labels = decode((run / "validation.safetensors").read_bytes(), spec, max_batch=4)
    base_bytes = (run / "base.safetensors").read_bytes()
    base = flatten(st_load(base_bytes)).astype(np.float32)
    plan, xq = make_plan(spec), quantize_images(images)
    texts: list[str] = []
    blobs: list[bytes] = []
    counts = {}
    for hid, x in _updates(net_dir).items():
        logits, _ = forward_int(plan, quantize_weights(base) + quantize_weights(x), xq)
        ok, _ = correct_int(logits, labels)
        counts[hid] = int(ok.sum())
        for v in np.asarray(logits, dtype=np.int64).reshape(-1):
            if abs(int(v)) >= 1 << 12:  # small integers occur everywhere; these are distinctive
                texts.append(str(int(v)))
                blobs.append(int(v).to_bytes(8, "little", signed=True))
        model = load_model_bytes(apply_delta(base_bytes, x.astype(np.float64))[0], spec)
        with torch.no_grad():
            x_t = torch.tensor(images, dtype=torch.float32).reshape(len(labels), -1, 28, 28) / 255.0
            flog = model(x_t).numpy().reshape(-1)
        for v in flog:
            texts += [repr(float(v)), f"{float(v):.6f}", repr(float(np.float32(v)))]
            blobs += [np.float64(v).tobytes(), np.float32(v).tobytes()]
    texts = [t for t in texts if len(t.lstrip("-").replace(".", "")) >= 7]
    return texts, blobs, counts


def _json_keys(value, out: set[str]) -> set[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(str(k))
            _json_keys(v, out)
    elif isinstance(value, list):
        for v in value:
            _json_keys(v, out)
    return out


def test_nodes_keep_only_the_accept_bit_and_the_reason(round_done):
    net_dir, _ = round_done
    texts, blobs, counts = _needles(net_dir)
    assert counts["hospital4"] < max(counts[h] for h in HOSPITALS[:3])  # the needles are the real thing
    assert len(texts) >= 4 * 4 * 4 and len(blobs) >= 4 * 4 * 4  # every candidate's logits, several renderings
    files = [p for j in range(3) for p in (net_dir / "mpc" / f"mpc{j}").rglob("*") if p.is_file()]
    files += sorted((net_dir / "logs").glob("mpc*.log"))
    scanned = 0
    for path in files:
        if path.suffix in (".share", ".receipt", ".crt", ".key", ".pem"):
            continue  # secret shares / certificates: random-looking by design
        data = path.read_bytes()
        scanned += 1
        for blob in blobs:
            assert blob not in data, f"{path}: holds a candidate's logit (binary)"
        text = data.decode("utf-8", errors="replace")
        for needle in texts:
            assert needle not in text, f"{path}: holds a candidate's logit {needle}"
        assert not FORBIDDEN_WORDS.search(text), f"{path}: {FORBIDDEN_WORDS.search(text).group(0)!r}"
        if path.suffix == ".json":
            doc = json.loads(text)
            bad = {k for k in _json_keys(doc, set()) if FORBIDDEN_KEYS.search(k)}
            assert not bad, f"{path}: keys {bad}"
            if "verdicts" in doc:  # the MPC run's output: one accept bit and one reason code per hospital
                assert doc["verdicts"] == {h: {"accept": h != "hospital4", "reason": "ok" if h != "hospital4"
                                               else "inference"} for h in HOSPITALS}
    assert scanned >= 20
    for j in range(3):  # the node's state database: the same per-hospital verdicts and nothing else
        con = sqlite3.connect(net_dir / "mpc" / f"mpc{j}" / "data" / "state.sqlite")
        try:
            rows = con.execute("SELECT * FROM sqlite_master").fetchall()
            tables = [r[1] for r in rows if r[0] == "table"]
            for table in tables:
                for row in con.execute(f"SELECT * FROM {table}").fetchall():  # noqa: S608 - our own names
                    text = " ".join(str(c) for c in row)
                    assert not FORBIDDEN_WORDS.search(text), (table, text[:200])
                    assert not any(n in text for n in texts), (table, text[:200])
        finally:
            con.close()
