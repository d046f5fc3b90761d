"""One round's MPC run: verification + aggregation, run jointly by the m nodes as separate processes.

Launch (one process per node, same -P list everywhere, MPyC parses argv; add no options):

    FEDCHAIN_MPC_JOB=/path/job.json python -m fedchain_mpc.mpc_program \
        -P 127.0.0.1:11365 -P 127.0.0.1:11366 -P 127.0.0.1:11367 -I <i> [--ssl ...]

The job file and the output file are `fedchain_mpc.job` (MPCJob in, JobResult or JobFailure out; the
schema is documented there). Exit code 0 on success, 2 on a bad job or share.

With `-M1` (or no -P) it runs as one party (t = 0): then each share row must be the secret
itself (recombine first); used by fast unit tests.

Before the run, main() binds the party listener to its own -P host (mpyc_bind) and replaces MPyC's
pickle with safe_wire (no pickle between parties; every party of a run must use it, which all
entries that start parties through main() do: the node's party_launcher, bench, wan_party).
Started by a node (FEDCHAIN_MPC_PARENT set), the process first arranges to die with that node.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fedchain.canonical import sha256_hex
from fedchain.records import RoundId

from fedchain_mpc.job import JOB_ENV, PARENT_ENV, JobError, JobFailure, JobResult, MPCJob, Verdict

__all__ = ["JobError", "JobModelSpec", "job_model_spec", "load_inference", "load_shares", "main",
           "policy_wants_inference", "run_job"]


def load_shares(job: MPCJob) -> tuple[list[str], list[int], np.ndarray, np.ndarray]:
    """Parse every share strictly; returns hospital ids, n_samples, hi and lo (n × d)."""
    from fedchain.sharing import ShareFormatError, parse_share

    ids, ns, his, los = [], [], [], []
    dim = None
    for entry in job.shares:
        hid = entry.hospital_id
        try:
            data = Path(entry.path).read_bytes()
        except OSError as e:
            raise JobError(f"share of {hid}: cannot read {entry.path}: {e}") from None
        if entry.sha256 and sha256_hex(data) != entry.sha256:
            raise JobError(f"share of {hid} does not match its ledger hash")
        expected = {"round_id": job.round_id, "hospital_id": hid, "node_index": job.party,
                    "l": job.l, "f": job.f, "t": job.t, "m": job.m}
        try:
            hdr, arr = parse_share(data, expected=expected)
        except ShareFormatError as e:
            raise JobError(f"share of {hid}: {e}") from None
        if dim is not None and hdr.dim != dim:
            raise JobError(f"share of {hid} has dim {hdr.dim}, others {dim}")
        dim = hdr.dim
        ids.append(hid)
        ns.append(entry.n_samples)
        his.append(arr.hi)
        los.append(arr.lo)
    return ids, ns, np.stack(his), np.stack(los)


def policy_wants_inference(policy: object) -> bool:
    """Whether the round's policy runs the encrypted-inference check (policies without the field: no)."""
    return getattr(policy, "inference_enabled", False) is True


def load_inference(job: MPCJob, dim: int, max_batch: int) -> object:
    """The encrypted-inference check's public inputs (checks.inference.InferenceInputs): the round's model
    spec, the base model's canonical float32 vector and the validation batch, all checked here: the job
    file is the node's own, but a torn or swapped file must fail the run, not feed the check."""
    from fedchain.validation_batch import ValidationBatchError, decode
    from safetensors.numpy import load as st_load

    from fedchain_mpc.aggregate import flatten
    from fedchain_mpc.checks.inference import InferenceInputs

    if not job.validation_path or not job.base_model_path or job.model_spec is None:
        raise JobError("policy.inference_enabled needs validation_path, base_model_path and model_spec in the job")
    spec = job_model_spec(job.model_spec)
    try:
        images, labels = decode(Path(job.validation_path).read_bytes(), spec, max_batch=max_batch)
    except ValidationBatchError as e:
        raise JobError(f"validation batch: {e}") from None
    try:
        base = flatten(st_load(Path(job.base_model_path).read_bytes())).astype(np.float32)
    except Exception as e:  # safetensors raises its own error type on torn bytes
        raise JobError(f"base model: {e}") from None
    if base.shape != (dim,):
        raise JobError(f"base model has {base.size} parameters, updates have dim {dim}")
    return InferenceInputs(spec=spec, base=base, images=images, labels=labels)


@dataclass(frozen=True)
class JobModelSpec:
    """The round's model spec with fedchain.models.ModelSpec's fields and defaults, without importing torch:
    the inference check derives its plan from these fields alone (fedchain_mpc.inference.plan.make_plan),
    and a party process that never loads torch starts faster and stays smaller."""

    arch: str = "cnn"
    in_channels: int = 1
    n_classes: int = 4
    widths: tuple[int, ...] = (8, 16)
    hidden: int = 32


