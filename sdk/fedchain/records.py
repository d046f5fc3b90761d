"""Typed, frozen records of what the FL chaincode (fedchain_cc.fl) returns: parsed once, at the client.

Why: the SDK used to pass the chaincode's JSON around as dicts, and every caller dug into it again
(`rnd["model_spec"]["param_count"]`, `(rnd.get("hyperparameters") or {}).get(...)`, `int(round_id)`),
each with its own idea of defaults and types. Here each record is checked once by `from_json`, which
raises `RecordError` naming the field when the JSON is not what the chaincode writes; afterwards the
fields have their types. Fields the chaincode may add later are tolerated and kept (`extra`), and
`to_json()` gives back exactly the JSON object the chaincode returned (reports, the explorer and the
audit print or compare it).

Freeform objects the operator chooses (a round's model_spec, hyperparameters and policy) are kept whole
(`to_json()`); the keys the SDK interprets get typed attributes, checked like the rest.

Shapes: see fedchain_cc.fl (package docstring) and fedchain_cc.fl.contract. Round 0 is the genesis
round (FINALIZED at birth, no base model, hyperparameters, policy or deadline).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, NewType, TypeVar

# --------------------------------------------------------------------------- round ids
RoundId = NewType("RoundId", int)
"""A round id: an int in [1, MAX_ROUND_ID] (0 only for the genesis round). The one type the SDK uses."""

MAX_ROUND_ID = 10**12  # fedchain_cc.fl.validate.MAX_ROUND_ID
GENESIS_ROUND_ID = RoundId(0)
_ROUND_ID_RE = re.compile(r"[0-9]{1,13}")

# --------------------------------------------------------------------------- round states
# OPEN -> CLOSED -> FINALIZED | FAILED | DISPUTED. Only FINALIZED has a model; FAILED (too few accepted
# updates to aggregate) and DISPUTED end the round without one, and the next round builds on the last
# FINALIZED model.
OPEN, CLOSED, FINALIZED, FAILED, DISPUTED = "OPEN", "CLOSED", "FINALIZED", "FAILED", "DISPUTED"
STATES = (OPEN, CLOSED, FINALIZED, FAILED, DISPUTED)
TERMINAL_STATES = (FINALIZED, FAILED, DISPUTED)
# AttestResult outcomes: "ok" publishes the aggregate; the others attest the base model.
OUTCOME_OK, OUTCOME_TOO_FEW, OUTCOME_OUT_OF_RANGE = "ok", "too_few_accepted", "aggregate_out_of_range"
OUTCOMES = (OUTCOME_OK, OUTCOME_TOO_FEW, OUTCOME_OUT_OF_RANGE)
ROLES = ("operator", "hospital", "mpc_node", "auditor")
DEFAULT_INFERENCE_BATCH = 32  # fedchain_cc.fl.validate.DEFAULT_INFERENCE_BATCH


class RecordError(ValueError):
    """Chaincode JSON that is not the record it should be (or a malformed round id); names the field."""


def parse_round_id(value: Any, *, what: str = "round id", genesis_ok: bool = False) -> RoundId:
    """An int or a decimal string in [1, MAX_ROUND_ID] ([0, ...] with genesis_ok) as a RoundId.

    Strict on purpose: no bools, floats, signs or whitespace, so "3", 3 and RoundId(3) are the one round 3
    and nothing else sneaks into a ledger argument or a file name."""
    lo = 0 if genesis_ok else 1
    if isinstance(value, bool):
        raise RecordError(f"{what} must be an integer, got a boolean")
    if isinstance(value, int):
        number = int(value)
    elif isinstance(value, str):
        if not _ROUND_ID_RE.fullmatch(value):
            raise RecordError(f"{what} must be a decimal integer, got {value[:40]!r}")
        number = int(value)
    else:
        # numpy integers and the like: anything that is exactly an integer (no floats)
        index = getattr(value, "__index__", None)
        if index is None:
            raise RecordError(f"{what} must be an integer or a decimal string, got {type(value).__name__}")
        number = int(index())
    if not lo <= number <= MAX_ROUND_ID:
        raise RecordError(f"{what} must be in [{lo}, {MAX_ROUND_ID}], got {number}")
    return RoundId(number)


# --------------------------------------------------------------------------- parsing helpers
_T = TypeVar("_T")
_MISSING = object()
STAMP_FIELDS = ("last_tx_creator", "last_tx_function")  # every stored record carries them (fedchain_cc.fl.tx)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _freeze(value: Any) -> Any:
    """A read-only deep copy of JSON: objects as mappingproxies, arrays as tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Plain JSON (dicts, lists) of something `_freeze` made."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


