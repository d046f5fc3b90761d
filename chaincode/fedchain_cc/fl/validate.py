"""Argument checking for the FL contract: every input is untrusted and checked before any write.

Why hand-written instead of a schema library: the chaincode is deployed alone with only
protos/grpcio/cryptography, and the rules are few and need exact, readable messages.
Every checker raises `ContractError` (the shim's: the dispatcher turns it into the error Response)
with a message that names the field and what was expected. The number of arguments of a
transaction is checked by the dispatcher from the method's signature.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

from fedchain_cc.canonical import canonical_text
from fedchain_cc.shim.contract import ContractError

MAX_ARG_BYTES = 64 * 1024  # every non-model argument
MAX_JSON_DEPTH = 6
MAX_FREEFORM_BYTES = 8 * 1024  # policy, hyperparameters, model spec
ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
MSP_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
HEX64_RE = re.compile(r"^[0-9a-f]{64}\Z")
REASON_RE = re.compile(r"^[a-z0-9_]{1,32}\Z")
ID_HINT = "[A-Za-z0-9_.-]{1,64}"  # for messages (\Z: no trailing newline sneaks through)
REASON_HINT = "[a-z0-9_]{1,32}"
MAX_ROUND_ID = 10**12
MAX_TIMESTAMP = 10**11  # unix seconds (year ~5000): bounds a deadline
MAX_INT = 2**53  # JSON-safe integers only
# AttestResult outcomes: "ok" publishes the aggregate; the others publish nothing (model_hash = the base model).
OUTCOME_OK = "ok"
OUTCOME_TOO_FEW = "too_few_accepted"  # fewer than min_accepted accepted: the nodes do not open the aggregate
OUTCOME_OUT_OF_RANGE = "aggregate_out_of_range"  # the opened aggregate failed the nodes' sanity check
OUTCOMES = (OUTCOME_OK, OUTCOME_TOO_FEW, OUTCOME_OUT_OF_RANGE)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(arg: str, what: str, *, max_bytes: int = MAX_ARG_BYTES) -> Any:
    """JSON with a size cap, no NaN/Infinity, bounded nesting."""
    if len(arg.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ContractError(f"{what} is larger than {max_bytes} bytes")
    try:
        value = json.loads(arg, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ContractError(f"{what} is not valid JSON ({exc})") from None
    _check_depth(value, what, 0)
    return value


def _check_depth(value: Any, what: str, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ContractError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, dict):
        for v in value.values():
            _check_depth(v, what, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_depth(v, what, depth + 1)


def obj(arg: str, what: str) -> dict[str, Any]:
    value = parse_json(arg, what)
    if not isinstance(value, dict):
        raise ContractError(f"{what} must be a JSON object, got {type_name(value)}")
    return value


def type_name(value: Any) -> str:
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
    return "object"


class Fields:
    """Typed access to a parsed JSON object; `done()` refuses fields nobody asked for (typos)."""

    def __init__(self, data: dict[str, Any], what: str) -> None:
        self.data = data
        self.what = what
        self.seen: set[str] = set()

    def _get(self, name: str, required: bool) -> Any:
        self.seen.add(name)
        if name not in self.data or self.data[name] is None:
            if required:
                raise ContractError(f"{self.what}: field '{name}' is required")
            return None
        return self.data[name]

    def integer(self, name: str, lo: int, hi: int, *, required: bool = True, default: int | None = None) -> int:
        value = self._get(name, required)
        if value is None:
            return default  # type: ignore[return-value]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ContractError(f"{self.what}: field '{name}' must be an integer, got {type_name(value)}")
        if not lo <= value <= hi:
            raise ContractError(f"{self.what}: field '{name}' must be in [{lo}, {hi}], got {value}")
        return value

    def number(self, name: str, lo: float, hi: float) -> float | int:
        value = self._get(name, True)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ContractError(f"{self.what}: field '{name}' must be a finite number, got {type_name(value)}")
        if not lo <= value <= hi:
            raise ContractError(f"{self.what}: field '{name}' must be in [{lo}, {hi}], got {value}")
        return value

    def match(self, name: str, pattern: re.Pattern[str], hint: str, *, required: bool = True) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ContractError(f"{self.what}: field '{name}' must be a string, got {type_name(value)}")
        if not pattern.match(value):
            raise ContractError(f"{self.what}: field '{name}' must be {hint}, got {value[:80]!r}")
        return value

    def text(self, name: str, max_len: int, *, required: bool = True, default: str = "") -> str:
        value = self._get(name, required)
        if value is None:
            return default
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise ContractError(f"{self.what}: field '{name}' must be a non-empty string of at most {max_len} chars")
        if "\x00" in value or "\U0010ffff" in value:
            raise ContractError(f"{self.what}: field '{name}' contains a reserved character")
        return value

    def array(self, name: str, max_len: int, *, required: bool = True) -> list[Any]:
        value = self._get(name, required)
        if value is None:
            return []
        if not isinstance(value, list):
            raise ContractError(f"{self.what}: field '{name}' must be an array, got {type_name(value)}")
        if len(value) > max_len:
            raise ContractError(f"{self.what}: field '{name}' has {len(value)} entries, at most {max_len} allowed")
        return value

    def object(self, name: str, *, required: bool = True) -> dict[str, Any] | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ContractError(f"{self.what}: field '{name}' must be a JSON object, got {type_name(value)}")
        return value

    def freeform(self, name: str, *, required: bool = True, scalars_only: bool = False) -> dict[str, Any] | None:
        """A JSON object stored as-is (policy, hyperparameters, model spec): bounded and plain."""
        value = self.object(name, required=required)
        if value is None:
            return None
        check_freeform(value, f"{self.what}: field '{name}'", scalars_only=scalars_only)
        return value

    def done(self) -> None:
        extra = sorted(set(self.data) - self.seen)
        if extra:
            raise ContractError(f"{self.what}: unknown field(s) {', '.join(map(repr, extra))}")


def check_freeform(value: dict[str, Any], what: str, *, scalars_only: bool) -> None:
    # Measured on the ASCII-escaped canonical text, as it always was: the same policies pass the cap
    # (a non-ASCII character counts as its \uXXXX escape here, though it is stored as UTF-8).
    size = len(canonical_text(value, ascii_only=True))
    if size > MAX_FREEFORM_BYTES:
        raise ContractError(f"{what} is {size} bytes of JSON, at most {MAX_FREEFORM_BYTES} allowed")
    for key, item in value.items():
        if not ID_RE.match(key):
            raise ContractError(f"{what}: key {key[:40]!r} must match {ID_HINT}")
        if isinstance(item, float) and not math.isfinite(item):
            raise ContractError(f"{what}: '{key}' must be finite")
        if isinstance(item, str | bool | int | float) or item is None:
            continue
        if scalars_only:
            raise ContractError(f"{what}: '{key}' must be a number, boolean or string, got {type_name(item)}")
        if isinstance(item, list) and all(isinstance(x, str | bool | int | float) for x in item):
            continue
        if isinstance(item, dict):
            check_freeform(item, f"{what}.{key}", scalars_only=True)
            continue
        raise ContractError(f"{what}: '{key}' must be a scalar, an array of scalars or a flat object")


def policy_min_accepted(policy: dict[str, Any], floor: int, hi: int, what: str) -> int | None:
    """A policy's `min_accepted`: None when absent, else an integer in [floor, hi] (floor = consortium minimum).

    The floor is a privacy bound (the aggregate of one update IS that update): a round may raise it, never lower it.
    """
    value = policy.get("min_accepted")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError(f"{what}.min_accepted must be an integer, got {type_name(value)}")
    if value < floor:
        raise ContractError(f"{what}.min_accepted {value} is below the consortium's minimum {floor}: an aggregate of "
                            f"fewer accepted updates would expose them (a round may raise the floor, never lower it)")
    if value > hi:
        raise ContractError(f"{what}.min_accepted {value} is above the maximum {hi}")
    return value


def round_id(arg: str, what: str = "round_id", lo: int = 1) -> int:
    """A round id given as a bare argument ("3")."""
    if not re.fullmatch(r"[0-9]{1,13}", arg or ""):
        raise ContractError(f"{what} must be a decimal integer, got {arg[:40]!r}")
    value = int(arg)
    if not lo <= value <= MAX_ROUND_ID:
        raise ContractError(f"{what} must be in [{lo}, {MAX_ROUND_ID}], got {value}")
    return value


def participant_id(arg: str, what: str = "participant id") -> str:
    if not isinstance(arg, str) or not ID_RE.match(arg):
        raise ContractError(f"{what} must match {ID_HINT}, got {str(arg)[:80]!r}")
    return arg


def model_bytes(arg: str, max_bytes: int, what: str = "model_b64") -> bytes:
    """Strict base64 (no whitespace, correct padding) with the size checked before decoding."""
    if len(arg) > 4 * ((max_bytes + 2) // 3):
        raise ContractError(
            f"{what} decodes to more than the consortium's model size limit of {max_bytes} bytes "
            f"(raise max_model_bytes in InitConsortium, up to the hard cap, or shrink the model)"
        )
    try:
        data = base64.b64decode(arg.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ContractError(f"{what} is not valid base64") from None
    if not data:
        raise ContractError(f"{what} is empty")
    if len(data) > max_bytes:
        raise ContractError(f"{what} is {len(data)} bytes, over the consortium's limit of {max_bytes} bytes")
    return data


# ------------------------------------------------------------------ public validation batch
# The encrypted-inference check's batch (fedchain.validation_batch): safetensors holding exactly
# images (uint8, B x 28 x 28 or B x 28 x 28 x 3) and labels (int64, B). The chaincode cannot import
# fedchain, so it reads the safetensors header itself: 8-byte little-endian header length, then JSON.
MAX_VALIDATION_BATCH = 4096  # fedchain.validation_batch.MAX_BATCH
DEFAULT_INFERENCE_BATCH = 32  # VerificationPolicy.inference_batch's default
VALIDATION_HEADER_ALLOWANCE = 512  # fedchain.validation_batch._HEADER_ALLOWANCE
_VALIDATION_LAYOUT = {"images": "U8", "labels": "I64"}


def validation_max_bytes(max_batch: int) -> int:
    """The largest canonical batch of at most `max_batch` RGB images (checked before base64 decoding)."""
    return VALIDATION_HEADER_ALLOWANCE + max_batch * (28 * 28 * 3 + 8)


def inference_settings(policy: dict[str, Any], what: str) -> tuple[bool, int]:
    """(inference_enabled, inference_batch) of a round policy; a value the nodes could not act on is refused."""
    enabled = policy.get("inference_enabled", False)
    if not isinstance(enabled, bool):
        raise ContractError(f"{what}.inference_enabled must be true or false, got {type_name(enabled)}")
    batch = policy.get("inference_batch", DEFAULT_INFERENCE_BATCH)
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_VALIDATION_BATCH:
        raise ContractError(f"{what}.inference_batch must be an integer in [1, {MAX_VALIDATION_BATCH}], "
                            f"got {str(batch)[:20]}")
    return enabled, batch


def validation_batch_size(data: bytes, max_batch: int, what: str = "validation batch") -> int:
    """B of a validation batch whose safetensors header has exactly the expected tensors, dtypes and shapes
    (B <= max_batch) and whose length is exactly header + tensor bytes. The hash binds the content; this
    keeps a batch no node could use (another layout, a bigger batch) off the ledger."""
    if len(data) < 8:
        raise ContractError(f"{what} is {len(data)} bytes: not a safetensors file")
    hlen = int.from_bytes(data[:8], "little")
    if hlen > VALIDATION_HEADER_ALLOWANCE or 8 + hlen > len(data):
        raise ContractError(f"{what}: safetensors header of {hlen} bytes is not a validation batch's")
    try:
        header = json.loads(data[8:8 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ContractError(f"{what}: safetensors header is not JSON") from None
    if not isinstance(header, dict) or sorted(header) != sorted(_VALIDATION_LAYOUT):
        keys = sorted(header)[:6] if isinstance(header, dict) else type_name(header)
        raise ContractError(f"{what} must hold exactly the tensors images and labels (no metadata), got {keys}")
    total = 0
    shapes: dict[str, list[Any]] = {}
    for name, dtype in _VALIDATION_LAYOUT.items():
        entry = header[name]
        if not isinstance(entry, dict) or entry.get("dtype") != dtype or not isinstance(entry.get("shape"), list):
            raise ContractError(f"{what}: tensor {name} must have dtype {dtype}")
        shape = entry["shape"]
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise ContractError(f"{what}: tensor {name} has a malformed shape")
        shapes[name] = shape
        n = 1
        for s in shape:
            n *= s
        total += n * (8 if dtype == "I64" else 1)
    images, labels = shapes["images"], shapes["labels"]
    if images[1:] not in ([28, 28], [28, 28, 3]) or labels != images[:1]:
        raise ContractError(f"{what}: images must be B x 28 x 28 (x 3) and labels B, got {images} and {labels}")
    b = images[0]
    if not 1 <= b <= max_batch:
        raise ContractError(f"{what} has {b} images; the round's policy.inference_batch allows 1 to {max_batch}")
    if len(data) != 8 + hlen + total:
        raise ContractError(f"{what} is {len(data)} bytes; its header describes {8 + hlen + total}")
    return b