def job_model_spec(raw: dict) -> JobModelSpec:
    """The job's model_spec (as on the ledger: ModelSpec JSON plus param_count) as a JobModelSpec."""
    try:
        spec = JobModelSpec(
            arch=str(raw.get("arch", JobModelSpec.arch)), in_channels=int(raw.get("in_channels", 1)),
            n_classes=int(raw["n_classes"]),
            widths=tuple(int(w) for w in raw.get("widths", JobModelSpec.widths)),
            hidden=int(raw.get("hidden", JobModelSpec.hidden)))
    except (KeyError, TypeError, ValueError) as e:
        raise JobError(f"model_spec: {type(e).__name__} {e} (needs n_classes; in_channels, arch, widths, hidden as "
                       "in fedchain.models.ModelSpec)") from None
    if spec.in_channels not in (1, 3) or spec.n_classes < 2:
        raise JobError(f"model_spec: in_channels must be 1 or 3 and n_classes >= 2, got {spec}")
    return spec


def bytes_sent() -> int:
    from mpyc.runtime import mpc

    return sum(peer.protocol.nbytes_sent for peer in mpc.parties
               if peer.pid != mpc.pid and peer.protocol is not None)


def cpu_seconds() -> float:
    """User + system CPU of this process: the load-independent cost on a shared machine."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


async def run_job(job: MPCJob) -> JobResult:
    from fedchain.verification import VerificationPolicy
    from mpyc.runtime import mpc

    from fedchain_mpc.aggregate import apply_delta, delta_sha256
    from fedchain_mpc.verify import verify_and_aggregate

    started = time.perf_counter()
    policy = VerificationPolicy.from_json(job.policy)
    ids, ns, hi, lo = load_shares(job)
    reference = None
    if job.reference_path:
        with np.load(job.reference_path, allow_pickle=False) as z:
            reference = np.asarray(z["delta"], dtype=np.float64)
        if reference.shape != (lo.shape[1],):
            raise JobError(f"reference has shape {reference.shape}, updates have dim {lo.shape[1]}")
    inference = (load_inference(job, lo.shape[1], int(getattr(policy, "inference_batch", 32)))
                 if policy_wants_inference(policy) else None)
    t_load = time.perf_counter() - started
    await mpc.start()
    if len(mpc.parties) > 1 and (mpc.pid != job.party or len(mpc.parties) != job.m or mpc.threshold != job.t):
        raise JobError(f"MPyC party {mpc.pid}/{len(mpc.parties)} t={mpc.threshold} does not match the job")
    kwargs = {"inference": inference} if inference is not None else {}
    res = await verify_and_aggregate(hi, lo, ns, policy, reference, job.seed, **kwargs)
    nbytes = bytes_sent()
    await mpc.shutdown()
    out = Path(job.output_path)
    agg_path = out.with_name(out.name + ".aggregate.npz")
    with open(agg_path, "wb") as fh:
        np.savez(fh, delta=res.aggregate)
    model_path = model_sha = None
    if job.base_model_path and res.outcome == "ok":
        data, model_sha = apply_delta(Path(job.base_model_path).read_bytes(), res.aggregate)
        model_path = out.with_name(out.name + ".model.safetensors")
        model_path.write_bytes(data)
    phases = {"load": t_load, **res.phases, "total": time.perf_counter() - started}
    return JobResult(
        round_id=job.round_id, party=job.party,
        verdicts={h: Verdict(ok, why) for h, (ok, why) in zip(ids, res.verdicts, strict=True)},
        n_accepted=sum(ok for ok, _ in res.verdicts), total_weight=res.total_weight,
        outcome=res.outcome, seed=res.seed,
        aggregate_path=str(agg_path), aggregate_sha256=delta_sha256(res.aggregate),
        model_path=str(model_path) if model_path else None, model_sha256=model_sha,
        phases=phases, phases_cpu=res.phases_cpu, bytes_sent=nbytes, peak_rss_mb=peak_rss_mb(), cpu_s=cpu_seconds(),
    )


def _write_failure(path: str, error: Exception) -> None:
    """The failure output for the node, as far as the job file names its output and ids."""
    try:
        raw = json.loads(Path(path).read_text())
        rid, party = raw.get("round_id"), raw.get("party")
        JobFailure(RoundId(rid) if isinstance(rid, int) else None, party if isinstance(party, int) else None,
                   str(error)).write(Path(raw["output_path"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass


def main() -> int:
    from mpyc.runtime import mpc

    path = os.environ.get(JOB_ENV)
    if not path:
        print(f"{JOB_ENV} must name the job file", file=sys.stderr)
        return 2
    from fedchain_mpc.mpyc_bind import bind_party_listener
    from fedchain_mpc.safe_wire import harden

    bind_party_listener(mpc)
    harden()  # no pickle between parties: every party of the run must do this before mpc.start()
    try:
        job = MPCJob.load(path)
        result = mpc.run(run_job(job))
    except (JobError, ValueError, OSError, KeyError) as e:
        print(f"mpc_program: {e}", file=sys.stderr)
        _write_failure(path, e)
        return 2
    result.write(Path(job.output_path))
    return 0


def die_with_parent(expected_parent: int) -> None:
    """Linux: the party dies with the node (an orphan party would hold its port and skew a rerun).

    Set in the child itself, not via preexec_fn: forking a process that runs gRPC threads and
    then running Python in the child is unsafe (gRPC's fork handlers), while subprocess's
    vfork/posix_spawn path runs no Python in the child."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != expected_parent:  # the node died before prctl took effect
        os._exit(1)


if __name__ == "__main__":
    if os.environ.get(PARENT_ENV):
        die_with_parent(int(os.environ[PARENT_ENV]))
    sys.exit(main())
