"""Hospital client on a real embedded network: restarts re-send the persisted shares, never submit
twice, and `follow` takes part in rounds announced by RoundCreated events."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import numpy as np
import pytest
from conftest import find_free_port_base
from fedchain.records import Round

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# two hospitals: this consortium's privacy floor is 1 (the default 3 is tested elsewhere)
POLICY = {"cosine_enabled": False, "outlier_enabled": False, "norm_bound": 50.0, "pine_c": 2.0, "min_accepted": 1}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from fedchain.data import synthesize
    from fedchain.fl_client import FLClient, participant_entry
    from fedchain.identity import Consortium
    from fedchain.models import ModelSpec, build_model, param_count, to_safetensors_bytes
    from fedchain.netconfig import load_network
    from fedchain.netctl.embedded import EmbeddedNetwork, EmbeddedSettings

    root = tmp_path_factory.mktemp("hosp")
    network = EmbeddedNetwork(root / "net", EmbeddedSettings(base_port=find_free_port_base(), min_accepted=1))
    network.up(ready_timeout=120)
    try:
        net = load_network(root / "net")
        cons = Consortium.load(root / "net" / "crypto")
        gw = net.connect("operator")
        op = FLClient(net.contract(gw))
        for i, name in enumerate(("h1", "h2")):
            net.wallet.put(name, cons.enroll(cons.orgs[i].msp_id, name, "hospital"))
            op.register_participant(participant_entry(name, net.identity(name), "hospital", sample_cap=150))
        spec = ModelSpec(widths=(4,), hidden=0)
        spec_json = json.loads(spec.to_json()) | {"param_count": param_count(spec)}
        op.publish_genesis_model(spec_json, to_safetensors_bytes(build_model(spec, seed=1)))
        x, y = synthesize(200, n_classes=4, channels=1, seed=5)
        yield {"net": net, "op": op, "spec": spec_json, "data": (x, y.reshape(-1)), "root": root}
        gw.close()
    finally:
        network.down()


def _client(world, name: str, state: str):
    from fedchain.hospital import HospitalClient

    x, y = world["data"]
    return HospitalClient(world["net"], world["net"].identity(name), name, x, y, world["root"] / state,
                          progress=False)


def _create_round(world) -> int:
    from fedchain.demo.operator import retry_mvcc

    op = world["op"]
    head = op.head()
    rid = head.last_round_id + 1

    def exists() -> bool:
        return op.head().last_round_id >= rid

    # the previous round's last MPC node may attest after the quorum finalized it, concurrently with
    # this CreateRound (both touch the round records): retried like the operator does
    retry_mvcc(lambda: op.create_round({
        "round_id": rid, "base_model_hash": head.model_hash, "model_spec": world["spec"],
        "hyperparameters": {"steps": 3, "batch_size": 16, "lr": 0.05, "momentum": 0.9, "seed": 1},
        "policy": POLICY, "deadline": time.time() + 300, "min_updates": 1}), done=exists)
    return rid


def _finish(world, rid: int) -> Round:
    """Close, wait for FINALIZED and for the model's publication: the next CreateRound needs the
    published model (the contract refuses a round on a finalized but unpublished one)."""
    op = world["op"]
    op.close_round(rid)
    rnd = op.wait_for_state(rid, ("FINALIZED", "DISPUTED"), timeout_s=180)
    assert rnd.state == "FINALIZED", rnd
    deadline = time.monotonic() + 60
    while True:
        try:
            op.get_model(rid)
            return rnd
        except Exception:
            assert time.monotonic() < deadline, f"round {rid}'s model was not published in 60 s"
            time.sleep(0.25)


def test_restarts_never_double_submit(world):
    from fedchain.mpc_client import endpoints_from_network, send_shares

    rid = _create_round(world)
    # h1 crashes after persisting its shares, before sending anything
    c1 = _client(world, "h1", "s1")
    assert c1._msp_manager() is not None  # receipts are also checked against the org CAs
    prep = c1.prepare(rid)
    c1.close()
    c1 = _client(world, "h1", "s1")
    out = c1.participate(rid)
    assert out.status == "submitted" and out.share_hashes == prep.state.share_hashes  # the same shares, re-sent

    # h2 crashes right after its commitment landed, before recording it
    c2 = _client(world, "h2", "s2")
    p2 = c2.prepare(rid)
    send_shares(rid, p2.shares, endpoints_from_network(world["net"]), c2.identity, hospital="h2")
    c2.fl.submit_update({"round_id": rid, "share_hashes": p2.state.share_hashes, "n_samples": p2.state.n_samples,
                         "dim": p2.state.dim})
    c2.close()
    c2 = _client(world, "h2", "s2")
    again = c2.participate(rid)
    assert again.status == "already_submitted" and again.share_hashes == p2.state.share_hashes
    assert c2.state.load(rid).status == "submitted"
    assert c2.deliver(p2).status == "submitted"  # a stale retry is absorbed, the ledger refuses a second update
    assert c1.participate(rid).status == "already_submitted"

    ups = world["op"].get_updates(rid)
    assert sorted(u.hospital for u in ups) == ["h1", "h2"]
    assert {u.hospital: list(u.share_hashes) for u in ups} == {"h1": prep.state.share_hashes,
                                                               "h2": p2.state.share_hashes}
    assert ups[0].n_samples == 150  # capped by the enrolment sample_cap (200 local samples)
    rnd = _finish(world, rid)
    assert rnd.finalized.accepted == ("h1", "h2")  # every node held the shares the ledger commits to
    c1.close()
    c2.close()


def _wait_published(world, rid: int, timeout_s: float = 60.0) -> None:
    """FINALIZED comes first; an MPC node publishes the model bytes in a later transaction."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            world["op"].get_model(rid)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def test_follow_takes_part_in_created_rounds(world):
    from fedchain.hospital import follow

    clients = [_client(world, "h1", "f1"), _client(world, "h2", "f2")]
    outcomes: list = []
    threads = [threading.Thread(target=follow, args=(c,), kwargs={"rounds": 1, "on_outcome": outcomes.append})
               for c in clients]
    for t in threads:
        t.start()
    time.sleep(3)  # followers subscribed
    rid = _create_round(world)
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert sorted(o.round_id for o in outcomes) == [rid, rid]
    rnd = _finish(world, rid)
    assert rnd.finalized.accepted == ("h1", "h2")
    _wait_published(world, rid)
    # the base each hospital loads next is exactly the finalized model
    model, raw = clients[0].fetch_base_model(Round.from_json({**world["op"].get_round(rid).to_json(),
                                                              "base_round_id": rid,
                                                              "base_model_hash": rnd.finalized.model_hash}))
    assert hashlib.sha256(raw).hexdigest() == rnd.finalized.model_hash
    from fedchain.models import flatten

    assert np.all(np.isfinite(flatten(model)))
    assert clients[0].state.checkpoint_path.exists()
    for c in clients:
        c.close()


