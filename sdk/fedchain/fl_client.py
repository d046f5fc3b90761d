"""Typed client of the FL chaincode (fedchain_cc.fl): dicts in, dicts out, SubmitResult for submits.

One place that knows the contract's function names and argument encoding, used by the
operator CLI, the MPC nodes and the hospitals. It wraps a gateway `Contract` (anything with
`submit(fn, *args, transient=None) -> SubmitResult` and `evaluate(fn, *args) -> bytes`), so it
works the same on the embedded network and on real Fabric.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from fedchain.identity import Identity, SigningIdentity

log = logging.getLogger(__name__)

# Operator/MPC transactions can lose an MVCC race against a sibling (parallel attestations, a close
# racing a late submission, a publish racing a late attestation); re-endorsing sees the winner.
RETRYABLE_CODES = ("MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT")

# Round states (fedchain_cc.fl): OPEN -> CLOSED -> FINALIZED | FAILED | DISPUTED. Only FINALIZED has a
# model; FAILED (too few accepted updates to aggregate) and DISPUTED end the round without one, and the
# next round builds on the last FINALIZED model.
TERMINAL_STATES = ("FINALIZED", "FAILED", "DISPUTED")
# AttestResult outcomes: "ok" publishes the aggregate; the others attest the base model.
OUTCOMES = ("ok", "too_few_accepted", "aggregate_out_of_range")


class ContractLike(Protocol):
    def submit(self, function: str, *args: str | bytes, transient: dict[str, bytes] | None = None) -> Any: ...

    def evaluate(self, function: str, *args: str | bytes) -> bytes: ...


class ModelIntegrityError(Exception):
    """The model bytes from the ledger do not hash to the recorded SHA-256."""


def fabric_id(identity: Identity | SigningIdentity) -> str:
    """The 'x509::<subject>::<issuer>' string the chaincode binds a participant to."""
    ident = identity.identity if isinstance(identity, SigningIdentity) else identity
    return ident.fabric_id


def participant_entry(pid: str, identity: Identity | SigningIdentity, role: str,
                      sample_cap: int | None = None) -> dict[str, Any]:
    """RegisterParticipant argument for an identity (hospitals need a sample_cap)."""
    entry: dict[str, Any] = {"id": pid, "role": role, "msp_id": identity.msp_id, "identity": fabric_id(identity)}
    if sample_cap is not None:
        entry["sample_cap"] = sample_cap
    return entry


def mpc_node_entry(node_id: str, identity: Identity | SigningIdentity) -> dict[str, Any]:
    """One element of InitConsortium's mpc_nodes (its position is the node index)."""
    return {"id": node_id, "msp_id": identity.msp_id, "identity": fabric_id(identity)}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def result_json(result: Any) -> Any:
    """The JSON payload of a SubmitResult (or raw bytes)."""
    raw = result.result if hasattr(result, "result") else result
    return json.loads(raw) if raw else None


