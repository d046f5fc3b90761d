"""Round processing: three nodes (real intake over mTLS, real MPyC parties as three processes), fake ledger.

Covers: agreement on the hospital list (a share missing at one node, a share that does not
match its ledger hash -> "missing_share" at every node), identical attestations, the model
= base + weighted average, publication once (others see 'already published'), a party killed
mid-run (the round still completes with the same result after the retry), and that logs and
stored files reveal none of the plaintext update values.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fedchain.mpc_client import send_shares, submit_share
from fedchain.netctl.process import free_ports
from fedchain_mpc.node import RoundContext, RoundError, RoundProcessor
from fedchain_mpc.party_launcher import RunnerSettings
from fedchain_mpc.store import ATTESTED, PUBLISHED, NodeState
from mpc_node_support import IntakeNode, NodeLedgerView, make_shares, make_world
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

DIM = 300
POLICY = {"cosine_enabled": False, "norm_bound": 10.0, "outlier_enabled": False}



def base_model() -> bytes:
    return st_save({"a.weight": np.linspace(-1, 1, 200, dtype=np.float32).reshape(20, 10),
                    "b.bias": np.zeros(100, dtype=np.float32)})


def setup_round(tmp_path: Path, *, timeout_s: float = 60.0):
    world = make_world(tmp_path, n_hospitals=5)
    led = world.ledger
    base = base_model()
    led.models[0] = base
    led.open_round(1, DIM, policy=POLICY)
    led.rounds[1]["base_model_hash"] = hashlib.sha256(base).hexdigest()
    led.rounds[1]["min_updates"] = 2
    intakes = [IntakeNode(world, j, tmp_path / f"node{j}") for j in range(3)]
    parties = tuple(f"127.0.0.1:{p}" for p in free_ports(3))
    procs = []
    for j in range(3):
        ctx = RoundContext(node_id=f"mpc{j}", node_index=j, m=3, t=1, l=32, f=16, data_dir=tmp_path / f"node{j}",
                           holdings_timeout_s=30)
        runner = RunnerSettings(node_index=j, parties=parties, threshold=1, timeout_s=timeout_s, retries=3,
                                backoff_s=0.5)
        procs.append(RoundProcessor(ctx, NodeLedgerView(led, f"mpc{j}"), intakes[j].store, NodeState(tmp_path / f"node{j}" / "state.sqlite"),
                                    runner, world.nodes[j], [n.endpoint for n in intakes]))
    return world, intakes, procs


def hospitals_submit(world, intakes, rng) -> dict[str, np.ndarray]:
    """hosp0..2 honest; hosp3's share never reaches node 2; hosp4 commits a hash that differs at node 1."""
    led = world.ledger
    updates = {h: rng.normal(0, 0.05, DIM) for h in ("hosp0", "hosp1", "hosp2", "hosp3", "hosp4")}
    eps = [n.endpoint for n in intakes]
    for i, (hid, upd) in enumerate(updates.items()):
        shares = make_shares(upd, 1, hid, seed=100 + i)
        if hid == "hosp3":
            for j in (0, 1):
                submit_share(eps[j], world.hospitals[hid], 1, shares[j])
            hashes = [hashlib.sha256(s).hexdigest() for s in shares]
        elif hid == "hosp4":
            send_shares(1, shares, eps, world.hospitals[hid])
            hashes = [hashlib.sha256(s).hexdigest() for s in shares]
            hashes[1] = "ab" * 32
        else:
            hashes = [r.sha256 for r in send_shares(1, shares, eps, world.hospitals[hid], hospital=hid)]
        led.commit_update(1, hid, hashes, n_samples=100 * (i + 1))
    return updates


