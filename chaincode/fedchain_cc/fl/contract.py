"""The FL contract: consortium, participants, rounds, updates, attestations, models.

See the package docstring (fedchain_cc.fl) for the design: roles, state machine, key layout.
Each transaction is a method `tx_<Name>(tx, params) -> payload dict/list` that validates
everything first and only then buffers writes; `invoke` turns ContractError into an error
Response and flushes the writes only on success.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from fedchain_cc.fl import keys
from fedchain_cc.fl import validate as v
from fedchain_cc.fl.tx import Tx, dumps
from fedchain_cc.fl.validate import ContractError, Fields
from fedchain_cc.shim.interface import Chaincode, ChaincodeStubAPI, Response, error, success

log = logging.getLogger(__name__)

ROLES = ("operator", "hospital", "mpc_node", "auditor")
OPEN, CLOSED, FINALIZED, DISPUTED, FAILED = "OPEN", "CLOSED", "FINALIZED", "DISPUTED", "FAILED"
CHUNK_SIZE = 1024 * 1024
# A PublishModel transaction carries the model twice (base64 argument + raw write set): 6 MiB
# keeps it under the 16 MiB gRPC message limit of the gateway and of Fabric's defaults.
HARD_MAX_MODEL_BYTES = 6 * 1024 * 1024
DEFAULT_MAX_MODEL_BYTES = 4 * 1024 * 1024
MAX_MPC_NODES = 64
MAX_HOSPITALS_PER_ROUND = 10_000
MAX_SAMPLE_CAP = 10**9
MAX_PARAM_COUNT = 10**9
# Privacy floor: the nodes open (and publish) an aggregate only of at least this many accepted updates.
DEFAULT_MIN_ACCEPTED = 3
# How far a client's proposal timestamp may differ from the peers' clocks (Fabric's default
# peer.authentication.timewindow is 15 minutes). Deadlines that a client could move by this much
# are checked against deadline + skew: a hospital cannot close a round early by forward-dating.
DEFAULT_MAX_CLOCK_SKEW_S = 900
MAX_CLOCK_SKEW_S = 24 * 3600
IDENTITY_MAX = 2048
EVENTS = ("RoundCreated", "UpdateSubmitted", "RoundClosed", "RoundFinalized", "RoundDisputed", "RoundFailed")
DISPUTE_DIFFER = "attestations differ"
HISTORY_KINDS = ("round", "participant", "update", "model", "consortium", "attestation")

Handler = Callable[["FLContract", Tx, list[str]], Any]
_HANDLERS: dict[str, Handler] = {}


def transaction(fn: Handler) -> Handler:
    _HANDLERS[fn.__name__.removeprefix("tx_")] = fn
    return fn


def _identity_field(f: Fields, name: str = "identity") -> str:
    value = f.text(name, IDENTITY_MAX)
    if not value.startswith("x509::") or value.count("::") < 2:
        raise ContractError(f"{f.what}: field '{name}' must be a Fabric client id 'x509::<subject>::<issuer>'")
    return value


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _min_accepted(rnd: dict[str, Any]) -> int:
    """The round's privacy floor (CreateRound stores it in the policy; rounds created before the field: none)."""
    value = (rnd.get("policy") or {}).get("min_accepted")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _earliest_close(role: str, deadline: float, consortium: dict[str, Any]) -> float:
    """When a caller of `role` may close a round. Operators: any time (they run the campaign).
    MPC nodes: at the deadline (honest-but-curious: their clocks are trusted, they close on time so
    that nothing committed after the deadline joins the round). Anyone else: deadline + the
    proposal clock skew, so that no forward-dated proposal can close a round before its deadline."""
    if role == "operator":
        return float("-inf")
    if role == "mpc_node":
        return deadline
    return deadline + int(consortium.get("max_clock_skew_s", DEFAULT_MAX_CLOCK_SKEW_S))


def _skew_note(role: str) -> str:
    return "" if role in ("operator", "mpc_node") else " + max_clock_skew_s"


def _claim_of(record: dict[str, Any]) -> dict[str, Any]:
    """What the nodes must agree on; records written before `outcome` existed claimed "ok"."""
    return {"model_hash": record["model_hash"], "accepted": record["accepted"],
            "outcome": record.get("outcome", v.OUTCOME_OK)}