def test_hospital_run_cli_once_and_idempotent(world):
    import subprocess
    import sys

    from fedchain.data import generate_synthetic

    npz = generate_synthetic(world["root"] / "h1.npz", n_train=120, n_val=20, n_test=20, seed=3)
    rid = _create_round(world)
    cmd = [sys.executable, "-m", "fedchain.cli.main", "hospital", "run", "--wallet", "h1", "--data", str(npz),
           "--network", str(world["net"].directory), "--round", str(rid), "--state-dir", str(world["root"] / "cli"),
           "--no-progress"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"h1: round {rid}: submitted (120 samples)" in first.stdout
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and f"round {rid}: already_submitted" in second.stdout
    assert [u.hospital for u in world["op"].get_updates(rid)] == ["h1"]
    assert _finish(world, rid).finalized.accepted == ("h1",)


def test_follower_survives_a_round_closed_before_its_shares_arrive(world, caplog):
    """Round A closes while h1 trains: the nodes (or the ledger) refuse its shares, the follower logs one
    line and keeps following; A's shares go when A ends, round B is taken part in and keeps its shares
    until it is finalized."""
    import logging

    from fedchain.hospital import follow

    op = world["op"]
    client = _client(world, "h1", "late")
    real_training = client.compute_update
    closed: list[int] = []

    def training_outlasting_the_round(rnd, model):
        update = real_training(rnd, model)
        if not closed:
            closed.append(rnd.round_id)
            op.close_round(rnd.round_id)
        return update

    client.compute_update = training_outlasting_the_round
    outcomes: list = []
    follower = threading.Thread(target=follow, args=(client,), kwargs={"rounds": 1, "on_outcome": outcomes.append,
                                                                        "reconnect_s": 0.5})
    with caplog.at_level(logging.INFO, logger="fedchain.hospital"):
        follower.start()
        time.sleep(3)  # subscribed
        first = _create_round(world)
        assert op.wait_for_state(first, ("FAILED", "FINALIZED", "DISPUTED"), timeout_s=180).state == "FAILED"
        second = _create_round(world)
        follower.join(timeout=180)
    assert not follower.is_alive()
    assert closed == [first] and [o.round_id for o in outcomes] == [second]
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and f"round {first}:" in
               r.getMessage()]
    assert len(skipped) == 1 and "CLOSED" in skipped[0], skipped
    assert not any(r.exc_info for r in caplog.records)
    # A is over: its shares are gone, hashes kept; B is open: its shares stay (a resend may be needed)
    assert client.state.share_files(first) == [] and client.state.load(first).shares_deleted
    assert len(client.state.share_files(second)) == 3
    _finish(world, second)
    assert client.forget_finished_rounds() == [second]
    kept = client.state.load(second)
    assert kept.shares_deleted and len(kept.receipts) == 3 and len(kept.share_hashes) == 3
    client.close()


def test_hospital_run_cli_refuses_data_that_does_not_fit(world):
    import subprocess
    import sys

    from fedchain.data import generate_synthetic

    wrong = generate_synthetic(world["root"] / "eight.npz", n_train=60, n_val=10, n_test=10, n_classes=8, seed=4)
    right = generate_synthetic(world["root"] / "four.npz", n_train=60, n_val=10, n_test=10, seed=4)
    rid = _create_round(world)

    def run(npz):
        return subprocess.run([sys.executable, "-m", "fedchain.cli.main", "hospital", "run", "--wallet", "h2",
                               "--data", str(npz), "--network", str(world["net"].directory), "--round", str(rid),
                               "--state-dir", str(world["root"] / "cli-h2"), "--no-progress"],
                              capture_output=True, text=True, timeout=120)

    bad = run(wrong)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    assert f"error: round {rid}: the model has 4 classes (labels 0..3)" in bad.stderr
    good = run(right)
    assert good.returncode == 0, good.stderr[-2000:]
    assert _finish(world, rid).finalized.accepted == ("h2",)
