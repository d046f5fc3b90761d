"""Consortium and participants: InitConsortium, GetConsortium, RegisterParticipant, GetParticipant,
ListParticipants. Who takes part, in which role, bound to which certificate (DESIGN.md §2.2)."""

from __future__ import annotations

from typing import Any

from fedchain_cc.fl import keys
from fedchain_cc.fl import validate as v
from fedchain_cc.fl.rules import (
    DEFAULT_MAX_CLOCK_SKEW_S,
    DEFAULT_MAX_MODEL_BYTES,
    DEFAULT_MIN_ACCEPTED,
    HARD_MAX_MODEL_BYTES,
    IDENTITY_MAX,
    MAX_CLOCK_SKEW_S,
    MAX_HOSPITALS_PER_ROUND,
    MAX_MPC_NODES,
    MAX_SAMPLE_CAP,
    ROLES,
)
from fedchain_cc.fl.tx import Tx
from fedchain_cc.fl.validate import Fields
from fedchain_cc.shim.contract import ContractError, transaction


def _identity_field(f: Fields, name: str = "identity") -> str:
    value = f.text(name, IDENTITY_MAX)
    if not value.startswith("x509::") or value.count("::") < 2:
        raise ContractError(f"{f.what}: field '{name}' must be a Fabric client id 'x509::<subject>::<issuer>'")
    return value


def _mpc_nodes(f: Fields) -> list[dict[str, Any]]:
    """config.mpc_nodes, each with its node_index (= its position: share_hashes[j] belongs to node j)."""
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
    return nodes


class ConsortiumTransactions:
    """The consortium record, the head pointer's creation, and the participant registry."""

    @transaction("InitConsortium")
    def init_consortium(self, tx: Tx, config: str) -> dict[str, Any]:
        if tx.get_json(keys.CONSORTIUM) is not None:
            raise ContractError("the consortium is already initialized", 409)
        if tx.client.role != "operator":
            raise ContractError(
                f"caller {tx.describe_client()} has certificate role {tx.client.role!r}; only an operator may "
                f"initialize the consortium",
                403,
            )
        f = Fields(v.obj(config, "config"), "config")
        name = f.text("name", 128, required=False, default="fedchain")
        operator_id = f.match("operator_id", v.ID_RE, "a participant id", required=False) or "operator"
        nodes = _mpc_nodes(f)
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

    @transaction("GetConsortium")
    def get_consortium(self, tx: Tx) -> dict[str, Any]:
        tx.require()
        out = {k: val for k, val in tx.consortium().items()}
        out["head"] = tx.head()
        return out

    @transaction("RegisterParticipant")
    def register_participant(self, tx: Tx, participant: str) -> dict[str, Any]:
        tx.require("operator")
        f = Fields(v.obj(participant, "participant"), "participant")
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

    @transaction("GetParticipant")
    def get_participant(self, tx: Tx, participant_id: str) -> dict[str, Any]:
        tx.require()
        pid = v.participant_id(participant_id)
        rec = tx.get_json(keys.participant(pid))
        if rec is None:
            raise ContractError(f"no participant {pid!r}", 404)
        return rec

    @transaction("ListParticipants")
    def list_participants(self, tx: Tx, role: str = "") -> list[dict[str, Any]]:
        tx.require()
        if role and role not in ROLES:
            raise ContractError(f"role filter must be one of {', '.join(ROLES)}, got {role[:20]!r}")
        return [rec for _, rec in tx.range_json("participant", []) if not role or rec["role"] == role]
