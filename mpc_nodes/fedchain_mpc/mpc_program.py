"""One round's MPC run: verification + aggregation, run jointly by the m nodes as separate processes.

Launch (one process per node, same -P list everywhere, MPyC parses argv; add no options):

    FEDCHAIN_MPC_JOB=/path/job.json python -m fedchain_mpc.mpc_program \
        -P 127.0.0.1:11365 -P 127.0.0.1:11366 -P 127.0.0.1:11367 -I <i> [--ssl ...]

With `-M1` (or no -P) it runs as one party (t = 0): then each share row must be the secret
itself (recombine first); used by fast unit tests.

Before the run, main() binds the party listener to its own -P host (mpyc_bind) and replaces MPyC's
pickle with safe_wire (no pickle between parties; every party of a run must use it, which all
entries that start parties through main() do: the node's runner, bench, wan_party).

Job file (JSON, written by the node service):
    {
      "round_id": "r1",
      "party": 0,                      # this node's index i (must equal -I)
      "shares": [                      # one per hospital, same order on every node
        {"hospital_id": "h1", "path": "/.../h1.share", "n_samples": 500,
         "sha256": "<hex, optional: checked against the file>"}
      ],
      "policy": {...},                 # fedchain.verification.VerificationPolicy JSON (the round's)
      "reference_path": "/.../ref.npz",   # npz with array "delta" (float64, length dim); optional
                                          # if policy.cosine_enabled is false
      "base_model_path": "/.../base.safetensors",  # optional: then the new model is written;
                                          # required with validation_path (the base of w_base + delta_i)
      "validation_path": "/.../validation.safetensors",  # only if policy.inference_enabled: the round's
                                          # public validation batch (fedchain.validation_batch bytes,
                                          # hash-checked by the node; decoded strictly here again)
      "model_spec": {...},             # with validation_path: the round's model_spec (ModelSpec fields;
                                          # param_count and unknown keys are ignored)
      "l": 32, "f": 16, "t": 1, "m": 3,
      "seed": "<public ledger context (round, committed share hashes); the checks' randomness is
               generated jointly by the nodes inside the run and mixed with it>",
      "output_path": "/.../result.json"
    }
Share files are `fedchain.sharing` share bytes (parsed strictly; header must match round_id,
hospital_id, node_index=party, l, f, t, m, and all dims must agree).

Output JSON (written atomically to output_path by every node; identical except timings/bytes):
    {
      "round_id": "r1",
      "party": 0,
      "verdicts": {"h1": {"accept": true, "reason": "ok"}, ...},
                    # reason in ok | inconsistent | range | norm | cosine | outlier | inference
                    # (nothing else per hospital: no logits, counts or accuracies leave the run)
      "n_accepted": 2, "total_weight": 1234,
      "outcome": "ok" | "too_few_accepted" | "aggregate_out_of_range",
                    # not ok: no aggregate was opened (privacy floor) or it failed the sanity check;
                    # then model_path is null and the node attests the base model with the outcome
      "seed": "<hex: the joint public randomness the checks used (recorded for auditors)>",
      "aggregate_path": "<output_path>.aggregate.npz",   # npz "delta" float64 (weighted average)
      "aggregate_sha256": "<hex of the delta's float64 little-endian bytes>",
      "model_path": "<output_path>.model.safetensors" | null,   # base + delta, canonical
      "model_sha256": "<hex>" | null,
      "phases": {"load": s, "seed": s, "local_products": s, <one per check stage of the pipeline:
                 "inconsistent", "range", "norm+cosine", "outlier", "inference" (with the check)>,
                 "aggregate": s, "total": s},
      "phases_cpu": {...},             # CPU seconds of this node per phase (same names)
      "bytes_sent": 12345,             # MPyC payload bytes this node sent
      "peak_rss_mb": 123.4,
      "cpu_s": 1.2                     # user + system CPU seconds of this node process
    }
Exit code 0 on success; on a bad job/share the program exits 2 with the message on stderr
and writes {"round_id", "party", "error": "..."} to output_path.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

JOB_ENV = "FEDCHAIN_MPC_JOB"


class JobError(ValueError):
    """The job file or a share it names is invalid."""


def load_job(path: str | Path) -> dict:
    try:
        job = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise JobError(f"cannot read job {path}: {e}") from None
    need = {"round_id", "party", "shares", "policy", "l", "f", "t", "m", "seed", "output_path"}
    missing = need - set(job)
    if missing:
        raise JobError(f"job misses {sorted(missing)}")
    if (job["l"], job["f"]) != (32, 16):
        raise JobError("only l=32, f=16 is supported by the MPC checks")
    if not job["shares"]:
        raise JobError("job has no shares")
    return job


def load_shares(job: dict) -> tuple[list[str], list[int], np.ndarray, np.ndarray]:
    """Parse every share strictly; returns hospital ids, n_samples, hi and lo (n × d)."""
    from fedchain.sharing import ShareFormatError, parse_share

    ids, ns, his, los = [], [], [], []
    dim = None
    for entry in job["shares"]:
        hid = entry["hospital_id"]
        data = Path(entry["path"]).read_bytes()
        if entry.get("sha256") and hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise JobError(f"share of {hid} does not match its ledger hash")
        expected = {"round_id": job["round_id"], "hospital_id": hid, "node_index": job["party"],
                    "l": job["l"], "f": job["f"], "t": job["t"], "m": job["m"]}
        try:
            hdr, arr = parse_share(data, expected=expected)
        except ShareFormatError as e:
            raise JobError(f"share of {hid}: {e}") from None
        if dim is not None and hdr.dim != dim:
            raise JobError(f"share of {hid} has dim {hdr.dim}, others {dim}")
        dim = hdr.dim
        n = int(entry["n_samples"])
        if n < 1:
            raise JobError(f"n_samples of {hid} must be >= 1")
        ids.append(hid)
        ns.append(n)
        his.append(arr.hi)
        los.append(arr.lo)
    if len(set(ids)) != len(ids):
        raise JobError("duplicate hospital_id in job")
    return ids, ns, np.stack(his), np.stack(los)


def policy_wants_inference(policy: object) -> bool:
    """Whether the round's policy runs the encrypted-inference check (policies without the field: no)."""
    return getattr(policy, "inference_enabled", False) is True