class _Reader:
    """Typed reads of one JSON object; every error names `what.field`."""

    def __init__(self, obj: Any, what: str) -> None:
        if not isinstance(obj, dict):
            raise RecordError(f"{what} must be a JSON object, got {_type_name(obj)}")
        self.obj = obj
        self.what = what

    def _fail(self, name: str, want: str, value: Any) -> RecordError:
        shown = f" {value!r}"[:60] if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
        return RecordError(f"{self.what}: field '{name}' must be {want}, got {_type_name(value)}{shown}")

    def get(self, name: str, required: bool) -> Any:
        if name not in self.obj:
            if required:
                raise RecordError(f"{self.what}: field '{name}' is missing")
            return _MISSING
        return self.obj[name]

    def integer(self, name: str, *, required: bool = True, nullable: bool = False, lo: int | None = None,
                default: Any = None) -> Any:
        value = self.get(name, required)
        if value is _MISSING or (value is None and nullable):
            return default if value is _MISSING else None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(name, "an integer" + (" or null" if nullable else ""), value)
        if lo is not None and value < lo:
            raise RecordError(f"{self.what}: field '{name}' must be at least {lo}, got {value}")
        return value

    def number(self, name: str, *, required: bool = True, nullable: bool = False, default: Any = None) -> Any:
        value = self.get(name, required)
        if value is _MISSING or (value is None and nullable):
            return default if value is _MISSING else None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self._fail(name, "a finite number" + (" or null" if nullable else ""), value)
        return value

    def string(self, name: str, *, required: bool = True, nullable: bool = False, default: Any = None) -> Any:
        value = self.get(name, required)
        if value is _MISSING or (value is None and nullable):
            return default if value is _MISSING else None
        if not isinstance(value, str):
            raise self._fail(name, "a string" + (" or null" if nullable else ""), value)
        return value

    def boolean(self, name: str, *, required: bool = True, default: Any = None) -> Any:
        value = self.get(name, required)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise self._fail(name, "true or false", value)
        return value

    def round_id(self, name: str = "round_id", *, required: bool = True, nullable: bool = False,
                 genesis_ok: bool = True) -> Any:
        value = self.get(name, required)
        if value is _MISSING or (value is None and nullable):
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(name, "an integer round id", value)
        return parse_round_id(value, what=f"{self.what}: field '{name}'", genesis_ok=genesis_ok)

    def strings(self, name: str, *, required: bool = True, nullable: bool = False) -> Any:
        value = self.get(name, required)
        if value is _MISSING or (value is None and nullable):
            return None
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise self._fail(name, "an array of strings" + (" or null" if nullable else ""), value)
        return tuple(value)

    def string_map(self, name: str, *, required: bool = True) -> Mapping[str, str]:
        value = self.get(name, required)
        if value is _MISSING:
            return MappingProxyType({})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self._fail(name, "an object of strings", value)
        return MappingProxyType(dict(value))

    def obj_field(self, name: str, *, required: bool = True, nullable: bool = False) -> Any:
        value = self.get(name, required)
        if value is _MISSING or (value is None and nullable):
            return None
        if not isinstance(value, dict):
            raise self._fail(name, "a JSON object" + (" or null" if nullable else ""), value)
        return value

    def extra(self, known: frozenset[str]) -> Mapping[str, Any]:
        return _freeze({k: v for k, v in self.obj.items() if k not in known})


def _base(r: _Reader, known: frozenset[str]) -> dict[str, Any]:
    """The common part of a record: the JSON exactly as the chaincode returned it (read-only), and the
    fields this module does not know yet (`extra`)."""
    return {"_raw": _freeze(r.obj), "extra": r.extra(known)}


@dataclass(frozen=True)
class _Record:
    """What every record has: the JSON object it was parsed from (`to_json` gives it back exactly)."""

    _raw: Mapping[str, Any] = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        """The JSON object the chaincode returned, as a fresh copy (reports, the explorer and the audit
        print and compare it)."""
        return _thaw(self._raw)


