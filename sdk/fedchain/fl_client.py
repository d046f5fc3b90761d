"""Typed client of the FL chaincode (fedchain_cc.fl): JSON arguments in, typed records out
(fedchain.records, parsed once here), SubmitResult for submits.

One place that knows the contract's function names and argument encoding, used by the
operator CLI, the MPC nodes and the hospitals. It wraps a gateway `Contract` (anything with
`submit(fn, *args, transient=None) -> SubmitResult` and `evaluate(fn, *args) -> bytes`), so it
works the same on the embedded network and on real Fabric.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from fedchain.canonical import canonical_text, sha256_hex
from fedchain.identity import Identity, SigningIdentity
from fedchain.records import (
    Consortium,
    Head,
    HistoryEntry,
    ModelRecord,
    Participant,
    RecordError,
    ReferenceRecord,
    Round,
    RoundId,
    Update,
    ValidationBatchRecord,
    parse_round_id,
)

log = logging.getLogger(__name__)

# Operator/MPC transactions can lose an MVCC race against a sibling (parallel attestations, a close
# racing a late submission, a publish racing a late attestation); re-endorsing sees the winner.
RETRYABLE_CODES = ("MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT")

__all__ = ["RETRYABLE_CODES", "ContractLike", "FLClient", "ModelIntegrityError", "fabric_id", "mpc_node_entry",
           "participant_entry", "result_json"]


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


def _rid(round_id: RoundId | int | str) -> str:
    """A round id argument as the chaincode reads it (decimal); round 0 (genesis) passes, the chaincode
    refuses it where it does not apply."""
    return str(parse_round_id(round_id, genesis_ok=True))


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
        return self._submit("InitConsortium", canonical_text(config))

    def register_participant(self, participant: dict[str, Any]) -> Any:
        return self._submit("RegisterParticipant", canonical_text(participant))

    def publish_genesis_model(self, spec: dict[str, Any], model: bytes) -> Any:
        return self._submit("PublishGenesisModel", canonical_text(spec), base64.b64encode(model).decode("ascii"))

    def create_round(self, round_spec: dict[str, Any]) -> Any:
        return self._submit("CreateRound", canonical_text(round_spec))

    def submit_update(self, update: dict[str, Any]) -> Any:
        return self._submit("SubmitUpdate", canonical_text(update))

    def close_round(self, round_id: RoundId | int | str) -> Any:
        return self._submit("CloseRound", _rid(round_id), retry=True)

    def attest_result(self, attestation: dict[str, Any]) -> Any:
        """{round_id, model_hash, accepted, rejected, report_hash, outcome? (one of fedchain.records.OUTCOMES, default "ok")}."""
        return self._submit("AttestResult", canonical_text(attestation), retry=True)

    def publish_model(self, round_id: RoundId | int | str, model: bytes) -> Any:
        return self._submit("PublishModel", _rid(round_id), base64.b64encode(model).decode("ascii"), retry=True)

    # ------------------------------------------------------------------ queries
    def get_consortium(self) -> Consortium:
        return Consortium.from_json(self._query("GetConsortium"))

    def get_participant(self, pid: str) -> Participant:
        return Participant.from_json(self._query("GetParticipant", pid), f"participant {pid}")

    def list_participants(self, role: str | None = None) -> list[Participant]:
        return _records(Participant, self._query("ListParticipants", *([role] if role else [])), "participants")

    def get_round(self, round_id: RoundId | int | str) -> Round:
        return Round.from_json(self._query("GetRound", _rid(round_id)))

    def list_rounds(self) -> list[Round]:
        rows = self._query("ListRounds")
        if not isinstance(rows, list):
            raise RecordError(f"ListRounds must return a JSON array, got {type(rows).__name__}")
        return [Round.from_json(row) for row in rows]

    def get_updates(self, round_id: RoundId | int | str) -> list[Update]:
        return _records(Update, self._query("GetUpdates", _rid(round_id)), f"updates of round {round_id}")

    def get_model(self, round_id: RoundId | int | str) -> ModelRecord:
        """Model record with its bytes (`model`), checked against its SHA-256 and size before it is returned."""
        rec = ModelRecord.from_json(self._query("GetModel", _rid(round_id)), f"model of round {round_id}")
        if sha256_hex(rec.model) != rec.sha256 or len(rec.model) != rec.size:
            raise ModelIntegrityError(f"model of round {round_id} does not match its recorded SHA-256 {rec.sha256}")
        return rec

    def publish_reference(self, round_id: RoundId | int | str, reference: bytes) -> Any:
        return self._submit("PublishReference", _rid(round_id), base64.b64encode(reference).decode("ascii"))

    def get_reference(self, round_id: RoundId | int | str) -> bytes:
        """The round's FLTrust reference bytes, checked against the SHA-256 the round declared."""
        rec = ReferenceRecord.from_json(self._query("GetReference", _rid(round_id)), f"reference of round {round_id}")
        data = rec.data
        want = self.get_round(round_id).hyper.reference_sha256
        if sha256_hex(data) != rec.sha256 or rec.sha256 != want:
            raise ModelIntegrityError(f"reference of round {round_id} does not match the declared SHA-256 {want}")
        return data

    def publish_validation_batch(self, round_id: RoundId | int | str, data: bytes) -> Any:
        """PublishValidationBatch: the round's public validation batch (fedchain.validation_batch bytes)."""
        return self._submit("PublishValidationBatch", _rid(round_id), base64.b64encode(data).decode("ascii"))

    def get_validation_batch(self, round_id: RoundId | int | str) -> bytes:
        """The round's validation batch bytes, checked against the SHA-256 the round declared
        (hyperparameters.validation_sha256); decode them with fedchain.validation_batch.decode."""
        rec = ValidationBatchRecord.from_json(self._query("GetValidationBatch", _rid(round_id)),
                                              f"validation batch of round {round_id}")
        data = rec.data
        want = self.get_round(round_id).hyper.validation_sha256
        if sha256_hex(data) != rec.sha256 or rec.sha256 != want or len(data) != rec.size:
            raise ModelIntegrityError(f"validation batch of round {round_id} does not match the declared SHA-256 "
                                      f"{want}")
        return data

    def get_history(self, kind: str, ident: str | int = "") -> list[HistoryEntry]:
        """GetHistory(kind, ident), newest first; ident is a round id, a participant id or "round/who"."""
        return _records(HistoryEntry, self._query("GetHistory", kind, str(ident)), f"{kind} history")

    # ------------------------------------------------------------------ helpers
    def head(self) -> Head:
        """Last round id, last finalized round and its model hash (what CreateRound builds on)."""
        head = self.get_consortium().head
        if head is None:
            raise RecordError("consortium: field 'head' is missing")
        return head

    def round_over(self, round_id: RoundId | int | str) -> bool:
        """Whether the round reached a terminal state (FINALIZED, FAILED or DISPUTED)."""
        return self.get_round(round_id).over

    def wait_for_state(self, round_id: RoundId | int | str, states: tuple[str, ...], timeout_s: float = 120.0,
                       poll_s: float = 0.5, sleep: Callable[[float], None] = time.sleep) -> Round:
        """Poll until the round reaches one of `states` (events are better; this is the simple fallback)."""
        deadline = time.monotonic() + timeout_s
        while True:
            rnd = self.get_round(round_id)
            if rnd.state in states:
                return rnd
            if time.monotonic() >= deadline:
                raise TimeoutError(f"round {round_id} is still {rnd.state} after {timeout_s:g} s")
            sleep(poll_s)


def _records(cls: Any, rows: Any, what: str) -> list[Any]:
    if not isinstance(rows, list):
        raise RecordError(f"{what} must be a JSON array, got {type(rows).__name__}")
    return [cls.from_json(row, f"{what}[{i}]") for i, row in enumerate(rows)]