def load_inference(job: dict, dim: int, max_batch: int) -> object:
    """The encrypted-inference check's public inputs (checks.inference.InferenceInputs): the round's model
    spec, the base model's canonical float32 vector and the validation batch, all checked here: the job
    file is the node's own, but a torn or swapped file must fail the run, not feed the check."""
    from fedchain.validation_batch import ValidationBatchError, decode
    from safetensors.numpy import load as st_load

    from fedchain_mpc.aggregate import flatten
    from fedchain_mpc.checks.inference import InferenceInputs

    if not job.get("validation_path") or not job.get("base_model_path") or not isinstance(job.get("model_spec"), dict):
        raise JobError("policy.inference_enabled needs validation_path, base_model_path and model_spec in the job")
    spec = job_model_spec(job["model_spec"])
    try:
        images, labels = decode(Path(job["validation_path"]).read_bytes(), spec, max_batch=max_batch)
    except ValidationBatchError as e:
        raise JobError(f"validation batch: {e}") from None
    try:
        base = flatten(st_load(Path(job["base_model_path"]).read_bytes())).astype(np.float32)
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


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


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


async def run_job(job: dict) -> dict:
    from fedchain.verification import VerificationPolicy
    from mpyc.runtime import mpc

    from fedchain_mpc.aggregate import apply_delta, delta_sha256
    from fedchain_mpc.verify import verify_and_aggregate

    started = time.perf_counter()
    policy = VerificationPolicy.from_json(job["policy"])
    ids, ns, hi, lo = load_shares(job)
    reference = None
    if job.get("reference_path"):
        with np.load(job["reference_path"], allow_pickle=False) as z:
            reference = np.asarray(z["delta"], dtype=np.float64)
        if reference.shape != (lo.shape[1],):
            raise JobError(f"reference has shape {reference.shape}, updates have dim {lo.shape[1]}")
    inference = (load_inference(job, lo.shape[1], int(getattr(policy, "inference_batch", 32)))
                 if policy_wants_inference(policy) else None)
    t_load = time.perf_counter() - started
    await mpc.start()
    if len(mpc.parties) > 1 and (mpc.pid != job["party"] or len(mpc.parties) != job["m"]
                                 or mpc.threshold != job["t"]):
        raise JobError(f"MPyC party {mpc.pid}/{len(mpc.parties)} t={mpc.threshold} does not match the job")
    kwargs = {"inference": inference} if inference is not None else {}
    res = await verify_and_aggregate(hi, lo, ns, policy, reference, str(job["seed"]), **kwargs)
    nbytes = bytes_sent()
    await mpc.shutdown()
    out = Path(job["output_path"])
    agg_path = out.with_name(out.name + ".aggregate.npz")
    with open(agg_path, "wb") as fh:
        np.savez(fh, delta=res.aggregate)
    model_path = model_sha = None
    if job.get("base_model_path") and res.outcome == "ok":
        data, model_sha = apply_delta(Path(job["base_model_path"]).read_bytes(), res.aggregate)
        model_path = out.with_name(out.name + ".model.safetensors")
        model_path.write_bytes(data)
    phases = {"load": t_load, **res.phases, "total": time.perf_counter() - started}
    return {
        "round_id": job["round_id"], "party": job["party"],
        "verdicts": {h: {"accept": ok, "reason": why} for h, (ok, why) in zip(ids, res.verdicts, strict=True)},
        "n_accepted": sum(ok for ok, _ in res.verdicts), "total_weight": res.total_weight,
        "outcome": res.outcome, "seed": res.seed,
        "aggregate_path": str(agg_path), "aggregate_sha256": delta_sha256(res.aggregate),
        "model_path": str(model_path) if model_path else None, "model_sha256": model_sha,
        "phases": phases, "bytes_sent": nbytes, "peak_rss_mb": peak_rss_mb(), "cpu_s": cpu_seconds(),
        "phases_cpu": res.phases_cpu,
    }


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
        job = load_job(path)
        result = mpc.run(run_job(job))
    except (JobError, ValueError, OSError, KeyError) as e:
        print(f"mpc_program: {e}", file=sys.stderr)
        try:
            job_d = json.loads(Path(path).read_text())
            _write_json(Path(job_d["output_path"]), {"round_id": job_d.get("round_id"),
                                                     "party": job_d.get("party"), "error": str(e)})
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return 2
    _write_json(Path(job["output_path"]), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
