"""MPC benchmark: three mpc_program processes on 127.0.0.1 with synthetic updates.

Honest updates are mu + N(0, sigma) (a common training direction mu, ||x|| ~ 1); the reference
(root dataset) is mu plus a little noise. Poisoned updates cycle through: sign-flip (fails the
cosine check), scaled x4 (fails the norm bound), a shifted direction (Multi-Krum outlier).
Reports per phase the median seconds (max over nodes), bytes sent and peak RSS per node, max abs
error of the aggregate against numpy float64, and whether the accept bits equal
`plaintext.evaluate` of the same policy.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fedchain.canonical import sha256_hex
from fedchain.netctl.process import free_ports
from fedchain.records import RoundId
from fedchain.sharing import ShareHeader, encode, share_bytes, split
from fedchain.verification import VerificationPolicy

from fedchain_mpc import plaintext
from fedchain_mpc.job import JOB_ENV, JobResult, MPCJob, ShareInput, load_output

BENCH_ROUND = RoundId(1)  # the one round id of the benchmark's synthetic round

# the operator's default round policy (PolicySettings) with every check on, plus an absolute norm cap:
# range (44 vectors), norm cap + relative norm, absolute + relative cosine, Multi-Krum
BENCH_POLICY = VerificationPolicy(norm_bound=2.0, norm_rel_factor=6.0, cosine_min=0.0, cosine_rel=0.7,
                                  cosine_slack=0.06, krum_f=1, outlier_factor=1.5, outlier_floor=0.1,
                                  min_accepted=3)


def synthetic(n: int, d: int, poisoned: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(updates n×d, reference d, kinds) with the poisoned ones first."""
    mu = np.full(d, 0.6 / np.sqrt(d))
    sigma = 0.8 / np.sqrt(d)
    x = mu + rng.normal(0.0, sigma, (n, d))
    kinds = ["honest"] * n
    for i in range(poisoned):
        kind = ("sign_flip", "scaled", "shifted")[i % 3]
        kinds[i] = kind
        if kind == "sign_flip":
            x[i] = -x[i]
        elif kind == "scaled":
            x[i] = 4.0 * x[i]
        else:
            u = rng.normal(0.0, 1.0, d)
            x[i] = x[i] + 1.4 * u / np.linalg.norm(u)
    reference = mu + rng.normal(0.0, 0.2 / np.sqrt(d), d)
    return x, reference, kinds


def write_round(workdir: Path, updates: np.ndarray, reference: np.ndarray, n_samples: list[int],
                policy: VerificationPolicy, round_id: RoundId = BENCH_ROUND, m: int = 3, t: int = 1,
                seed: str = "bench-seed", tamper: dict[int, int] | None = None) -> list[Path]:
    """Hospital side + job files: share every update, write node files and job.json per node.

    tamper {hospital: node}: corrupt one element of that node's share (an inconsistent sharing).
    """
    n, d = updates.shape
    np.savez(workdir / "reference.npz", delta=reference)
    inputs: list[list[ShareInput]] = [[] for _ in range(m)]
    for i in range(n):
        shares = split(encode(updates[i]), t, m)
        for j in range(m):
            sh = shares[j]
            if tamper and tamper.get(i) == j:
                lo = sh.lo.copy()
                lo[0] = lo[0] + np.uint64(1) if lo[0] < np.uint64(2 ** 63) else lo[0] - np.uint64(1)
                sh = type(sh)(hi=sh.hi, lo=lo)
            data = share_bytes(sh, ShareHeader(str(round_id), f"h{i}", j, d, t=t, m=m))
            path = workdir / f"h{i}.node{j}.share"
            path.write_bytes(data)
            inputs[j].append(ShareInput(hospital_id=f"h{i}", path=str(path), n_samples=n_samples[i],
                                        sha256=sha256_hex(data)))
    paths = []
    for j in range(m):
        job = MPCJob(round_id=round_id, party=j, shares=tuple(inputs[j]), policy=json.loads(policy.to_json()),
                     reference_path=str(workdir / "reference.npz"), t=t, m=m, seed=seed,
                     output_path=str(workdir / f"out{j}.json"))
        p = workdir / f"job{j}.json"
        p.write_text(json.dumps(job.to_json()))
        paths.append(p)
    return paths


def launch_parties(module: str, party_env: list[dict[str, str]], timeout: float) -> None:
    """One `python -m module` MPyC party per entry of party_env (its extra environment) on 127.0.0.1, BLAS
    single-threaded (3 parties share 2 cores), waited for; raises with the stderr tail of the first party that
    failed, and kills whatever is still running on any error."""
    ports = free_ports(len(party_env))
    args = [a for port in ports for a in ("-P", f"127.0.0.1:{port}")]
    env_base = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-m", module, *args, "-I", str(j)], env=dict(env_base, **extra),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for j, extra in enumerate(party_env)]
    try:
        for j, proc in enumerate(procs):
            _, err = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"party {j} exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def run_nodes(job_paths: list[Path], timeout: float = 600.0) -> list[JobResult]:
    """Start one mpc_program per job on 127.0.0.1, wait, return their results."""
    launch_parties("fedchain_mpc.mpc_program", [{JOB_ENV: str(job)} for job in job_paths], timeout)
    return [run_result(MPCJob.load(job).output_path) for job in job_paths]


