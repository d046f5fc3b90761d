"""Three mpc_program processes on 127.0.0.1 (slow), and the job/share validation of the program."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from fedchain.verification import VerificationPolicy
from fedchain_mpc import bench, plaintext
from fedchain_mpc.aggregate import canonical_bytes, delta_sha256
from fedchain_mpc.job import JobError, MPCJob
from fedchain_mpc.mpc_program import load_shares

POLICY = VerificationPolicy(norm_bound=2.0, outlier_factor=1.5)


@pytest.mark.slow
def test_three_nodes_verify_aggregate_and_reject_inconsistent_shares(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    x, ref, kinds = bench.synthetic(8, 3000, 3, rng)  # sign_flip, scaled, shifted, then honest
    ns = [int(v) for v in rng.integers(10, 900, 8)]
    jobs = bench.write_round(tmp_path, x, ref, ns, POLICY, seed="it", tamper={5: 1})
    base = {"w": np.linspace(-1, 1, 3000).astype(np.float32)}
    (tmp_path / "base.safetensors").write_bytes(canonical_bytes(base))
    for job in jobs:
        j = json.loads(job.read_text())
        j["base_model_path"] = str(tmp_path / "base.safetensors")
        job.write_text(json.dumps(j))
    outs = bench.run_nodes(jobs, timeout=300)
    verdicts = [outs[0].verdicts[f"h{i}"] for i in range(8)]
    consistent = np.ones(8, dtype=bool)
    consistent[5] = False
    assert len({o.seed for o in outs}) == 1 and outs[0].seed != "it"  # joint randomness, agreed
    expected, agg_pt = plaintext.evaluate(x, ns, POLICY, ref, outs[0].seed, consistent=consistent)
    assert [(v.accept, v.reason) for v in verdicts] == expected
    reasons = [v.reason for v in verdicts]
    assert reasons[:2] == ["cosine", "norm"] and reasons[5] == "inconsistent"
    assert reasons[3:5] + reasons[6:] == ["ok"] * 4
    for o in outs:  # every node reveals the same verdicts, aggregate and model
        assert o.verdicts == outs[0].verdicts
        assert o.aggregate_sha256 == outs[0].aggregate_sha256
        assert o.model_sha256 == outs[0].model_sha256 is not None
        assert o.bytes_sent > 0 and o.peak_rss_mb > 0
        assert set(o.phases) >= {"seed", "local_products", "inconsistent", "range+norm", "cosine", "outlier",
                                   "aggregate", "total"}
        assert o.outcome == "ok"
    agg = np.load(outs[0].aggregate_path, allow_pickle=False)["delta"]
    assert delta_sha256(agg) == outs[0].aggregate_sha256
    assert np.max(np.abs(agg - agg_pt)) <= 1e-5
    model = Path(outs[2].model_path).read_bytes()
    from safetensors.numpy import load

    assert np.allclose(load(model)["w"], base["w"] + agg, atol=1e-6)


@pytest.mark.slow
def test_bench_reports_figures() -> None:
    r = bench.run(5, 2000, 2, reps=1, seed=3)
    assert r["accept_equals_plaintext"] and r["nodes_agree"]
    assert r["max_abs_error"] <= 1e-5
    assert all(b > 0 for b in r["bytes_sent_per_node"]) and len(r["peak_rss_mb_per_node"]) == 3
    assert r["reasons"][:2] == ["cosine", "norm"]


def _job(tmp_path: Path, **over: object) -> Path:
    rng = np.random.default_rng(1)
    x, ref, _ = bench.synthetic(3, 20, 0, rng)
    jobs = bench.write_round(tmp_path, x, ref, [1, 2, 3], POLICY, round_id=9)
    j = json.loads(jobs[0].read_text())
    j.update(over)
    jobs[0].write_text(json.dumps(j))
    return jobs[0]


def test_job_validation(tmp_path: Path) -> None:
    job = MPCJob.load(_job(tmp_path))
    ids, ns, hi, lo = load_shares(job)
    assert ids == ["h0", "h1", "h2"] and ns == [1, 2, 3] and hi.shape == lo.shape == (3, 20)
    with pytest.raises(JobError, match="misses"):
        bad = tmp_path / "bad.json"
        bad.write_text("{}")
        MPCJob.load(bad)
    with pytest.raises(JobError, match="l=32"):
        MPCJob.load(_job(tmp_path, l=48, f=24))
    job = MPCJob.load(_job(tmp_path, party=1))  # node 1 given node 0's shares: header mismatch
    with pytest.raises(JobError, match="node_index"):
        load_shares(job)
    job = MPCJob.load(_job(tmp_path))
    shares = list(job.shares)
    shares[1] = dataclasses.replace(shares[1], sha256="0" * 64)
    with pytest.raises(JobError, match="ledger hash"):
        load_shares(dataclasses.replace(job, shares=tuple(shares)))
    job = MPCJob.load(_job(tmp_path, round_id=10))  # another round's shares: header mismatch
    with pytest.raises(JobError, match="round_id"):
        load_shares(job)
    with pytest.raises(JobError, match="round_id"):  # a round id is the ledger's int, never a name
        MPCJob.load(_job(tmp_path, round_id="other"))
    with pytest.raises(JobError, match="unknown fields"):
        MPCJob.load(_job(tmp_path, rounds=1))
    with pytest.raises(JobError, match="n_samples"):
        MPCJob.load(_job(tmp_path, shares=[{"hospital_id": "h0", "path": "p", "n_samples": 0}]))


def test_job_and_result_round_trip_through_json(tmp_path: Path) -> None:
    """The node writes the job and reads the result with the same classes the program uses: nothing is lost."""
    from fedchain_mpc.job import JobFailure, JobResult, Verdict, load_output

    job = MPCJob.load(_job(tmp_path))
    assert MPCJob.from_json(json.loads(json.dumps(job.to_json()))) == job
    result = JobResult(round_id=9, party=0, verdicts={"h0": Verdict(True, "ok"), "h1": Verdict(False, "norm")},
                       n_accepted=1, total_weight=10, outcome="ok", seed="ab", aggregate_path="a.npz",
                       aggregate_sha256="cd", phases={"total": 1.0}, bytes_sent=5, cpu_s=0.5)
    result.write(tmp_path / "out.json")
    assert load_output(tmp_path / "out.json") == result and result.accepted == ["h0"]
    JobFailure(9, 0, "share of h1: bad").write(tmp_path / "fail.json")
    assert load_output(tmp_path / "fail.json") == JobFailure(9, 0, "share of h1: bad")
