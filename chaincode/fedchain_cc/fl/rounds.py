"""Rounds: CreateRound, GetRound, ListRounds, CloseRound, and who may close a round when (deadlines)."""

from __future__ import annotations

from typing import Any

from fedchain_cc.fl import keys
from fedchain_cc.fl import validate as v
from fedchain_cc.fl.rules import (
    CLOSED,
    DEFAULT_MAX_CLOCK_SKEW_S,
    DEFAULT_MIN_ACCEPTED,
    MAX_HOSPITALS_PER_ROUND,
    MAX_PARAM_COUNT,
    OPEN,
)
from fedchain_cc.fl.tx import Tx
from fedchain_cc.fl.updates import submitted_hospitals
from fedchain_cc.fl.validate import Fields
from fedchain_cc.shim.contract import ContractError, transaction


def earliest_close(role: str, deadline: float, consortium: dict[str, Any]) -> float:
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


def _round_policy(cons: dict[str, Any], policy: dict[str, Any] | None,
                  hyper: dict[str, Any]) -> dict[str, Any]:
    """The policy CreateRound stores: the given one or the consortium default, always with min_accepted,
    and only an encrypted-inference check the round declared a validation batch for."""
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
    return policy


class RoundTransactions:
    """A round's life until the nodes attest: created OPEN by an operator, CLOSED at or after its deadline."""

    @transaction("CreateRound")
    def create_round(self, tx: Tx, round_json: str) -> dict[str, Any]:
        tx.require("operator")
        cons = tx.consortium()
        f = Fields(v.obj(round_json, "round"), "round")
        round_id = f.integer("round_id", 1, v.MAX_ROUND_ID)
        base_hash = f.match("base_model_hash", v.HEX64_RE, "a lowercase hex SHA-256")
        spec = f.freeform("model_spec")
        param_count = Fields(spec, "round: model_spec").integer("param_count", 1, MAX_PARAM_COUNT)
        hyper = f.freeform("hyperparameters", required=False) or {}
        policy = f.freeform("policy", required=False, scalars_only=True)
        deadline = f.number("deadline", 0, v.MAX_TIMESTAMP)
        min_updates = f.integer("min_updates", 1, MAX_HOSPITALS_PER_ROUND)
        f.done()
        head = tx.head()
        if head["model_hash"] is None:
            raise ContractError("no genesis model yet: publish it with PublishGenesisModel first", 409)
        if round_id <= head["last_round_id"]:
            raise ContractError(f"round ids must increase: round {round_id} is not after round {head['last_round_id']}",
                                409)
        last = tx.round_record(head["last_round_id"])
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
        policy = _round_policy(cons, policy, hyper)
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

    @transaction("GetRound")
    def get_round(self, tx: Tx, round_arg: str) -> dict[str, Any]:
        tx.require()
        return tx.round_record(v.round_id(round_arg, lo=0))

    @transaction("ListRounds")
    def list_rounds(self, tx: Tx) -> list[dict[str, Any]]:
        tx.require()
        return [rec for _, rec in tx.range_json("round", [])]

    @transaction("CloseRound")
    def close_round(self, tx: Tx, round_arg: str) -> dict[str, Any]:
        me = tx.require()
        round_id = v.round_id(round_arg)
        rnd = tx.round_record(round_id)
        if rnd["state"] != OPEN:
            raise ContractError(f"round {round_id} is {rnd['state']}; only an OPEN round can be closed", 409)
        earliest = earliest_close(me["role"], rnd["deadline"], tx.consortium())
        if tx.timestamp < earliest:
            raise ContractError(f"caller {me['id']} ({me['role']}) may close round {round_id} only from "
                                f"{earliest} on (deadline {rnd['deadline']}{_skew_note(me['role'])}; transaction "
                                f"time {tx.timestamp}); operators may close it any time", 403)
        submitted = submitted_hospitals(tx, round_id)
        record = {**rnd, "state": CLOSED, "closed_at": tx.timestamp, "submitted": submitted}
        tx.event("RoundClosed", {"round_id": round_id, "n_updates": len(submitted), "hospitals": submitted})
        return tx.put_json(keys.round_(round_id), record)