@dataclass(frozen=True)
class Stamp:
    """Who wrote a stored record last (fedchain_cc.fl.tx.Tx.put_json): `last_tx_creator` and `last_tx_function`."""

    msp_id: str | None
    participant: str | None
    function: str | None

    @classmethod
    def of(cls, r: _Reader) -> Stamp | None:
        creator = r.obj_field("last_tx_creator", required=False, nullable=True)
        function = r.string("last_tx_function", required=False, nullable=True)
        if creator is None:
            return None if function is None else cls(None, None, function)
        c = _Reader(creator, f"{r.what}.last_tx_creator")
        return cls(c.string("msp_id", required=False, nullable=True),
                   c.string("participant", required=False, nullable=True), function)


def _list_of(cls: Any, obj: Any, what: str) -> list[Any]:
    if not isinstance(obj, list):
        raise RecordError(f"{what} must be a JSON array, got {_type_name(obj)}")
    return [cls.from_json(item, f"{what}[{i}]") for i, item in enumerate(obj)]


# --------------------------------------------------------------------------- consortium
@dataclass(frozen=True)
class Head(_Record):
    """The head pointer: last round id, last finalized round, its model hash and parameter count
    (what CreateRound builds on). Before the genesis model the last three are None."""

    extra: Mapping[str, Any] = field(repr=False)
    last_round_id: RoundId
    finalized_round_id: RoundId | None
    model_hash: str | None
    param_count: int | None
    stamp: Stamp | None = field(default=None, repr=False)

    KNOWN: ClassVar[frozenset[str]] = frozenset({"last_round_id", "finalized_round_id", "model_hash", "param_count",
                                                  *STAMP_FIELDS})

    @classmethod
    def from_json(cls, obj: Any, what: str = "head") -> Head:
        r = _Reader(obj, what)
        return cls(**_base(r, cls.KNOWN), last_round_id=r.round_id("last_round_id"),
                   finalized_round_id=r.round_id("finalized_round_id", nullable=True),
                   model_hash=r.string("model_hash", nullable=True),
                   param_count=r.integer("param_count", nullable=True, lo=1), stamp=Stamp.of(r))


@dataclass(frozen=True)
class MpcNode(_Record):
    """One MPC node of the consortium; its position (node_index) is its share index."""

    extra: Mapping[str, Any] = field(repr=False)
    id: str
    msp_id: str
    identity: str
    node_index: int

    KNOWN: ClassVar[frozenset[str]] = frozenset({"id", "msp_id", "identity", "node_index"})

    @classmethod
    def from_json(cls, obj: Any, what: str = "mpc node") -> MpcNode:
        r = _Reader(obj, what)
        return cls(**_base(r, cls.KNOWN), id=r.string("id"), msp_id=r.string("msp_id"),
                   identity=r.string("identity"), node_index=r.integer("node_index", lo=0))


@dataclass(frozen=True)
class Consortium(_Record):
    """GetConsortium: the InitConsortium configuration plus the head pointer. `min_accepted` and
    `max_clock_skew_s` are None for consortia initialized before those fields existed (the chaincode then
    uses 3 and 900: see `min_accepted_floor`)."""

    extra: Mapping[str, Any] = field(repr=False)
    name: str
    mpc_nodes: tuple[MpcNode, ...]
    threshold: int
    quorum: int
    max_model_bytes: int
    default_policy: Policy
    min_accepted: int | None
    max_clock_skew_s: int | None
    initialized_at: float | None
    head: Head | None
    stamp: Stamp | None = field(default=None, repr=False)

    KNOWN: ClassVar[frozenset[str]] = frozenset({"name", "mpc_nodes", "threshold", "quorum", "max_model_bytes",
                                                  "default_policy", "min_accepted", "max_clock_skew_s",
                                                  "initialized_at", "head", *STAMP_FIELDS})
    DEFAULT_MIN_ACCEPTED: ClassVar[int] = 3  # fedchain_cc.fl.contract.DEFAULT_MIN_ACCEPTED
    DEFAULT_MAX_CLOCK_SKEW_S: ClassVar[int] = 900  # fedchain_cc.fl.contract.DEFAULT_MAX_CLOCK_SKEW_S

    @classmethod
    def from_json(cls, obj: Any, what: str = "consortium") -> Consortium:
        r = _Reader(obj, what)
        head = r.obj_field("head", required=False)
        nodes = r.get("mpc_nodes", True)
        return cls(**_base(r, cls.KNOWN), name=r.string("name"),
                   mpc_nodes=tuple(_list_of(MpcNode, nodes, f"{what}.mpc_nodes")),
                   threshold=r.integer("threshold", lo=1), quorum=r.integer("quorum", lo=1),
                   max_model_bytes=r.integer("max_model_bytes", lo=1),
                   default_policy=Policy.from_json(r.obj_field("default_policy", required=False) or {},
                                                   f"{what}.default_policy", checked=False),
                   min_accepted=r.integer("min_accepted", required=False, lo=1),
                   max_clock_skew_s=r.integer("max_clock_skew_s", required=False, lo=0),
                   initialized_at=r.number("initialized_at", required=False),
                   head=None if head is None else Head.from_json(head, f"{what}.head"), stamp=Stamp.of(r))

    @property
    def min_accepted_floor(self) -> int:
        """The privacy floor the chaincode applies (3 for consortia initialized before the field)."""
        return self.DEFAULT_MIN_ACCEPTED if self.min_accepted is None else self.min_accepted

    def node(self, node_id: str) -> MpcNode | None:
        return next((n for n in self.mpc_nodes if n.id == node_id), None)