class FLContract(Chaincode):
    """Entry point for the shim: `fedchain_cc.fl.contract:FLContract`."""

    functions = _HANDLERS

    def invoke(self, stub: ChaincodeStubAPI) -> Response:
        fn, params = stub.get_function_and_parameters()
        handler = _HANDLERS.get(fn)
        if handler is None:
            return error(f"unknown function {fn[:64]!r}; the FL contract has: {', '.join(sorted(_HANDLERS))}", 400)
        try:
            tx = Tx(stub, fn)
            result = handler(self, tx, params)
            payload = dumps(result) if result is not None else b""
        except ContractError as exc:
            return error(f"{fn}: {exc}", exc.status)
        except Exception as exc:  # a bug must not take the shim down or leak a traceback to clients
            log.exception("%s failed", fn)
            return error(f"{fn}: internal error ({type(exc).__name__})", 500)
        tx.flush()
        return success(payload)

    # ------------------------------------------------------------------ consortium
    @transaction
    def tx_InitConsortium(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        v.expect_args("InitConsortium", params, 1)
        if tx.get_json(keys.CONSORTIUM) is not None:
            raise ContractError("the consortium is already initialized", 409)
        if tx.client.role != "operator":
            raise ContractError(
                f"caller {tx.describe_client()} has certificate role {tx.client.role!r}; only an operator may "
                f"initialize the consortium",
                403,
            )
        f = Fields(v.obj(params[0], "config"), "config")
        name = f.text("name", 128, required=False, default="fedchain")
        operator_id = f.match("operator_id", v.ID_RE, "a participant id", required=False) or "operator"
        nodes_raw = f.array("mpc_nodes", MAX_MPC_NODES)
        if not nodes_raw:
            raise ContractError("config: field 'mpc_nodes' must list at least one MPC node")
        nodes = []
        for j, raw in enumerate(nodes_raw):
            if not isinstance(raw, dict):
                raise ContractError(f"config: mpc_nodes[{j}] must be a JSON object, got {v.type_name(raw)}")
            nf = Fields(raw, f"config: mpc_nodes[{j}]")
            node = {
                "id": nf.match("id", v.ID_RE, f"an id matching {v.ID_HINT}"),
                "msp_id": nf.match("msp_id", v.MSP_RE, "an MSP id"),
                "identity": _identity_field(nf),
                "node_index": j,
            }
            nf.done()
            nodes.append(node)
        m = len(nodes)
        threshold = f.integer("threshold", 1, MAX_MPC_NODES)
        if 2 * threshold >= m:
            raise ContractError(f"config: threshold {threshold} needs an honest majority: 2t < m = {m} MPC nodes")
        quorum = f.integer("quorum", threshold + 1, m)
        max_model = f.integer("max_model_bytes", 1, HARD_MAX_MODEL_BYTES, required=False,
                              default=DEFAULT_MAX_MODEL_BYTES)
        policy = f.freeform("default_policy", required=False, scalars_only=True) or {}
        min_accepted = f.integer("min_accepted", 1, MAX_HOSPITALS_PER_ROUND, required=False,
                                 default=DEFAULT_MIN_ACCEPTED)
        max_skew = f.integer("max_clock_skew_s", 0, MAX_CLOCK_SKEW_S, required=False,
                             default=DEFAULT_MAX_CLOCK_SKEW_S)
        f.done()
        # a default policy that every CreateRound would refuse is refused now
        v.policy_min_accepted(policy, min_accepted, MAX_HOSPITALS_PER_ROUND, "config: default_policy")
        ids = [n["id"] for n in nodes] + [operator_id]
        if len(set(ids)) != len(ids):
            raise ContractError("config: MPC node ids and operator_id must all be distinct")
        bindings = [(n["msp_id"], n["identity"]) for n in nodes] + [(tx.client.msp_id, tx.client.id)]
        if len(set(bindings)) != len(bindings):
            raise ContractError("config: every MPC node (and the operator) needs its own identity")

        operator = {"id": operator_id, "role": "operator", "msp_id": tx.client.msp_id, "identity": tx.client.id,
                    "registered_at": tx.timestamp}
        tx.participant = operator
        tx.put_json(keys.CONSORTIUM, {
            "name": name, "mpc_nodes": nodes, "threshold": threshold, "quorum": quorum,
            "max_model_bytes": max_model, "default_policy": policy, "min_accepted": min_accepted,
            "max_clock_skew_s": max_skew, "initialized_at": tx.timestamp,
        })
        for rec in [operator, *({**n, "role": "mpc_node", "registered_at": tx.timestamp} for n in nodes)]:
            tx.put_json(keys.participant(rec["id"]), rec)
            tx.put_bytes(keys.ident(rec["msp_id"], rec["identity"]), rec["id"].encode())
        tx.put_json(keys.HEAD, {"last_round_id": 0, "finalized_round_id": None, "model_hash": None,
                                "param_count": None})
        return {"operator_id": operator_id, "mpc_nodes": [n["id"] for n in nodes], "threshold": threshold,
                "quorum": quorum, "min_accepted": min_accepted, "max_clock_skew_s": max_skew}

    @transaction
    def tx_GetConsortium(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        v.expect_args("GetConsortium", params, 0)
        tx.require()
        out = {k: val for k, val in tx.consortium().items()}
        out["head"] = self._head(tx)
        return out

    # ---------------------------------------------------------------- participants
    @transaction
    def tx_RegisterParticipant(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        v.expect_args("RegisterParticipant", params, 1)
        tx.require("operator")
        f = Fields(v.obj(params[0], "participant"), "participant")
        pid = f.match("id", v.ID_RE, f"an id matching {v.ID_HINT}")
        role = f.text("role", 16)
        if role not in ROLES:
            raise ContractError(f"participant: role must be one of {', '.join(ROLES)}, got {role[:20]!r}")
        if role == "mpc_node":
            raise ContractError("participant: MPC nodes are fixed by InitConsortium (their index is their share "
                                "position); they cannot be registered later")
        msp_id = f.match("msp_id", v.MSP_RE, "an MSP id")
        identity = _identity_field(f)
        record: dict[str, Any] = {"id": pid, "role": role, "msp_id": msp_id, "identity": identity,
                                  "registered_at": tx.timestamp}
        if role == "hospital":
            record["sample_cap"] = f.integer("sample_cap", 1, MAX_SAMPLE_CAP)
        elif "sample_cap" in f.data:
            raise ContractError(f"participant: sample_cap applies to hospitals only, not to role {role!r}")
        f.done()
        if tx.get_json(keys.participant(pid)) is not None:
            raise ContractError(f"participant {pid!r} is already registered", 409)
        bound = tx.get_bytes(keys.ident(msp_id, identity))
        if bound:
            raise ContractError(f"that identity of {msp_id} is already registered as {bound.decode()!r}", 409)
        tx.put_bytes(keys.ident(msp_id, identity), pid.encode())
        return tx.put_json(keys.participant(pid), record)

    @transaction
    def tx_GetParticipant(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        v.expect_args("GetParticipant", params, 1)
        tx.require()
        pid = v.participant_id(params[0])
        rec = tx.get_json(keys.participant(pid))
        if rec is None:
            raise ContractError(f"no participant {pid!r}", 404)
        return rec

    @transaction
    def tx_ListParticipants(self, tx: Tx, params: list[str]) -> list[dict[str, Any]]:
        v.expect_args("ListParticipants", params, (0, 1))
        tx.require()
        role = params[0] if params and params[0] else None
        if role is not None and role not in ROLES:
            raise ContractError(f"role filter must be one of {', '.join(ROLES)}, got {role[:20]!r}")
        return [rec for _, rec in tx.range_json("participant", []) if role is None or rec["role"] == role]

    # ---------------------------------------------------------------------- models
    @staticmethod
    def _store_blob(tx: Tx, meta_key: str, chunk_key: Callable[[int], str], data: bytes,
                    meta: dict[str, Any]) -> str:
        """Bytes in CHUNK_SIZE values plus a metadata record (sha256, size, chunks): models, references."""
        digest = _sha256(data)
        chunks = [data[i:i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]
        for i, chunk in enumerate(chunks):
            tx.put_bytes(chunk_key(i), chunk)
        tx.put_json(meta_key, {**meta, "sha256": digest, "size": len(data), "chunks": len(chunks),
                               "published_at": tx.timestamp})
        return digest

    @staticmethod
    def _load_blob(tx: Tx, meta: dict[str, Any], chunk_key: Callable[[int], str], what: str) -> bytes:
        data = b"".join(tx.get_bytes(chunk_key(i)) for i in range(meta["chunks"]))
        if _sha256(data) != meta["sha256"]:
            raise ContractError(f"stored {what} does not match its hash", 500)
        return data

    def _store_model(self, tx: Tx, round_id: int, data: bytes, spec: dict[str, Any]) -> str:
        return self._store_blob(tx, keys.model(round_id), lambda i: keys.model_chunk(round_id, i), data,
                                {"round_id": round_id, "chunk_round": round_id, "model_spec": spec})

    @transaction
    def tx_PublishGenesisModel(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        v.expect_args("PublishGenesisModel", params, 2)
        tx.require("operator")
        cons = tx.consortium()
        spec = v.obj(params[0], "spec")
        v.check_freeform(spec, "spec", scalars_only=False)
        param_count = Fields(spec, "spec").integer("param_count", 1, MAX_PARAM_COUNT)
        data = v.model_bytes(params[1], cons["max_model_bytes"])
        head = self._head(tx)
        if head["model_hash"] is not None:
            raise ContractError("the genesis model is already published (round 0)", 409)
        digest = self._store_model(tx, 0, data, spec)
        tx.put_json(keys.round_(0), {
            "round_id": 0, "state": FINALIZED, "genesis": True, "model_spec": spec,
            "finalized": {"model_hash": digest, "accepted": [], "rejected": {}, "report_hash": None},
            "created_at": tx.timestamp, "finalized_at": tx.timestamp,
        })
        tx.put_json(keys.HEAD, {**head, "finalized_round_id": 0, "model_hash": digest, "param_count": param_count})
        return {"round_id": 0, "sha256": digest, "size": len(data)}

    @transaction
    def tx_PublishModel(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        v.expect_args("PublishModel", params, 2)
        tx.require("mpc_node")
        cons = tx.consortium()
        round_id = v.round_id(params[0])
        data = v.model_bytes(params[1], cons["max_model_bytes"])
        rnd = self._round(tx, round_id)
        if rnd["state"] != FINALIZED:
            raise ContractError(f"round {round_id} is {rnd['state']}; models are published only once FINALIZED", 409)
        if tx.get_json(keys.model(round_id)) is not None:
            raise ContractError(f"the model of round {round_id} is already published", 409)
        want = rnd["finalized"]["model_hash"]
        got = _sha256(data)
        if got != want:
            raise ContractError(f"model SHA-256 {got} does not match the finalized hash {want} of round {round_id}")
        self._store_model(tx, round_id, data, rnd["model_spec"])
        return {"round_id": round_id, "sha256": got, "size": len(data)}

    @transaction
    def tx_GetModel(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        v.expect_args("GetModel", params, 1)
        tx.require()
        round_id = v.round_id(params[0], lo=0)
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
        data = self._load_blob(tx, meta, lambda i: keys.model_chunk(meta["chunk_round"], i),
                               f"model of round {round_id}")
        return {"round_id": round_id, "sha256": meta["sha256"], "size": meta["size"],
                "model_spec": meta["model_spec"], "model_b64": base64.b64encode(data).decode("ascii")}

    # ------------------------------------------- public inputs declared by CreateRound
    @staticmethod
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
        got = _sha256(data)
        if got != want:
            raise ContractError(f"{what} SHA-256 {got} does not match the round's {hash_field} {want}")
        return got

    # ----------------------------------------------------------- FLTrust reference
    @transaction
    def tx_PublishReference(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        """The round's public reference update (float32 LE vector) whose SHA-256 CreateRound declared."""
        v.expect_args("PublishReference", params, 2)
        tx.require("operator")
        cons = tx.consortium()
        round_id = v.round_id(params[0])
        data = v.model_bytes(params[1], cons["max_model_bytes"])
        rnd = self._round(tx, round_id)
        got = self._check_declared_blob(tx, rnd, data, "reference", "reference_sha256", keys.reference(round_id))
        param_count = int(rnd["model_spec"]["param_count"])
        if len(data) != 4 * param_count:
            raise ContractError(f"reference has {len(data)} bytes; a float32 vector of {param_count} parameters "
                                f"has {4 * param_count}")
        self._store_blob(tx, keys.reference(round_id), lambda i: keys.reference_chunk(round_id, i), data,
                         {"round_id": round_id})
        return {"round_id": round_id, "sha256": got, "size": len(data)}

    @transaction
    def tx_GetReference(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        v.expect_args("GetReference", params, 1)
        tx.require()
        round_id = v.round_id(params[0])
        meta = tx.get_json(keys.reference(round_id))
        if meta is None:
            raise ContractError(f"no reference published for round {round_id}", 404)
        data = self._load_blob(tx, meta, lambda i: keys.reference_chunk(round_id, i), f"reference of round {round_id}")
        return {"round_id": round_id, "sha256": meta["sha256"], "size": meta["size"],
                "reference_b64": base64.b64encode(data).decode("ascii")}

    # ----------------------------------------------------- public validation batch
    @transaction
    def tx_PublishValidationBatch(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        """The round's public validation batch (fedchain.validation_batch: safetensors images + labels) for the
        encrypted-inference check, whose SHA-256 CreateRound declared; published like the reference."""
        v.expect_args("PublishValidationBatch", params, 2)
        tx.require("operator")
        cons = tx.consortium()
        round_id = v.round_id(params[0])
        rnd = self._round(tx, round_id)
        enabled, max_batch = v.inference_settings(rnd.get("policy") or {}, "round policy")
        limit = min(int(cons["max_model_bytes"]), v.validation_max_bytes(max_batch))
        data = v.model_bytes(params[1], limit, "validation_b64")
        got = self._check_declared_blob(tx, rnd, data, "validation batch", "validation_sha256",
                                        keys.validation(round_id))
        batch = v.validation_batch_size(data, max_batch)
        if enabled and batch != max_batch:  # the nodes' check runs on exactly policy.inference_batch images
            raise ContractError(f"validation batch has {batch} images; the round's policy.inference_batch is "
                                f"{max_batch}")
        self._store_blob(tx, keys.validation(round_id), lambda i: keys.validation_chunk(round_id, i), data,
                         {"round_id": round_id, "batch": batch})
        return {"round_id": round_id, "sha256": got, "size": len(data), "batch": batch}

    @transaction
    def tx_GetValidationBatch(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        v.expect_args("GetValidationBatch", params, 1)
        tx.require()
        round_id = v.round_id(params[0])
        meta = tx.get_json(keys.validation(round_id))
        if meta is None:
            raise ContractError(f"no validation batch published for round {round_id}", 404)
        data = self._load_blob(tx, meta, lambda i: keys.validation_chunk(round_id, i),
                               f"validation batch of round {round_id}")
        return {"round_id": round_id, "sha256": meta["sha256"], "size": meta["size"], "batch": meta["batch"],
                "validation_b64": base64.b64encode(data).decode("ascii")}

    # ---------------------------------------------------------------------- rounds
    def _head(self, tx: Tx) -> dict[str, Any]:
        head = tx.get_json(keys.HEAD)
        if head is None:
            raise ContractError("the consortium is not initialized: an operator must call InitConsortium first", 409)
        return head

    def _round(self, tx: Tx, round_id: int) -> dict[str, Any]:
        rnd = tx.get_json(keys.round_(round_id))
        if rnd is None:
            raise ContractError(f"no round {round_id}", 404)
        return rnd

    @transaction
    def tx_CreateRound(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        v.expect_args("CreateRound", params, 1)
        tx.require("operator")
        cons = tx.consortium()
        f = Fields(v.obj(params[0], "round"), "round")
        round_id = f.integer("round_id", 1, v.MAX_ROUND_ID)
        base_hash = f.match("base_model_hash", v.HEX64_RE, "a lowercase hex SHA-256")
        spec = f.freeform("model_spec")
        param_count = Fields(spec, "round: model_spec").integer("param_count", 1, MAX_PARAM_COUNT)
        hyper = f.freeform("hyperparameters", required=False) or {}
        policy = f.freeform("policy", required=False, scalars_only=True)
        deadline = f.number("deadline", 0, v.MAX_TIMESTAMP)
        min_updates = f.integer("min_updates", 1, MAX_HOSPITALS_PER_ROUND)
        f.done()
        head = self._head(tx)
        if head["model_hash"] is None:
            raise ContractError("no genesis model yet: publish it with PublishGenesisModel first", 409)
        if round_id <= head["last_round_id"]:
            raise ContractError(f"round ids must increase: round {round_id} is not after round {head['last_round_id']}",
                                409)
        last = self._round(tx, head["last_round_id"])
        if last["state"] in (OPEN, CLOSED):
            raise ContractError(f"round {last['round_id']} is still {last['state']}; rounds run one at a time", 409)
        if base_hash != head["model_hash"]:
            raise ContractError(f"base_model_hash must be the last finalized model {head['model_hash']} "
                                f"(round {head['finalized_round_id']}), got {base_hash}", 409)
        if tx.get_json(keys.model(head["finalized_round_id"])) is None:
            raise ContractError(f"the model of round {head['finalized_round_id']} is finalized but not published yet; "
                                f"hospitals could not fetch it", 409)
        if param_count != head["param_count"]:
            raise ContractError(f"round: model_spec.param_count {param_count} differs from the model's "
                                f"{head['param_count']} parameters")
        if deadline <= tx.timestamp:
            raise ContractError(f"round: deadline {deadline} is not after the transaction time {tx.timestamp}")
        policy = dict(policy if policy is not None else cons["default_policy"])
        floor = int(cons.get("min_accepted", DEFAULT_MIN_ACCEPTED))  # consortia initialized before the field: 3
        min_accepted = v.policy_min_accepted(policy, floor, MAX_HOSPITALS_PER_ROUND, "round: policy")
        policy["min_accepted"] = floor if min_accepted is None else min_accepted
        inference, _ = v.inference_settings(policy, "round: policy")
        declared = hyper.get("validation_sha256")
        if declared is not None and not (isinstance(declared, str) and v.HEX64_RE.match(declared)):
            raise ContractError("round: hyperparameters.validation_sha256 must be a lowercase hex SHA-256")
        if inference and declared is None:
            raise ContractError("round: the policy enables the encrypted-inference check (inference_enabled) but "
                                "hyperparameters.validation_sha256 declares no validation batch for it")
        record = {
            "round_id": round_id, "state": OPEN, "base_model_hash": base_hash,
            "base_round_id": head["finalized_round_id"], "model_spec": spec, "hyperparameters": hyper,
            "policy": policy, "deadline": deadline,
            "min_updates": min_updates, "created_at": tx.timestamp, "created_tx_id": tx.tx_id,
            "mpc": {"nodes": [n["id"] for n in cons["mpc_nodes"]], "threshold": cons["threshold"],
                    "quorum": cons["quorum"]},
            "closed_at": None, "submitted": None, "attestations": {}, "finalized": None, "dissent": [],
        }
        tx.put_json(keys.HEAD, {**head, "last_round_id": round_id})
        tx.event("RoundCreated", {"round_id": round_id, "base_model_hash": base_hash, "deadline": deadline,
                                  "min_updates": min_updates, "min_accepted": policy["min_accepted"]})
        return tx.put_json(keys.round_(round_id), record)

    @transaction
    def tx_GetRound(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        v.expect_args("GetRound", params, 1)
        tx.require()
        return self._round(tx, v.round_id(params[0], lo=0))

    @transaction
    def tx_ListRounds(self, tx: Tx, params: list[str]) -> list[dict[str, Any]]:
        v.expect_args("ListRounds", params, 0)
        tx.require()
        return [rec for _, rec in tx.range_json("round", [])]

    @transaction
    def tx_SubmitUpdate(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        """Reads consortium/participant/round, writes only update~round~hospital: hospitals never collide."""
        v.expect_args("SubmitUpdate", params, 1)
        me = tx.require("hospital")
        cons = tx.consortium()
        f = Fields(v.obj(params[0], "update"), "update")
        round_id = f.integer("round_id", 1, v.MAX_ROUND_ID)
        m = len(cons["mpc_nodes"])
        hashes = f.array("share_hashes", MAX_MPC_NODES)
        if len(hashes) != m:
            raise ContractError(f"update: share_hashes must hold one hash per MPC node ({m}), got {len(hashes)}")
        for j, h in enumerate(hashes):
            if not isinstance(h, str) or not v.HEX64_RE.match(h):
                raise ContractError(f"update: share_hashes[{j}] must be a lowercase hex SHA-256")
        n_samples = f.integer("n_samples", 1, MAX_SAMPLE_CAP)
        dim = f.integer("dim", 1, MAX_PARAM_COUNT)
        f.done()
        if n_samples > me["sample_cap"]:
            raise ContractError(f"update: n_samples {n_samples} exceeds the enrolment cap {me['sample_cap']} of "
                                f"{me['id']}")
        rnd = self._round(tx, round_id)
        if rnd["state"] != OPEN:
            raise ContractError(f"round {round_id} is {rnd['state']}, updates are accepted only while OPEN", 409)
        if tx.timestamp >= rnd["deadline"]:
            raise ContractError(f"round {round_id}'s deadline {rnd['deadline']} has passed "
                                f"(transaction time {tx.timestamp})", 409)
        want_dim = rnd["model_spec"]["param_count"]
        if dim != want_dim:
            raise ContractError(f"update: dim {dim} differs from the model's parameter count {want_dim}")
        if tx.get_json(keys.update(round_id, me["id"])) is not None:
            raise ContractError(f"{me['id']} already submitted an update to round {round_id}", 409)
        record = {"round_id": round_id, "hospital": me["id"], "msp_id": me["msp_id"], "share_hashes": hashes,
                  "n_samples": n_samples, "dim": dim, "submitted_at": tx.timestamp, "tx_id": tx.tx_id}
        tx.event("UpdateSubmitted", {"round_id": round_id, "hospital": me["id"], "tx_id": tx.tx_id})
        return tx.put_json(keys.update(round_id, me["id"]), record)

    @transaction
    def tx_GetUpdates(self, tx: Tx, params: list[str]) -> list[dict[str, Any]]:
        v.expect_args("GetUpdates", params, 1)
        tx.require()
        round_id = v.round_id(params[0])
        self._round(tx, round_id)
        return [rec for _, rec in tx.range_json("update", [keys.rnd(round_id)])]

    @transaction
    def tx_CloseRound(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        v.expect_args("CloseRound", params, 1)
        me = tx.require()
        round_id = v.round_id(params[0])
        rnd = self._round(tx, round_id)
        if rnd["state"] != OPEN:
            raise ContractError(f"round {round_id} is {rnd['state']}; only an OPEN round can be closed", 409)
        earliest = _earliest_close(me["role"], rnd["deadline"], tx.consortium())
        if tx.timestamp < earliest:
            raise ContractError(f"caller {me['id']} ({me['role']}) may close round {round_id} only from "
                                f"{earliest} on (deadline {rnd['deadline']}{_skew_note(me['role'])}; transaction "
                                f"time {tx.timestamp}); operators may close it any time", 403)
        submitted = sorted(rec["hospital"] for _, rec in tx.range_json("update", [keys.rnd(round_id)]))
        record = {**rnd, "state": CLOSED, "closed_at": tx.timestamp, "submitted": submitted}
        tx.event("RoundClosed", {"round_id": round_id, "n_updates": len(submitted), "hospitals": submitted})
        return tx.put_json(keys.round_(round_id), record)

    # ---------------------------------------------------------------- attestations
    @transaction
    def tx_AttestResult(self, tx: Tx, params: list[str]) -> dict[str, Any]:
        v.expect_args("AttestResult", params, 1)
        me = tx.require("mpc_node")
        f = Fields(v.obj(params[0], "attestation"), "attestation")
        round_id = f.integer("round_id", 1, v.MAX_ROUND_ID)
        model_hash = f.match("model_hash", v.HEX64_RE, "a lowercase hex SHA-256")
        accepted = f.array("accepted", MAX_HOSPITALS_PER_ROUND)
        for i, hid in enumerate(accepted):
            if not isinstance(hid, str) or not v.ID_RE.match(hid):
                raise ContractError(f"attestation: accepted[{i}] must be a participant id")
        rejected = f.object("rejected", required=False) or {}
        for hid, reason in rejected.items():
            if not v.ID_RE.match(hid):
                raise ContractError(f"attestation: rejected key {hid[:40]!r} must be a participant id")
            if not isinstance(reason, str) or not v.REASON_RE.match(reason):
                raise ContractError(f"attestation: reason for {hid} must match {v.REASON_HINT}")
        report_hash = f.match("report_hash", v.HEX64_RE, "a lowercase hex SHA-256")
        outcome = f.text("outcome", 32, required=False, default=v.OUTCOME_OK)
        if outcome not in v.OUTCOMES:
            raise ContractError(f"attestation: field 'outcome' must be one of {', '.join(v.OUTCOMES)}, "
                                f"got {outcome[:40]!r}")
        f.done()
        if len(set(accepted)) != len(accepted):
            raise ContractError("attestation: accepted lists a hospital twice")
        both = sorted(set(accepted) & set(rejected))
        if both:
            raise ContractError(f"attestation: {', '.join(both)} both accepted and rejected")
        rnd = self._round(tx, round_id)
        if rnd["state"] not in (CLOSED, FINALIZED, FAILED):
            raise ContractError(f"round {round_id} is {rnd['state']}; attestations are accepted once it is CLOSED", 409)
        if tx.get_json(keys.attestation(round_id, me["node_index"])) is not None:
            raise ContractError(f"MPC node {me['id']} already attested round {round_id}", 409)
        submitted = sorted(rec["hospital"] for _, rec in tx.range_json("update", [keys.rnd(round_id)]))
        verdicts = sorted([*accepted, *rejected])
        if verdicts != submitted:
            missing = sorted(set(submitted) - set(verdicts))
            extra = sorted(set(verdicts) - set(submitted))
            raise ContractError(f"attestation must give a verdict for exactly the submitted updates "
                                f"(missing: {missing or 'none'}; not submitted: {extra or 'none'})")
        min_accepted = _min_accepted(rnd)
        if outcome != v.OUTCOME_OK and model_hash != rnd["base_model_hash"]:
            raise ContractError(f"attestation: outcome {outcome!r} publishes no model: model_hash must be the base "
                                f"model {rnd['base_model_hash']}")
        if outcome == v.OUTCOME_OK and len(accepted) < min_accepted:
            raise ContractError(f"attestation: only {len(accepted)} accepted update(s), fewer than the round's "
                                f"policy.min_accepted {min_accepted}: the aggregate must not be opened (attest "
                                f"outcome {v.OUTCOME_TOO_FEW!r})")
        if outcome == v.OUTCOME_TOO_FEW and len(accepted) >= min_accepted:
            raise ContractError(f"attestation: outcome {outcome!r} with {len(accepted)} accepted update(s), at least "
                                f"the round's policy.min_accepted {min_accepted}")
        if len(accepted) < rnd["min_updates"] and model_hash != rnd["base_model_hash"]:
            raise ContractError(f"only {len(accepted)} accepted update(s), fewer than min_updates "
                                f"{rnd['min_updates']}: the model must stay the base model {rnd['base_model_hash']}")
        accepted = sorted(accepted)
        attestation = {"round_id": round_id, "node": me["id"], "node_index": me["node_index"],
                       "model_hash": model_hash, "accepted": accepted, "rejected": rejected, "outcome": outcome,
                       "report_hash": report_hash, "attested_at": tx.timestamp, "tx_id": tx.tx_id}
        tx.put_json(keys.attestation(round_id, me["node_index"]), attestation)
        claim = {"model_hash": model_hash, "accepted": accepted, "outcome": outcome}
        # Every attestation also writes the round record: concurrent attestations then conflict on MVCC
        # and the retried one sees the others, so a quorum is never missed by parallel commits.
        record = {**rnd, "attestations": {**rnd["attestations"], me["id"]: {**claim, "tx_id": tx.tx_id}}}
        if rnd["state"] in (FINALIZED, FAILED):  # a late node: recorded, listed as dissent if it differs
            agreed = rnd["finalized"] if rnd["state"] == FINALIZED else rnd["agreed"]
            if claim != _claim_of(agreed):
                record["dissent"] = sorted({*rnd["dissent"], me["id"]})
            return tx.put_json(keys.round_(round_id), record)
        claims = [_claim_of(a) for a in record["attestations"].values()]
        result = {**claim, "rejected": rejected, "report_hash": report_hash}
        if any(c != claim for c in claims):
            self._dispute(tx, record, DISPUTE_DIFFER)
        elif len(claims) < rnd["mpc"]["quorum"]:
            pass  # waiting for more nodes
        elif outcome == v.OUTCOME_OK:
            record["state"] = FINALIZED
            record["finalized_at"] = tx.timestamp
            record["finalized"] = result
            self._finalize(tx, rnd, model_hash)
            tx.event("RoundFinalized", {"round_id": round_id, "model_hash": model_hash, "accepted": accepted,
                                        "rejected": rejected})
        elif outcome == v.OUTCOME_TOO_FEW:  # terminal, no model: the head stays, the next round builds on it
            record["state"] = FAILED
            record["failed_at"] = tx.timestamp
            record["failure_reason"] = outcome
            record["agreed"] = result
            tx.event("RoundFailed", {"round_id": round_id, "reason": outcome, "accepted": accepted,
                                     "rejected": rejected})
        else:  # aggregate_out_of_range: the nodes agree the aggregate is unusable; no model, the head stays
            record["agreed"] = result
            self._dispute(tx, record, outcome)
        return tx.put_json(keys.round_(round_id), record)

    @staticmethod
    def _dispute(tx: Tx, record: dict[str, Any], reason: str) -> None:
        record["state"] = DISPUTED
        record["disputed_at"] = tx.timestamp
        record["dispute_reason"] = reason
        tx.event("RoundDisputed", {"round_id": record["round_id"], "reason": reason,
                                   "attestations": record["attestations"]})

    def _finalize(self, tx: Tx, rnd: dict[str, Any], model_hash: str) -> None:
        head = self._head(tx)
        tx.put_json(keys.HEAD, {**head, "finalized_round_id": rnd["round_id"], "model_hash": model_hash})
        if model_hash == rnd["base_model_hash"]:  # unchanged model: point at the stored bytes, no copy
            base = tx.get_json(keys.model(rnd["base_round_id"]))
            if base is not None:
                meta = {k: val for k, val in base.items() if not k.startswith("last_tx_")}
                tx.put_json(keys.model(rnd["round_id"]), {**meta, "round_id": rnd["round_id"],
                                                          "published_at": tx.timestamp})

    # --------------------------------------------------------------------- history
    @transaction
    def tx_GetHistory(self, tx: Tx, params: list[str]) -> list[dict[str, Any]]:
        v.expect_args("GetHistory", params, (1, 2))
        tx.require()
        kind = params[0]
        ident = params[1] if len(params) > 1 else ""
        if kind == "consortium":
            key = keys.CONSORTIUM
        elif kind == "round":
            key = keys.round_(v.round_id(ident, lo=0))
        elif kind == "model":
            key = keys.model(v.round_id(ident, lo=0))
        elif kind == "participant":
            key = keys.participant(v.participant_id(ident))
        elif kind in ("update", "attestation"):
            round_part, _, who = ident.partition("/")
            rid = v.round_id(round_part)
            if kind == "update":
                key = keys.update(rid, v.participant_id(who, "hospital id"))
            else:
                node = tx.get_json(keys.participant(v.participant_id(who, "MPC node id")))
                if node is None or node["role"] != "mpc_node":
                    raise ContractError(f"no MPC node {who!r}", 404)
                key = keys.attestation(rid, node["node_index"])
        else:
            raise ContractError(f"kind must be one of {', '.join(HISTORY_KINDS)}, got {kind[:20]!r}")
        out = []
        for mod in tx.stub.get_history_for_key(key):
            value: Any = None
            if mod.value:
                try:
                    value = json.loads(mod.value)
                except ValueError:
                    value = None
            stamp = value if isinstance(value, dict) else {}
            out.append({"tx_id": mod.tx_id, "timestamp": mod.timestamp_s, "is_delete": mod.is_delete,
                        "creator": stamp.get("last_tx_creator"), "function": stamp.get("last_tx_function"),
                        "value": value})
        return out