def run_all(procs, round_id: int = 1) -> list:
    out: list = [None] * len(procs)

    def go(j: int) -> None:
        try:
            out[j] = procs[j].process(round_id)
        except Exception as exc:  # surfaced by the assertions below
            out[j] = exc

    threads = [threading.Thread(target=go, args=(j,)) for j in range(len(procs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return out


def expected_model(updates: dict[str, np.ndarray], accepted: list[str]) -> np.ndarray:
    weights = {h: 100 * (i + 1) for i, h in enumerate(updates)}
    agg = sum(weights[h] * updates[h] for h in accepted) / sum(weights[h] for h in accepted)
    base = st_load(base_model())
    flat = np.concatenate([base[k].astype(np.float64).reshape(-1) for k in sorted(base)])
    return flat + agg


def flat_model(data: bytes) -> np.ndarray:
    t = st_load(data)
    return np.concatenate([t[k].astype(np.float64).reshape(-1) for k in sorted(t)])


def plaintext_needles(updates: dict[str, np.ndarray]) -> tuple[list[str], list[bytes]]:
    """Text renderings and binary encodings of the hospitals' update values."""
    texts, blobs = [], []
    for upd in updates.values():
        for v in upd[:40]:
            texts += [repr(float(v)), f"{v:.8f}", f"{v:.6g}"]
            blobs.append(np.float64(v).tobytes())
            blobs.append(np.float32(v).tobytes())
            q = int(round(v * 2**16))
            if abs(q) > 1 << 10:  # small integers occur everywhere; these are distinctive
                blobs.append(np.uint64(q % (1 << 64)).tobytes() if q >= 0 else b"")
        texts = [t for t in texts if len(t.lstrip("-")) >= 8]
    return texts, [b for b in blobs if b]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_three_nodes_agree_attest_publish_and_reveal_nothing(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    world, intakes, procs = setup_round(tmp_path)
    try:
        updates = hospitals_submit(world, intakes, np.random.default_rng(5))
        world.ledger.close_round(1)
        t0 = time.monotonic()
        statuses = run_all(procs)
        elapsed = time.monotonic() - t0
        assert statuses == [ATTESTED] * 3, statuses
        atts = world.ledger.attestations[1]
        assert sorted(atts) == ["mpc0", "mpc1", "mpc2"]
        claims = {(a["model_hash"], tuple(a["accepted"]), tuple(sorted(a["rejected"].items()))) for a in atts.values()}
        assert len(claims) == 1, claims
        att = atts["mpc0"]
        assert att["accepted"] == ["hosp0", "hosp1", "hosp2"]
        assert att["rejected"] == {"hosp3": "missing_share", "hosp4": "missing_share"}
        assert world.ledger.rounds[1]["state"] == "FINALIZED"
        model = (tmp_path / "node0" / "models" / "1.safetensors").read_bytes()
        assert hashlib.sha256(model).hexdigest() == att["model_hash"]
        err = np.max(np.abs(flat_model(model) - expected_model(updates, att["accepted"])))
        assert err < 1e-4, err
        # publication: exactly one node stores the model, the others see it is there
        assert run_all(procs) == [PUBLISHED] * 3
        assert world.ledger.models[1] == model
        assert world.ledger.calls.count("PublishModel") == 3
        print(f"3-node round (5 hospitals, dim {DIM}): {elapsed:.2f} s")

        # nothing plaintext in logs or files of any node
        texts, blobs = plaintext_needles(updates)
        log_text = caplog.text
        files = [p for j in range(3) for p in (tmp_path / f"node{j}").rglob("*") if p.is_file()]
        assert any(p.suffix == ".share" for p in files)
        for p in files:
            data = p.read_bytes()
            if p.name.endswith(".safetensors") or "aggregate" in p.name:
                continue  # the new model and the aggregate are public outputs by design
            hits = [t for t in texts if t.encode() in data] + [b.hex() for b in blobs if b in data]
            assert not hits, f"{p} contains plaintext update values: {hits[:3]}"
        hits = [t for t in texts if t in log_text]
        assert not hits, f"logs contain plaintext update values: {hits[:3]}"
        assert "hosp0" in log_text  # the logs do say who sent what (ids and hashes)
    finally:
        for n in intakes:
            n.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_party_killed_mid_run_round_completes_same_result(tmp_path):
    world, intakes, procs = setup_round(tmp_path, timeout_s=20.0)
    try:
        hospitals_submit(world, intakes, np.random.default_rng(9))
        world.ledger.close_round(1)
        # node 2 crashes: its party is killed once it has started (the other parties are then mid-run)
        killed = threading.Event()
        run_dir = tmp_path / "node2" / "runs" / "1"

        def killer() -> None:  # kill party 2 once all parties are connected, i.e. inside the protocol
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed.is_set():
                try:
                    if b"parties connected" in (run_dir / "party.out").read_bytes():
                        os.kill(int((run_dir / "party.pid").read_text()), signal.SIGKILL)
                        killed.set()
                except (OSError, ValueError):
                    pass
                time.sleep(0.005)

        k = threading.Thread(target=killer)
        k.start()
        statuses = run_all(procs)
        k.join()
        assert killed.is_set()
        if any(isinstance(s, RoundError) for s in statuses):  # retries exhausted somewhere: run again
            statuses = run_all(procs)
        assert statuses == [ATTESTED] * 3, statuses
        att = world.ledger.attestations[1]
        assert len({(a["model_hash"], tuple(a["accepted"])) for a in att.values()}) == 1
        assert att["mpc2"]["accepted"] == ["hosp0", "hosp1", "hosp2"]
        state = procs[2].state.get(1)
        assert state["attempts"] >= 2  # the killed attempt plus the one that completed
        # a node restarted after attesting does not rerun anything
        again = RoundProcessor(procs[2].ctx, procs[2].ledger, intakes[2].store,
                               NodeState(tmp_path / "node2" / "state.sqlite"), procs[2].runner, world.nodes[2],
                               procs[2].peers)
        world.ledger.rounds[1]["state"] = "CLOSED"
        assert again.process(1) == ATTESTED
        assert len(world.ledger.attestations[1]) == 3
    finally:
        for n in intakes:
            n.stop()