# --------------------------------------------------------------------------- participants
@dataclass(frozen=True)
class Participant(_Record):
    """A registered participant. `sample_cap` only for hospitals, `node_index` only for MPC nodes."""

    extra: Mapping[str, Any] = field(repr=False)
    id: str
    role: str
    msp_id: str
    identity: str
    registered_at: float | None
    sample_cap: int | None = None
    node_index: int | None = None
    stamp: Stamp | None = field(default=None, repr=False)

    KNOWN: ClassVar[frozenset[str]] = frozenset({"id", "role", "msp_id", "identity", "registered_at", "sample_cap",
                                                  "node_index", *STAMP_FIELDS})

    @classmethod
    def from_json(cls, obj: Any, what: str = "participant") -> Participant:
        r = _Reader(obj, what)
        return cls(**_base(r, cls.KNOWN), id=r.string("id"), role=r.string("role"),
                   msp_id=r.string("msp_id"), identity=r.string("identity"),
                   registered_at=r.number("registered_at", required=False),
                   sample_cap=r.integer("sample_cap", required=False, lo=1),
                   node_index=r.integer("node_index", required=False, lo=0), stamp=Stamp.of(r))


# --------------------------------------------------------------------------- a round's freeform parts
@dataclass(frozen=True)
class ModelSpecRecord(_Record):
    """A round's (or a model's) model_spec: freeform for the chaincode except param_count, which it checks.
    `fields` is the spec without param_count (what fedchain.models.ModelSpec is built from)."""

    param_count: int
    arch: str | None

    @classmethod
    def from_json(cls, obj: Any, what: str = "model_spec") -> ModelSpecRecord:
        r = _Reader(obj, what)
        return cls(_raw=_freeze(obj), param_count=r.integer("param_count", lo=1),
                   arch=r.string("arch", required=False))

    @property
    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_json().items() if k != "param_count"}


