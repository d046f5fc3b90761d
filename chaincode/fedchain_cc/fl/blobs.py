"""Published bytes: the genesis model, each round's model, the FLTrust reference and the validation batch.

All four are stored the same way (`store_blob`: CHUNK_SIZE values plus a metadata record with sha256,
size and chunk count) and read back the same way (`load_blob`, checked against the stored hash).
Transactions: PublishGenesisModel, PublishModel, GetModel, PublishReference, GetReference,
PublishValidationBatch, GetValidationBatch.
"""

from __future__ import annotations

import base64
from typing import Any

from fedchain_cc.canonical import sha256_hex
from fedchain_cc.fl import keys
from fedchain_cc.fl import validate as v
from fedchain_cc.fl.keys import BlobKeys
from fedchain_cc.fl.rules import CLOSED, FINALIZED, MAX_PARAM_COUNT, OPEN
from fedchain_cc.fl.tx import Tx
from fedchain_cc.fl.validate import Fields
from fedchain_cc.shim.contract import ContractError, transaction

CHUNK_SIZE = 1024 * 1024


def store_blob(tx: Tx, kind: BlobKeys, round_id: int, data: bytes, meta: dict[str, Any]) -> str:
    """Bytes in CHUNK_SIZE values plus a metadata record (sha256, size, chunks); returns the SHA-256."""
    digest = sha256_hex(data)
    chunks = [data[i:i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]
    for i, chunk in enumerate(chunks):
        tx.put_bytes(kind.chunk(round_id, i), chunk)
    tx.put_json(kind.meta(round_id), {**meta, "sha256": digest, "size": len(data), "chunks": len(chunks),
                                      "published_at": tx.timestamp})
    return digest


def load_blob(tx: Tx, kind: BlobKeys, meta: dict[str, Any], chunk_round: int, what: str) -> bytes:
    """The bytes a metadata record describes (its chunks may be another round's: an unchanged model)."""
    data = b"".join(tx.get_bytes(kind.chunk(chunk_round, i)) for i in range(meta["chunks"]))
    if sha256_hex(data) != meta["sha256"]:
        raise ContractError(f"stored {what} does not match its hash", 500)
    return data


def _blob_reply(tx: Tx, kind: BlobKeys, meta: dict[str, Any], round_id: int, chunk_round: int, what: str,
                b64_field: str, extra: tuple[str, ...]) -> dict[str, Any]:
    """A Get* answer: round_id, sha256, size, the `extra` metadata fields and the bytes in base64."""
    data = load_blob(tx, kind, meta, chunk_round, what)
    return {"round_id": round_id, "sha256": meta["sha256"], "size": meta["size"],
            **{name: meta[name] for name in extra}, b64_field: base64.b64encode(data).decode("ascii")}


def _store_model(tx: Tx, round_id: int, data: bytes, spec: dict[str, Any]) -> str:
    return store_blob(tx, keys.MODEL, round_id, data, {"round_id": round_id, "chunk_round": round_id,
                                                       "model_spec": spec})


def point_model_at_base(tx: Tx, rnd: dict[str, Any]) -> None:
    """A round finalized with its base model unchanged: its model record points at the stored bytes, no copy."""
    base = tx.get_json(keys.model(rnd["base_round_id"]))
    if base is not None:
        meta = {k: val for k, val in base.items() if not k.startswith("last_tx_")}
        tx.put_json(keys.model(rnd["round_id"]), {**meta, "round_id": rnd["round_id"], "published_at": tx.timestamp})


def _round_and_bytes(tx: Tx, role: str, round_arg: str, b64_arg: str) -> tuple[int, dict[str, Any], bytes]:
    """How PublishModel and PublishReference start: the caller's role, the round id, the bytes (within
    max_model_bytes, checked before decoding) and the round record, in that order."""
    tx.require(role)
    cons = tx.consortium()
    round_id = v.round_id(round_arg)
    data = v.model_bytes(b64_arg, cons["max_model_bytes"])
    return round_id, tx.round_record(round_id), data


def _check_declared_blob(tx: Tx, rnd: dict[str, Any], data: bytes, what: str, hash_field: str,
                         meta_key: str) -> str:
    """The rules the reference and the validation batch share; returns the bytes' SHA-256.

    Accepted while OPEN, and CLOSED too until a node attests: the hash was fixed by CreateRound, so
    publishing late changes nothing the verdicts depend on, and an operator restarted after the
    deadline can still unblock the round. Published once, and only the declared bytes."""
    round_id = rnd["round_id"]
    if rnd["state"] not in (OPEN, CLOSED) or rnd["attestations"]:
        raise ContractError(f"round {round_id} is {rnd['state']}{' and attested' if rnd['attestations'] else ''}; "
                            f"a {what} is published only while OPEN or CLOSED before any attestation", 409)
    want = (rnd.get("hyperparameters") or {}).get(hash_field)
    if not want:
        raise ContractError(f"round {round_id} declares no hyperparameters.{hash_field}", 409)
    if tx.get_json(meta_key) is not None:
        raise ContractError(f"the {what} of round {round_id} is already published", 409)
    got = sha256_hex(data)
    if got != want:
        raise ContractError(f"{what} SHA-256 {got} does not match the round's {hash_field} {want}")
    return got


def _get_declared(tx: Tx, kind: BlobKeys, round_arg: str, what: str, b64_field: str,
                  extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """GetReference / GetValidationBatch: any registered caller; 404 until the operator published it."""
    tx.require()
    round_id = v.round_id(round_arg)
    meta = tx.get_json(kind.meta(round_id))
    if meta is None:
        raise ContractError(f"no {what} published for round {round_id}", 404)
    return _blob_reply(tx, kind, meta, round_id, round_id, f"{what} of round {round_id}", b64_field, extra)


class BlobTransactions:
    """Models (genesis by an operator, each finalized round's by an MPC node) and a round's declared inputs."""

    # ---------------------------------------------------------------------- models
    @transaction("PublishGenesisModel")
    def publish_genesis_model(self, tx: Tx, spec_json: str, model_b64: str) -> dict[str, Any]:
        tx.require("operator")
        cons = tx.consortium()
        spec = v.obj(spec_json, "spec")
        v.check_freeform(spec, "spec", scalars_only=False)
        param_count = Fields(spec, "spec").integer("param_count", 1, MAX_PARAM_COUNT)
        data = v.model_bytes(model_b64, cons["max_model_bytes"])
        head = tx.head()
        if head["model_hash"] is not None:
            raise ContractError("the genesis model is already published (round 0)", 409)
        digest = _store_model(tx, 0, data, spec)
        tx.put_json(keys.round_(0), {
            "round_id": 0, "state": FINALIZED, "genesis": True, "model_spec": spec,
            "finalized": {"model_hash": digest, "accepted": [], "rejected": {}, "report_hash": None},
            "created_at": tx.timestamp, "finalized_at": tx.timestamp,
        })
        tx.put_json(keys.HEAD, {**head, "finalized_round_id": 0, "model_hash": digest, "param_count": param_count})
        return {"round_id": 0, "sha256": digest, "size": len(data)}

    @transaction("PublishModel")
    def publish_model(self, tx: Tx, round_arg: str, model_b64: str) -> dict[str, Any]:
        round_id, rnd, data = _round_and_bytes(tx, "mpc_node", round_arg, model_b64)
        if rnd["state"] != FINALIZED:
            raise ContractError(f"round {round_id} is {rnd['state']}; models are published only once FINALIZED", 409)
        if tx.get_json(keys.model(round_id)) is not None:
            raise ContractError(f"the model of round {round_id} is already published", 409)
        want = rnd["finalized"]["model_hash"]
        got = sha256_hex(data)
        if got != want:
            raise ContractError(f"model SHA-256 {got} does not match the finalized hash {want} of round {round_id}")
        _store_model(tx, round_id, data, rnd["model_spec"])
        return {"round_id": round_id, "sha256": got, "size": len(data)}

    @transaction("GetModel")
    def get_model(self, tx: Tx, round_arg: str) -> dict[str, Any]:
        tx.require()
        round_id = v.round_id(round_arg, lo=0)
        meta = tx.get_json(keys.model(round_id))
        if meta is None:
            rnd = tx.get_json(keys.round_(round_id))
            if rnd is None:
                hint = f"there is no round {round_id}"
            elif rnd["state"] == FINALIZED:
                hint = "it is finalized but not published yet"
            else:
                hint = f"the round is {rnd['state']}"
            raise ContractError(f"no model for round {round_id}: {hint}", 404)
        return _blob_reply(tx, keys.MODEL, meta, round_id, meta["chunk_round"], f"model of round {round_id}",
                           "model_b64", ("model_spec",))

    # ------------------------------------------------------- FLTrust reference
    @transaction("PublishReference")
    def publish_reference(self, tx: Tx, round_arg: str, reference_b64: str) -> dict[str, Any]:
        """The round's public reference update (float32 LE vector) whose SHA-256 CreateRound declared."""
        round_id, rnd, data = _round_and_bytes(tx, "operator", round_arg, reference_b64)
        got = _check_declared_blob(tx, rnd, data, "reference", "reference_sha256", keys.reference(round_id))
        param_count = int(rnd["model_spec"]["param_count"])
        if len(data) != 4 * param_count:
            raise ContractError(f"reference has {len(data)} bytes; a float32 vector of {param_count} parameters "
                                f"has {4 * param_count}")
        store_blob(tx, keys.REFERENCE, round_id, data, {"round_id": round_id})
        return {"round_id": round_id, "sha256": got, "size": len(data)}

    @transaction("GetReference")
    def get_reference(self, tx: Tx, round_arg: str) -> dict[str, Any]:
        return _get_declared(tx, keys.REFERENCE, round_arg, "reference", "reference_b64")

    # ------------------------------------------------- public validation batch
    @transaction("PublishValidationBatch")
    def publish_validation_batch(self, tx: Tx, round_arg: str, validation_b64: str) -> dict[str, Any]:
        """The round's public validation batch (fedchain.validation_batch: safetensors images + labels) for the
        encrypted-inference check, whose SHA-256 CreateRound declared; published like the reference."""
        tx.require("operator")
        cons = tx.consortium()
        round_id = v.round_id(round_arg)
        rnd = tx.round_record(round_id)
        enabled, max_batch = v.inference_settings(rnd.get("policy") or {}, "round policy")
        limit = min(int(cons["max_model_bytes"]), v.validation_max_bytes(max_batch))
        data = v.model_bytes(validation_b64, limit, "validation_b64")
        got = _check_declared_blob(tx, rnd, data, "validation batch", "validation_sha256",
                                   keys.validation(round_id))
        batch = v.validation_batch_size(data, max_batch)
        if enabled and batch != max_batch:  # the nodes' check runs on exactly policy.inference_batch images
            raise ContractError(f"validation batch has {batch} images; the round's policy.inference_batch is "
                                f"{max_batch}")
        store_blob(tx, keys.VALIDATION, round_id, data, {"round_id": round_id, "batch": batch})
        return {"round_id": round_id, "sha256": got, "size": len(data), "batch": batch}

    @transaction("GetValidationBatch")
    def get_validation_batch(self, tx: Tx, round_arg: str) -> dict[str, Any]:
        return _get_declared(tx, keys.VALIDATION, round_arg, "validation batch", "validation_b64", ("batch",))
