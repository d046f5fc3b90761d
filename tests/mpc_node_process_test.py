"""Round processing logic without MPyC: agreement, base-model fallbacks, references, retries, worker, config."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import fedchain_mpc.node as node_mod
import numpy as np
import pytest
from fedchain.gateway import InMemoryCheckpoint
from fedchain_mpc.config import ConfigError, load_config
from fedchain_mpc.guard import LedgerMismatch
from fedchain_mpc.job import JobResult, MPCJob, ShareInput, Verdict
from fedchain_mpc.ledger_adapter import LedgerEvent, ParticipantCache
from fedchain_mpc.node import RoundContext, RoundError, RoundProcessor, RoundWorker
from fedchain_mpc.party_launcher import MPCRunError, RunnerSettings, run_with_retries
from fedchain_mpc.store import ATTESTED, FAILED, PUBLISHED, NodeState, ShareStore
from mpc_node_support import NodeLedgerView, make_shares, make_world
from safetensors.numpy import save as st_save

DIM = 20
BASE = st_save({"w": np.arange(DIM, dtype=np.float32)})
BASE_HASH = hashlib.sha256(BASE).hexdigest()
NO_COSINE = {"cosine_enabled": False}


class FakeRun:
    """Stands in for the MPyC run: records jobs, returns given verdicts and a model (base + 1)."""

    def __init__(self, verdicts: dict[str, bool] | None = None, fail: int = 0, outcome: str | None = None) -> None:
        self.jobs: list[MPCJob] = []
        self.verdicts = verdicts
        self.fail = fail
        self.outcome = outcome

    def __call__(self, job: MPCJob, run_dir, settings, sleep=None, attempt_hook=None, should_abort=None) -> JobResult:
        if attempt_hook:
            attempt_hook(0, None)
        self.jobs.append(job)
        if self.fail:
            self.fail -= 1
            raise MPCRunError("party 1 went away")
        from fedchain_mpc.aggregate import apply_delta

        data, sha = apply_delta(Path(job.base_model_path).read_bytes(), np.ones(DIM))
        out = Path(job.output_path).with_name("model.safetensors")
        out.write_bytes(data)
        ids = [s.hospital_id for s in job.shares]
        ok = self.verdicts or {h: True for h in ids}
        return JobResult(round_id=job.round_id, party=job.party,
                         verdicts={h: Verdict(ok[h], "ok" if ok[h] else "norm") for h in ids},
                         n_accepted=sum(ok[h] for h in ids), total_weight=1,
                         outcome=self.outcome if self.outcome is not None else "ok", seed="joint",
                         aggregate_path="", aggregate_sha256="00", model_path=str(out), model_sha256=sha,
                         phases={"total": 0.1})


@pytest.fixture
def setup(tmp_path, monkeypatch):
    world = make_world(tmp_path, n_hospitals=4)
    led = world.ledger
    led.models[0] = BASE
    led.open_round(1, DIM, policy=NO_COSINE)
    led.rounds[1]["base_model_hash"] = BASE_HASH
    stores = [ShareStore(tmp_path / f"n{j}") for j in range(3)]
    fake = FakeRun()
    monkeypatch.setattr(node_mod, "run_with_retries", fake)

    def holdings(peer, ident, rid):
        return stores[peer.index].holdings(rid)

    from mpc_node_support import endpoint

    peers = [endpoint(world.consortium, j, 1) for j in range(3)]
    procs = []
    for j in range(3):
        ctx = RoundContext(node_id=f"mpc{j}", node_index=j, m=3, t=1, l=32, f=16, data_dir=tmp_path / f"n{j}",
                           reference_dir=tmp_path / "refs", holdings_timeout_s=0.5)
        runner = RunnerSettings(node_index=j, parties=("a:1", "b:2", "c:3"), threshold=1)
        procs.append(RoundProcessor(ctx, NodeLedgerView(led, f"mpc{j}"), stores[j],
                                    NodeState(tmp_path / f"n{j}" / "state.sqlite"), runner, world.nodes[j], peers,
                                    holdings=holdings, sleep=lambda s: None))
    return world, stores, procs, fake


def deliver(world, stores, hid: str, to=(0, 1, 2), seed: int = 0, commit: bool = True) -> list[str]:
    shares = make_shares(np.full(DIM, 0.01), 1, hid, seed=seed)
    for j in to:
        stores[j].put(1, hid, shares[j], lambda sha: b"receipt")
    hashes = [hashlib.sha256(s).hexdigest() for s in shares]
    if commit:
        world.ledger.commit_update(1, hid, hashes, n_samples=10)
    return hashes


def test_open_round_is_left_alone(setup):
    world, stores, procs, fake = setup
    assert procs[0].process(1) == "open"
    assert not stores[0].is_sealed(1) and fake.jobs == []


def test_only_shares_every_node_holds_enter_and_jobs_agree(setup):
    world, stores, procs, fake = setup
    deliver(world, stores, "hosp0")
    deliver(world, stores, "hosp1", to=(0, 2))  # node 1 never got it
    deliver(world, stores, "hosp2")
    deliver(world, stores, "hosp3", commit=False)  # sent shares, never committed on the ledger
    world.ledger.consortium["quorum"] = 3  # nodes run one after the other here: keep the round CLOSED
    world.ledger.close_round(1)
    for p in procs:
        assert p.process(1) == ATTESTED
    assert all(stores[j].is_sealed(1) for j in range(3))
    canon = [{k: v for k, v in job.to_json().items() if k not in ("party", "output_path", "base_model_path")}
             for job in fake.jobs]
    for c in canon:
        c["shares"] = [(s["hospital_id"], s["n_samples"]) for s in c["shares"]]
    assert canon[0] == canon[1] == canon[2]
    assert canon[0]["shares"] == [("hosp0", 10), ("hosp2", 10)]
    atts = world.ledger.attestations[1]
    assert {a["node"] for a in atts.values()} == {"mpc0", "mpc1", "mpc2"}
    assert atts["mpc1"]["rejected"] == {"hosp1": "missing_share"}
    assert atts["mpc1"]["accepted"] == ["hosp0", "hosp2"]
    assert atts["mpc0"]["model_hash"] != BASE_HASH
    report = json.loads((procs[0].ctx.data_dir / "reports" / "1.json").read_text())
    assert hashlib.sha256((procs[0].ctx.data_dir / "reports" / "1.json").read_bytes()).hexdigest() == \
        atts["mpc0"]["report_hash"]
    assert report["rejected"] == {"hosp1": "missing_share"}


def test_nobody_holds_anything_attests_the_base_model_without_mpc(setup):
    world, stores, procs, fake = setup
    world.ledger.commit_update(1, "hosp0", ["ab" * 32] * 3, 10)
    world.ledger.close_round(1)
    assert procs[0].process(1) == ATTESTED
    att = world.ledger.attestations[1]["mpc0"]
    assert att["model_hash"] == BASE_HASH and att["accepted"] == [] and att["rejected"] == {"hosp0": "missing_share"}
    assert fake.jobs == []


def test_fewer_accepted_than_min_updates_keeps_the_base_model(setup, monkeypatch):
    world, stores, procs, fake = setup
    world.ledger.rounds[1]["min_updates"] = 2
    deliver(world, stores, "hosp0")
    deliver(world, stores, "hosp1", seed=1)
    monkeypatch.setattr(node_mod, "run_with_retries", FakeRun({"hosp0": True, "hosp1": False}))
    world.ledger.close_round(1)
    procs[0].process(1)
    att = world.ledger.attestations[1]["mpc0"]
    assert att["model_hash"] == BASE_HASH and att["rejected"] == {"hosp1": "norm"}


@pytest.mark.parametrize("outcome", ["too_few_accepted", "aggregate_out_of_range"])
def test_an_outcome_without_aggregate_attests_the_base_model(setup, monkeypatch, outcome):
    """Privacy floor or failed sanity check: the run opened (or published) no aggregate; the node
    attests the base model with the outcome, whatever model file a run may have left."""
    world, stores, procs, fake = setup
    deliver(world, stores, "hosp0")
    deliver(world, stores, "hosp1", seed=1)
    monkeypatch.setattr(node_mod, "run_with_retries", FakeRun(outcome=outcome))
    world.ledger.close_round(1)
    procs[0].process(1)
    att = world.ledger.attestations[1]["mpc0"]
    assert att["model_hash"] == BASE_HASH and att["outcome"] == outcome
    assert att["accepted"] == ["hosp0", "hosp1"]
    report = json.loads((procs[0].ctx.data_dir / "reports" / "1.json").read_text())
    assert report["outcome"] == outcome and report["aggregate_sha256"] is None and report["joint_seed"] == "joint"


def test_accepted_below_the_policy_floor_is_never_published(setup, monkeypatch):
    """Defence in depth: even if a run reports ok, fewer accepted than policy.min_accepted is too few."""
    world, stores, procs, fake = setup
    world.ledger.rounds[1]["policy"] = {**NO_COSINE, "min_accepted": 3}
    deliver(world, stores, "hosp0")
    deliver(world, stores, "hosp1", seed=1)
    world.ledger.close_round(1)
    procs[0].process(1)
    att = world.ledger.attestations[1]["mpc0"]
    assert att["model_hash"] == BASE_HASH and att["outcome"] == "too_few_accepted"


def test_cosine_without_a_declared_reference_fails_the_round_instead_of_wedging_it(setup):
    """No reference_sha256 at CreateRound: none can ever come, so every update is rejected (no_reference)
    and the round ends FAILED with the base model, at every node alike; no MPC run."""
    world, stores, procs, fake = setup
    world.ledger.rounds[1]["policy"] = {"cosine_enabled": True}
    deliver(world, stores, "hosp0")
    deliver(world, stores, "hosp1", seed=1)
    world.ledger.close_round(1)
    assert [p.process(1) for p in procs[:2]] == [ATTESTED, ATTESTED]
    atts = world.ledger.attestations[1]
    assert atts["mpc0"]["rejected"] == {"hosp0": "no_reference", "hosp1": "no_reference"}
    assert atts["mpc0"]["accepted"] == [] and atts["mpc0"]["outcome"] == "too_few_accepted"
    claim = ("model_hash", "accepted", "rejected", "outcome")
    assert atts["mpc0"]["model_hash"] == BASE_HASH
    assert {k: atts["mpc1"][k] for k in claim} == {k: atts["mpc0"][k] for k in claim}  # reports differ per node
    assert fake.jobs == []


def test_cosine_needs_a_matching_reference(setup, tmp_path):
    world, stores, procs, fake = setup
    world.ledger.rounds[1]["policy"] = {"cosine_enabled": True}
    deliver(world, stores, "hosp0")
    world.ledger.close_round(1)
    ref = np.linspace(0, 1, DIM).astype(np.float32).astype(np.float64)
    sha = hashlib.sha256(ref.astype("<f4").tobytes()).hexdigest()
    world.ledger.rounds[1]["hyperparameters"] = {"reference_sha256": sha}
    (tmp_path / "refs").mkdir()
    with open(tmp_path / "refs" / f"{sha}.npz", "wb") as fh:
        np.savez(fh, delta=ref + 1)  # wrong content under the right name
    with pytest.raises(RoundError, match="hashes to"):
        procs[0].process(1)
    with open(tmp_path / "refs" / f"{sha}.npz", "wb") as fh:
        np.savez(fh, delta=ref)
    assert procs[0].process(1) == ATTESTED
    assert fake.jobs[-1].reference_path.endswith(f"{sha}.npz")


def test_reference_from_the_ledger_when_not_dropped_locally(setup):
    world, stores, procs, fake = setup
    ref = np.linspace(0, 1, DIM).astype("<f4")
    sha = hashlib.sha256(ref.tobytes()).hexdigest()
    world.ledger.rounds[1]["policy"] = {"cosine_enabled": True}
    world.ledger.rounds[1]["hyperparameters"] = {"reference_sha256": sha}
    deliver(world, stores, "hosp0")
    world.ledger.close_round(1)
    with pytest.raises(RoundError, match="neither in this node's reference_dir nor on the ledger"):
        procs[1].process(1)
    world.ledger.references[1] = (ref + 1).tobytes()  # a ledger answer that does not match the declared hash
    with pytest.raises(RoundError, match="does not match"):
        procs[1].process(1)
    world.ledger.references[1] = ref.tobytes()
    assert procs[1].process(1) == ATTESTED
    with np.load(fake.jobs[-1].reference_path, allow_pickle=False) as z:
        assert np.array_equal(z["delta"], ref.astype(np.float64))


def test_base_model_must_match_its_hash(setup):
    world, stores, procs, fake = setup
    world.ledger.models[0] = BASE + b" "
    deliver(world, stores, "hosp0")
    world.ledger.close_round(1)
    with pytest.raises(RoundError, match="base model"):
        procs[0].process(1)
    assert 1 not in world.ledger.attestations


def test_failed_run_and_failed_attestation_are_retried(setup, monkeypatch):
    world, stores, procs, fake = setup
    deliver(world, stores, "hosp0")
    world.ledger.close_round(1)
    monkeypatch.setattr(node_mod, "run_with_retries", FakeRun(fail=1))
    with pytest.raises(RoundError, match="went away"):
        procs[0].process(1)
    assert procs[0].state.get(1)["status"] == FAILED
    real_attest = world.ledger.attest

    def down(att):
        from fedchain_mpc.ledger_adapter import LedgerError

        raise LedgerError("gateway unreachable")

    world.ledger.attest = down
    with pytest.raises(RoundError, match="attestation failed"):
        procs[0].process(1)
    world.ledger.attest = real_attest
    assert procs[0].process(1) == ATTESTED
    # a restart (fresh state object) sees ATTESTED and does nothing again
    again = NodeState(procs[0].state.path)
    assert again.get(1)["status"] == ATTESTED


def test_publish_once_finalized(setup):
    world, stores, procs, fake = setup
    deliver(world, stores, "hosp0")
    world.ledger.close_round(1)
    for p in procs[:2]:
        p.process(1)
    assert world.ledger.rounds[1]["state"] == "FINALIZED"  # quorum 2
    assert procs[2].process(1) == PUBLISHED  # finalized without node 2's attestation: nothing of its own
    assert 1 not in world.ledger.models
    assert procs[0].process(1) == PUBLISHED
    assert procs[1].process(1) == PUBLISHED  # 'already published' is success
    assert hashlib.sha256(world.ledger.models[1]).hexdigest() == world.ledger.attestations[1]["mpc0"]["model_hash"]


def test_worker_reconciles_and_checkpoints_events(setup):
    world, stores, procs, fake = setup
    deliver(world, stores, "hosp0")
    world.ledger.close_round(1)
    worker = RoundWorker(procs[0], procs[0].ledger, poll_s=0.05)
    worker.reconcile()
    rid, _ = worker.queue.get_nowait()
    assert rid == 1
    worker.handle(rid)
    assert procs[0].state.get(1)["status"] == ATTESTED
    cp = InMemoryCheckpoint()
    events = [LedgerEvent("UpdateSubmitted", {"round_id": 1}, 5, "txa"),
              LedgerEvent("RoundClosed", {"round_id": 1}, 7, "txb")]
    worker.start()
    worker.follow_events(lambda: iter(events), cp)
    import time

    deadline = time.monotonic() + 5
    while cp.transaction_id != "txb" and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop()
    assert (cp.block_number, cp.transaction_id) == (7, "txb")


def test_a_round_replaced_on_the_ledger_is_refused_not_skipped(setup, caplog):
    """Rollback: the node finished round 1; the ledger now holds another round 1 (a restored older copy
    where the operator created it again). The node must say so, not skip it silently."""
    world, stores, procs, fake = setup
    world.ledger.rounds[1]["created_tx_id"] = "tx-original"
    deliver(world, stores, "hosp0")
    world.ledger.close_round(1)
    procs[0].process(1)
    procs[1].process(1)
    assert procs[0].process(1) == PUBLISHED
    assert procs[0].state.get(1)["created_tx_id"] == "tx-original"
    world.ledger.open_round(1, DIM, policy=NO_COSINE)  # the re-created round on the restored ledger
    world.ledger.rounds[1].update(created_tx_id="tx-recreated", state="CLOSED")
    with pytest.raises(LedgerMismatch, match="created by transaction tx-recreated"):
        procs[0].process(1)
    worker = RoundWorker(procs[0], procs[0].ledger, poll_s=0.05)
    worker.reconcile()
    assert worker.queue.get_nowait()[0] == 1  # queued although done locally: the mismatch must surface
    with caplog.at_level("ERROR"):
        worker.handle(1)
    assert any("REFUSING THE LEDGER" in r.message and "round 1" in r.message for r in caplog.records)
    assert len(world.ledger.attestations[1]) == 2  # nothing attested on the replaced round


def test_guard_refusal_stops_all_processing(setup, tmp_path):
    from fedchain.gateway.watermark import ChainHead, LedgerWatermark
    from fedchain_mpc.guard import LedgerGuard

    world, stores, procs, fake = setup

    class Head:
        def __init__(self, n):
            self.n = n

        def chain_head(self):
            return ChainHead(self.n, f"{self.n:064x}", f"{self.n - 1:064x}")

        def block_hash(self, number):
            return f"{number:064x}"

    guard = LedgerGuard(LedgerWatermark(tmp_path / "wm.json"), Head(10))
    procs[0].guard = guard
    deliver(world, stores, "hosp0")
    world.ledger.close_round(1)
    guard.check()
    guard.source = Head(7)  # the ledger went backwards
    calls_before = len(world.ledger.calls)
    with pytest.raises(LedgerMismatch, match="went backwards"):
        procs[0].process(1)
    worker = RoundWorker(procs[0], procs[0].ledger, poll_s=0.05)
    worker.reconcile()
    assert worker.queue.empty() and len(world.ledger.calls) == calls_before  # not even ListRounds
    assert fake.jobs == [] and 1 not in world.ledger.attestations


def test_worker_closes_an_open_round_at_its_deadline(setup):
    world, stores, procs, fake = setup
    world.ledger.rounds[1]["deadline"] = 1000.0
    now = [999.0]
    first = RoundWorker(procs[0], procs[0].ledger, clock=lambda: now[0])
    backup = RoundWorker(procs[2], procs[2].ledger, clock=lambda: now[0])  # node 2 waits 2 s more
    first.reconcile()
    assert world.ledger.rounds[1]["state"] == "OPEN"
    now[0] = 1001.0
    backup.reconcile()
    assert world.ledger.rounds[1]["state"] == "OPEN"
    first.reconcile()
    assert world.ledger.rounds[1]["state"] == "CLOSED"


def test_participant_cache_refreshes_on_miss_at_most_every_interval():
    from fedchain.records import Participant

    now = [0.0]
    calls = []
    data = [Participant.from_json({"msp_id": "Org1MSP", "identity": "x509::a::b", "id": "h1", "role": "hospital"})]

    def fetch():
        calls.append(now[0])
        return list(data)

    cache = ParticipantCache(fetch, refresh_s=2.0, clock=lambda: now[0])
    assert cache.lookup("Org1MSP", "x509::a::b").id == "h1"
    assert cache.lookup("Org1MSP", "x509::new::b") is None
    assert len(calls) == 1
    data.append(Participant.from_json({"msp_id": "Org1MSP", "identity": "x509::new::b", "id": "h2", "role": "hospital"}))
    now[0] = 2.5
    assert cache.lookup("Org1MSP", "x509::new::b").id == "h2"
    assert len(calls) == 2


def test_runner_reports_the_programs_error_and_retries(tmp_path):
    settings = RunnerSettings(node_index=0, parties=("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"), threshold=1,
                              retries=1, backoff_s=0.0, timeout_s=60, python=sys.executable)
    job = MPCJob(round_id=1, party=0, shares=(ShareInput("hosp0", str(tmp_path / "absent.share"), 1),),
                 policy=NO_COSINE, seed="s", output_path=str(tmp_path / "run" / "result.json"), t=1, m=3)
    attempts = []
    with pytest.raises(MPCRunError, match="failed 2 times.*share of hosp0: cannot read"):  # the program's message
        run_with_retries(job, tmp_path / "run", settings, sleep=lambda s: None,
                         attempt_hook=lambda i, err: attempts.append(i))
    assert attempts == [0, 1]


def test_load_config_resolves_paths_and_names_missing_fields(tmp_path):
    (tmp_path / "ca.pem").write_bytes(b"pem")
    cfg = {
        "node_index": 1, "listen": "127.0.0.1:0", "tls": {"cert": "c.crt", "key": "c.key"},
        "identity": {"wallet": "wallet", "name": "mpc1"}, "crypto_dir": "crypto", "data_dir": "data",
        "peers": [{"index": j, "endpoint": f"127.0.0.1:{7000 + j}", "tls_root_cert": "ca.pem"} for j in range(3)],
        "mpc": {"parties": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], "threshold": 1},
    }
    (tmp_path / "node.json").write_text(json.dumps(cfg))
    loaded = load_config(tmp_path / "node.json")
    assert loaded.m == 3 and loaded.data_dir == tmp_path / "data" and loaded.peers[2].tls_root_cert == b"pem"
    assert loaded.runner.tls is None and loaded.node_id == "mpc1"
    del cfg["tls"]
    (tmp_path / "node.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="'tls'"):
        load_config(tmp_path / "node.json")
    cfg["tls"] = {"cert": "c", "key": "k"}
    cfg["node_index"] = 5
    (tmp_path / "node.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="node_index"):
        load_config(tmp_path / "node.json")


def test_node_entry_point_refuses_a_bad_config_clearly(tmp_path):
    import subprocess

    (tmp_path / "node.json").write_text(json.dumps({"node_index": 0}))
    proc = subprocess.run([sys.executable, "-m", "fedchain_mpc", "--config", str(tmp_path / "node.json")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "missing field 'tls'" in proc.stderr and "READY" not in proc.stdout


def test_waiting_party_is_abandoned_when_the_run_is_no_longer_wanted(tmp_path):
    from fedchain_mpc.party_launcher import MPCAborted
    from mpc_node_round_test import free_ports

    ports = free_ports(3)
    settings = RunnerSettings(node_index=0, parties=tuple(f"127.0.0.1:{p}" for p in ports), threshold=1,
                              retries=3, backoff_s=0.0, abort_check_s=0.3, connect_timeout_s=60)
    share = make_shares(np.zeros(DIM), 1, "hosp0")[0]
    (tmp_path / "h.share").write_bytes(share)
    job = MPCJob(round_id=1, party=0, shares=(ShareInput("hosp0", str(tmp_path / "h.share"), 1),), policy=NO_COSINE,
                 l=32, f=16, t=1, m=3, seed="s", output_path=str(tmp_path / "run" / "result.json"))
    asked = []

    def finalized_meanwhile():
        asked.append(1)
        return "round 1 is FINALIZED" if len(asked) >= 2 else None

    import time

    t0 = time.monotonic()
    with pytest.raises(MPCAborted, match="FINALIZED"):
        run_with_retries(job, tmp_path / "run", settings, should_abort=finalized_meanwhile)
    assert time.monotonic() - t0 < 20 and len(asked) == 2  # no retry after an abort


def test_membership_check_against_the_ledger(tmp_path):
    from types import SimpleNamespace

    from fedchain_mpc.service import check_membership

    world = make_world(tmp_path, n_hospitals=1)  # the ledger's consortium: mpc0..mpc2 with the world's identities
    cfg = SimpleNamespace(m=3, node_index=1, runner=SimpleNamespace(threshold=1))
    assert check_membership(world.ledger, cfg, world.nodes[1]) == "mpc1"
    with pytest.raises(ConfigError, match="another identity"):
        check_membership(world.ledger, cfg, world.nodes[0])
    with pytest.raises(ConfigError, match="threshold"):
        check_membership(world.ledger, SimpleNamespace(m=3, node_index=1, runner=SimpleNamespace(threshold=0)),
                         world.nodes[1])
    with pytest.raises(ConfigError, match="3 MPC nodes"):
        check_membership(world.ledger, SimpleNamespace(m=4, node_index=1, runner=SimpleNamespace(threshold=1)),
                         world.nodes[1])


# ------------------------------------------------------------------ encrypted inference: the validation batch
def _inference_round(world, *, declared: bytes | None) -> None:
    rnd = world.ledger.rounds[1]
    rnd["policy"] = {"cosine_enabled": False, "inference_enabled": True, "inference_batch": 8}
    rnd["model_spec"] = {"param_count": DIM, "arch": "cnn", "in_channels": 1, "n_classes": 4}
    rnd["hyperparameters"] = {"validation_sha256": hashlib.sha256(declared).hexdigest()} if declared else {}


def _batch(n: int = 8, top_label: int = 3) -> bytes:
    from fedchain.validation_batch import encode

    labels = np.arange(n, dtype=np.int64) % (top_label + 1)
    return encode(np.full((n, 28, 28), 7, np.uint8), labels)


def test_inference_round_fetches_checks_and_hands_over_its_validation_batch(setup):
    """Declared and published: hash-checked, decoded, written to the round directory, named in the job with the
    round's model spec; declared but not yet published: the node waits (RoundError, retried) as for the reference."""
    world, stores, procs, fake = setup
    batch = _batch()
    _inference_round(world, declared=batch)
    deliver(world, stores, "hosp0")
    world.ledger.close_round(1)
    with pytest.raises(RoundError, match="not on the ledger yet"):
        procs[0].process(1)
    world.ledger.validation_batches[1] = _batch(top_label=2)  # a ledger answer other than the declared one
    with pytest.raises(RoundError, match="does not match validation_sha256"):
        procs[0].process(1)
    world.ledger.validation_batches[1] = batch
    assert procs[0].process(1) == ATTESTED
    job = fake.jobs[-1]
    assert Path(job.validation_path).read_bytes() == batch
    assert Path(job.validation_path).parent == procs[0].ctx.data_dir / "runs" / "1"
    assert job.model_spec["n_classes"] == 4 and job.policy["inference_enabled"] is True


