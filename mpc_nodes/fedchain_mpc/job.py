"""The MPC job and its result: what a node hands its MPyC party process and what the party hands back.

Why typed and in one module: the node (`node.RoundProcessor`) writes the job, another process
(`python -m fedchain_mpc.mpc_program`, started by `party_launcher`) reads it, and the node reads the
result back; both ends must agree on every field, so both use these classes and nothing else spells a
key. Loading is strict: a malformed job fails at once with a message naming the field.

Launch contract: JOB_ENV names the job file; PARENT_ENV (set by the launcher) is the node's pid, so the
party dies with its node.

Job file (JSON object, `MPCJob.to_json`; every key present, optional ones null):
    {
      "round_id": 7,                   # the ledger's round id (int)
      "party": 0,                      # this node's index i (must equal MPyC's -I)
      "shares": [                      # one per hospital, same order on every node
        {"hospital_id": "h1", "path": "/.../h1.share", "n_samples": 500,
         "sha256": "<hex, or null: checked against the file>"}
      ],
      "policy": {...},                 # fedchain.verification.VerificationPolicy JSON (the round's)
      "reference_path": "/.../ref.npz" | null,   # npz with array "delta" (float64, length dim); needed
                                       # when policy.cosine_enabled
      "base_model_path": "/.../base.safetensors" | null,  # then the new model is written; required with
                                       # validation_path (the base of w_base + delta_i)
      "validation_path": "/.../validation.safetensors" | null,  # only if policy.inference_enabled: the
                                       # round's public validation batch (fedchain.validation_batch bytes,
                                       # hash-checked by the node; decoded strictly by the program again)
      "model_spec": {...} | null,      # with validation_path: the round's model_spec (ModelSpec fields;
                                       # param_count and unknown keys are ignored)
      "l": 32, "f": 16, "t": 1, "m": 3,
      "seed": "<public ledger context (round, committed share hashes); the checks' randomness is
               generated jointly by the nodes inside the run and mixed with it>",
      "output_path": "/.../result.json"
    }
Share files are `fedchain.sharing` share bytes (parsed strictly by the program; the header must match
round_id, hospital_id, node_index=party, l, f, t, m, and all dims must agree).

Output file (JSON object at output_path, written atomically by every party; identical at every node
except timings and bytes), `JobResult.to_json`:
    {
      "round_id": 7, "party": 0,
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
      "phases": {"load": s, "seed": s, "local_products": s, <one per check stage of the pipeline>,
                 "aggregate": s, "total": s},
      "phases_cpu": {...},             # CPU seconds of this party per phase (same names)
      "bytes_sent": 12345,             # MPyC payload bytes this party sent
      "peak_rss_mb": 123.4,
      "cpu_s": 1.2                     # user + system CPU seconds of the party process
    }
On a bad job or share the program exits 2 with the message on stderr and writes a `JobFailure`
instead: {"round_id": <as in the job, or null>, "party": <same>, "error": "..."}.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fedchain.records import RecordError, RoundId, parse_round_id

JOB_ENV = "FEDCHAIN_MPC_JOB"  # names the job file of a party process
PARENT_ENV = "FEDCHAIN_MPC_PARENT"  # the launching node's pid: the party dies with it
FIXED_POINT = (32, 16)  # (l, f): the only fixed-point parameters the MPC checks support


class JobError(ValueError):
    """A job or result file, or a share a job names, is invalid (the message names the field)."""


def _field(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, *,
           optional: bool = False) -> Any:
    """raw[key] if it has type `kind` (bool is not an int here); None for a missing/null optional one."""
    value = raw.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        value = object()  # True is not a round id
    if not isinstance(value, kind):
        names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise JobError(f"{where}: field {key!r} must be {names}, got {type(raw.get(key)).__name__}")
    return value


def _exact_keys(raw: Any, cls: type, where: str, required: set[str]) -> dict[str, Any]:
    """raw as a dict with no key outside cls's fields and every required one present."""
    if not isinstance(raw, dict):
        raise JobError(f"{where} must be a JSON object, got {type(raw).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise JobError(f"{where} has unknown fields {sorted(unknown)}")
    missing = required - set(raw)
    if missing:
        raise JobError(f"{where} misses {sorted(missing)}")
    return raw


def _read_json(path: str | os.PathLike, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise JobError(f"cannot read {what} {path}: {exc}") from None


def _write_json_atomically(path: Path, obj: dict[str, Any]) -> None:
    """Whole file or nothing (a reader never sees half a result)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------- job
@dataclass(frozen=True)
class ShareInput:
    """One hospital's share at this node: the file, its ledger hash and the hospital's sample count."""

    hospital_id: str
    path: str
    n_samples: int
    sha256: str | None = None

    @classmethod
    def from_json(cls, raw: Any, where: str) -> ShareInput:
        raw = _exact_keys(raw, cls, where, {"hospital_id", "path", "n_samples"})
        out = cls(hospital_id=_field(raw, "hospital_id", str, where), path=_field(raw, "path", str, where),
                  n_samples=_field(raw, "n_samples", int, where), sha256=_field(raw, "sha256", str, where, optional=True))
        if not out.hospital_id:
            raise JobError(f"{where}: hospital_id is empty")
        if out.n_samples < 1:
            raise JobError(f"{where}: n_samples of {out.hospital_id} must be >= 1")
        return out


_JOB_REQUIRED = {"round_id", "party", "shares", "policy", "l", "f", "t", "m", "seed", "output_path"}


@dataclass(frozen=True)
class MPCJob:
    """One party's part of a round's MPC run (the schema is the module docstring)."""

    round_id: RoundId
    party: int
    shares: tuple[ShareInput, ...]
    policy: dict[str, Any]  # VerificationPolicy JSON: the program parses it with VerificationPolicy.from_json
    seed: str
    output_path: str
    t: int
    m: int
    l: int = FIXED_POINT[0]  # noqa: E741 - the fixed-point name
    f: int = FIXED_POINT[1]
    reference_path: str | None = None
    base_model_path: str | None = None
    validation_path: str | None = None
    model_spec: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["shares"] = [asdict(s) for s in self.shares]
        return out

    @classmethod
    def from_json(cls, raw: Any) -> MPCJob:
        """Strict: exact keys, exact types, parameters the checks support, a non-empty share list."""
        raw = _exact_keys(raw, cls, "job", _JOB_REQUIRED)
        ints = {k: _field(raw, k, int, "job") for k in ("round_id", "party", "t", "m", "l", "f")}
        if (ints["l"], ints["f"]) != FIXED_POINT:
            raise JobError(f"only l={FIXED_POINT[0]}, f={FIXED_POINT[1]} is supported by the MPC checks, "
                           f"got l={ints['l']}, f={ints['f']}")
        if not (0 <= ints["t"] and 2 * ints["t"] < ints["m"] and 0 <= ints["party"] < ints["m"]):
            raise JobError(f"job: need 2t < m and 0 <= party < m, got t={ints['t']}, m={ints['m']}, "
                           f"party={ints['party']}")
        try:
            ints["round_id"] = parse_round_id(ints["round_id"], what="job: round_id")
        except RecordError as exc:
            raise JobError(str(exc)) from None
        shares = _field(raw, "shares", list, "job")
        if not shares:
            raise JobError("job has no shares")
        parsed = tuple(ShareInput.from_json(s, f"job.shares[{i}]") for i, s in enumerate(shares))
        ids = [s.hospital_id for s in parsed]
        if len(set(ids)) != len(ids):
            raise JobError("duplicate hospital_id in job")
        return cls(**ints, shares=parsed, policy=_field(raw, "policy", dict, "job"), seed=_field(raw, "seed", str, "job"),
                   output_path=_field(raw, "output_path", str, "job"),
                   reference_path=_field(raw, "reference_path", str, "job", optional=True),
                   base_model_path=_field(raw, "base_model_path", str, "job", optional=True),
                   validation_path=_field(raw, "validation_path", str, "job", optional=True),
                   model_spec=_field(raw, "model_spec", dict, "job", optional=True))

    def write(self, path: Path) -> None:
        """The job file the party reads (durable: a restarted node compares it with the job it would run)."""
        from fedchain.durable import write_durably

        write_durably(path, json.dumps(self.to_json(), sort_keys=True, indent=1).encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> MPCJob:
        return cls.from_json(_read_json(path, "job"))


# ------------------------------------------------------------------------------------ result
@dataclass(frozen=True)
class Verdict:
    """The one bit (and reason code) the run reveals per hospital."""

    accept: bool
    reason: str


@dataclass(frozen=True)
class JobResult:
    """A party's output of a successful run (the schema is the module docstring)."""

    round_id: RoundId
    party: int
    verdicts: dict[str, Verdict]
    n_accepted: int
    total_weight: int
    outcome: str
    seed: str
    aggregate_path: str
    aggregate_sha256: str
    model_path: str | None = None
    model_sha256: str | None = None
    phases: dict[str, float] = field(default_factory=dict)
    phases_cpu: dict[str, float] = field(default_factory=dict)
    bytes_sent: int = 0
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0

    @property
    def accepted(self) -> list[str]:
        return sorted(h for h, v in self.verdicts.items() if v.accept)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> JobResult:
        where = "result"
        raw = _exact_keys(raw, cls, where, {"round_id", "party", "verdicts", "n_accepted", "total_weight", "outcome",
                                            "seed", "aggregate_path", "aggregate_sha256"})
        verdicts = {}
        for hid, v in _field(raw, "verdicts", dict, where).items():
            v = _exact_keys(v, Verdict, f"result.verdicts[{hid!r}]", {"accept", "reason"})
            verdicts[hid] = Verdict(_field(v, "accept", bool, f"verdict of {hid}"),
                                    _field(v, "reason", str, f"verdict of {hid}"))
        number = (int, float)
        return cls(round_id=RoundId(_field(raw, "round_id", int, where)), party=_field(raw, "party", int, where),
                   verdicts=verdicts, n_accepted=_field(raw, "n_accepted", int, where),
                   total_weight=_field(raw, "total_weight", int, where), outcome=_field(raw, "outcome", str, where),
                   seed=_field(raw, "seed", str, where), aggregate_path=_field(raw, "aggregate_path", str, where),
                   aggregate_sha256=_field(raw, "aggregate_sha256", str, where),
                   model_path=_field(raw, "model_path", str, where, optional=True),
                   model_sha256=_field(raw, "model_sha256", str, where, optional=True),
                   phases={k: float(v) for k, v in (_field(raw, "phases", dict, where, optional=True) or {}).items()},
                   phases_cpu={k: float(v) for k, v in
                               (_field(raw, "phases_cpu", dict, where, optional=True) or {}).items()},
                   bytes_sent=_field(raw, "bytes_sent", int, where, optional=True) or 0,
                   peak_rss_mb=float(_field(raw, "peak_rss_mb", number, where, optional=True) or 0.0),
                   cpu_s=float(_field(raw, "cpu_s", number, where, optional=True) or 0.0))

    def write(self, path: Path) -> None:
        _write_json_atomically(path, self.to_json())


@dataclass(frozen=True)
class JobFailure:
    """What a party that refused its job writes instead of a result (ids as far as the job file had them)."""

    round_id: RoundId | None
    party: int | None
    error: str

    def write(self, path: Path) -> None:
        _write_json_atomically(path, asdict(self))


def load_output(path: str | os.PathLike) -> JobResult | JobFailure:
    """A party's output file as what it is: a result or a failure. JobError if it is neither."""
    raw = _read_json(path, "MPC result")
    if isinstance(raw, dict) and "error" in raw:
        failure = _exact_keys(raw, JobFailure, "failure", {"error"})
        rid, party = failure.get("round_id"), failure.get("party")
        return JobFailure(RoundId(rid) if isinstance(rid, int) else None, party if isinstance(party, int) else None,
                          str(failure["error"]))
    return JobResult.from_json(raw)