class FLClient:
    def __init__(self, contract: ContractLike, *, retries: int = 4, retry_delay_s: float = 0.2) -> None:
        self.contract = contract
        self.retries = retries
        self.retry_delay_s = retry_delay_s

    # ---------------------------------------------------------------- plumbing
    def _submit(self, fn: str, *args: str, retry: bool = False) -> Any:
        attempt = 0
        while True:
            try:
                return self.contract.submit(fn, *args)
            except Exception as exc:
                code = getattr(exc, "validation_code_name", None)
                if not retry or code not in RETRYABLE_CODES or attempt >= self.retries:
                    raise
                attempt += 1
                log.info("%s lost an MVCC race (%s); re-endorsing (attempt %d)", fn, code, attempt + 1)
                time.sleep(self.retry_delay_s * attempt)

    def _query(self, fn: str, *args: str) -> Any:
        raw = self.contract.evaluate(fn, *args)
        return json.loads(raw) if raw else None

    # ------------------------------------------------------------- transactions
    def init_consortium(self, config: dict[str, Any]) -> Any:
        return self._submit("InitConsortium", _json(config))

    def register_participant(self, participant: dict[str, Any]) -> Any:
        return self._submit("RegisterParticipant", _json(participant))

    def publish_genesis_model(self, spec: dict[str, Any], model: bytes) -> Any:
        return self._submit("PublishGenesisModel", _json(spec), base64.b64encode(model).decode("ascii"))

    def create_round(self, round_spec: dict[str, Any]) -> Any:
        return self._submit("CreateRound", _json(round_spec))

    def submit_update(self, update: dict[str, Any]) -> Any:
        return self._submit("SubmitUpdate", _json(update))

    def close_round(self, round_id: int) -> Any:
        return self._submit("CloseRound", str(int(round_id)), retry=True)

    def attest_result(self, attestation: dict[str, Any]) -> Any:
        """{round_id, model_hash, accepted, rejected, report_hash, outcome? (one of OUTCOMES, default "ok")}."""
        return self._submit("AttestResult", _json(attestation), retry=True)

    def publish_model(self, round_id: int, model: bytes) -> Any:
        return self._submit("PublishModel", str(int(round_id)), base64.b64encode(model).decode("ascii"), retry=True)

    # ------------------------------------------------------------------ queries
    def get_consortium(self) -> dict[str, Any]:
        return self._query("GetConsortium")

    def get_participant(self, pid: str) -> dict[str, Any]:
        return self._query("GetParticipant", pid)

    def list_participants(self, role: str | None = None) -> list[dict[str, Any]]:
        return self._query("ListParticipants", *([role] if role else []))

    def get_round(self, round_id: int) -> dict[str, Any]:
        return self._query("GetRound", str(int(round_id)))

    def list_rounds(self) -> list[dict[str, Any]]:
        return self._query("ListRounds")

    def get_updates(self, round_id: int) -> list[dict[str, Any]]:
        return self._query("GetUpdates", str(int(round_id)))

    def get_model(self, round_id: int) -> dict[str, Any]:
        """Model record with `model` (bytes) added, checked against its SHA-256 before it is returned."""
        rec = self._query("GetModel", str(int(round_id)))
        data = base64.b64decode(rec.pop("model_b64"), validate=True)
        if sha256_hex(data) != rec["sha256"] or len(data) != rec["size"]:
            raise ModelIntegrityError(f"model of round {round_id} does not match its recorded SHA-256 {rec['sha256']}")
        rec["model"] = data
        return rec

    def publish_reference(self, round_id: int, reference: bytes) -> Any:
        return self._submit("PublishReference", str(int(round_id)), base64.b64encode(reference).decode("ascii"))

    def get_reference(self, round_id: int) -> bytes:
        """The round's FLTrust reference bytes, checked against the SHA-256 the round declared."""
        rec = self._query("GetReference", str(int(round_id)))
        data = base64.b64decode(rec["reference_b64"], validate=True)
        want = (self.get_round(round_id).get("hyperparameters") or {}).get("reference_sha256")
        if sha256_hex(data) != rec["sha256"] or rec["sha256"] != want:
            raise ModelIntegrityError(f"reference of round {round_id} does not match the declared SHA-256 {want}")
        return data

    def publish_validation_batch(self, round_id: int, data: bytes) -> Any:
        """PublishValidationBatch: the round's public validation batch (fedchain.validation_batch bytes)."""
        return self._submit("PublishValidationBatch", str(int(round_id)), base64.b64encode(data).decode("ascii"))

    def get_validation_batch(self, round_id: int) -> bytes:
        """The round's validation batch bytes, checked against the SHA-256 the round declared
        (hyperparameters.validation_sha256); decode them with fedchain.validation_batch.decode."""
        rec = self._query("GetValidationBatch", str(int(round_id)))
        data = base64.b64decode(rec["validation_b64"], validate=True)
        want = (self.get_round(round_id).get("hyperparameters") or {}).get("validation_sha256")
        if sha256_hex(data) != rec["sha256"] or rec["sha256"] != want or len(data) != rec["size"]:
            raise ModelIntegrityError(f"validation batch of round {round_id} does not match the declared SHA-256 "
                                      f"{want}")
        return data

    def get_history(self, kind: str, ident: str | int = "") -> list[dict[str, Any]]:
        return self._query("GetHistory", kind, str(ident))

    # ------------------------------------------------------------------ helpers
    def head(self) -> dict[str, Any]:
        """Last round id, last finalized round and its model hash (what CreateRound builds on)."""
        return self.get_consortium()["head"]

    def round_over(self, round_id: int) -> bool:
        """Whether the round reached a terminal state (FINALIZED, FAILED or DISPUTED)."""
        return self.get_round(round_id)["state"] in TERMINAL_STATES

    def wait_for_state(self, round_id: int, states: tuple[str, ...], timeout_s: float = 120.0,
                       poll_s: float = 0.5, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
        """Poll until the round reaches one of `states` (events are better; this is the simple fallback)."""
        deadline = time.monotonic() + timeout_s
        while True:
            rnd = self.get_round(round_id)
            if rnd["state"] in states:
                return rnd
            if time.monotonic() >= deadline:
                raise TimeoutError(f"round {round_id} is still {rnd['state']} after {timeout_s:g} s")
            sleep(poll_s)