def test_inference_round_without_a_usable_batch_fails_at_every_node_alike(setup):
    """Not declared (a chaincode before CreateRound required it) or published but unusable for the round's
    model (labels beyond n_classes): no update can be judged, so all are rejected no_validation_batch and the
    round ends FAILED with the base model; no MPC run."""
    world, stores, procs, fake = setup
    _inference_round(world, declared=None)
    deliver(world, stores, "hosp0")
    deliver(world, stores, "hosp1", seed=1)
    world.ledger.close_round(1)
    assert procs[0].process(1) == ATTESTED
    att = world.ledger.attestations[1]["mpc0"]
    assert att["rejected"] == {"hosp0": "no_validation_batch", "hosp1": "no_validation_batch"}
    assert att["model_hash"] == BASE_HASH and att["outcome"] == "too_few_accepted" and fake.jobs == []

    bad = _batch(top_label=5)  # labels up to 5, the model has 4 classes
    _inference_round(world, declared=bad)
    world.ledger.validation_batches[1] = bad
    assert procs[1].process(1) == ATTESTED
    att1 = world.ledger.attestations[1]["mpc1"]
    assert att1["rejected"] == {"hosp0": "no_validation_batch", "hosp1": "no_validation_batch"}
    assert fake.jobs == []


def test_inference_round_with_a_batch_of_another_size_fails_alike(setup):
    world, stores, procs, fake = setup
    small = _batch(n=4)  # the policy says 8
    _inference_round(world, declared=small)
    world.ledger.validation_batches[1] = small
    deliver(world, stores, "hosp0")
    world.ledger.close_round(1)
    assert procs[0].process(1) == ATTESTED
    assert world.ledger.attestations[1]["mpc0"]["rejected"] == {"hosp0": "no_validation_batch"}
    assert fake.jobs == []