class _CheckedKey:
    """A typed key of a freeform object, checked when read (`_Reader.string` / `_Reader.integer`, nullable,
    absent = None): the value of `obj.<name>` or a RecordError naming the key."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        reader = _Reader(dict(obj._raw), obj._what)
        return getattr(reader, self.kind)(self.name, required=False, nullable=True)


@dataclass(frozen=True)
class Hyperparameters(_Record):
    """A round's hyperparameters: freeform for the chaincode (it checks only validation_sha256). Typed here:
    the keys the SDK reads (the FLTrust reference and validation batch declarations and what lets anyone
    recompute them); `to_json()` is the whole object (the training settings are read by TrainConfig).

    Why the typed keys are checked when read, not when the round is parsed: the chaincode stores these keys
    unchecked, so a round created by hand with one mistyped key must not make every round listing
    unreadable (explorer, nodes, campaign). Whoever needs that key gets a RecordError naming it."""

    _what: str = field(default="hyperparameters", repr=False, compare=False)

    @classmethod
    def from_json(cls, obj: Any, what: str = "hyperparameters") -> Hyperparameters:
        _Reader(obj, what)  # must be a JSON object
        return cls(_raw=_freeze(obj), _what=what)

    reference_sha256 = _CheckedKey("string")
    validation_sha256 = _CheckedKey("string")
    root_sha256 = _CheckedKey("string")
    seed = _CheckedKey("integer")
    reference_seed = _CheckedKey("integer")
    root_size = _CheckedKey("integer")
    root_seed = _CheckedKey("integer")
    validation_size = _CheckedKey("integer")
    validation_seed = _CheckedKey("integer")

    def get(self, key: str, default: Any = None) -> Any:
        """Any key as stored (for keys this class does not type, e.g. the training settings)."""
        return _thaw(self._raw.get(key, default))


@dataclass(frozen=True)
class Policy(_Record):
    """A round's verification policy (or the consortium's default): freeform scalars for the chaincode,
    which checks min_accepted, inference_enabled and inference_batch. `cosine_enabled` defaults to True
    and is read as the MPC nodes read it (truthiness); `to_json()` is the whole policy (the nodes'
    VerificationPolicy reads the rest)."""

    min_accepted: int | None = None
    cosine_enabled: bool = True
    inference_enabled: bool = False
    inference_batch: int = DEFAULT_INFERENCE_BATCH

    @classmethod
    def from_json(cls, obj: Any, what: str = "policy", *, checked: bool = True) -> Policy:
        """`checked`: the chaincode checked the typed keys (a round's policy, by CreateRound), so a wrong type
        is malformed data (RecordError). The consortium's default_policy is checked for min_accepted only; its
        other typed keys fall back to their defaults when mistyped (every CreateRound without a policy of its
        own refuses such a default), so that GetConsortium stays readable."""
        r = _Reader(obj, what)

        def typed(read: Any, name: str, default: Any, **kw: Any) -> Any:
            try:
                return read(name, required=False, default=default, **kw)
            except RecordError:
                if checked:
                    raise
                return default

        return cls(_raw=_freeze(obj), min_accepted=r.integer("min_accepted", required=False),
                   cosine_enabled=bool(obj.get("cosine_enabled", True)),
                   inference_enabled=typed(r.boolean, "inference_enabled", False),
                   inference_batch=typed(r.integer, "inference_batch", DEFAULT_INFERENCE_BATCH, lo=1))

    def get(self, key: str, default: Any = None) -> Any:
        """Any key as stored (for keys this class does not type)."""
        return _thaw(self._raw.get(key, default))


@dataclass(frozen=True)
class MpcSettings(_Record):
    """The MPC nodes, threshold and quorum a round was created with (copied from the consortium)."""

    nodes: tuple[str, ...]
    threshold: int
    quorum: int

    @classmethod
    def from_json(cls, obj: Any, what: str = "mpc") -> MpcSettings:
        r = _Reader(obj, what)
        return cls(_raw=_freeze(obj), nodes=r.strings("nodes"), threshold=r.integer("threshold"),
                   quorum=r.integer("quorum"))


@dataclass(frozen=True)
class NodeClaim(_Record):
    """What one node attested, as recorded in the round (round.attestations[node id]); records written
    before `outcome` existed claimed "ok"."""

    model_hash: str
    accepted: tuple[str, ...]
    outcome: str
    tx_id: str | None

    @classmethod
    def from_json(cls, obj: Any, what: str = "claim") -> NodeClaim:
        r = _Reader(obj, what)
        return cls(_raw=_freeze(obj), model_hash=r.string("model_hash"),
                   accepted=r.strings("accepted"), outcome=r.string("outcome", required=False, default=OUTCOME_OK),
                   tx_id=r.string("tx_id", required=False, nullable=True))


@dataclass(frozen=True)
class RoundResult(_Record):
    """What a quorum agreed on: round.finalized (FINALIZED) or round.agreed (FAILED, or DISPUTED as
    aggregate_out_of_range). The genesis round's has no report_hash (null) and no outcome."""

    model_hash: str
    accepted: tuple[str, ...]
    rejected: Mapping[str, str]
    report_hash: str | None
    outcome: str

    @classmethod
    def from_json(cls, obj: Any, what: str = "result") -> RoundResult:
        r = _Reader(obj, what)
        return cls(_raw=_freeze(obj), model_hash=r.string("model_hash"),
                   accepted=r.strings("accepted"), rejected=r.string_map("rejected", required=False),
                   report_hash=r.string("report_hash", required=False, nullable=True),
                   outcome=r.string("outcome", required=False, default=OUTCOME_OK))


# --------------------------------------------------------------------------- rounds
@dataclass(frozen=True)
class Round(_Record):
    """A round record (GetRound / ListRounds). The genesis round (round 0, `genesis` True) has only
    round_id, state, model_spec, finalized and the timestamps: its base_model_hash, base_round_id,
    deadline, min_updates, mpc and created_tx_id are None and its hyperparameters and policy empty."""

    extra: Mapping[str, Any] = field(repr=False)
    round_id: RoundId
    state: str
    model_spec: ModelSpecRecord
    hyper: Hyperparameters
    policy: Policy
    genesis: bool = False
    base_model_hash: str | None = None
    base_round_id: RoundId | None = None
    deadline: float | None = None
    min_updates: int | None = None
    mpc: MpcSettings | None = None
    created_at: float | None = None
    created_tx_id: str | None = None
    closed_at: float | None = None
    submitted: tuple[str, ...] | None = None
    attestations: Mapping[str, NodeClaim] = field(default_factory=lambda: MappingProxyType({}))
    finalized: RoundResult | None = None
    finalized_at: float | None = None
    agreed: RoundResult | None = None
    dissent: tuple[str, ...] = ()
    failed_at: float | None = None
    failure_reason: str | None = None
    disputed_at: float | None = None
    dispute_reason: str | None = None
    stamp: Stamp | None = field(default=None, repr=False)

    KNOWN: ClassVar[frozenset[str]] = frozenset({
        "round_id", "state", "genesis", "base_model_hash", "base_round_id", "model_spec", "hyperparameters",
        "policy", "deadline", "min_updates", "created_at", "created_tx_id", "mpc", "closed_at", "submitted",
        "attestations", "finalized", "finalized_at", "agreed", "dissent", "failed_at", "failure_reason",
        "disputed_at", "dispute_reason", *STAMP_FIELDS})

    @classmethod
    def from_json(cls, obj: Any, what: str | None = None) -> Round:
        rid = obj.get("round_id") if isinstance(obj, dict) else None
        what = what or (f"round {rid}" if isinstance(rid, int) and not isinstance(rid, bool) else "round")
        r = _Reader(obj, what)
        genesis = r.boolean("genesis", required=False, default=False)
        state = r.string("state")
        if state not in STATES:
            raise RecordError(f"{what}: field 'state' must be one of {', '.join(STATES)}, got {state[:40]!r}")
        claims = r.obj_field("attestations", required=False) or {}
        finalized = r.obj_field("finalized", required=False, nullable=True)
        agreed = r.obj_field("agreed", required=False, nullable=True)
        mpc = r.obj_field("mpc", required=False)
        return cls(
            **_base(r, cls.KNOWN), round_id=r.round_id(), state=state, genesis=genesis,
            model_spec=ModelSpecRecord.from_json(r.obj_field("model_spec"), f"{what}: model_spec"),
            hyper=Hyperparameters.from_json(r.obj_field("hyperparameters", required=False, nullable=True) or {},
                                            f"{what}: hyperparameters"),
            policy=Policy.from_json(r.obj_field("policy", required=False, nullable=True) or {}, f"{what}: policy"),
            base_model_hash=r.string("base_model_hash", required=not genesis),
            base_round_id=r.round_id("base_round_id", required=not genesis),
            deadline=r.number("deadline", required=not genesis),
            min_updates=r.integer("min_updates", required=not genesis, lo=1),
            mpc=None if mpc is None else MpcSettings.from_json(mpc, f"{what}: mpc"),
            created_at=r.number("created_at", required=False, nullable=True),
            created_tx_id=r.string("created_tx_id", required=False, nullable=True),
            closed_at=r.number("closed_at", required=False, nullable=True),
            submitted=r.strings("submitted", required=False, nullable=True),
            attestations=MappingProxyType({node: NodeClaim.from_json(c, f"{what}: attestations.{node}")
                                           for node, c in claims.items()}),
            finalized=None if finalized is None else RoundResult.from_json(finalized, f"{what}: finalized"),
            finalized_at=r.number("finalized_at", required=False, nullable=True),
            agreed=None if agreed is None else RoundResult.from_json(agreed, f"{what}: agreed"),
            dissent=r.strings("dissent", required=False) or (),
            failed_at=r.number("failed_at", required=False, nullable=True),
            failure_reason=r.string("failure_reason", required=False, nullable=True),
            disputed_at=r.number("disputed_at", required=False, nullable=True),
            dispute_reason=r.string("dispute_reason", required=False, nullable=True),
            stamp=Stamp.of(r))

    @property
    def over(self) -> bool:
        """Reached a terminal state (FINALIZED, FAILED or DISPUTED)."""
        return self.state in TERMINAL_STATES

    @property
    def min_accepted(self) -> int:
        """The round's privacy floor (policy.min_accepted; 0 for rounds created before the field), as the
        chaincode reads it."""
        return self.policy.min_accepted or 0

    @property
    def result(self) -> RoundResult | None:
        """What a quorum agreed on: `finalized` for a FINALIZED round, else `agreed` (FAILED and
        aggregate_out_of_range disputes), None before that or for an 'attestations differ' dispute."""
        return self.finalized if self.state == FINALIZED else self.agreed


# --------------------------------------------------------------------------- updates, attestations, models
@dataclass(frozen=True)
class Update(_Record):
    """A hospital's SubmitUpdate record (GetUpdates): share_hashes[j] belongs to MPC node j."""

    extra: Mapping[str, Any] = field(repr=False)
    round_id: RoundId
    hospital: str
    msp_id: str
    share_hashes: tuple[str, ...]
    n_samples: int
    dim: int
    submitted_at: float | None
    tx_id: str | None
    stamp: Stamp | None = field(default=None, repr=False)

    KNOWN: ClassVar[frozenset[str]] = frozenset({"round_id", "hospital", "msp_id", "share_hashes", "n_samples",
                                                  "dim", "submitted_at", "tx_id", *STAMP_FIELDS})

    @classmethod
    def from_json(cls, obj: Any, what: str = "update") -> Update:
        r = _Reader(obj, what)
        return cls(**_base(r, cls.KNOWN), round_id=r.round_id(genesis_ok=False), hospital=r.string("hospital"),
                   msp_id=r.string("msp_id"), share_hashes=r.strings("share_hashes"),
                   n_samples=r.integer("n_samples", lo=1), dim=r.integer("dim", lo=1),
                   submitted_at=r.number("submitted_at", required=False, nullable=True),
                   tx_id=r.string("tx_id", required=False, nullable=True), stamp=Stamp.of(r))


@dataclass(frozen=True)
class Attestation(_Record):
    """An MPC node's AttestResult record (attest~round~node; GetHistory "attestation")."""

    extra: Mapping[str, Any] = field(repr=False)
    round_id: RoundId
    node: str
    node_index: int
    model_hash: str
    accepted: tuple[str, ...]
    rejected: Mapping[str, str]
    outcome: str
    report_hash: str
    attested_at: float | None
    tx_id: str | None
    stamp: Stamp | None = field(default=None, repr=False)

    KNOWN: ClassVar[frozenset[str]] = frozenset({"round_id", "node", "node_index", "model_hash", "accepted",
                                                  "rejected", "outcome", "report_hash", "attested_at", "tx_id",
                                                  *STAMP_FIELDS})

    @classmethod
    def from_json(cls, obj: Any, what: str = "attestation") -> Attestation:
        r = _Reader(obj, what)
        return cls(**_base(r, cls.KNOWN), round_id=r.round_id(genesis_ok=False), node=r.string("node"),
                   node_index=r.integer("node_index", lo=0), model_hash=r.string("model_hash"),
                   accepted=r.strings("accepted"), rejected=r.string_map("rejected", required=False),
                   outcome=r.string("outcome", required=False, default=OUTCOME_OK),
                   report_hash=r.string("report_hash"),
                   attested_at=r.number("attested_at", required=False, nullable=True),
                   tx_id=r.string("tx_id", required=False, nullable=True), stamp=Stamp.of(r))


@dataclass(frozen=True)
class ModelRecord(_Record):
    """GetModel: a model's metadata and bytes. `model` is the decoded model_b64 (FLClient.get_model checks it
    against sha256 and size before it returns the record); `to_json()` still has model_b64."""

    extra: Mapping[str, Any] = field(repr=False)
    round_id: RoundId
    sha256: str
    size: int
    model_spec: ModelSpecRecord
    model: bytes = field(repr=False)

    KNOWN: ClassVar[frozenset[str]] = frozenset({"round_id", "sha256", "size", "model_spec", "model_b64"})

    @classmethod
    def from_json(cls, obj: Any, what: str = "model") -> ModelRecord:
        r = _Reader(obj, what)
        data = _b64_field(r, "model_b64")
        return cls(**_base(r, cls.KNOWN), round_id=r.round_id(), sha256=r.string("sha256"),
                   size=r.integer("size", lo=0),
                   model_spec=ModelSpecRecord.from_json(r.obj_field("model_spec"), f"{what}: model_spec"),
                   model=data)


def _b64_field(r: _Reader, name: str) -> bytes:
    import base64
    import binascii

    text = r.string(name)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RecordError(f"{r.what}: field '{name}' is not valid base64") from None


@dataclass(frozen=True)
class BlobRecord(_Record):
    """GetReference / GetValidationBatch: a public input CreateRound declared, with its bytes (`data`, the
    decoded base64 field). `batch` (images) only for validation batches. FLClient checks the bytes against
    sha256, size and the round's declared hash before it returns them."""

    extra: Mapping[str, Any] = field(repr=False)
    round_id: RoundId
    sha256: str
    size: int
    data: bytes = field(repr=False)
    batch: int | None = None

    B64_FIELD: ClassVar[str] = ""
    KNOWN: ClassVar[frozenset[str]] = frozenset({"round_id", "sha256", "size", "batch"})

    @classmethod
    def from_json(cls, obj: Any, what: str | None = None) -> BlobRecord:
        r = _Reader(obj, what or cls.__name__)
        return cls(**_base(r, cls.KNOWN | {cls.B64_FIELD}), round_id=r.round_id(genesis_ok=False),
                   sha256=r.string("sha256"), size=r.integer("size", lo=0), data=_b64_field(r, cls.B64_FIELD),
                   batch=r.integer("batch", required=False, lo=1))


@dataclass(frozen=True)
class ReferenceRecord(BlobRecord):
    """GetReference: the round's FLTrust reference (float32 little-endian, param_count values)."""

    B64_FIELD: ClassVar[str] = "reference_b64"


@dataclass(frozen=True)
class ValidationBatchRecord(BlobRecord):
    """GetValidationBatch: the round's public validation batch (fedchain.validation_batch bytes)."""

    B64_FIELD: ClassVar[str] = "validation_b64"


@dataclass(frozen=True)
class HistoryEntry(_Record):
    """One change of a key (GetHistory), newest first. `value` is the record as it was then (plain JSON,
    None for a delete or a non-JSON value); `record(cls)` parses it, e.g. `entry.record(Round)`."""

    extra: Mapping[str, Any] = field(repr=False)
    tx_id: str
    timestamp: float | None
    is_delete: bool
    creator: Mapping[str, Any] | None
    function: str | None

    KNOWN: ClassVar[frozenset[str]] = frozenset({"tx_id", "timestamp", "is_delete", "creator", "function", "value"})

    @classmethod
    def from_json(cls, obj: Any, what: str = "history entry") -> HistoryEntry:
        r = _Reader(obj, what)
        creator = r.obj_field("creator", required=False, nullable=True)
        r.get("value", True)
        return cls(**_base(r, cls.KNOWN), tx_id=r.string("tx_id"),
                   timestamp=r.number("timestamp", required=False, nullable=True),
                   is_delete=r.boolean("is_delete", required=False, default=False),
                   creator=None if creator is None else _freeze(creator),
                   function=r.string("function", required=False, nullable=True))

    @property
    def value(self) -> Any:
        """The stored value at that point (plain JSON, a fresh copy)."""
        return _thaw(self._raw.get("value"))

    def record(self, cls: type[_T]) -> _T | None:
        """The value parsed as `cls` (Round, Participant, Update, Attestation, ...); None for a delete."""
        value = self.value
        return None if value is None else cls.from_json(value, f"{self.function or 'history'} {self.tx_id}")  # type: ignore[attr-defined]


__all__ = [
    "CLOSED", "DISPUTED", "FAILED", "FINALIZED", "GENESIS_ROUND_ID", "MAX_ROUND_ID", "OPEN", "OUTCOMES", "OUTCOME_OK",
    "OUTCOME_OUT_OF_RANGE", "OUTCOME_TOO_FEW", "ROLES", "STATES", "TERMINAL_STATES", "Attestation", "BlobRecord",
    "Consortium",
    "Head", "HistoryEntry", "Hyperparameters", "ModelRecord", "ModelSpecRecord", "MpcNode", "MpcSettings",
    "NodeClaim", "Participant", "Policy", "RecordError", "ReferenceRecord", "Round", "RoundId", "RoundResult", "Stamp",
    "Update", "ValidationBatchRecord", "parse_round_id",
]