def run_result(path: str | Path) -> JobResult:
    """A party's result file; RuntimeError with the party's message if it wrote a failure."""
    out = load_output(path)
    if not isinstance(out, JobResult):
        raise RuntimeError(f"MPC party failed: {out.error}")
    return out


def run(clients: int, dim: int, poisoned: int = 0, reps: int = 1, seed: int = 0,
        policy: VerificationPolicy = BENCH_POLICY) -> dict:
    """Benchmark; returns a JSON-serializable report (medians over reps)."""
    rng = np.random.default_rng(seed)
    reports = []
    for rep in range(reps):
        x, ref, kinds = synthetic(clients, dim, poisoned, rng)
        n_samples = [int(v) for v in rng.integers(50, 500, clients)]
        with tempfile.TemporaryDirectory(prefix="fc-bench-") as tmp:
            jobs = write_round(Path(tmp), x, ref, n_samples, policy, seed=f"bench-{seed}-{rep}")
            started = time.perf_counter()
            outs = run_nodes(jobs)
            wall = time.perf_counter() - started
            agg = np.load(outs[0].aggregate_path, allow_pickle=False)["delta"]
        ids = [f"h{i}" for i in range(clients)]
        accept = [outs[0].verdicts[h].accept for h in ids]
        reasons = [outs[0].verdicts[h].reason for h in ids]
        verdicts_pt, _ = plaintext.evaluate(x, n_samples, policy, ref, outs[0].seed)
        w = np.array([min(s, policy.sample_cap) if a else 0 for s, a in zip(n_samples, accept, strict=True)], float)
        expected = (w @ x) / w.sum() if w.sum() else np.zeros(dim)
        reports.append({
            "wall_s": wall,
            "phases": {k: max(o.phases[k] for o in outs) for k in outs[0].phases},
            "phases_cpu": {k: max(o.phases_cpu[k] for o in outs) for k in outs[0].phases_cpu},
            "bytes_sent": [o.bytes_sent for o in outs],
            "peak_rss_mb": [o.peak_rss_mb for o in outs],
            "cpu_s": [o.cpu_s for o in outs],
            "work_cpu_s": max(sum(o.phases_cpu.values()) for o in outs),
            "max_abs_error": float(np.max(np.abs(agg - expected))),
            "accept_equals_plaintext": accept == [a for a, _ in verdicts_pt],
            "reasons": reasons, "kinds": kinds,
            "nodes_agree": len({o.aggregate_sha256 for o in outs}) == 1
            and all(o.verdicts == outs[0].verdicts for o in outs),
        })
    phases = {k: statistics.median(r["phases"][k] for r in reports) for k in reports[0]["phases"]}
    phases["checks_and_aggregation"] = statistics.median(
        sum(v for k, v in r["phases"].items() if k not in ("load", "total")) for r in reports)
    phases["checks_and_aggregation_cpu_max_node"] = statistics.median(r["work_cpu_s"] for r in reports)
    phases_cpu = {k: statistics.median(r["phases_cpu"][k] for r in reports) for k in reports[0]["phases_cpu"]}
    return {
        "clients": clients, "dim": dim, "poisoned": poisoned, "reps": reps, "policy": json.loads(policy.to_json()),
        "phases_median_s": phases,
        "phases_cpu_median_s": phases_cpu,  # max over nodes per phase: the load-independent figure
        "bytes_sent_per_node": reports[-1]["bytes_sent"],
        "peak_rss_mb_per_node": [max(r["peak_rss_mb"][j] for r in reports) for j in range(3)],
        "cpu_s_per_node_median": [statistics.median(r["cpu_s"][j] for r in reports) for j in range(3)],
        "max_abs_error": max(r["max_abs_error"] for r in reports),
        "accept_equals_plaintext": all(r["accept_equals_plaintext"] for r in reports),
        "nodes_agree": all(r["nodes_agree"] for r in reports),
        "reasons_last_rep": dict(zip(reports[-1]["kinds"], reports[-1]["reasons"], strict=False)),
        "reasons": reports[-1]["reasons"], "kinds": reports[-1]["kinds"],
        "load_avg": os.getloadavg()[0],
        "runs": reports,
    }


def table(report: dict) -> str:
    """Human-readable summary."""
    lines = [f"MPC bench: N={report['clients']} D={report['dim']} poisoned={report['poisoned']} "
             f"reps={report['reps']} (load avg {report['load_avg']:.2f})",
             f"{'phase':<40}{'median s':>10}{'cpu s':>10}"]
    cpu = report.get("phases_cpu_median_s", {})
    for k, v in report["phases_median_s"].items():
        c = f"{cpu[k]:>10.3f}" if k in cpu else ""
        lines.append(f"{k:<40}{v:>10.3f}{c}")
    lines.append(f"bytes sent per node: {report['bytes_sent_per_node']}")
    lines.append(f"peak RSS MiB per node: {[round(v, 1) for v in report['peak_rss_mb_per_node']]}")
    lines.append(f"CPU s per node (whole process, median): {[round(v, 2) for v in report['cpu_s_per_node_median']]}")
    lines.append(f"max abs error vs numpy: {report['max_abs_error']:.3g}")
    lines.append(f"accept bits == plaintext: {report['accept_equals_plaintext']}; "
                 f"nodes agree: {report['nodes_agree']}")
    lines.append("verdicts: " + ", ".join(f"{k}:{r}" for k, r in zip(report["kinds"], report["reasons"],
                                                                    strict=True)))
    return "\n".join(lines)
